#!/bin/sh
# PostgreSQL figures for docs/benchmarks.md (issue 5), in one command:
#  1. the REGISTER rate ladder with digest auth against the pg backend (bench/run.sh
#     --backend pg: a throwaway PostgreSQL with default settings, fsync and
#     synchronous_commit on), with 10k users and Kamailio usrloc db_mode=3 at each rate
#     (../shared/bench/kamailio, variant c) in the same session, then with 1M users;
#  2. the database side (bench/pg_lookup.py): sipreg_lookup and Kamailio's query on the
#     location view with 1M live bindings (p50/p99), and sipreg_apply's commit rate.
#
#   bench/pg.sh [--rates "2000 4000 6000 8000"] [--big-rates "2000 4000"] [--dur 15]
#               [--big-users 1000000] [--skip-ladder] [--skip-lookup] [--out DIR]
#               [--builddir DIR --no-build]   (passed to bench/run.sh)
#
# Needs what bench/run.sh --backend pg --compare-kamailio needs (bench/README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rates="2000 4000 6000 8000"
big_rates="2000 4000"
dur=15
big_users=1000000
ladder=1
lookup=1
out=/tmp/sipreg-bench-pg/$(date +%Y%m%d-%H%M%S)
builddir=$(dirname "$here")/build-release
nobuild=
while [ $# -gt 0 ]; do
	case "$1" in
	--rates) rates=$2; shift 2 ;;
	--big-rates) big_rates=$2; shift 2 ;;
	--dur) dur=$2; shift 2 ;;
	--big-users) big_users=$2; shift 2 ;;
	--skip-ladder) ladder=0; shift ;;
	--skip-lookup) lookup=0; shift ;;
	--out) out=$2; shift 2 ;;
	--builddir) builddir=$2; shift 2 ;;
	--no-build) nobuild=--no-build; shift ;;
	*) echo "usage: bench/pg.sh [--rates R] [--big-rates R] [--dur S] [--big-users N]" \
		"[--skip-ladder] [--skip-lookup] [--out DIR]" >&2; exit 2 ;;
	esac
done
mkdir -p "$out"
if [ $ladder = 1 ]; then
	echo "== pg, 10000 users, auth, UDP, with Kamailio db_mode 3 at the same rates"
	"$here/run.sh" --backend pg --auth --users 10000 --rates "$rates" --dur "$dur" \
		--keep-going --compare-kamailio --builddir "$builddir" $nobuild --out "$out/10k" |
		tee "$out/10k.txt"
	echo "== pg, $big_users users, auth, UDP"
	"$here/run.sh" --backend pg --auth --users "$big_users" --rates "$big_rates" \
		--dur "$dur" --keep-going --builddir "$builddir" --no-build --out "$out/big" |
		tee "$out/big.txt"
fi
if [ $lookup = 1 ]; then
	echo "== database side, $big_users live bindings"
	python3 "$here/pg_lookup.py" --bindings "$big_users" --dur 10 \
		--sipregctl "$builddir/sipregctl" | tee "$out/lookup.md"
fi
echo "results in $out"
