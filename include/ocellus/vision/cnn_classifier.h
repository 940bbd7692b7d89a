#pragma once
// A small convolutional image classifier: conv 3x3 and SiLU; per stage a 3x3 stride-2
// convolution, GroupNorm and SiLU; a convolution as large as what is left (to 1x1) and SiLU, the
// features; a linear layer to the classes. ocellus trains one on Fashion-MNIST's photos to judge
// generated scenes cell by cell and to give the features their FID is computed on. Written once
// over the forward context (nn/forward.h). Images [B, S, S, C] in [-1, 1].
#include <cstdint>
#include <string>
#include <vector>

#include "ocellus/nn/forward.h"

namespace ocellus::vision {

struct CnnConfig {
  int64_t in_channels = 1, image_size = 28, n_classes = 10;
  std::vector<int64_t> widths = {32, 64, 128};  // conv_in, then one stride-2 stage per further width
  int64_t n_features = 256, norm_num_groups = 8;

  int64_t stages() const { return int64_t(widths.size()) - 1; }
  int64_t head_size() const { return image_size >> stages(); }  // the last feature map's side
  void validate(const std::string& where) const;
};

// config.json of a saved classifier (the fields above); unknown keys and bad values are errors
// naming them and `where`.
CnnConfig parse_cnn_config(const std::string& json_text, const std::string& where);
std::string cnn_config_json(const CnnConfig& c);

template <class F>
struct CnnClassifier {
  using P = typename F::P;
  P in_w, in_b, head_w, head_b, out_w, out_b;
  std::vector<P> down_w, down_b, norm_w, norm_b;  // one per stage
};

template <class F>
CnnClassifier<F> load_cnn_classifier(const nn::Maker<F>& mk, const CnnConfig& c);

// images [B, S, S, C] -> features [B, n_features]; logits [B, n_classes] from the features.
template <class F>
typename F::V cnn_features(const F& f, const CnnConfig& c, const CnnClassifier<F>& w, const typename F::V& images);
template <class F>
typename F::V cnn_logits(const F& f, const CnnClassifier<F>& w, const typename F::V& features) {
  return f.linear(features, F::matrix(w.out_w), w.out_b);
}

}  // namespace ocellus::vision
