#!/bin/bash
# Try sipregd on a fresh Debian 12: install the build dependencies, build sipregd
# and run it in the foreground on config/sipregd.yaml (127.0.0.1:5060, in-memory directory
# with the demo users listed there). Stop it with Ctrl-C. BUILD_DIR and CONFIG (defaults
# build-demo and config/sipregd.yaml) let the README's test run it on a free port.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -q
	as_root apt-get install -y -q --no-install-recommends build-essential meson ninja-build \
		pkg-config libosip2-dev libevent-dev libyaml-dev libxxhash-dev libssl-dev libpq-dev \
		libc-ares-dev libjansson-dev
fi

build=${BUILD_DIR:-build-demo}
config=${CONFIG:-config/sipregd.yaml}
# The build type CI builds and tests (.ci/run).
[ -d "$build" ] || meson setup "$build" -Dbuildtype=debugoptimized
ninja -C "$build" sipregd sipregctl
case $build in
/*) bin=$build ;;
*) bin=./$build ;;
esac
"$bin/sipregd" -c "$config" --check
exec "$bin/sipregd" -c "$config"
