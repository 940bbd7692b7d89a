#include "ocellus/model/synth.h"

#include <cmath>
#include <cstring>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/core/quant.h"
#include "ocellus/core/threads.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/lm/family.h"
#include "ocellus/nn/forward.h"
#include "ocellus/vision/vit.h"
#include "ocellus/connect/connector.h"

namespace ocellus::model {

namespace key = io::gguf::key;
namespace tn = io::gguf::tensor;
using io::GgufValue;

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = [] {
    std::vector<SynthShape> s;
    auto text = [&](const char* name, const char* desc, const char* arch, int64_t d, int64_t ff, int64_t L, int64_t h,
                    int64_t kv, int64_t V, int64_t ctx, int64_t rot, double theta, double eps, bool tied, bool bias) {
      SynthShape x;
      x.name = name, x.description = desc, x.arch = arch, x.n_embd = d, x.n_ff = ff, x.n_layer = L, x.n_head = h;
      x.n_head_kv = kv, x.n_vocab = V, x.n_ctx = ctx, x.n_rot = rot, x.rope_theta = theta, x.norm_eps = eps;
      x.tied = tied, x.qkv_bias = bias;
      s.push_back(x);
    };
    text("tinyllama-1.1b", "TinyLlama-1.1B (llama, GQA 32/4)", "llama", 2048, 5632, 22, 32, 4, 32000, 2048, 64, 10000, 1e-5, false, false);
    text("llama2-7b", "Llama-2-7B", "llama", 4096, 11008, 32, 32, 32, 32000, 4096, 128, 10000, 1e-5, false, false);
    text("qwen2-0.5b", "Qwen2-0.5B (q/k/v biases, tied embeddings)", "qwen2", 896, 4864, 24, 14, 2, 151936, 32768, 64, 1e6, 1e-6, true, true);
    text("phi-2", "Phi-2 (fused qkv, parallel block, partial rotary 32/80)", "phi2", 2560, 10240, 32, 32, 32, 51200, 2048, 32, 10000, 1e-5, false, true);
    text("stablelm-2-1.6b", "StableLM-2-1.6B (LayerNorm, partial rotary 16/64, q/k/v biases)", "stablelm", 2048, 5632, 24, 32, 32, 100352, 4096, 16, 10000, 1e-5, false, true);
    text("tiny-llama", "a 2-layer llama for tests (vocab 512)", "llama", 64, 160, 2, 4, 2, 512, 256, 16, 10000, 1e-5, false, false);
    text("tiny-qwen2", "a 2-layer qwen2 for tests (vocab 512)", "qwen2", 64, 128, 2, 4, 2, 512, 256, 16, 1e6, 1e-6, true, true);
    text("tiny-phi2", "a 2-layer phi2 for tests (vocab 512)", "phi2", 64, 128, 2, 4, 4, 512, 256, 8, 10000, 1e-5, false, true);
    text("tiny-stablelm", "a 2-layer stablelm for tests (vocab 512)", "stablelm", 64, 128, 2, 4, 4, 512, 256, 4, 10000, 1e-5, false, true);
    auto vision = [&](const char* name, const char* desc, int64_t d, int64_t ff, int64_t L, int64_t h, int64_t img,
                      int64_t patch, int64_t proj, bool siglip) {
      SynthShape x;
      x.name = name, x.description = desc, x.vision = true, x.arch = "clip", x.n_embd = d, x.n_ff = ff, x.n_layer = L;
      x.n_head = h, x.image_size = img, x.patch_size = patch, x.proj_dim = proj, x.siglip = siglip;
      x.norm_eps = siglip ? 1e-6 : 1e-5;
      s.push_back(x);
    };
    vision("clip-vit-l-14-336", "CLIP-ViT-L/14-336 + LLaVA-1.5 MLP projector to 4096", 1024, 4096, 24, 16, 336, 14, 4096, false);
    vision("siglip-so400m-14-384", "SigLIP-so400m/14-384 + MLP projector to 2048", 1152, 4304, 27, 16, 384, 14, 2048, true);
    vision("tiny-clip", "a 2-block CLIP tower for tests (32 px, patch 8, projector to 64)", 64, 128, 2, 4, 32, 8, 64, false);
    vision("tiny-siglip", "a 2-block SigLIP tower for tests (32 px, patch 8, projector to 64)", 64, 128, 2, 4, 32, 8, 64, true);
    return s;
  }();
  return shapes;
}

