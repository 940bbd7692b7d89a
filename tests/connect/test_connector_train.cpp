// Every connector type trains with the one forward it runs in inference: the training context
// (nn::Train, f32 parameters) gives the inference context's output (nn::Infer, exact numerics)
// on the same weights; the gradients of sum(out * R) with respect to the features and to every
// parameter match PyTorch's autograd (float64) over tests/reference/torch_ref.py's re-statement; and
// connector_tensors_as maps each type's tensors between LLaVA / Hugging Face llava names and
// llama.cpp's GGUF names (the mmproj an exporter writes), both ways.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "connector_testutil.h"
#include "ocellus/autograd/autograd.h"
#include "ocellus/connect/connector.h"
#include "ocellus/io/safetensors.h"
#include "testutil.h"
#include "torch_ref.h"

using namespace ocellus;
using test::kConnDin, test::kConnDout, test::kConnGrid;

namespace {

struct Case {
  const char* type;
  int64_t n_head, merge;
};
// Every type; attn_blocks once more behind a 2x2 spatial merge (the connector proper reads
// 4 x kConnDin wide features).
const Case kCases[] = {{"linear", 0, 1},      {"mlp2x_gelu", 0, 1}, {"mlp_norm", 0, 1},   {"ldpv2", 0, 1},
                       {"attn_blocks", 0, 1}, {"resampler", 4, 1},  {"attn_blocks", 0, 2}};

std::string label(const Case& k) { return std::string(k.type) + (k.merge > 1 ? " merge " + std::to_string(k.merge) : ""); }

connect::ConnectorConfig config(const Case& k) {
  connect::ConnectorConfig c;
  c.d_in = kConnDin, c.d_out = kConnDout, c.n_head = k.n_head, c.merge = k.merge;
  return c;
}

// The case's weights under LLaVA's names (model.mm_projector.*), as torch_ref.py reads them.
test::NamedTensors weights(const Case& k) {
  return test::prefixed(test::connector_weights(k.type, 7, kConnDin * k.merge * k.merge), "model.mm_projector.");
}

double norm(const Tensor& t) {
  double s = 0;
  for (float v : t.to_vector()) s += double(v) * v;
  return std::sqrt(s);
}

// loss = sum(y * R) as a [1] scalar: y flattened times R as a one-row matrix (dloss/dy = R exactly).
ag::Var weighted_sum(const ag::Var& y, const Tensor& r) {
  const int64_t n = y->value.numel();
  return ag::reshape(ag::matmul(ag::reshape(y, {1, n}), ag::constant(r.contiguous().reshape({1, n}))), {1});
}

}  // namespace

TEST(ConnectorTrain, TrainingForwardEqualsInference) {
  // bound 1e-6 relative; the two contexts run the same kernels on f32 weights: measured 0 for
  // every type (generic / avx2 / avx512 on an Intel Xeon).
  for (const Case& k : kCases) {
    const test::NamedTensors w = weights(k);
    const io::TensorSource src = test::named_source(w);
    const connect::ConnectorConfig c = config(k);
    const Tensor x = test::randn({kConnGrid * kConnGrid, kConnDin}, 99);
    const Tensor infer = connect::load_connector(k.type, c, src, connect::Layout::LlavaOriginal)->forward(x);
    std::vector<std::pair<std::string, ag::Var>> params;
    const auto conn = connect::load_connector<nn::Train>(k.type, c, test::param_maker(src, &params), connect::Layout::LlavaOriginal);
    const ag::Var y = conn->forward(nn::Train{}, ag::leaf(x, true));
    ag::Tape::current().clear();
    ASSERT_EQ(y->value.shape(), infer.shape()) << label(k);
    EXPECT_EQ(conn->n_tokens(x.dim(0)), infer.dim(0)) << label(k);
    EXPECT_EQ(params.size(), w.size()) << label(k) << ": every tensor a parameter";
    const double e = test::rel_err(y->value, infer);
    std::printf("%-22s training vs inference forward: rel err %.3g\n", label(k).c_str(), e);
    EXPECT_LE(e, 1e-6) << label(k);
  }
}

