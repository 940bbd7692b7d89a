#include "ocellus/ops/embed.h"

#include <vector>

#include "ocellus/core/quant.h"
#include "ocellus/core/threads.h"
#include "ocellus/ops/matmul.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

void check_ids(const Tensor& table, const std::vector<int32_t>& ids, const char* op) {
  OCELLUS_CHECK(table.defined() && table.ndim() == 2, op, ": table must be [n_vocab, d]");
  for (size_t i = 0; i < ids.size(); ++i)
    OCELLUS_CHECK(ids[i] >= 0 && ids[i] < table.dim(0), op, ": token id ", ids[i], " at position ",
                  i, " is outside the vocabulary of ", table.dim(0));
}

struct Patches {
  int64_t C, H, W, P, ny, nx, D;
};

Patches check_patch(const Tensor& image, const Tensor& weight, int64_t patch, const char* op) {
  detail::require_f32(image, op, "image");
  OCELLUS_CHECK(image.ndim() == 3, op, ": image must be [C, H, W], got ", image.shape().str());
  OCELLUS_CHECK(weight.defined() && weight.ndim() == 4, op, ": weight must be [D, C, P, P]");
  OCELLUS_CHECK(patch > 0 && weight.dim(2) == patch && weight.dim(3) == patch && weight.dim(1) == image.dim(0),
                op, ": weight ", weight.shape().str(), " does not match patch ", patch, " and ",
                image.dim(0), " channels");
  Patches g{image.dim(0), image.dim(1), image.dim(2), patch, image.dim(1) / patch,
            image.dim(2) / patch, weight.dim(0)};
  OCELLUS_CHECK(g.ny > 0 && g.nx > 0, op, ": image ", image.shape().str(), " smaller than one patch");
  return g;
}

// cols [n_patch, C*P*P]: each patch flattened in the weight's (c, ky, kx) order.
Tensor im2col(const Tensor& image_in, const Patches& g) {
  const Tensor image = image_in.contiguous();
  const float* src = image.data<float>();
  Tensor cols = Tensor::empty({g.ny * g.nx, g.C * g.P * g.P});
  float* dst = cols.data<float>();
  parallel_for(g.ny * g.nx, 16, [&](int64_t p0, int64_t p1) {
    for (int64_t pi = p0; pi < p1; ++pi) {
      const int64_t py = pi / g.nx, px = pi % g.nx;
      float* row = dst + pi * g.C * g.P * g.P;
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t ky = 0; ky < g.P; ++ky) {
          const float* s = src + (c * g.H + py * g.P + ky) * g.W + px * g.P;
          std::copy(s, s + g.P, row + (c * g.P + ky) * g.P);
        }
    }
  });
  return cols;
}

}  // namespace

Tensor embedding(const Tensor& table_in, const std::vector<int32_t>& ids) {
  check_ids(table_in, ids, "embedding");
  const Tensor table = table_in.contiguous();
  const int64_t d = table.dim(1);
  const size_t rb = row_bytes(table.dtype(), d);
  Tensor out = Tensor::empty({int64_t(ids.size()), d});
  parallel_for(int64_t(ids.size()), 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      dequantize_row(table.dtype(), table.raw() + size_t(ids[i]) * rb, out.data<float>() + i * d, d);
  });
  return out;
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy_in, Tensor* dtable) {
  if (!dtable) return;
  check_ids(*dtable, ids, "embedding_backward");
  detail::require_f32(*dtable, "embedding_backward", "dtable");
  const int64_t d = dtable->dim(1);
  OCELLUS_CHECK(dy_in.shape() == Shape({int64_t(ids.size()), d}), "embedding_backward: dy must be [",
                ids.size(), ", ", d, "]");
  const Tensor dy = dy_in.contiguous();
  const float* g = dy.data<float>();
  float* t = dtable->data<float>();
  // columns in parallel: repeated ids never race
  parallel_for(d, 64, [&](int64_t c0, int64_t c1) {
    for (size_t i = 0; i < ids.size(); ++i)
      for (int64_t c = c0; c < c1; ++c) t[ids[i] * d + c] += g[int64_t(i) * d + c];
  });
}

Tensor patch_embed(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch) {
  const Patches g = check_patch(image, weight, patch, "patch_embed");
  const Tensor w2 = weight.contiguous().reshape({g.D, g.C * g.P * g.P});
  return matmul(im2col(image, g), w2, bias);
}

Tensor patch_embed_ggml_order(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch) {
  const Patches g = check_patch(image, weight, patch, "patch_embed_ggml_order");
  const Tensor w2 = weight.contiguous().reshape({g.D, g.C * g.P * g.P});
  return matmul_ggml_order(im2col(image, g), PreparedWeight(w2), bias);
}

