#pragma once
// Connectors map vision features [n_features, d_vision] to image tokens [n_tokens, n_embd] in
// the language model's embedding space. One class per type (connect/<type>.cpp), chosen by name
// through the registry in connect/registry.cpp.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/nn/forward.h"
#include "ocellus/ops/elementwise.h"
#include "ocellus/vision/vit.h"

namespace ocellus::connect {

struct ConnectorConfig {
  int64_t d_in = 0;    // the tower's feature width
  int64_t d_out = 0;   // the language model's n_embd
  ops::Activation act = ops::Activation::GeluErf;  // LLaVA's nn.GELU()
  bool act_ggml_f16 = false;  // llama.cpp's f16-table GELU (GGUF numerics)
  bool ggml_order = false;    // f32 products summed in llama.cpp's order
  float norm_eps = 1e-5f;     // LayerNorms inside the connector
  int64_t n_head = 0;         // attn_blocks / resampler heads (0: 64-wide heads, at least 1)
  // Spatial merge (Qwen2-VL's spatial_merge_size): each merge x merge block of neighbouring
  // patches becomes one feature of width merge² · d_in (the patches' features concatenated in
  // row-major order inside the block) before the connector proper, so an image gives merge²
  // times fewer tokens. 1: none. d_in stays the tower's width; the connector proper reads
  // merge² · d_in.
  int64_t merge = 1;
  // Sizes a file's tensors give when read; when weights are made new (init) they come from here:
  // attn_blocks' block count and MLP width (0: 4 d_in), the resampler's query count.
  int64_t n_blocks = 0, n_ff = 0, n_query = 0;
};

// The row order that turns a square grid of n_features patch features [n_features, d] into
// merged features [n_features / merge², merge² · d] by a gather of rows and a reshape: merged
// token (I, J) (row-major over the coarse grid) holds the patches (I·merge + a, J·merge + b) for
// a, b in [0, merge), b fastest. Throws when the features are not a square grid whose side
// merge divides.
std::vector<int32_t> merge_order(int64_t n_features, int64_t merge);
// Features [n_features, d] -> [n_features / merge², merge² · d] (a copy; merge 1: the input).
Tensor merge_patches(const Tensor& features, int64_t merge);

// Tensor names of a connector's weights in one file layout.
enum class Layout { Gguf, HfLlava, LlavaOriginal };

// A connector for a forward context (nn/forward.h): each type's forward is written once, as a
// template, and runs both in inference (nn::Infer) and in training (nn::Train).
template <class F>
class ConnectorOf {
 public:
  virtual ~ConnectorOf() = default;
  virtual std::string type() const = 0;
  // The tokens an image of n_features features becomes (one per feature unless a type says otherwise).
  virtual int64_t n_tokens(int64_t n_features) const { return n_features; }
  // features [n_features, d_in] -> [n_tokens, d_out]
  virtual typename F::V forward(const F& f, const typename F::V& features) const = 0;
};
// Weights read through the maker under the layout's names. Unknown types are an error listing
// the known ones; with c.merge > 1 the connector reads merged features.
template <class F>
std::unique_ptr<ConnectorOf<F>> load_connector(const std::string& type, const ConnectorConfig& c, const nn::Maker<F>& mk,
                                               Layout layout, const std::string& path = "");
// The inference context a config asks for (llama.cpp's orders and f16 tables for GGUF files).
nn::Infer connector_context(const ConnectorConfig& c);

// A connector as inference runs it.
class Connector {
 public:
  Connector(std::unique_ptr<ConnectorOf<nn::Infer>> impl, nn::Infer f) : impl_(std::move(impl)), f_(f) {}
  std::string type() const { return impl_->type(); }
  int64_t n_tokens(int64_t n_features) const { return impl_->n_tokens(n_features); }
  // features [n_features, d_in] -> [n_tokens, d_out]
  Tensor forward(const Tensor& features) const { return impl_->forward(f_, features); }

 private:
  std::unique_ptr<ConnectorOf<nn::Infer>> impl_;
  nn::Infer f_;
};

// type: "linear", "mlp2x_gelu" (alias "mlp", llama.cpp's name), "mlp_norm", "ldpv2",
// "attn_blocks", "resampler". Unknown types are an error listing the known ones. With
// c.merge > 1 the connector reads merged features (see ConnectorConfig::merge).
std::unique_ptr<Connector> load_connector(const std::string& type, const ConnectorConfig& c,
                                          const io::TensorSource& s, Layout layout);
std::vector<std::string> connector_types();
// The width of the rows a connector of `type` makes, read from its weights (the rows of its last
// matrix), as llama.cpp's clip_n_mmproj_embd reads it: an mmproj's metadata holds no such width
// (clip.vision.projection_dim is CLIP's own projection). Errors name the file and the tensor.
int64_t connector_output_width(const std::string& type, const io::TensorSource& s, Layout layout);

// A connector's tensors read under layout `from`, named as layout `to` names them (an exporter's
// mapping: a trained Hugging Face projector into a GGUF mmproj, or back), in the order its loader
// reads them; only what the connector reads, in the shapes `to` reads them (ldpv2's GGUF kernel
// is [d, 3, 3], PyTorch's [d, 1, 3, 3]), vectors as f32, other tensors in their stored dtype.
// Errors name the source and the tensor as loading does.
std::vector<std::pair<std::string, Tensor>> connector_tensors_as(const std::string& type, const ConnectorConfig& c,
                                                                 const io::TensorSource& s, Layout from, Layout to);
// The same from named tensors (a trainer's parameters).
std::vector<std::pair<std::string, Tensor>> connector_tensors_as(const std::string& type, const ConnectorConfig& c,
                                                                 const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                                 Layout from, Layout to);

// ---- the types (connect/<type>.cpp), listed in one table in connect/registry.cpp ----------
// Each defines load_<type><F>(c, maker, layout) for both contexts.
#define OCELLUS_CONNECTOR_LOADER(name)                                                                    \
  template <class F>                                                                                     \
  std::unique_ptr<ConnectorOf<F>> name(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout);
OCELLUS_CONNECTOR_LOADER(load_linear)
OCELLUS_CONNECTOR_LOADER(load_mlp2x_gelu)
OCELLUS_CONNECTOR_LOADER(load_mlp_norm)
OCELLUS_CONNECTOR_LOADER(load_ldpv2)
OCELLUS_CONNECTOR_LOADER(load_attn_blocks)
OCELLUS_CONNECTOR_LOADER(load_resampler)
#undef OCELLUS_CONNECTOR_LOADER

}  // namespace ocellus::connect
