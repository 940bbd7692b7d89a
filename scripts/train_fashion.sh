#!/usr/bin/env bash
# Builds the bundled default model (models/fashion-vlm) from nothing, as Llama 3-V / TinyLLaVA do
# at small scale, on Fashion-MNIST scenes (Debian's dataset-fashion-mnist):
#   data -> BPE vocabulary -> random init -> 0. LM pretraining on the training conversations as reading
#   comprehension (each scene's description in words where its picture will be)
#   -> 1. SigLIP pretraining of the tower -> embedding cache -> 2. connector pretraining on
#   captions (tower and LLM frozen) -> 3. instruction fine-tuning (LLM + connector, tower frozen)
#   -> 3b. more instruction steps (a second cosine cycle) -> 3c, 3d. a third and a fourth, lower
#   cycle on the conversations with contrastive counts added (a present kind and an absent
#   look-alike of it) -> evaluation on held-out test scenes -> the GGUF pair copied into models/fashion-vlm.
# Each stage is one `ocellus train --recipe recipes/fashion/...` call. Work goes to runs/fashion;
# a stage whose model exists is skipped, one with a checkpoint resumes, so a stopped run goes on
# where it was. Usage: bash scripts/train_fashion.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --run ocellus_cli  # the tool only, with only what running needs
if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
source scripts/fashion_common.sh
mkdir -p "$W"

say "data: 20000 training scenes (60k training photos), 500 test scenes (10k test photos), 500 validation scenes (training photos no training scene shows)"
[ -f "$W/data/val_eval.json" ] || $O data fashion-vqa -o "$W/data" --train-scenes 20000 --test-scenes 500 --val-scenes 500 --seed 1
text_pretraining
say "stage 1a: SigLIP pretraining of the tower on scene / caption pairs"
stage recipes/fashion/1-siglip.json "$W/siglip"
say "embedding cache: the frozen tower over every training image"
current_cache "$W/features.safetensors" || $O cache -m "$W/siglip/model" --data "$W/data/train_instruct.json" --images "$W/data" \
  -o "$W/features.safetensors" --batch 64
say "stage 1b: connector pretraining on captions (tower and LLM frozen)"
stage recipes/fashion/2-connector.json "$W/stage1"
say "stage 2: instruction fine-tuning (LLM + connector; tower frozen)"
stage recipes/fashion/3-instruct.json "$W/stage2"
say "stage 2b: 3,000 more instruction steps (a second, lower cosine cycle)"
stage recipes/fashion/4-instruct-more.json "$W/stage2b"
say "stage 2c: 1,500 steps of a third, lower cycle on the conversations with contrastive counts added"
stage recipes/fashion/5-instruct-contrast.json "$W/stage2c"
say "stage 2d: 3,000 steps of a fourth cycle on the same conversations (another data order)"
stage recipes/fashion/6-instruct-contrast-more.json "$W/stage2d"
say "evaluation on the validation scenes (for choosing a recipe) and on the held-out test scenes"
evaluate "$W/stage2d" eval-val val_eval.json
evaluate "$W/stage2d" eval
if [ "${1:-}" != "--no-install" ]; then
  mkdir -p models/fashion-vlm
  cp "$W/stage2d/gguf/model.gguf" "$W/stage2d/gguf/mmproj.gguf" models/fashion-vlm/
  cp "$W/data/images/test/000000.png" models/fashion-vlm/example.png
  cp "$W/eval.txt" models/fashion-vlm/eval.txt
  cp "$W/eval-val.txt" models/fashion-vlm/eval-val.txt
  echo "installed models/fashion-vlm (model.gguf, mmproj.gguf, example.png, eval.txt, eval-val.txt)"
fi
say "done"
