#!/usr/bin/env bash
# Builds ocellus and runs the benchmarks (pass Google Benchmark flags, e.g. --benchmark_filter=Matvec).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
OCELLUS_THREADS="${OCELLUS_THREADS:-2}" ./build/bench/ocellus_bench --benchmark_min_time=0.3 "$@"
