#!/usr/bin/env bash
# TinyLLaVA-style ablations of the bundled model's recipe (run scripts/train_fashion.sh first; the
# ablations reuse its data, vocabulary, pretrained LM and SigLIP tower). Each variant changes one
# thing and is evaluated on the same held-out test scenes:
#   attn          Llama 3-V's connector (two self-attention blocks + projection) instead of the MLP
#                 (after stage 2, and after the recipe's stage 2b; also on the validation scenes)
#   no-stage1     instruction fine-tuning straight after SigLIP, without connector pretraining
#   tower-share   the last tower block the connector reads (block 1 of 0-1) trains in stage 2
#                 (TinyLLaVA's "share"), from cached hidden states after block 1
# Reports go to runs/fashion/ablation-<name>.{txt,json}; a variant whose model exists is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fashion_common.sh
A=$W/ablations
[ -f "$W/stage2/model/config.json" ] || { echo "ablate: run scripts/train_fashion.sh first (no $W/stage2/model)"; exit 1; }
mkdir -p "$A"

say "ablation: attention-block connector"
[ -f "$A/attn/init/config.json" ] || $O init -o "$A/attn/init" --tokenizer "$W/tokenizer/tokenizer.json" "${INIT_ARGS[@]}" \
  --connector attn_blocks --from "$W/siglip/model"
stage recipes/fashion/ablations/attn-1-connector.json "$A/attn/stage1"
stage recipes/fashion/ablations/attn-2-instruct.json "$A/attn/stage2"
evaluate "$A/attn/stage2" ablation-attn
evaluate "$A/attn/stage2" ablation-attn-val val_eval.json
stage recipes/fashion/ablations/attn-3-instruct-more.json "$A/attn/stage2b"  # the recipe's stage 2b on it
evaluate "$A/attn/stage2b" ablation-attn-2b-val val_eval.json
evaluate "$A/attn/stage2b" ablation-attn-2b

say "ablation: no connector pretraining (stage 1 skipped)"
stage recipes/fashion/ablations/no-stage1-instruct.json "$A/no-stage1/stage2"
evaluate "$A/no-stage1/stage2" ablation-no-stage1

say "ablation: tower partly trainable (block 1, TinyLLaVA's share)"
current_cache "$A/hidden-after-1.safetensors" || $O cache -m "$W/stage1/model" --data "$W/data/train_instruct.json" --images "$W/data" \
  -o "$A/hidden-after-1.safetensors" --batch 64 --hidden-after 1
stage recipes/fashion/ablations/tower-share-instruct.json "$A/tower-share/stage2"
evaluate "$A/tower-share/stage2" ablation-tower-share
say "done"
