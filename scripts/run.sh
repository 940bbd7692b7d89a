#!/usr/bin/env bash
# Builds ocellus and runs the main job on the bundled defaults: the model that ships in
# models/fashion-vlm (trained from scratch by scripts/train_fashion.sh) answers questions about a
# held-out test scene (models/fashion-vlm/example.png: a dress in the top left, a shirt in the
# top right), and the image generator that ships in models/fashion-fusion (LlamaFusion on that
# model's text-only language model, frozen; scripts/train_fusion.sh) draws a scene from a caption.
# `ocellus run` and `ocellus generate-image` with no -m use these models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --run ocellus_cli  # the tool only, with only what running needs
if [ ! -f models/fashion-vlm/model.gguf ]; then  # not trained yet: the engine on the fixture models
  echo "models/fashion-vlm is missing (bash scripts/train_fashion.sh makes it); inspecting the fixture models instead"
  ./build/ocellus info
  ./build/ocellus inspect ../shared/fixtures/peer/*.gguf
  exit 0
fi
for q in "What is in the top left cell? Answer briefly." "Where is the shirt? Answer briefly." \
         "Is there a bag in the picture? Answer briefly." "Describe the picture."; do
  echo "Q: $q"
  printf 'A: '
  ./build/ocellus run --image models/fashion-vlm/example.png -p "$q" -n 48 2>/dev/null  # stderr: timings
done
if [ -f models/fashion-fusion/config.json ]; then
  mkdir -p runs
  caption="a sneaker in the top left and a bag in the bottom right"
  echo "Drawing: $caption"
  ./build/ocellus generate-image -p "$caption" -o runs/generated.png
fi
