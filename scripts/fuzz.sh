#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UBSan) and runs each for a bounded time.
# Usage: scripts/fuzz.sh [seconds per target, default 30]
# Eight readers of untrusted input: GGUF, safetensors, PNG / JPEG images, tokenizer.json (+
# tokenizer_config.json), config.json, preprocessor_config.json, LLaVA training JSON, evaluation
# questions. At 30 s each the whole run fuzzes for 4 minutes (it was 2 x 60 s).
# Seeds: the fixture GGUF headers and small files made here; fuzz/seeds/ holds tiny committed
# images (one per PNG colour type / JPEG coding) and JSON files.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-30}"
TARGETS="gguf safetensors image tokenizer_json hf_config preprocessor_config llava_json eval_questions chat_request"
bash scripts/deps.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  "${launcher[@]}" -DOCELLUS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target $(for t in $TARGETS; do printf 'fuzz_%s ' "$t"; done) >/dev/null

seeds=build-fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds/gguf" "$seeds/safetensors"
for f in ../shared/fixtures/peer/*.gguf ../shared/fixtures/tokenizer/*.gguf; do
  # Large seeds slow the fuzzer down; their first 64 KiB hold the header and metadata.
  [ -f "$f" ] && head -c 65536 "$f" > "$seeds/gguf/$(basename "$f")"
done
./build/ocellus synth tiny-llama -o "$seeds/gguf/synth-llama.gguf" --dtype q4_0 >/dev/null 2>&1 || true
./build/ocellus synth tiny-clip -o "$seeds/gguf/synth-clip.gguf" --dtype f16 >/dev/null 2>&1 || true
python3 - "$seeds/safetensors" <<'PY'
import json, struct, sys
d = sys.argv[1]
def write(name, tensors):
    header, data, off = {"__metadata__": {"format": "pt"}}, b"", 0
    for n, (dt, shape, raw) in tensors.items():
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw; off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(f"{d}/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
write("a.safetensors", {"w": ("F32", [2, 3], bytes(24)), "b": ("F16", [3], bytes(6))})
write("b.safetensors", {"x": ("BF16", [4, 1], bytes(8)), "i": ("I64", [2], bytes(16))})
PY
for t in image tokenizer_json hf_config preprocessor_config llava_json eval_questions chat_request; do cp -r "fuzz/seeds/$t" "$seeds/$t"; done

status=0
for t in $TARGETS; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzzing the $t reader for ${SECONDS_PER_TARGET}s"
  dict=()  # the JSON readers' syntax and keys, so mutations reach past the JSON parser
  case $t in tokenizer_json|hf_config|preprocessor_config|llava_json|eval_questions) dict=(-dict=fuzz/json.dict) ;; esac
  # Crash inputs go to build-fuzz/ (not the source tree); found ones become seeds in fuzz/seeds/.
  if ! ./build-fuzz/fuzz_$t -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=131072 -timeout=30 \
       -artifact_prefix=build-fuzz/ \
       "${dict[@]}" -print_final_stats=1 "build-fuzz/corpus/$t" "$seeds/$t" > "build-fuzz/fuzz_$t.log" 2>&1; then
    echo "fuzz_$t FAILED; last lines of build-fuzz/fuzz_$t.log:"
    tail -40 "build-fuzz/fuzz_$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "build-fuzz/fuzz_$t.log" | tr '\n' ' '
    echo
  fi
done
exit $status
