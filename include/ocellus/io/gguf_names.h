#pragma once
// Every GGUF metadata key and tensor-name pattern ocellus uses, in one table (llama.cpp's
// conventions). Code asks for names here instead of spelling string literals.
#include <string>

namespace ocellus::io::gguf {

// ---- metadata keys --------------------------------------------------------------------------
namespace key {
inline constexpr const char* kArchitecture = "general.architecture";
inline constexpr const char* kName = "general.name";
inline constexpr const char* kAlignment = "general.alignment";
inline constexpr const char* kFileType = "general.file_type";
inline constexpr const char* kQuantizationVersion = "general.quantization_version";

inline constexpr const char* kTokModel = "tokenizer.ggml.model";  // "llama" (SPM), "gpt2" (BPE)
inline constexpr const char* kTokPre = "tokenizer.ggml.pre";
inline constexpr const char* kTokTokens = "tokenizer.ggml.tokens";
inline constexpr const char* kTokScores = "tokenizer.ggml.scores";
inline constexpr const char* kTokTypes = "tokenizer.ggml.token_type";
inline constexpr const char* kTokMerges = "tokenizer.ggml.merges";
inline constexpr const char* kTokBos = "tokenizer.ggml.bos_token_id";
inline constexpr const char* kTokEos = "tokenizer.ggml.eos_token_id";
inline constexpr const char* kTokUnk = "tokenizer.ggml.unknown_token_id";
inline constexpr const char* kTokPad = "tokenizer.ggml.padding_token_id";
inline constexpr const char* kTokAddBos = "tokenizer.ggml.add_bos_token";
inline constexpr const char* kTokAddEos = "tokenizer.ggml.add_eos_token";
inline constexpr const char* kTokChatTemplate = "tokenizer.chat_template";

// Per-architecture keys: "<arch>." + suffix (arch_key below).
inline constexpr const char* kContextLength = "context_length";
inline constexpr const char* kEmbeddingLength = "embedding_length";
inline constexpr const char* kBlockCount = "block_count";
inline constexpr const char* kFeedForwardLength = "feed_forward_length";
inline constexpr const char* kHeadCount = "attention.head_count";
inline constexpr const char* kHeadCountKv = "attention.head_count_kv";
inline constexpr const char* kRmsEps = "attention.layer_norm_rms_epsilon";
inline constexpr const char* kLayerNormEps = "attention.layer_norm_epsilon";
inline constexpr const char* kRopeFreqBase = "rope.freq_base";
inline constexpr const char* kRopeDimensionCount = "rope.dimension_count";
inline constexpr const char* kVocabSize = "vocab_size";

// The vision projector ("mmproj") file: architecture "clip".
inline constexpr const char* kClipHasTextEncoder = "clip.has_text_encoder";
inline constexpr const char* kClipHasVisionEncoder = "clip.has_vision_encoder";
inline constexpr const char* kClipHasLlavaProjector = "clip.has_llava_projector";
inline constexpr const char* kClipProjectorType = "clip.projector_type";
inline constexpr const char* kClipUseGelu = "clip.use_gelu";
inline constexpr const char* kClipUseSilu = "clip.use_silu";
inline constexpr const char* kClipImageSize = "clip.vision.image_size";
inline constexpr const char* kClipPatchSize = "clip.vision.patch_size";
inline constexpr const char* kClipEmbeddingLength = "clip.vision.embedding_length";
inline constexpr const char* kClipFeedForwardLength = "clip.vision.feed_forward_length";
inline constexpr const char* kClipProjectionDim = "clip.vision.projection_dim";
inline constexpr const char* kClipHeadCount = "clip.vision.attention.head_count";
inline constexpr const char* kClipLayerNormEps = "clip.vision.attention.layer_norm_epsilon";
inline constexpr const char* kClipBlockCount = "clip.vision.block_count";
inline constexpr const char* kClipImageMean = "clip.vision.image_mean";
inline constexpr const char* kClipImageStd = "clip.vision.image_std";
inline constexpr const char* kClipFeatureLayer = "clip.vision.feature_layer";
// Patches merged per side before the projector (connect::ConnectorConfig::merge); absent: 1.
inline constexpr const char* kClipSpatialMerge = "clip.vision.spatial_merge_size";
// Keys of the projectors and towers ocellus does not run (read only to refuse them by name).
inline constexpr const char* kClipHasMinicpmvProjector = "clip.has_minicpmv_projector";
inline constexpr const char* kClipHasGlmProjector = "clip.has_glm_projector";
inline constexpr const char* kClipHasQwen2vlMerger = "clip.has_qwen2vl_merger";
inline constexpr const char* kClipUseGluMlp = "clip.use_glu_mlp";
inline constexpr const char* kClipUseRmsNorm = "clip.use_rms_norm";
inline constexpr const char* kClipImageGridPinpoints = "clip.vision.image_grid_pinpoints";
inline constexpr const char* kClipMmPatchMergeType = "clip.vision.mm_patch_merge_type";
}  // namespace key

inline std::string arch_key(const std::string& arch, const char* suffix) { return arch + "." + suffix; }

// ---- tensor names ---------------------------------------------------------------------------
// Patterns with "%d" take the block index.
namespace tensor {
// Text model.
inline constexpr const char* kTokenEmbd = "token_embd.weight";
inline constexpr const char* kOutputNorm = "output_norm.weight";
inline constexpr const char* kOutputNormBias = "output_norm.bias";
inline constexpr const char* kOutput = "output.weight";  // absent when tied to token_embd
inline constexpr const char* kOutputBias = "output.bias";
inline constexpr const char* kAttnNorm = "blk.%d.attn_norm.weight";
inline constexpr const char* kAttnNormBias = "blk.%d.attn_norm.bias";
inline constexpr const char* kAttnQ = "blk.%d.attn_q.weight";
inline constexpr const char* kAttnQBias = "blk.%d.attn_q.bias";
inline constexpr const char* kAttnK = "blk.%d.attn_k.weight";
inline constexpr const char* kAttnKBias = "blk.%d.attn_k.bias";
inline constexpr const char* kAttnV = "blk.%d.attn_v.weight";
inline constexpr const char* kAttnVBias = "blk.%d.attn_v.bias";
inline constexpr const char* kAttnQkv = "blk.%d.attn_qkv.weight";  // phi2: q, k, v fused
inline constexpr const char* kAttnQkvBias = "blk.%d.attn_qkv.bias";
inline constexpr const char* kAttnOutput = "blk.%d.attn_output.weight";
inline constexpr const char* kAttnOutputBias = "blk.%d.attn_output.bias";
inline constexpr const char* kFfnNorm = "blk.%d.ffn_norm.weight";
inline constexpr const char* kFfnNormBias = "blk.%d.ffn_norm.bias";
inline constexpr const char* kFfnGate = "blk.%d.ffn_gate.weight";
inline constexpr const char* kFfnUp = "blk.%d.ffn_up.weight";
inline constexpr const char* kFfnUpBias = "blk.%d.ffn_up.bias";
inline constexpr const char* kFfnDown = "blk.%d.ffn_down.weight";
inline constexpr const char* kFfnDownBias = "blk.%d.ffn_down.bias";

// Vision tower and projector (mmproj). llama.cpp's quirk: in each block the FIRST feed-forward
// matrix (d -> ff) is named ffn_down and the second (ff -> d) ffn_up.
inline constexpr const char* kVPatchEmbd = "v.patch_embd.weight";
inline constexpr const char* kVPatchEmbdBias = "v.patch_embd.bias";
inline constexpr const char* kVClassEmbd = "v.class_embd";
inline constexpr const char* kVPositionEmbd = "v.position_embd.weight";
inline constexpr const char* kVPreLn = "v.pre_ln.weight";
inline constexpr const char* kVPreLnBias = "v.pre_ln.bias";
inline constexpr const char* kVPostLn = "v.post_ln.weight";
inline constexpr const char* kVPostLnBias = "v.post_ln.bias";
inline constexpr const char* kVLn1 = "v.blk.%d.ln1.weight";
inline constexpr const char* kVLn1Bias = "v.blk.%d.ln1.bias";
inline constexpr const char* kVAttnQ = "v.blk.%d.attn_q.weight";
inline constexpr const char* kVAttnQBias = "v.blk.%d.attn_q.bias";
inline constexpr const char* kVAttnK = "v.blk.%d.attn_k.weight";
inline constexpr const char* kVAttnKBias = "v.blk.%d.attn_k.bias";
inline constexpr const char* kVAttnV = "v.blk.%d.attn_v.weight";
inline constexpr const char* kVAttnVBias = "v.blk.%d.attn_v.bias";
inline constexpr const char* kVAttnOut = "v.blk.%d.attn_out.weight";
inline constexpr const char* kVAttnOutBias = "v.blk.%d.attn_out.bias";
inline constexpr const char* kVLn2 = "v.blk.%d.ln2.weight";
inline constexpr const char* kVLn2Bias = "v.blk.%d.ln2.bias";
inline constexpr const char* kVFfnFirst = "v.blk.%d.ffn_down.weight";  // d -> ff (sic)
inline constexpr const char* kVFfnFirstBias = "v.blk.%d.ffn_down.bias";
inline constexpr const char* kVFfnSecond = "v.blk.%d.ffn_up.weight";   // ff -> d (sic)
inline constexpr const char* kVFfnSecondBias = "v.blk.%d.ffn_up.bias";
// LLaVA MLP projector: mm.0 (linear), GELU, mm.2 (linear).
inline constexpr const char* kMm0 = "mm.0.weight";
inline constexpr const char* kMm0Bias = "mm.0.bias";
inline constexpr const char* kMm2 = "mm.2.weight";
inline constexpr const char* kMm2Bias = "mm.2.bias";
}  // namespace tensor

// A pattern with its "%d" replaced by the block index.
std::string name(const char* pattern, int block);

}  // namespace ocellus::io::gguf
