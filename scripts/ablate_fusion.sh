#!/usr/bin/env bash
# LlamaFusion's ablation (the paper's Table 3 on our data): Transfusion-style, one set of modules
# for text and images, all of it trained, against LlamaFusion's frozen text with image modules,
# the same steps and data (stage 1 of scripts/train_fusion.sh, which must have run). Both are
# scored by eval-fusion on the same 200 held-out test captions and scenes: text perplexity,
# faithfulness, FID. Usage: bash scripts/ablate_fusion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fashion_common.sh
F=runs/fusion
[ -f "$F/fusion/model/config.json" ] && [ -f "$F/judge/model/config.json" ] || { echo "run scripts/train_fusion.sh first"; exit 1; }
say "Transfusion-style: one set of modules, all trained, the same 6000 steps"
stage recipes/fusion/ablation-transfusion.json "$F/transfusion"
for m in fusion transfusion; do
  say "eval-fusion: $m"
  $O eval-fusion -m "$F/$m/model" --judge "$F/judge/model" --data "$W/data/test_captions.json" --images "$W/data" --scenes 200 \
    -o "$F/ablation-$m.json" | tee "$F/ablation-$m.txt"
done
say "done"
