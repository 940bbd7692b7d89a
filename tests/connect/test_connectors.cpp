// Every connector type against a PyTorch re-statement (tests/reference/torch_ref.py) on the same
// random weights, loaded from safetensors in LLaVA's layout (model.mm_projector.*); the GGUF
// layout's names give the same connector.
#include <sys/stat.h>

#include <fstream>
#include <map>

#include "ocellus/connect/connector.h"
#include "ocellus/core/error.h"
#include "ocellus/io/safetensors.h"
#include "connector_testutil.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;

namespace {

constexpr int64_t kDin = test::kConnDin, kDout = test::kConnDout, kGrid = test::kConnGrid;

io::TensorSource map_source(const std::map<std::string, Tensor>& m) {
  return io::TensorSource{"<memory>", [&m](const std::string& n) { return m.count(n) != 0; },
                          [&m](const std::string& n) { return m.at(n); }};
}

// merge > 1: the connector reads merge x merge blocks of a grid of kDin-wide features.
double vs_torch(const std::string& type, int64_t n_head, int64_t* n_tok, int64_t merge = 1) {
  const std::string dir = test::temp_path("conn_" + type + std::to_string(merge));
  ::mkdir(dir.c_str(), 0755);
  test::NamedTensors w = test::connector_weights(type, 7, kDin * merge * merge);
  std::map<std::string, Tensor> named;
  for (auto& [n, t] : w) named["model.mm_projector." + n] = t;
  io::write_safetensors(dir + "/model.safetensors", test::prefixed(w, "model.mm_projector."));
  std::ofstream(dir + "/config.json") << "{\"type\": \"" << type << "\", \"d_in\": " << kDin << ", \"d_out\": " << kDout
                                      << ", \"n_head\": " << n_head << ", \"merge\": " << merge << "}\n";
  connect::ConnectorConfig c;
  c.d_in = kDin, c.d_out = kDout, c.n_head = n_head, c.merge = merge;
  const auto conn = connect::load_connector(type, c, map_source(named), connect::Layout::LlavaOriginal);
  const Tensor x = test::randn({kGrid * kGrid, kDin}, 99);
  const Tensor ours = conn->forward(x);
  *n_tok = ours.dim(0);
  EXPECT_EQ(ours.dim(0), conn->n_tokens(x.dim(0)));
  const std::vector<float> ref = test::torch_ref({"connector", dir, test::write_temp("feats_" + type + std::to_string(merge) + ".f32", x), ""}, dir + "/torch.f32");
  EXPECT_EQ(size_t(ours.numel()), ref.size()) << type;
  if (size_t(ours.numel()) != ref.size()) return 1.0;
  return test::rel_err(ours, Tensor::from_vector(ours.shape(), ref));
}

}  // namespace

TEST(Connectors, EachTypeMatchesPyTorch) {
  // bound: 10x the worst relative error over generic / avx2 / avx512 on an Intel Xeon (AVX-512
  // VNNI): mlp2x_gelu 1.15e-7, mlp_norm 1.61e-7, ldpv2 9.79e-8 (alike on every table),
  // attn_blocks 2.71e-7 (generic), resampler 2.72e-7 (avx2).
  const struct {
    const char* type;
    int64_t n_head, tokens;
    double bound;
  } cases[] = {{"mlp2x_gelu", 0, 16, 1.2e-6}, {"mlp_norm", 0, 16, 1.6e-6}, {"ldpv2", 0, 4, 9.8e-7},
               {"attn_blocks", 0, 16, 2.7e-6}, {"resampler", 4, 6, 2.7e-6}};
  for (const auto& k : cases) {
    int64_t n_tok = 0;
    const double e = vs_torch(k.type, k.n_head, &n_tok);
    std::printf("%-12s vs PyTorch: rel err %.3g (%lld tokens)\n", k.type, e, (long long)n_tok);
    EXPECT_LE(e, k.bound) << k.type;
    EXPECT_EQ(n_tok, k.tokens) << k.type;
  }
}