TEST(ConnectorTrain, GradientsMatchPyTorch) {
  // The project's bound for training gradients: 2e-6 relative on each gradient (the features'
  // and every parameter's), against PyTorch in float64 (the exact gradients of the same f32
  // weights and features).
  for (const Case& k : kCases) {
    const test::NamedTensors w = weights(k);
    const std::string tag = std::string(k.type) + std::to_string(k.merge);
    const std::string dir = test::temp_path("conn_grad_" + tag);
    ::mkdir(dir.c_str(), 0755);
    io::write_safetensors(dir + "/model.safetensors", w);
    const connect::ConnectorConfig c = config(k);
    std::vector<std::pair<std::string, ag::Var>> params;
    const auto conn = connect::load_connector<nn::Train>(k.type, c, test::param_maker(test::named_source(w), &params),
                                                         connect::Layout::LlavaOriginal);
    {
      std::ofstream cfg(dir + "/config.json");
      cfg << "{\"type\": \"" << k.type << "\", \"d_in\": " << kConnDin << ", \"d_out\": " << kConnDout << ", \"n_head\": " << k.n_head
          << ", \"merge\": " << k.merge << ", \"float64\": true, \"names\": [";
      for (size_t i = 0; i < params.size(); ++i) cfg << (i ? ", " : "") << '"' << params[i].first << '"';
      cfg << "]}\n";
    }
    const Tensor x = test::randn({kConnGrid * kConnGrid, kConnDin}, 99);
    const ag::Var xv = ag::leaf(x, true);
    const ag::Var y = conn->forward(nn::Train{}, xv);
    const Tensor r = test::randn(y->value.shape(), 11);
    ag::Tape::current().backward(weighted_sum(y, r));
    const std::vector<float> ref = test::torch_ref({"connector_grad", dir, test::write_temp("gfeats_" + tag + ".f32", x),
                                                    test::write_temp("gr_" + tag + ".f32", r), ""},
                                                   dir + "/torch_grad.f32");
    // The features' gradient, then each parameter's, as torch_ref.py writes them.
    std::vector<std::pair<std::string, ag::Var>> checked = {{"features", xv}};
    checked.insert(checked.end(), params.begin(), params.end());
    size_t at = 0;
    double worst = 0, zero_bias = 0;
    std::string worst_name;
    for (const auto& [name, v] : checked) {
      ASSERT_TRUE(v->grad.defined()) << label(k) << ": no gradient reached " << name;
      const int64_t n = v->grad.numel();
      ASSERT_LE(at + size_t(n), ref.size()) << label(k) << ": PyTorch wrote fewer gradients";
      const Tensor want = Tensor::from_vector(v->grad.shape(), std::vector<float>(ref.begin() + long(at), ref.begin() + long(at) + n));
      at += size_t(n);
      if (name.ends_with("attn.k.bias")) {
        // Zero in exact arithmetic: the key bias adds q·b to every score of a query's row, which
        // the softmax ignores. Both gradients must be zero to rounding, against the scale of
        // the gradient through the same projection (its weight's).
        const auto kw = std::find_if(params.begin(), params.end(), [&](const auto& p) {
          return p.first == name.substr(0, name.size() - 4) + "weight";
        });
        ASSERT_NE(kw, params.end()) << name;
        const double scale = norm(kw->second->grad);
        EXPECT_LE(norm(v->grad), 2e-6 * scale) << label(k) << ": " << name;
        EXPECT_LE(norm(want), 2e-6 * scale) << label(k) << ": " << name << " (PyTorch)";
        zero_bias = std::max(zero_bias, std::max(norm(v->grad), norm(want)) / scale);
        continue;
      }
      const double e = test::rel_err(v->grad, want);
      EXPECT_LE(e, 2e-6) << label(k) << ": " << name;
      if (e >= worst) worst = e, worst_name = name;
    }
    EXPECT_EQ(at, ref.size()) << label(k);
    std::printf("%-22s gradients vs PyTorch: worst rel err %.3g (%s; %zu parameters)", label(k).c_str(), worst,
                worst_name.c_str(), params.size());
    if (zero_bias > 0) std::printf("; key bias gradients %.3g of their weight's", zero_bias);
    std::printf("\n");
  }
}

