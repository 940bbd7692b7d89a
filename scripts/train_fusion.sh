#!/usr/bin/env bash
# Builds the bundled image generator (models/fashion-fusion) as LlamaFusion does, on the
# Fashion-MNIST scenes of the bundled VLM: a text-only language model (stage 0 of
# scripts/train_fashion.sh, the bundled VLM's start) stays frozen; beside each of its layers an
# image module of the same shapes trains, with a U-Net at each end, over the latents of a small
# VAE trained first.
#   data and the text-only language model (shared with scripts/train_fashion.sh) -> the VAE on
#   the training scenes -> 1. LlamaFusion
#   on the training scenes and their captions (caption -> image and image -> caption) -> 2. a
#   second cycle from stage 1's model -> 3. a third, lower one -> the judge:
#   a Fashion-MNIST classifier on the 60k training photos, for the evaluation -> evaluation on
#   held-out test captions and scenes -> models/fashion-fusion.
# Each stage is one `ocellus train --recipe recipes/fusion/...` call; a finished stage is
# skipped, a stopped one resumes from its checkpoint. Usage: bash scripts/train_fusion.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --run ocellus_cli
if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
source scripts/fashion_common.sh
F=runs/fusion
mkdir -p "$W" "$F"

say "data: the bundled VLM's scenes (20000 training, 500 test, 500 validation)"
[ -f "$W/data/val_eval.json" ] || $O data fashion-vqa -o "$W/data" --train-scenes 20000 --test-scenes 500 --val-scenes 500 --seed 1
text_pretraining
say "the frozen base: stage 0's language model at f16 (the file that ships)"
[ -f "$F/base.gguf" ] || $O quantize "$W/text/gguf/model.gguf" "$F/base.gguf" f16
say "the VAE (56 px scenes -> 14 x 14 x 4 latents)"
stage recipes/fusion/0-vae.json "$F/vae"
say "stage 1: LlamaFusion: image modules beside the frozen text-only language model"
stage recipes/fusion/1-fusion.json "$F/fusion"
say "stage 2: 4000 more steps from stage 1's model (a second cosine cycle, fewer understanding samples)"
stage recipes/fusion/2-fusion-more.json "$F/fusion-more"
say "stage 3: 2000 more steps from stage 2's model (a third, lower cycle)"
stage recipes/fusion/3-fusion-third.json "$F/fusion-third"
say "the judge: a Fashion-MNIST classifier on the 60k training photos"
stage recipes/fusion/judge.json "$F/judge"
say "evaluation on held-out test captions and scenes"
$O eval-fusion -m "$F/fusion-third/model" --judge "$F/judge/model" --data "$W/data/test_captions.json" --images "$W/data" \
  -o "$F/eval.json" | tee "$F/eval.txt"
if [ "${1:-}" != "--no-install" ]; then
  D=models/fashion-fusion
  mkdir -p "$D/vae"
  cp "$F/fusion-third/model/model.safetensors" "$D/"
  cp "$F/fusion-third/model/vae/config.json" "$F/fusion-third/model/vae/model.safetensors" "$D/vae/"
  # The frozen base travels inside the folder: the file it trained beside.
  cp "$F/base.gguf" "$D/base.gguf"
  sed 's|"base": ".*"|"base": "base.gguf"|' "$F/fusion-third/model/config.json" > "$D/config.json"
  cp "$F/eval.txt" "$D/eval.txt"
  $O generate-image -m "$D" -p "a sneaker in the top left and a bag in the bottom right" -o "$D/example.png"
  echo "installed $D (config.json, base.gguf, model.safetensors, vae/, eval.txt, example.png)"
fi
say "done"
