// llama.cpp's vision projector files ("mmproj", general.architecture "clip"), read and written.
//
// Widths come from the tensors, as llama.cpp's clip.cpp takes them; a key is used only where it
// means what it says, and a key that contradicts the tensors is an error naming it (a file
// llama.cpp could not run either). The keys, what llama.cpp's converters (commit c392e50:
// examples/llava/convert_image_encoder_to_gguf.py fed by llava_surgery.py / llava_surgery_v2.py,
// with --projector-type mlp, ldp (MobileVLM) or ldpv2 (MobileVLM V2);
// glmedge-convert-image-encoder-to-gguf.py; minicpmv-convert-image-encoder-to-gguf.py;
// qwen2_vl_surgery.py) write there, and what the loader does with them:
//
// key                                    | converters write                  | ocellus
// ---------------------------------------|-----------------------------------|------------------------------------------
// general.architecture                   | "clip"                            | required
// clip.has_text_encoder                  | false in an mmproj                | true: refused (a CLIP text tower)
// clip.has_vision_encoder                | true                              | false: refused
// clip.has_llava_projector               | true (LLaVA, MobileVLM)           | required true (else llama.cpp applies no projector)
// clip.has_minicpmv_projector            | true (MiniCPM-V)                  | true: refused naming MiniCPM-V's resampler
// clip.has_glm_projector                 | true (GLM-Edge)                   | true: refused naming GLM-Edge's adapter
// clip.has_qwen2vl_merger                | true (Qwen2-VL)                   | true: refused naming Qwen2-VL's merger
// clip.projector_type                    | mlp, ldp, ldpv2, adapter,         | mlp: mm.0, GELU, mm.2 (with mm.3 present:
//                                        | resampler, qwen2vl_merger         | Yi-VL's mlp_norm, as llama.cpp); ldpv2;
//                                        | (absent: mlp)                     | ocellus's own linear / mlp_norm /
//                                        |                                   | attn_blocks / resampler; ldp, adapter,
//                                        |                                   | MiniCPM-V's resampler, qwen2vl_merger,
//                                        |                                   | gemma3: refused naming the type
// clip.use_gelu                          | hidden_act == "gelu"              | tower MLP GELU (tanh form), else quick-GELU
// clip.use_silu, use_glu_mlp,            | not written by these converters   | true: refused naming the key
//   use_rms_norm                         |                                   |
// clip.vision.image_size                 | the tower's image_size            | the preprocessing size; with the patch
//                                        |                                   | size it must give the position table's
//                                        |                                   | length, else refused naming it
// clip.vision.patch_size                 | patch_size                        | must equal v.patch_embd's kernel
// clip.vision.embedding_length           | hidden_size                       | must equal v.patch_embd's width
// clip.vision.feed_forward_length        | intermediate_size                 | must equal v.blk.0.ffn_down's rows
// clip.vision.projection_dim             | CLIP's own projection width (768  | not read: the output width is the rows of
//                                        | for ViT-L/14; 0 for SigLIP, GLM)  | the projector's last matrix (mm.2, ...)
// clip.vision.attention.head_count       | num_attention_heads               | used; must divide the width
// clip.vision.attention.layer_norm_epsilon | layer_norm_eps (GLM: 1e-6)      | every LayerNorm, the projector's too
//                                        |                                   | (as llama.cpp); must be > 0
// clip.vision.block_count                | num_hidden_layers                 | must equal the blocks in the file
// clip.vision.feature_layer              | vision_feature_layer /            | one layer k: k blocks run (absent:
//                                        | mm_vision_select_layer, made      | block_count - 1, the penultimate);
//                                        | non-negative (-2 -> n - 1)        | several: refused (llama.cpp concatenates
//                                        |                                   | them, as Granite Vision)
// clip.vision.image_mean / image_std     | the processor's or --image-mean   | required (as llama.cpp), 3 values each
// clip.vision.image_grid_pinpoints,      | LLaVA-1.6 (from its config)       | refused: any-resolution tiling
//   mm_patch_merge_type "spatial_unpad"  |                                   |
// clip.vision.image_crop_resolution,     | LLaVA-1.6 (from its config)       | not read (llama.cpp uses them only for
//   image_aspect_ratio, ...split_res...  |                                   | the tiling, refused above)
// clip.vision.spatial_merge_size         | (ocellus's own)                   | merge before the projector; must divide
//                                        |                                   | the patch grid
#include <algorithm>
#include <cmath>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/model/vlm.h"

