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
if [ "$mode" = test ]; then
  # The clients the server's tests drive (tests/serve/package.json: the openai client,
  # puppeteer-core for Chromium), from the npm registry, pinned by the lock file.
  mkdir -p build/npm
  if ! cmp -s tests/serve/package-lock.json build/npm/package-lock.json || [ ! -d build/npm/node_modules ]; then
    cp tests/serve/package.json tests/serve/package-lock.json build/npm/
    (cd build/npm && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
if [ $# -gt 0 ]; then
  cmake --build build -j"$(nproc)" --target "$@"
else
  cmake --build build -j"$(nproc)"
fi
