// Llama 3-V's connector: two (or more) pre-LayerNorm transformer blocks of self-attention over
// the patch features at the vision width (vision/encoder_block.h), then a linear projection to
// the LM's width. Tensors under the projector prefix: blocks.<i>.{ln1, attn.{q,k,v,out}, ln2,
// ffn_up, ffn_down} (weights and biases), proj.
#include "common.h"

#include "ocellus/vision/encoder_block.h"

namespace ocellus::connect {
namespace {

template <class F>
struct AttnBlocksWeights {
  std::vector<vision::EncoderBlock<F>> blocks;  // at the vision width d_in
  detail::LinearOf<F> proj;                     // [d_out, d_in]
};

template <class F>
class AttnBlocks final : public ConnectorOf<F> {
 public:
  AttnBlocks(const vision::EncoderParams& p, AttnBlocksWeights<F> w) : p_(p), w_(std::move(w)) {}
  std::string type() const override { return "attn_blocks"; }
  typename F::V forward(const F& f, const typename F::V& x) const override {
    typename F::V h = x;
    for (const auto& b : w_.blocks) h = vision::encoder_block(f, b, h, p_, {0, F::shape(x)[0]});
    return w_.proj(f, h);
  }

 private:
  vision::EncoderParams p_;
  AttnBlocksWeights<F> w_;
};

// The blocks' names under the projector prefix p (%d: the block).
vision::EncoderBlockNames block_names(const std::string& p) {
  const std::string b = p + "blocks.%d.";
  return {b + "ln1.weight",     b + "ln1.bias",     b + "ln2.weight",      b + "ln2.bias",
          b + "attn.q.weight",  b + "attn.q.bias",  b + "attn.k.weight",   b + "attn.k.bias",
          b + "attn.v.weight",  b + "attn.v.bias",  b + "attn.out.weight", b + "attn.out.bias",
          b + "ffn_up.weight",  b + "ffn_up.bias",  b + "ffn_down.weight", b + "ffn_down.bias"};
}

}  // namespace

std::string detail::attn_blocks_out_weight(Layout layout) { return detail::prefix(layout) + "proj.weight"; }

template <class F>
std::unique_ptr<ConnectorOf<F>> load_attn_blocks(const ConnectorConfig& c, const nn::Maker<F>& mk, Layout layout) {
  const std::string p = detail::prefix(layout);
  const int64_t d = c.d_in;
  vision::EncoderParams ep;
  ep.n_head = detail::n_head(c, d);
  ep.act = detail::gelu_kind(c);
  ep.eps = c.norm_eps;
  const vision::EncoderBlockNames names = block_names(p);
  AttnBlocksWeights<F> w;
  auto block = [&](int i) { return p + "blocks." + std::to_string(i) + "."; };
  // Read: as many blocks as the file has, each MLP as wide as its tensors; made new: the
  // configured sizes.
  if (c.n_blocks == 0 && !mk.has(block(0) + "ln1.weight"))
    fail("connector attn_blocks: no blocks (no tensor '", block(0), "ln1.weight')");
  for (int i = 0; c.n_blocks > 0 ? i < c.n_blocks : mk.has(block(i) + "ln1.weight"); ++i) {
    const std::string up = block(i) + "ffn_up.weight";
    const int64_t ff = mk.has(up) ? mk.shape(up)[0] : c.n_ff > 0 ? c.n_ff : 4 * d;
    w.blocks.push_back(vision::load_encoder_block(mk, names, i, d, ff));
  }
  w.proj = detail::load_linear_of(mk, detail::attn_blocks_out_weight(layout), p + "proj.bias", c.d_out, d);
  return std::make_unique<AttnBlocks<F>>(ep, std::move(w));
}
OCELLUS_CONNECTOR_INSTANTIATE(load_attn_blocks)

}  // namespace ocellus::connect