namespace {

// llama.cpp's GGUF name and Hugging Face llava's name of a tensor of `type` whose LLaVA name is
// model.mm_projector.<local> (llama.cpp's convert_image_encoder_to_gguf.py and transformers'
// LlavaMultiModalProjector).
std::string gguf_name(const std::string& type, const std::string& local) {
  if (type == "linear") return "mm.0." + local;
  if (type == "ldpv2") return "mm.model." + (local.rfind("peg.peg.", 0) == 0 ? local.substr(4) : local);
  return "mm." + local;
}
std::string hf_name(const std::string& type, const std::string& local) {
  const std::string p = "multi_modal_projector.";
  if (type == "linear") return p + "linear_1." + local;
  if (type == "mlp2x_gelu") return p + (local[0] == '0' ? "linear_1" : "linear_2") + local.substr(1);
  return p + local;
}

std::map<std::string, Tensor> as_map(const test::NamedTensors& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST(ConnectorNames, HfLlavaAndGgufNamesRoundTrip) {
  for (const std::string type : connect::connector_types()) {
    if (type == "mlp") continue;  // mlp2x_gelu's alias
    const test::NamedTensors local = test::connector_weights(type, 5);
    const test::NamedTensors llava = test::prefixed(local, "model.mm_projector.");
    connect::ConnectorConfig c;
    c.d_in = kConnDin, c.d_out = kConnDout;
    using connect::Layout;
    const test::NamedTensors hf = connect::connector_tensors_as(type, c, llava, Layout::LlavaOriginal, Layout::HfLlava);
    const test::NamedTensors gg = connect::connector_tensors_as(type, c, hf, Layout::HfLlava, Layout::Gguf);
    const test::NamedTensors back = connect::connector_tensors_as(type, c, gg, Layout::Gguf, Layout::HfLlava);
    // Each tensor under the names llama.cpp and transformers give it, with its values; the
    // ldpv2 kernel squeezed to [d, 3, 3] in GGUF, as llama.cpp's converter writes it.
    const auto hm = as_map(hf), gm = as_map(gg);
    ASSERT_EQ(hm.size(), local.size()) << type;
    ASSERT_EQ(gm.size(), local.size()) << type;
    for (const auto& [n, t] : local) {
      ASSERT_TRUE(hm.count(hf_name(type, n))) << type << ": no " << hf_name(type, n);
      ASSERT_TRUE(gm.count(gguf_name(type, n))) << type << ": no " << gguf_name(type, n);
      const Tensor& g = gm.at(gguf_name(type, n));
      EXPECT_EQ(hm.at(hf_name(type, n)).shape(), t.shape()) << n;
      EXPECT_EQ(g.shape(), type == "ldpv2" && n == "peg.peg.0.weight" ? Shape({kConnDout, 3, 3}) : t.shape()) << n;
      EXPECT_EQ(g.to_vector(), t.to_vector()) << type << ": " << n;
    }
    // GGUF back to Hugging Face: the same tensors, in the same order.
    ASSERT_EQ(back.size(), hf.size()) << type;
    for (size_t i = 0; i < hf.size(); ++i) {
      EXPECT_EQ(back[i].first, hf[i].first) << type;
      EXPECT_EQ(back[i].second.shape(), hf[i].second.shape()) << hf[i].first;
      EXPECT_EQ(back[i].second.to_vector(), hf[i].second.to_vector()) << hf[i].first;
    }
    // Each set loads in its layout as the same connector.
    const Tensor x = test::randn({kConnGrid * kConnGrid, kConnDin}, 3);
    const Tensor a = connect::load_connector(type, c, test::named_source(llava), Layout::LlavaOriginal)->forward(x);
    const Tensor b = connect::load_connector(type, c, test::named_source(hf), Layout::HfLlava)->forward(x);
    const Tensor g = connect::load_connector(type, c, test::named_source(gg), Layout::Gguf)->forward(x);
    EXPECT_EQ(test::max_abs_diff(a, b), 0.0) << type;
    EXPECT_EQ(test::max_abs_diff(a, g), 0.0) << type;
  }
  // Only what the connector reads goes across; a missing tensor is an error naming it.
  connect::ConnectorConfig c;
  c.d_in = kConnDin, c.d_out = kConnDout;
  test::NamedTensors hf = connect::connector_tensors_as("mlp2x_gelu", c, test::prefixed(test::connector_weights("mlp2x_gelu", 5),
                                                                                         "model.mm_projector."),
                                                        connect::Layout::LlavaOriginal, connect::Layout::HfLlava);
  hf.emplace_back("language_model.model.norm.weight", test::randn({8}, 1));
  EXPECT_EQ(connect::connector_tensors_as("mlp2x_gelu", c, hf, connect::Layout::HfLlava, connect::Layout::Gguf).size(), 4u);
  hf.erase(hf.begin());  // linear_1.weight
  try {
    connect::connector_tensors_as("mlp2x_gelu", c, hf, connect::Layout::HfLlava, connect::Layout::Gguf);
    FAIL() << "renamed without linear_1.weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multi_modal_projector.linear_1.weight"), std::string::npos) << e.what();
  }
}
