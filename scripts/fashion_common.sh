# Shared by scripts/train_fashion.sh and scripts/ablate_fashion.sh (sourced, not run).
O=${OCELLUS:-./build/ocellus}  # OCELLUS=path: another build of the tool (one copied aside while the tree rebuilds)
W=runs/fashion
# OpenBLAS's GEMM kernels are whatever the environment chose: machines set OPENBLAS_CORETYPE because
# older OpenBLAS builds compute wrong results or crash on some newer CPUs, so nothing here overrides
# it. The numbers differ in the last bits between kernel sets, so a model trained under one is not
# byte for byte the one trained under another.
echo "OpenBLAS kernels: ${OPENBLAS_CORETYPE:-detected by OpenBLAS}"
# The model's sizes: llama 256 x 4 layers (4 heads, 2 KV heads), SigLIP-style tower 56 px with
# 14 px patches (16 image tokens), 128 wide x 4 blocks. SigLIP pretrains all 4 blocks; the
# connector reads the hidden state after block 2 (vision_feature_layer -3): there each patch still
# knows its place (a probe finds a patch's cell from its feature 90% of the time, 66% after block
# 4) and the item in a cell is as clear (92% vs 89%).
INIT_ARGS=(--n-embd 256 --n-ff 688 --n-layer 4 --n-head 4 --n-head-kv 2 --n-ctx 512 --image-size 56 --patch-size 14 --feature-layer -3
           --vision-embd 128 --vision-ff 512 --vision-layers 4 --vision-heads 4 --seed 1)
T0=$SECONDS
say() { printf '\n== %s (%d s so far)\n' "$*" $((SECONDS - T0)); }
stage() {  # recipe, its output folder: skipped when its model exists, resumed from a checkpoint
  if [ -f "$2/model/config.json" ]; then echo "$2/model exists: skipped"; return; fi
  # No checkpoint yet: start the stage over (--overwrite: a run killed before its first checkpoint
  # leaves metrics behind, which a plain train refuses to replace).
  if [ -f "$2/checkpoints/latest" ]; then $O train --recipe "$1" --resume; else $O train --recipe "$1" --overwrite; fi
}
current_cache() {  # a feature cache that exists and records the tower that made it (ocellus.tower_hash)
  [ -f "$1" ] && head -c 4096 "$1" | grep -q ocellus.tower_hash
}
evaluate() {  # stage folder, report name[, questions: test_eval.json (the default) or val_eval.json]
  $O eval -m "$1/gguf/model.gguf" --mmproj "$1/gguf/mmproj.gguf" --questions "$W/data/${3:-test_eval.json}" --images "$W/data" \
    --max-tokens 40 -o "$W/$2.json" | tee "$W/$2.txt"
}
text_pretraining() {  # the vocabulary, the random init and stage 0, the text-only language model (both pipelines start here)
  say "vocabulary: byte-level BPE learned from the training text"
  [ -f "$W/tokenizer/tokenizer.json" ] || $O train-tokenizer -o "$W/tokenizer/tokenizer.json" --vocab-size 512 \
    --special "<|endoftext|>" "<|im_start|>" "<|im_end|>" --eos "<|endoftext|>" "$W/data/train_text.txt"
  say "init: llama 256 x 4 layers, SigLIP-style tower 56 px / 14 px patches, 128 x 4 layers, MLP connector"
  [ -f "$W/init/config.json" ] || $O init -o "$W/init" --tokenizer "$W/tokenizer/tokenizer.json" "${INIT_ARGS[@]}"
  say "stage 0: language-model pretraining: the training conversations as reading comprehension (description in words, then the questions)"
  stage recipes/fashion/0-text.json "$W/text"
}