const SynthShape& synth_shape(const std::string& name) {
  std::string known;
  for (const SynthShape& s : synth_shapes()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  fail("synth: unknown shape '", name, "' (known: ", known, ")");
}

namespace {

// Counter-based random numbers: the value of element i of tensor t depends on (seed, t, i) only,
// so the output is the same for any thread count.
inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class Builder {
 public:
  Builder(io::GgufWriter& w, const SynthOptions& opt) : w_(w), opt_(opt) {}

  // A matrix [rows, cols] of uniform values with standard deviation `std`, in the weight dtype.
  // A row that is not a whole number of blocks (SigLIP-so400m's 4304-wide FFN) falls back to f16,
  // as llama.cpp's quantizer does.
  void matrix(const std::string& name, int64_t rows, int64_t cols, float std, DType dt) {
    if (cols % dtype_info(dt).block_size != 0) dt = DType::F16;
    add(name, {rows, cols}, dt, std, 0.0f);
  }
  // A 1-D f32 tensor: `base` plus noise (norm weights near 1, biases near 0).
  void vec(const std::string& name, int64_t n, float base, float std) { add(name, {n}, DType::F32, std, base); }
  void tensor(const std::string& name, const Shape& shape, DType dt, float std) { add(name, shape, dt, std, 0.0f); }

  uint64_t bytes() const { return bytes_; }
  // Writing a real shape takes seconds to minutes: each tensor's fill reports the bytes done.
  void report_to(ProgressLine* p) { progress_ = p; }

 private:
  void add(const std::string& name, const Shape& shape, DType dt, float std, float base) {
    const uint64_t tseed = mix(opt_.seed ^ mix(std::hash<std::string>{}(name)));
    const int64_t cols = shape.last(), rows = shape.rows();
    const size_t rb = row_bytes(dt, cols);
    const float a = std * std::sqrt(3.0f);
    bytes_ += rb * size_t(rows);
    w_.add_tensor(name, io::ggml_type_id(dt), shape, [=, this](uint8_t* dst) {
      parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        std::vector<float> buf(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            const uint64_t h = mix(tseed + uint64_t(r * cols + c));
            buf[size_t(c)] = base + a * (float(h >> 40) * (2.0f / 16777216.0f) - 1.0f);
          }
          quantize_row(dt, buf.data(), dst + size_t(r) * rb, cols);
        }
      });
      done_ += rb * size_t(rows);
      if (progress_ && bytes_ >= (uint64_t(64) << 20))  // small files: no report
        progress_->update(int64_t(done_ >> 20), int64_t(bytes_ >> 20),
                          ocellus::detail::concat("synth: ", done_ >> 20, " / ", bytes_ >> 20, " MiB of tensor data"));
    });
  }

  io::GgufWriter& w_;
  const SynthOptions& opt_;
  uint64_t bytes_ = 0, done_ = 0;
  ProgressLine* progress_ = nullptr;
};