void patch_embed_backward(const Tensor& image, const Tensor& weight, const Tensor& dy,
                          int64_t patch, Tensor* dimage, Tensor* dweight, Tensor* dbias) {
  const Patches g = check_patch(image, weight, patch, "patch_embed_backward");
  detail::check_grad(dimage, image.shape(), "patch_embed_backward", "dimage");
  detail::check_grad(dweight, weight.shape(), "patch_embed_backward", "dweight");
  const int64_t K = g.C * g.P * g.P;
  const Tensor cols = im2col(image, g);
  const Tensor w2 = weight.contiguous().reshape({g.D, K});
  Tensor dw2 = dweight ? dweight->reshape({g.D, K}) : Tensor();
  Tensor dcols = dimage ? Tensor::zeros({g.ny * g.nx, K}) : Tensor();
  matmul_backward(cols, w2, dy, dimage ? &dcols : nullptr, dweight ? &dw2 : nullptr, dbias);
  if (dimage) {  // col2im: patches do not overlap, so each pixel has one source
    const float* s = dcols.data<float>();
    float* dst = dimage->data<float>();
    parallel_for(g.ny * g.nx, 16, [&](int64_t p0, int64_t p1) {
      for (int64_t pi = p0; pi < p1; ++pi) {
        const int64_t py = pi / g.nx, px = pi % g.nx;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t ky = 0; ky < g.P; ++ky)
            for (int64_t kx = 0; kx < g.P; ++kx)
              dst[(c * g.H + py * g.P + ky) * g.W + px * g.P + kx] += s[pi * K + (c * g.P + ky) * g.P + kx];
      }
    });
  }
}

namespace ref {

Tensor embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  check_ids(table, ids, "ref::embedding");
  const Tensor t = table.to(DType::F32);
  Tensor out = Tensor::empty({int64_t(ids.size()), table.dim(1)});
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < table.dim(1); ++c) out.at({int64_t(i), c}) = t.at({ids[i], c});
  return out;
}

void embedding_backward(const std::vector<int32_t>& ids, const Tensor& dy, Tensor* dtable) {
  if (!dtable) return;
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < dtable->dim(1); ++c) dtable->at({ids[i], c}) += dy.at({int64_t(i), c});
}

Tensor patch_embed(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch) {
  const Patches g = check_patch(image, weight, patch, "ref::patch_embed");
  const Tensor w = weight.to(DType::F32);
  Tensor out = Tensor::empty({g.ny * g.nx, g.D});
  for (int64_t py = 0; py < g.ny; ++py)
    for (int64_t px = 0; px < g.nx; ++px)
      for (int64_t o = 0; o < g.D; ++o) {
        double s = bias ? bias->at({o}) : 0.0;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t ky = 0; ky < g.P; ++ky)
            for (int64_t kx = 0; kx < g.P; ++kx)
              s += double(w.at({o, c, ky, kx})) * image.at({c, py * g.P + ky, px * g.P + kx});
        out.at({py * g.nx + px, o}) = float(s);
      }
  return out;
}

Tensor patch_embed_ggml_order(const Tensor& image, const Tensor& weight, const Tensor* bias, int64_t patch) {
  if (weight.dtype() != DType::F32) return patch_embed(image, weight, bias, patch);
  const Patches g = check_patch(image, weight, patch, "ref::patch_embed_ggml_order");
  Tensor out = Tensor::empty({g.ny * g.nx, g.D});
  for (int64_t py = 0; py < g.ny; ++py)
    for (int64_t px = 0; px < g.nx; ++px)
      for (int64_t o = 0; o < g.D; ++o) {
        std::vector<float> wv, xv;  // the patch's products in (c, ky, kx) order
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t ky = 0; ky < g.P; ++ky)
            for (int64_t kx = 0; kx < g.P; ++kx) {
              wv.push_back(weight.at({o, c, ky, kx}));
              xv.push_back(image.at({c, py * g.P + ky, px * g.P + kx}));
            }
        const float s = dot_ggml_order(wv.data(), xv.data(), int64_t(wv.size()));
        out.at({py * g.nx + px, o}) = bias ? s + bias->at({o}) : s;
      }
  return out;
}

void patch_embed_backward(const Tensor& image, const Tensor& weight, const Tensor& dy,
                          int64_t patch, Tensor* dimage, Tensor* dweight, Tensor* dbias) {
  const Patches g = check_patch(image, weight, patch, "ref::patch_embed_backward");
  const Tensor w = weight.to(DType::F32);
  for (int64_t py = 0; py < g.ny; ++py)
    for (int64_t px = 0; px < g.nx; ++px)
      for (int64_t o = 0; o < g.D; ++o) {
        const float go = dy.at({py * g.nx + px, o});
        if (dbias) dbias->at({o}) += go;
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t ky = 0; ky < g.P; ++ky)
            for (int64_t kx = 0; kx < g.P; ++kx) {
              const int64_t y = py * g.P + ky, x = px * g.P + kx;
              if (dweight) dweight->at({o, c, ky, kx}) += go * image.at({c, y, x});
              if (dimage) dimage->at({c, y, x}) += go * w.at({o, c, ky, kx});
            }
      }
}

}  // namespace ref
}  // namespace ocellus::ops
