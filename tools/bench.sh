#!/usr/bin/env bash
# Benchmark harness: builds optimised, runs every measurement with the full load against
# real mosquitto, PostgreSQL, strata-edge and strata-cloud, and prints one table (also
# written to build-bench/bench.md). Copy the table into docs/benchmarks.md with the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target strata_bench
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
build-bench/tests/bench/strata_bench --output build-bench/bench.md "$@"
