#!/usr/bin/env bash
# LlamaFusion on the bundled VLM, and the paper's ablation (its Table 3 on our data). Both start
# from the VLM's language model (models/fashion-vlm/model.gguf), the same 6000 steps, data and
# learning rates:
#   - LlamaFusion (recipes/fusion/vlm-fusion.json): the paper's adaptation of an existing VLM,
#     its text frozen and image modules beside it;
#   - Transfusion-style (recipes/fusion/ablation-transfusion.json): one set of modules for text
#     and images, all of it trained.
# Each is scored by eval-fusion on the first 200 held-out test captions and scenes (text
# perplexity, faithfulness, FID) and answers the VLM's 2,979 test questions with the VLM's
# projector: LlamaFusion's answers are the VLM's. Needs scripts/train_fusion.sh's VAE and judge.
# Usage: bash scripts/ablate_fusion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fashion_common.sh
F=runs/fusion
A=runs/fusion-vlm
[ -f "$F/vae/model/config.json" ] && [ -f "$F/judge/model/config.json" ] || { echo "run scripts/train_fusion.sh first"; exit 1; }
say "LlamaFusion on the bundled VLM's language model (frozen), 6000 steps"
stage recipes/fusion/vlm-fusion.json "$A/fusion"
say "Transfusion-style on the same model: one set of modules, all trained, the same 6000 steps"
stage recipes/fusion/ablation-transfusion.json "$A/transfusion"
for m in fusion transfusion; do
  say "eval-fusion: $m"
  $O eval-fusion -m "$A/$m/model" --judge "$F/judge/model" --data "$W/data/test_captions.json" --images "$W/data" --scenes 200 \
    -o "$A/ablation-$m.json" | tee "$A/ablation-$m.txt"
  say "the VLM's test questions with $m's text: $m"
  $O eval -m "$A/$m/model" --mmproj models/fashion-vlm/mmproj.gguf --questions "$W/data/test_eval.json" --images "$W/data" \
    --max-tokens 40 -o "$A/vqa-$m.json" | tee "$A/vqa-$m.txt"
done
say "done"