namespace ocellus::model {
namespace {

namespace key = io::gguf::key;
namespace tn = io::gguf::tensor;

// Projector types llama.cpp runs and ocellus does not, by clip.projector_type.
struct Missing {
  const char* type;
  const char* what;
};
const Missing kMissingTypes[] = {
    {"ldp", "MobileVLM's LDP projector (depthwise convolutions, hard-swish, squeeze-excitation)"},
    {"adapter", "GLM-Edge's adapter (a strided convolution, a gated MLP, begin/end-of-image rows)"},
    {"qwen2vl_merger", "Qwen2-VL's merger (a tower with M-RoPE at the image's own resolution)"},
    {"gemma3", "Gemma 3's pooled projector"},
};

// The same, by the legacy flags llama.cpp still reads in place of the type.
const Missing kMissingFlags[] = {
    {key::kClipHasMinicpmvProjector, "MiniCPM-V's resampler (2-D sin-cos positions, image slices)"},
    {key::kClipHasGlmProjector, "GLM-Edge's adapter (a strided convolution, a gated MLP, begin/end-of-image rows)"},
    {key::kClipHasQwen2vlMerger, "Qwen2-VL's merger (a tower with M-RoPE at the image's own resolution)"},
};

// What the file holds that ocellus does not run: refused by name before anything is read.
void refuse_missing_features(const io::GgufFile& f, const std::string& path, const std::string& type) {
  for (const Missing& m : kMissingFlags)
    OCELLUS_CHECK(!f.get_bool(m.type, false), path, ": ", m.type, " is set: ", m.what, " is not supported by ocellus");
  for (const Missing& m : kMissingTypes)
    OCELLUS_CHECK(type != m.type, path, ": ", key::kClipProjectorType, " '", type, "': ", m.what,
                  " is not supported by ocellus");
  OCELLUS_CHECK(!(type == "resampler" && f.find_tensor("resampler.query")), path, ": ", key::kClipProjectorType,
                " 'resampler' with resampler.* tensors: MiniCPM-V's resampler (2-D sin-cos positions, image slices) ",
                "is not supported by ocellus");
  OCELLUS_CHECK(!f.get_bool(key::kClipHasTextEncoder, false), path, ": ", key::kClipHasTextEncoder,
                " is set: a CLIP model with a text tower, not a vision projector (mmproj)");
  OCELLUS_CHECK(f.get_bool(key::kClipHasVisionEncoder, true), path, ": ", key::kClipHasVisionEncoder, " is false");
  OCELLUS_CHECK(f.get_bool(key::kClipHasLlavaProjector, false), path, ": ", key::kClipHasLlavaProjector,
                " is not set: no LLaVA-style projector (a bare vision tower, or a projector ocellus does not know)");
  for (const char* k : {key::kClipUseGluMlp, key::kClipUseRmsNorm})
    OCELLUS_CHECK(!f.get_bool(k, false), path, ": ", k, " is set: towers with gated MLPs or RMSNorm are not supported by ocellus");
  OCELLUS_CHECK(f.get_bool(key::kClipUseGelu, false) || !f.get_bool(key::kClipUseSilu, false), path, ": ",
                key::kClipUseSilu, " is set: towers with SiLU are not supported by ocellus");
  OCELLUS_CHECK(!f.has(key::kClipImageGridPinpoints) && f.get_string(key::kClipMmPatchMergeType, "flat") != "spatial_unpad",
                path, ": LLaVA-1.6 any-resolution tiling (", key::kClipImageGridPinpoints, ", ", key::kClipMmPatchMergeType,
                ") is not supported by ocellus");
}

// A tensor's shape, or an error naming the file and the tensor.
Shape shape_of(const io::GgufFile& f, const std::string& name) {
  const io::GgufTensorInfo* t = f.find_tensor(name);
  OCELLUS_CHECK(t, f.path(), ": missing tensor '", name, "'");
  return t->shape;
}

// A key stating a size the tensors also give must agree with them.
void check_agrees(const io::GgufFile& f, const char* k, int64_t from_tensors, const std::string& source) {
  const int64_t v = f.get_int(k);
  OCELLUS_CHECK(v == from_tensors, f.path(), ": ", k, " is ", v, ", but ", source, " says ", from_tensors);
}

// The tower's configuration: sizes from the tensors, the rest from the keys (see the table).
vision::VitConfig tower_config(const io::GgufFile& f) {
  const std::string& path = f.path();
  vision::VitConfig c;
  const Shape pe = shape_of(f, tn::kVPatchEmbd);
  OCELLUS_CHECK(pe.ndim == 4 && pe[1] == 3 && pe[2] == pe[3] && pe[0] > 0 && pe[2] > 0, path, ": tensor '", tn::kVPatchEmbd,
                "' has shape ", pe.str(), ", expected [width, 3, patch, patch]");
  c.n_embd = pe[0], c.patch_size = pe[2];
  check_agrees(f, key::kClipEmbeddingLength, c.n_embd, std::string(tn::kVPatchEmbd) + " " + pe.str());
  check_agrees(f, key::kClipPatchSize, c.patch_size, std::string(tn::kVPatchEmbd) + " " + pe.str());
  while (f.find_tensor(io::gguf::name(tn::kVAttnQ, int(c.n_layer)))) ++c.n_layer;
  OCELLUS_CHECK(c.n_layer > 0, path, ": no tower blocks (no tensor '", io::gguf::name(tn::kVAttnQ, 0), "')");
  check_agrees(f, key::kClipBlockCount, c.n_layer, "the file's blocks (v.blk.0 .. v.blk." + std::to_string(c.n_layer - 1) + ")");
  const std::string fc1 = io::gguf::name(tn::kVFfnFirst, 0);
  c.n_ff = shape_of(f, fc1)[0];
  check_agrees(f, key::kClipFeedForwardLength, c.n_ff, fc1);

  c.class_token = f.find_tensor(tn::kVClassEmbd) != nullptr;
  c.pre_norm = f.find_tensor(tn::kVPreLn) != nullptr;
  c.post_norm = f.find_tensor(tn::kVPostLn) != nullptr;
  c.drop_class_token = true;
  c.kind = c.class_token ? "clip" : "siglip";
  // The image size is the preprocessing's; its patch grid must be the position table's.
  c.image_size = f.get_int(key::kClipImageSize);
  const int64_t n_pos = shape_of(f, tn::kVPositionEmbd)[0];
  OCELLUS_CHECK(c.image_size >= c.patch_size && c.n_positions() == n_pos, path, ": ", key::kClipImageSize, " is ", c.image_size,
                ": with patch size ", c.patch_size, " that makes ", c.image_size >= c.patch_size ? c.n_positions() : 0,
                " positions, but ", tn::kVPositionEmbd, " holds ", n_pos);

  c.n_head = f.get_int(key::kClipHeadCount);
  OCELLUS_CHECK(c.n_head > 0 && c.n_embd % c.n_head == 0, path, ": ", key::kClipHeadCount, " ", c.n_head,
                " does not divide the tower's width ", c.n_embd);
  c.norm_eps = float(f.get_float(key::kClipLayerNormEps, 1e-5));
  OCELLUS_CHECK(c.norm_eps > 0 && std::isfinite(c.norm_eps), path, ": ", key::kClipLayerNormEps, " ", c.norm_eps, " must be > 0");
  c.act = f.get_bool(key::kClipUseGelu, false) ? ops::Activation::GeluTanh : ops::Activation::QuickGelu;
  // GELUs through llama.cpp's f16 tables as it computes GGUF models; f32 towers also round every
  // product, norm and softmax as its CPU graph does (bit-level agreement, at some speed cost).
  // f16 / quantized towers take the fast kernels: llama.cpp rounds their activations to f16 or
  // 8 bits, which no order reproduces.
  c.act_ggml_f16 = true;

  if (f.has(key::kClipFeatureLayer)) {
    const std::vector<int64_t> v = f.get_ints(key::kClipFeatureLayer);
    const std::set<int64_t> layers(v.begin(), v.end());
    OCELLUS_CHECK(layers.size() == 1, path, ": ", key::kClipFeatureLayer, " names ", layers.size(),
                  " layers: features concatenated from several layers are not supported by ocellus (one layer is)");
    c.n_layer_run = *layers.begin();
    OCELLUS_CHECK(c.n_layer_run >= 1 && c.n_layer_run <= c.n_layer, path, ": ", key::kClipFeatureLayer, " ", c.n_layer_run,
                  " is not a block of the tower (1 .. ", c.n_layer, ")");
  } else {
    c.n_layer_run = c.n_layer - 1;  // llama.cpp's default for LLaVA projectors: the penultimate layer
    OCELLUS_CHECK(c.n_layer_run >= 1, path, ": ", key::kClipBlockCount, " ", c.n_layer,
                  ": the penultimate-layer feature (no ", key::kClipFeatureLayer, ") leaves no block to run");
  }

  c.preprocess.size = int(c.image_size);
  c.preprocess.mode = c.class_token ? vision::PreprocessConfig::Mode::Pad : vision::PreprocessConfig::Mode::Squash;
  const std::vector<float> m = f.get_floats(key::kClipImageMean), s = f.get_floats(key::kClipImageStd);
  OCELLUS_CHECK(m.size() == 3, path, ": ", key::kClipImageMean, " holds ", m.size(), " values, expected 3");
  OCELLUS_CHECK(s.size() == 3, path, ": ", key::kClipImageStd, " holds ", s.size(), " values, expected 3");
  for (size_t i = 0; i < 3; ++i) {
    OCELLUS_CHECK(s[i] > 0 && std::isfinite(s[i]) && std::isfinite(m[i]), path, ": ", key::kClipImageMean, " / ",
                  key::kClipImageStd, " channel ", i, ": mean ", m[i], ", std ", s[i], " (std must be > 0)");
    c.preprocess.mean[i] = m[i], c.preprocess.std[i] = s[i];
  }
  c.validate(path);
  return c;
}

// The projector type to load: llama.cpp's "mlp" is Yi-VL's mlp_norm when mm.3 is there.
std::string connector_type(const io::GgufFile& f) {
  const std::string type = f.get_string(key::kClipProjectorType, "mlp");
  const std::vector<std::string> known = connect::connector_types();
  if (std::find(known.begin(), known.end(), type) == known.end())
    fail(f.path(), ": ", key::kClipProjectorType, " '", type, "' is not a projector ocellus knows (", join(known), ")");
  if (type != "mlp") return type;
  if (f.find_tensor("mm.3.weight")) return "mlp_norm";
  OCELLUS_CHECK(f.find_tensor(tn::kMm0) && f.find_tensor(tn::kMm2), f.path(), ": ", key::kClipProjectorType,
                " 'mlp' needs mm.0 and mm.2 (LLaVA-1.5) or mm.0, mm.1, mm.3, mm.4 (Yi-VL); a projector of one linear ",
                "layer (no mm.2) is not supported by ocellus");
  return "mlp2x_gelu";
}

}  // namespace

std::unique_ptr<VisionModel> load_mmproj(const std::string& path) {
  const io::GgufFile f = io::GgufFile::open(path);
  const std::string arch = f.get_string(key::kArchitecture, "");
  OCELLUS_CHECK(arch == "clip", path, ": not a vision projector (mmproj) file: general.architecture is '", arch,
                "', expected 'clip'");
  refuse_missing_features(f, path, f.get_string(key::kClipProjectorType, "mlp"));
  vision::VitConfig c = tower_config(f);
  const io::TensorSource src = io::gguf_source(f);
  vision::VitWeights w = vision::load_vit_weights(c, src, vision::gguf_vit_names());
  c.ggml_order = w.blocks[0].q.tensor().dtype() == DType::F32;

  connect::ConnectorConfig cc;
  const std::string type = connector_type(f);
  cc.d_in = c.n_embd;
  cc.d_out = connect::connector_output_width(type, src, connect::Layout::Gguf);
  cc.act_ggml_f16 = true;
  cc.ggml_order = c.ggml_order;
  cc.norm_eps = c.norm_eps;  // llama.cpp's projector LayerNorms take the tower's epsilon
  cc.merge = f.get_int(key::kClipSpatialMerge, 1);
  OCELLUS_CHECK(cc.merge >= 1 && c.grid() % cc.merge == 0, path, ": ", key::kClipSpatialMerge, " ", cc.merge,
                " does not divide the ", c.grid(), "x", c.grid(), " patch grid");
  std::unique_ptr<connect::Connector> conn;
  try {
    conn = connect::load_connector(type, cc, src, connect::Layout::Gguf);
  } catch (const Error& e) {
    if (cc.merge == 1) throw;
    fail(e.what(), " (", key::kClipSpatialMerge, " ", cc.merge, ": the projector reads ", cc.merge, "x", cc.merge,
         " merged patches, ", cc.merge * cc.merge * cc.d_in, " wide)");
  }
  auto vm = std::make_unique<VisionModel>(vision::VisionTower(c, std::move(w)), std::move(conn), cc.d_out);
  f.mapped_file()->drop_resident();  // the matrices are copies now: the file resident once, not twice
  return vm;
}

void write_mmproj(const vision::VitConfig& c, const std::vector<std::pair<std::string, Tensor>>& tower,
                  const std::string& projector_type, const std::vector<std::pair<std::string, Tensor>>& projector,
                  int64_t n_embd_out, const std::string& path, int64_t merge) {
  using io::GgufValue;
  OCELLUS_CHECK(c.act == ops::Activation::QuickGelu || c.act == ops::Activation::GeluTanh, "mmproj: the tower's activation ",
                "has no GGUF flag (llama.cpp towers use quick-GELU or GELU)");
  OCELLUS_CHECK(c.drop_class_token || !c.class_token, "mmproj: llama.cpp drops the class token; this tower keeps it");
  io::GgufWriter g;
  g.set(key::kArchitecture, GgufValue::str("clip"));
  g.set(key::kName, GgufValue::str("ocellus-export"));
  g.set(key::kClipHasTextEncoder, GgufValue::boolean(false));
  g.set(key::kClipHasVisionEncoder, GgufValue::boolean(true));
  g.set(key::kClipHasLlavaProjector, GgufValue::boolean(true));
  g.set(key::kClipProjectorType, GgufValue::str(projector_type == "mlp2x_gelu" ? "mlp" : projector_type));
  g.set(key::kClipUseGelu, GgufValue::boolean(c.act == ops::Activation::GeluTanh));
  g.set(key::kClipImageSize, GgufValue::u32(uint32_t(c.image_size)));
  g.set(key::kClipPatchSize, GgufValue::u32(uint32_t(c.patch_size)));
  g.set(key::kClipEmbeddingLength, GgufValue::u32(uint32_t(c.n_embd)));
  g.set(key::kClipFeedForwardLength, GgufValue::u32(uint32_t(c.n_ff)));
  g.set(key::kClipProjectionDim, GgufValue::u32(uint32_t(n_embd_out)));  // llama.cpp requires the key, reads no width from it
  g.set(key::kClipHeadCount, GgufValue::u32(uint32_t(c.n_head)));
  g.set(key::kClipLayerNormEps, GgufValue::f32(c.norm_eps));
  g.set(key::kClipBlockCount, GgufValue::u32(uint32_t(c.n_layer_run)));
  g.set(key::kClipFeatureLayer, GgufValue::ints({int32_t(c.n_layer_run)}));
  if (merge != 1) g.set(key::kClipSpatialMerge, GgufValue::u32(uint32_t(merge)));
  g.set(key::kClipImageMean, GgufValue::floats({c.preprocess.mean[0], c.preprocess.mean[1], c.preprocess.mean[2]}));
  g.set(key::kClipImageStd, GgufValue::floats({c.preprocess.std[0], c.preprocess.std[1], c.preprocess.std[2]}));
  // Positions in f32, as the loader holds them (a bf16 or f16 folder's too).
  for (const auto& [n, x] : tower) g.add_tensor(n, n == tn::kVPositionEmbd ? x.to(DType::F32) : x.contiguous());
  for (const auto& [n, x] : projector) g.add_tensor(n, x.contiguous());
  g.write(path);
}

}  // namespace ocellus::model
