#pragma once
// Element-wise ops on f32 tensors: add / mul with NumPy broadcasting, scale, and the activation
// functions of the model families in scope. Backward functions accumulate (+=) into the grads
// given; a null grad pointer skips that gradient.
#include <string>

#include "ocellus/core/tensor.h"

namespace ocellus::ops {

// NumPy rules: shapes align at the last dimension; a dimension of 1 stretches. Throws otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b);

Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);
// da += dy summed over the dimensions a was broadcast along (same for db).
void add_backward(const Tensor& dy, Tensor* da, Tensor* db);
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
void scale_backward(const Tensor& dy, float s, Tensor* da);

enum class Activation {
  GeluErf,    // x/2 (1 + erf(x/√2))                         (BERT, SigLIP's "gelu")
  GeluTanh,   // x/2 (1 + tanh(√(2/π)(x + 0.044715 x³)))      (Phi-2, SigLIP "gelu_pytorch_tanh")
  QuickGelu,  // x σ(1.702 x)                                 (OpenAI CLIP)
  Silu,       // x σ(x)                                       (Llama, Qwen2 gates)
};
const char* activation_name(Activation f);
// Hugging Face's hidden_act names: "gelu", "gelu_pytorch_tanh" / "gelu_new" / "gelu_fast" /
// "gelu_tanh", "quick_gelu", "silu" / "swish". Anything else is an error naming it.
Activation parse_activation(const std::string& name);
Tensor activate(Activation f, const Tensor& x);
void activate_backward(Activation f, const Tensor& x, const Tensor& dy, Tensor* dx);

// GELU (tanh form) and quick-GELU as llama.cpp's CPU backend computes them for GGUF models:
// the input rounded to f16, the result looked up in an f16 table over all f16 inputs (GELU
// also: 0 below -10, the input itself above 10). For reproducing that engine's numerics only.
Tensor activate_ggml_f16(Activation f, const Tensor& x);

// SwiGLU: silu(gate) * up (shapes equal). The backward adds into dgate / dup, or with
// overwrite writes them (their old contents, even NaN, are not read).
Tensor swiglu(const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor* dgate,
                     Tensor* dup, bool overwrite = false);
// The same on a packed [n, 2f] input, gate in the first f columns and up in the last f (one
// GEMM's output against the gate and up weights stacked): y [n, f]; the backward writes the
// packed gradient [n, 2f].
Tensor swiglu_packed(const Tensor& gate_up);
void swiglu_packed_backward(const Tensor& gate_up, const Tensor& dy, Tensor* dgate_up);

namespace ref {
Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);
void add_backward(const Tensor& dy, Tensor* da, Tensor* db);
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
void scale_backward(const Tensor& dy, float s, Tensor* da);
Tensor activate(Activation f, const Tensor& x);
void activate_backward(Activation f, const Tensor& x, const Tensor& dy, Tensor* dx);
Tensor swiglu(const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor* dgate,
                     Tensor* dup);
// Each element: the input rounded to f16, f computed in f32 as llama.cpp's table does, the
// result rounded to f16 (GELU: 0 at or below -10, the input itself at or above 10).
Tensor activate_ggml_f16(Activation f, const Tensor& x);
// y[r, i] = silu(x[r, i]) x[r, f + i]; the backward writes dgate_up [n, 2f].
Tensor swiglu_packed(const Tensor& gate_up);
void swiglu_packed_backward(const Tensor& gate_up, const Tensor& dy, Tensor* dgate_up);
}  // namespace ref

}  // namespace ocellus::ops
