#!/usr/bin/env bash
# Configures and builds ocellus (Release, -O3) into ./build: every target, or only those named
# (e.g. `bash scripts/build.sh ocellus_cli`, the command-line tool, without the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ $# -gt 0 ]; then
  cmake --build build -j"$(nproc)" --target "$@"
else
  cmake --build build -j"$(nproc)"
fi
