#include "ocellus/vision/cnn_classifier.h"

#include <algorithm>
#include <iterator>
#include <tuple>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/json.h"

namespace ocellus::vision {

void CnnConfig::validate(const std::string& where) const {
  const std::string p = where + ": classifier: ";
  OCELLUS_CHECK(in_channels >= 1 && in_channels <= 4, p, "in_channels ", in_channels, " (1 to 4)");
  OCELLUS_CHECK(n_classes >= 2 && n_features >= 1, p, n_classes, " classes, ", n_features, " features");
  OCELLUS_CHECK(!widths.empty() && widths.size() <= 6, p, "widths needs 1 to 6 entries");
  for (size_t i = 1; i < widths.size(); ++i)
    OCELLUS_CHECK(widths[i] >= 1 && widths[i] % norm_num_groups == 0, p, "width ", widths[i], " must be a multiple of ",
                  norm_num_groups, " groups");
  const int64_t step = int64_t(1) << stages();
  OCELLUS_CHECK(image_size >= step && image_size % step == 0, p, "image_size ", image_size, " must be a multiple of ", step);
}

CnnConfig parse_cnn_config(const std::string& text, const std::string& where) {
  const nlohmann::json j = io::parse_json(text, where, "classifier config");
  OCELLUS_CHECK(j.is_object(), where, ": classifier config: not a JSON object");
  CnnConfig c;
  const std::pair<const char*, int64_t*> ints[] = {{"in_channels", &c.in_channels}, {"image_size", &c.image_size},
                                                   {"n_classes", &c.n_classes}, {"n_features", &c.n_features},
                                                   {"norm_num_groups", &c.norm_num_groups}};
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    const nlohmann::json& v = item.value();
    if (k == "widths") {
      OCELLUS_CHECK(v.is_array(), where, ": classifier config: 'widths' must be a list of integers");
      c.widths.clear();
      for (const nlohmann::json& x : v) {
        OCELLUS_CHECK(x.is_number_integer(), where, ": classifier config: 'widths' must be a list of integers");
        c.widths.push_back(x.get<int64_t>());
      }
      continue;
    }
    const auto* it = std::find_if(std::begin(ints), std::end(ints), [&](const auto& e) { return k == e.first; });
    OCELLUS_CHECK(it != std::end(ints), where, ": classifier config: unknown key '", k, "'");
    OCELLUS_CHECK(v.is_number_integer(), where, ": classifier config: '", k, "' must be an integer");
    *it->second = v.get<int64_t>();
  }
  c.validate(where);
  return c;
}

std::string cnn_config_json(const CnnConfig& c) {
  return nlohmann::json{{"in_channels", c.in_channels}, {"image_size", c.image_size}, {"n_classes", c.n_classes},
                        {"widths", c.widths}, {"n_features", c.n_features}, {"norm_num_groups", c.norm_num_groups}}
             .dump(2) + "\n";
}

template <class F>
CnnClassifier<F> load_cnn_classifier(const nn::Maker<F>& mk, const CnnConfig& c) {
  c.validate("classifier");
  CnnClassifier<F> w;
  const std::vector<int64_t>& wd = c.widths;
  std::tie(w.in_w, w.in_b) = nn::weight_and_bias(mk, "conv_in", {wd[0], 3, 3, c.in_channels});
  for (int64_t i = 0; i < c.stages(); ++i) {
    const std::string p = "down." + std::to_string(i) + ".";
    const int64_t in = wd[size_t(i)], out = wd[size_t(i) + 1];
    const auto [cw, cb] = nn::weight_and_bias(mk, p + "conv", {out, 3, 3, in});
    const auto [nw, nb] = nn::weight_and_bias(mk, p + "norm", {out});
    w.down_w.push_back(cw), w.down_b.push_back(cb), w.norm_w.push_back(nw), w.norm_b.push_back(nb);
  }
  const int64_t k = c.head_size();
  std::tie(w.head_w, w.head_b) = nn::weight_and_bias(mk, "head.conv", {c.n_features, k, k, wd.back()});
  std::tie(w.out_w, w.out_b) = nn::weight_and_bias(mk, "classifier", {c.n_classes, c.n_features});
  return w;
}

template <class F>
typename F::V cnn_features(const F& f, const CnnConfig& c, const CnnClassifier<F>& w, const typename F::V& images) {
  const Shape& s = F::shape(images);
  OCELLUS_CHECK(s.ndim == 4 && s[1] == c.image_size && s[2] == c.image_size && s[3] == c.in_channels, "classifier: images of shape ",
                s.str(), ", it reads [B, ", c.image_size, ", ", c.image_size, ", ", c.in_channels, "]");
  const auto silu = ops::Activation::Silu;
  typename F::V h = f.act(silu, f.conv2d(images, w.in_w, w.in_b, 1, 1));
  for (size_t i = 0; i < w.down_w.size(); ++i)
    h = f.act(silu, f.group_norm(f.conv2d(h, w.down_w[i], w.down_b[i], 2, 1), w.norm_w[i], w.norm_b[i], c.norm_num_groups, 1e-5f));
  h = f.act(silu, f.conv2d(h, w.head_w, w.head_b, 1, 0));  // [B, 1, 1, n_features]
  return f.reshape(h, {s[0], c.n_features});
}

template CnnClassifier<nn::Infer> load_cnn_classifier(const nn::Maker<nn::Infer>&, const CnnConfig&);
template CnnClassifier<nn::Train> load_cnn_classifier(const nn::Maker<nn::Train>&, const CnnConfig&);
template Tensor cnn_features(const nn::Infer&, const CnnConfig&, const CnnClassifier<nn::Infer>&, const Tensor&);
template ag::Var cnn_features(const nn::Train&, const CnnConfig&, const CnnClassifier<nn::Train>&, const ag::Var&);

}  // namespace ocellus::vision
