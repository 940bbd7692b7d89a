#!/usr/bin/env bash
# Builds ocellus and runs the whole test suite through CTest, then fuzzes each file reader for a
# bounded time (OCELLUS_FUZZ_SECONDS per reader, default 30; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
if [ "${OCELLUS_FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${OCELLUS_FUZZ_SECONDS:-30}"
fi