TEST(Connectors, SpatialMergeMatchesPyTorch) {
  // Qwen2-VL-style merge of 2x2 patch blocks before the connector proper: 4x fewer tokens, each
  // the concatenation of its block's features (PyTorch states the order with view / permute).
  // bound: 10x the worst over generic / avx2 / avx512 on an Intel Xeon (AVX-512 VNNI):
  // mlp2x_gelu 1.31e-7 (every table), attn_blocks 3.04e-7 (generic).
  for (const auto& [type, bound] : {std::pair<const char*, double>{"mlp2x_gelu", 1.3e-6}, {"attn_blocks", 3.0e-6}}) {
    int64_t n_tok = 0;
    const double e = vs_torch(type, 0, &n_tok, 2);
    std::printf("%-12s merge 2 vs PyTorch: rel err %.3g (%lld tokens)\n", type, e, (long long)n_tok);
    EXPECT_LE(e, bound) << type;
    EXPECT_EQ(n_tok, 4) << type;
  }
  // The order itself on a 4x4 grid: token (0,0) holds patches 0, 1, 4, 5; token (0,1) 2, 3, 6, 7.
  EXPECT_EQ(connect::merge_order(16, 2), (std::vector<int32_t>{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}));
  EXPECT_EQ(connect::merge_order(16, 1), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  const Tensor x = test::randn({16, 3}, 4), y = connect::merge_patches(x, 2);
  ASSERT_EQ(y.shape(), (Shape{4, 12}));
  EXPECT_EQ(y.data<float>()[3 * 3 + 1], x.data<float>()[5 * 3 + 1]);  // token 0, patch 5's second value
  EXPECT_EQ(y.data<float>()[12 + 0], x.data<float>()[2 * 3]);         // token 1 starts with patch 2
  // Grids the merge does not fit are refused, saying why.
  EXPECT_THROW(connect::merge_order(12, 2), Error);  // not square
  try {
    connect::merge_order(9, 2);
    FAIL() << "merged a 3x3 grid by 2";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not divide"), std::string::npos) << e.what();
  }
  EXPECT_THROW(connect::merge_order(16, 0), Error);
}

TEST(Connectors, GgufNamesGiveTheSameConnector) {
  // llama.cpp's names: mlp_norm as mm.{0,1,3,4}, ldpv2 as mm.model.mlp.{0,2} and mm.model.peg.0.
  for (const std::string type : {"mlp_norm", "ldpv2"}) {
    std::map<std::string, Tensor> st, gg;
    for (auto& [n, t] : test::connector_weights(type, 3)) {
      st["model.mm_projector." + n] = t;
      std::string g = n;
      if (type == "ldpv2") g = "model." + (g.rfind("peg.peg.", 0) == 0 ? g.substr(4) : g);
      gg["mm." + g] = t;
    }
    connect::ConnectorConfig c;
    c.d_in = kDin, c.d_out = kDout;
    const Tensor x = test::randn({kGrid * kGrid, kDin}, 5);
    const Tensor a = connect::load_connector(type, c, map_source(st), connect::Layout::LlavaOriginal)->forward(x);
    const Tensor b = connect::load_connector(type, c, map_source(gg), connect::Layout::Gguf)->forward(x);
    EXPECT_EQ(test::max_abs_diff(a, b), 0.0) << type;
  }
}

TEST(Connectors, BadInputsAreClearErrors) {
  connect::ConnectorConfig c;
  c.d_in = kDin, c.d_out = kDout;
  std::map<std::string, Tensor> m;
  for (auto& [n, t] : test::connector_weights("ldpv2", 1)) m["model.mm_projector." + n] = t;
  const auto ldp = connect::load_connector("ldpv2", c, map_source(m), connect::Layout::LlavaOriginal);
  EXPECT_THROW(ldp->forward(test::randn({15, kDin}, 2)), Error);  // not an even square grid
  m.erase("model.mm_projector.peg.peg.0.bias");
  try {
    connect::load_connector("ldpv2", c, map_source(m), connect::Layout::LlavaOriginal);
    FAIL() << "loaded without the peg bias";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("peg.peg.0.bias"), std::string::npos) << e.what();
  }
  EXPECT_THROW(connect::load_connector("qformer", c, map_source(m), connect::Layout::LlavaOriginal), Error);
}
