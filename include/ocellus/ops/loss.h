#pragma once
// Cross-entropy over logits [n, n_vocab] with integer targets; targets equal to ignore_index
// (e.g. prompt and image positions in supervised fine-tuning) contribute nothing.
#include <cstdint>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

constexpr int32_t kIgnoreIndex = -100;  // PyTorch's and Hugging Face's convention

// Mean of −log softmax(logits)[target] over the counted rows; 0 if no row counts. With
// row_lse, also each row's log Σ exp (n values; 0 at ignored rows) for the backward.
float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                    int32_t ignore_index = kIgnoreIndex, std::vector<float>* row_lse = nullptr);
// dlogits += dloss · (softmax − onehot) / n_counted on counted rows; row_lse from the forward
// saves recomputing each row's log Σ exp (two passes over the row).
void cross_entropy_backward(const Tensor& logits, const std::vector<int32_t>& targets,
                            float dloss, Tensor* dlogits, int32_t ignore_index = kIgnoreIndex,
                            const std::vector<float>* row_lse = nullptr);

namespace ref {
float cross_entropy(const Tensor& logits, const std::vector<int32_t>& targets,
                    int32_t ignore_index = kIgnoreIndex);
void cross_entropy_backward(const Tensor& logits, const std::vector<int32_t>& targets,
                            float dloss, Tensor* dlogits, int32_t ignore_index = kIgnoreIndex);
}  // namespace ref

}  // namespace ocellus::ops
