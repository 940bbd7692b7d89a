#!/usr/bin/env bash
# Builds the benchmarks and runs them (Google Benchmark flags pass through, e.g.
# --benchmark_filter=Matvec). Besides the console output it writes build/bench.json (every
# counter) and build/bench-table.md, printed at the end too: one row per benchmark with its key
# rate and its ratio to the machine's ceiling measured in the same run (scripts/bench_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test  # Google Benchmark comes with the test extras
bash scripts/build.sh ocellus_bench
OCELLUS_THREADS="${OCELLUS_THREADS:-2}" ./build/bench/ocellus_bench --benchmark_min_time=0.3 \
  --benchmark_out=build/bench.json --benchmark_out_format=json "$@" | tee build/bench-console.txt
echo
python3 scripts/bench_table.py build/bench.json build/bench-console.txt | tee build/bench-table.md
