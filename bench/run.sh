#!/bin/sh
# The sipreg benchmark in one command: build a release sipregd, then run the REGISTER rate
# ladder on loopback (bench/bench.py does the work; bench/README.md explains the output).
#
#   bench/run.sh [--auth|--noauth] [--transport u1|t1] [--users N] [--rates "4000 8000 ..."]
#                [--dur 15] [--repeat 1] [--backend memory|pg|ldap] [--location memory|ldap]
#                [--keep-going]
#                [--compare-kamailio]
#                [--builddir DIR] [--no-build] [--out DIR]
set -eu
exec python3 "$(dirname "$0")/bench.py" "$@"