// A vocabulary of exactly n tokens. SentencePiece style: <unk> <s> </s>, the 256 byte tokens,
// then pieces. Byte-level BPE style: the 256 byte characters (GPT-2's byte-to-unicode map), then
// tokens made by merging an existing token with a byte character, each with its merge rule, and
// the last token <|endoftext|>.
void synth_vocab(io::GgufWriter& w, const SynthShape& s, const lm::Family& fam) {
  const int64_t n = s.n_vocab;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  if (fam.synth_vocab_pre.empty()) {
    OCELLUS_CHECK(n >= 259 + 1, "synth: vocabulary of ", n, " is too small for a SentencePiece layout");
    tokens = {"<unk>", "<s>", "</s>"};
    types = {2, 3, 3};
    char b[8];
    for (int i = 0; i < 256; ++i) {
      std::snprintf(b, sizeof b, "<0x%02X>", i);
      tokens.push_back(b);
      types.push_back(6);
    }
    for (int64_t i = int64_t(tokens.size()); i < n; ++i) {
      tokens.push_back("\xe2\x96\x81t" + std::to_string(i));  // "▁t<i>"
      types.push_back(1);
    }
    std::vector<float> scores(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) scores[size_t(i)] = i < 259 ? 0.0f : -float(i);
    w.set(key::kTokModel, GgufValue::str("llama"));
    w.set(key::kTokPre, GgufValue::str("default"));
    w.set(key::kTokTokens, GgufValue::strings(tokens));
    w.set(key::kTokScores, GgufValue::floats(scores));
    w.set(key::kTokTypes, GgufValue::ints(types));
    w.set(key::kTokBos, GgufValue::u32(1));
    w.set(key::kTokEos, GgufValue::u32(2));
    w.set(key::kTokUnk, GgufValue::u32(0));
    w.set(key::kTokAddBos, GgufValue::boolean(true));
    w.set(key::kTokAddEos, GgufValue::boolean(false));
    return;
  }
  OCELLUS_CHECK(n >= 257, "synth: vocabulary of ", n, " is too small for byte-level BPE");
  std::vector<std::string> base;
  uint32_t k = 0;
  for (int b = 0; b < 256; ++b) {
    // GPT-2: printable bytes map to themselves, the others to U+0100 + k.
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const uint32_t cp = printable ? uint32_t(b) : 256u + k++;
    std::string u;
    if (cp < 0x80) u += char(cp);
    else u += char(0xc0 | (cp >> 6)), u += char(0x80 | (cp & 0x3f));
    base.push_back(u);
  }
  tokens = base;
  types.assign(256, 1);
  std::vector<std::string> merges;
  std::set<std::string> seen(tokens.begin(), tokens.end());
  for (size_t i = 0; int64_t(tokens.size()) < n - 1; ++i)
    for (size_t c = 0; c < 256 && int64_t(tokens.size()) < n - 1; ++c) {
      std::string t = tokens[i] + base[(c * 37 + i) % 256];
      if (!seen.insert(t).second) continue;
      merges.push_back(tokens[i] + " " + base[(c * 37 + i) % 256]);
      tokens.push_back(t);
      types.push_back(1);
    }
  tokens.push_back("<|endoftext|>");
  types.push_back(3);
  w.set(key::kTokModel, GgufValue::str("gpt2"));
  w.set(key::kTokPre, GgufValue::str(fam.synth_vocab_pre));
  w.set(key::kTokTokens, GgufValue::strings(tokens));
  w.set(key::kTokTypes, GgufValue::ints(types));
  w.set(key::kTokMerges, GgufValue::strings(merges));
  w.set(key::kTokBos, GgufValue::u32(uint32_t(n - 1)));
  w.set(key::kTokEos, GgufValue::u32(uint32_t(n - 1)));
}

// A maker that writes each tensor a loader asks for, so that the file holds what the loader
// reads (it gives stand-ins back; nothing is read): matrices in the weight dtype (the text
// model's output one step finer, as in llama.cpp's q4_0 files), biases near 0, the other vectors
// (norm weights) near 1; an optional tensor where `present` says the files have it; q/k/v fused
// when `fused_qkv`.
nn::Maker<nn::Infer> writing_maker(Builder& b, DType dt, std::function<bool(const std::string&)> present, bool fused_qkv) {
  const DType out_dt = dt == DType::Q4_0 ? DType::Q8_0 : dt;
  nn::Maker<nn::Infer> mk;
  mk.has = [fused_qkv](const std::string&) { return fused_qkv; };  // asked only of the fused attn_qkv
  mk.matrix = [&b, dt](const std::string& name, const Shape& shape) {
    b.matrix(name, shape[0], shape[1], 0.02f, dt);
    return ops::PreparedWeight();
  };
  mk.tensor = [&b, dt, out_dt, present](const std::string& name, const Shape& shape, bool required) {
    if (!required && !present(name)) return Tensor();
    if (shape.ndim == 2) b.matrix(name, shape[0], shape[1], 0.02f, name == tn::kOutput ? out_dt : dt);
    else b.vec(name, shape[0], name.ends_with(".bias") ? 0.0f : 1.0f, 0.02f);
    return Tensor::zeros(shape.ndim == 2 ? Shape{1, 1} : Shape{1});  // a stand-in (the embedding may be the output)
  };
  return mk;
}

void write_text(io::GgufWriter& w, Builder& b, const SynthShape& s, const SynthOptions& opt, int64_t L) {
  const lm::Family& fam = lm::family_by_arch(s.arch);  // the tensors its GGUF files hold
  lm::LmConfig c;  // the keys written, the sizes the loader reads
  c.arch = s.arch, c.n_embd = s.n_embd, c.n_ff = s.n_ff, c.n_layer = L, c.n_head = s.n_head, c.n_head_kv = s.n_head_kv;
  c.head_dim = s.n_embd / s.n_head, c.n_vocab = s.n_vocab, c.n_ctx = s.n_ctx;
  c.rope.n_rot = s.n_rot, c.rope.theta = float(s.rope_theta), c.norm = fam.norm, c.norm_eps = float(s.norm_eps);
  lm::set_gguf_config(w, c);
  synth_vocab(w, s, fam);
  // The tensors the loader reads from the family's GGUF files (q/k/v fused where they fuse them).
  const lm::detail::Names names = lm::detail::gguf_names();
  fam.gguf_weights(c, writing_maker(b, opt.dtype, [&](const std::string& name) {
    return fam.has_optional(names, name, s.qkv_bias, s.tied);
  }, fam.gguf_fused_qkv));
}

