// Llama 3-V's connector: two (or more) pre-LayerNorm transformer blocks of self-attention over
// the patch features at the vision width, then a linear projection to the LM's width.
// Tensors under the projector prefix: blocks.<i>.{ln1, attn.{q,k,v,out}, ln2, ffn_up, ffn_down}
// (weights and biases), proj.
#include "common.h"

namespace ocellus::connect {
namespace {

struct Block {
  detail::Norm ln1, ln2;
  detail::Mha attn;
  detail::Linear up, down;
};

class AttnBlocks final : public ConnectorOf<nn::Infer> {
 public:
  AttnBlocks(const ConnectorConfig& c, std::vector<Block> blocks, detail::Linear proj)
      : c_(c), blocks_(std::move(blocks)), proj_(std::move(proj)) {}
  std::string type() const override { return "attn_blocks"; }
  int64_t n_tokens(int64_t n_features) const override { return n_features; }
  Tensor forward(const nn::Infer&, const Tensor& x_in) const override {
    Tensor x = x_in.contiguous();
    for (const Block& b : blocks_) {
      const Tensor h = b.ln1(x);
      x = ops::add(x, b.attn(h, h));
      x = ops::add(x, b.down(detail::gelu(c_, b.up(b.ln2(x)))));
    }
    return proj_(x);
  }

 private:
  ConnectorConfig c_;
  std::vector<Block> blocks_;
  detail::Linear proj_;
};

}  // namespace

std::string detail::attn_blocks_out_weight(Layout layout) { return detail::prefix(layout) + "proj.weight"; }

// Not yet over both contexts: inference only (see registry.cpp).
std::unique_ptr<ConnectorOf<nn::Infer>> load_attn_blocks_source(const ConnectorConfig& c, const io::TensorSource& s, Layout layout) {
  const std::string p = detail::prefix(layout);
  const int64_t d = c.d_in;
  const ConnectorConfig& bc = c;
  std::vector<Block> blocks;
  for (int i = 0; s.has(p + "blocks." + std::to_string(i) + ".ln1.weight"); ++i) {
    const std::string b = p + "blocks." + std::to_string(i) + ".";
    OCELLUS_CHECK(s.has(b + "ffn_up.weight"), s.path, ": connector attn_blocks: missing tensor '", b, "ffn_up.weight'");
    const int64_t ff = s.get(b + "ffn_up.weight").dim(0);
    blocks.push_back(Block{detail::load_norm(bc, s, b + "ln1.", d), detail::load_norm(bc, s, b + "ln2.", d),
                           detail::load_mha(bc, s, b + "attn.", d),
                           detail::load_linear_layer(bc, s, b + "ffn_up.weight", b + "ffn_up.bias", ff, d),
                           detail::load_linear_layer(bc, s, b + "ffn_down.weight", b + "ffn_down.bias", d, ff)});
  }
  OCELLUS_CHECK(!blocks.empty(), s.path, ": connector attn_blocks: no blocks (looked for '", p, "blocks.0.ln1.weight')");
  auto proj = detail::load_linear_layer(c, s, detail::attn_blocks_out_weight(layout), p + "proj.bias", c.d_out, d);
  return std::make_unique<AttnBlocks>(c, std::move(blocks), std::move(proj));
}

}  // namespace ocellus::connect
