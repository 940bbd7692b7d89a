#!/usr/bin/env bash
# Builds ocellus and runs the main job on the bundled default. Until the bundled model exists,
# that is: show the kernels picked for this CPU, then inspect the fixture models
# (../shared/fixtures/peer/: llama f32/f16/q8_0/q4_0, qwen2, phi2, stablelm, CLIP mmproj).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/ocellus info
echo
./build/ocellus inspect ../shared/fixtures/peer/*.gguf
