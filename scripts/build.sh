#!/usr/bin/env bash
# Configures and builds ocellus (Release, -O3) into ./build.
#   bash scripts/build.sh                 everything: the tool, the tests and the benchmarks
#   bash scripts/build.sh --run TARGET..  only the named targets, with only what running needs
#                                         installed (scripts/run.sh: the tool, no test packages)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=test
if [ "${1:-}" = --run ]; then mode=run; shift; fi
bash scripts/deps.sh "$mode"
extras=ON; [ "$mode" = run ] && extras=OFF
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DOCELLUS_BUILD_TESTS=$extras -DOCELLUS_BUILD_BENCH=$extras >/dev/null
if [ $# -gt 0 ]; then
  cmake --build build -j"$(nproc)" --target "$@"
else
  cmake --build build -j"$(nproc)"
fi