void write_vision(io::GgufWriter& w, Builder& b, const SynthShape& s, const SynthOptions& opt, int64_t L) {
  w.set(key::kClipHasTextEncoder, GgufValue::boolean(false));
  w.set(key::kClipHasVisionEncoder, GgufValue::boolean(true));
  w.set(key::kClipHasLlavaProjector, GgufValue::boolean(true));
  w.set(key::kClipProjectorType, GgufValue::str("mlp"));
  w.set(key::kClipUseGelu, GgufValue::boolean(s.siglip));
  w.set(key::kClipImageSize, GgufValue::u32(uint32_t(s.image_size)));
  w.set(key::kClipPatchSize, GgufValue::u32(uint32_t(s.patch_size)));
  w.set(key::kClipEmbeddingLength, GgufValue::u32(uint32_t(s.n_embd)));
  w.set(key::kClipFeedForwardLength, GgufValue::u32(uint32_t(s.n_ff)));
  w.set(key::kClipProjectionDim, GgufValue::u32(uint32_t(s.proj_dim)));
  w.set(key::kClipHeadCount, GgufValue::u32(uint32_t(s.n_head)));
  w.set(key::kClipLayerNormEps, GgufValue::f32(float(s.norm_eps)));
  w.set(key::kClipBlockCount, GgufValue::u32(uint32_t(L)));
  const std::vector<float> mean = s.siglip ? std::vector<float>{0.5f, 0.5f, 0.5f}
                                           : std::vector<float>{0.48145466f, 0.4578275f, 0.40821073f};
  const std::vector<float> stdv = s.siglip ? std::vector<float>{0.5f, 0.5f, 0.5f}
                                           : std::vector<float>{0.26862954f, 0.26130258f, 0.27577711f};
  w.set(key::kClipImageMean, GgufValue::floats(mean));
  w.set(key::kClipImageStd, GgufValue::floats(stdv));

  vision::VitConfig c;  // the sizes the loader reads
  c.image_size = s.image_size, c.patch_size = s.patch_size, c.n_embd = s.n_embd, c.n_ff = s.n_ff;
  c.n_layer = c.n_layer_run = L, c.class_token = c.pre_norm = !s.siglip, c.post_norm = s.siglip;
  // The tower and the projector as their loaders read them (every bias there but CLIP's patch
  // bias). Patch embedding and positions stay f16/f32 as llama.cpp keeps them (convolution
  // weights); the class token is near 0.
  const DType dt = opt.dtype, pdt = dt == DType::F32 ? DType::F32 : DType::F16;
  auto present = [&s](const std::string& name) { return s.siglip || name != tn::kVPatchEmbdBias; };
  nn::Maker<nn::Infer> mk = writing_maker(b, dt, present, false);
  mk.tensor = [&b, pdt, write = mk.tensor](const std::string& name, const Shape& shape, bool required) {
    if (name != tn::kVPatchEmbd && name != tn::kVPositionEmbd && name != tn::kVClassEmbd) return write(name, shape, required);
    b.tensor(name, shape, name == tn::kVClassEmbd ? DType::F32 : pdt, 0.02f);
    return Tensor::zeros({1});
  };
  vision::load_vit(mk, c, vision::gguf_vit_names());
  connect::ConnectorConfig cc;
  cc.d_in = s.n_embd, cc.d_out = s.proj_dim;
  connect::load_connector("mlp2x_gelu", cc, mk, connect::Layout::Gguf, "synth");
}

}  // namespace

uint64_t write_synth_model(const SynthShape& s, const SynthOptions& opt, const std::string& path) {
  const int64_t L = opt.layers > 0 ? opt.layers : s.n_layer;
  OCELLUS_CHECK(L <= 1024, "synth: ", L, " layers is absurd");
  io::GgufWriter w;
  w.set(key::kArchitecture, GgufValue::str(s.arch));
  w.set(key::kName, GgufValue::str("synth-" + s.name));
  Builder b(w, opt);
  if (s.vision) write_vision(w, b, s, opt, L);
  else write_text(w, b, s, opt, L);
  ProgressLine progress;
  b.report_to(&progress);
  w.write(path);
  return b.bytes();
}

}  // namespace ocellus::model
