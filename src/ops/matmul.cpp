#include "ocellus/ops/matmul.h"

#include <cblas.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "ocellus/core/kquant.h"
#include "ocellus/core/quant.h"
#include "ocellus/core/threads.h"
#include "ops/kernels/kernels.h"
#include "ops/util.h"

extern "C" void openblas_set_num_threads(int);

namespace ocellus::ops {
namespace {

struct Dims {
  int64_t n, k, m;  // rows of x, inner size, output features
};

Dims check_matmul(const Tensor& x, const Tensor& w, const Tensor* bias, const char* op) {
  detail::require_f32(x, op, "x");
  OCELLUS_CHECK(w.defined() && w.ndim() == 2, op, ": weight must be 2-D [m, k], got ",
                w.shape().str());
  OCELLUS_CHECK(x.ndim() >= 1 && x.dim(-1) == w.dim(1), op, ": x ", x.shape().str(),
                " does not match weight ", w.shape().str(), " (inner sizes differ)");
  if (bias) {
    detail::require_f32(*bias, op, "bias");
    OCELLUS_CHECK(bias->numel() == w.dim(0), op, ": bias of ", bias->numel(),
                  " values for ", w.dim(0), " outputs");
  }
  return {x.shape().rows(), w.dim(1), w.dim(0)};
}

Shape out_shape(const Tensor& x, int64_t m) {
  Shape s = x.shape();
  s[s.ndim - 1] = m;
  return s;
}

// C = op(A) op(B) + beta C with OpenBLAS's threads as they are (one inside a parallel region);
// nothing for an empty C.
void sgemm_here(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              int(M), int(N), int(K), 1.0f, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// The same on num_threads() threads.
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  openblas_set_num_threads(num_threads());
  sgemm_here(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

// Rows [j0, j0 + rows) of w, dequantized to f32 in parallel.
void dequantize_rows(const Tensor& w, int64_t j0, int64_t rows, float* dst) {
  const int64_t k = w.dim(1);
  const size_t rb = row_bytes(w.dtype(), k);
  const uint8_t* base = w.raw() + size_t(j0) * rb;
  parallel_for(rows, 16, [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; ++r) dequantize_row(w.dtype(), base + size_t(r) * rb, dst + r * k, k);
  });
}

// Calls fn(j0, rows, tile) for tiles of w's rows dequantized to f32: about 4 MiB each, at
// least 64 rows.
template <typename Fn>
void for_each_f32_tile(const Tensor& w, int64_t m, int64_t k, Fn fn) {
  const int64_t T = std::min<int64_t>(m, std::max<int64_t>(64, (int64_t(4) << 20) / (4 * std::max<int64_t>(k, 1))));
  std::vector<float> tile(size_t(T * k));
  for (int64_t j0 = 0; j0 < m; j0 += T) {
    const int64_t rows = std::min(T, m - j0);
    dequantize_rows(w, j0, rows, tile.data());
    fn(j0, rows, tile.data());
  }
}

// Rows of x quantized to 8 bits for the q8_0 / q4_0 dot kernels.
struct QuantizedRows {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  int64_t k = 0, nb = 0;
  QuantizedRows(const kern::Table& K, const float* x, int64_t n, int64_t k_)
      : qs(size_t(n * k_)), d(size_t(n * (k_ / kQK))), s(d.size()), k(k_), nb(k_ / kQK) {
    for (int64_t i = 0; i < n; ++i) K.quantize_q8_act(x + i * k, row(i), k);
  }
  Q8Act row(int64_t i) { return Q8Act{qs.data() + i * k, d.data() + i * nb, s.data() + i * nb}; }
};

// y[n, m] = x[n, k] · wᵀ for non-f32 w and few rows: each weight row is read once.
void matvec(const float* x, const Tensor& w, float* y, const Dims& d) {
  const kern::Table& K = kern::active();
  const size_t rb = row_bytes(w.dtype(), d.k);
  const uint8_t* wp = w.raw();
  const DType t = w.dtype();
  const bool quant = t == DType::Q8_0 || t == DType::Q4_0;
  QuantizedRows xq(K, x, quant ? d.n : 0, d.k);
  // Rows shared out guided (parallel_for_guided): memory-bound, long contiguous runs first and
  // short ones at the end, as one core often streams faster than the other.
  // f16 / bf16 times several rows: each weight row widened once, then f32 dots (the same sums
  // as dot_f16 / dot_bf16 give, which widen the same values in the same lanes).
  const bool widen = d.n > 1 && (t == DType::F16 || t == DType::BF16);
  parallel_for_guided(d.m, 16, [&](int64_t a, int64_t b) {
    thread_local std::vector<float> wide;
    for (int64_t j = a; j < b; ++j) {
      const uint8_t* row = wp + size_t(j) * rb;
      if (widen) {
        wide.resize(size_t(d.k));
        if (t == DType::F16) K.f16_to_f32(reinterpret_cast<const uint16_t*>(row), wide.data(), d.k);
        else K.bf16_to_f32(reinterpret_cast<const uint16_t*>(row), wide.data(), d.k);
        for (int64_t i = 0; i < d.n; ++i) y[i * d.m + j] = K.dot_f32(wide.data(), x + i * d.k, d.k);
        continue;
      }
      for (int64_t i = 0; i < d.n; ++i) {
        float v;
        switch (t) {
          case DType::F16: v = K.dot_f16(reinterpret_cast<const uint16_t*>(row), x + i * d.k, d.k); break;
          case DType::BF16: v = K.dot_bf16(reinterpret_cast<const uint16_t*>(row), x + i * d.k, d.k); break;
          case DType::Q8_0: v = K.dot_q8_0(row, xq.row(i), d.k); break;
          case DType::Q4_0: v = K.dot_q4_0(row, xq.row(i), d.k); break;
          default: v = K.dot_f32(reinterpret_cast<const float*>(row), x + i * d.k, d.k); break;
        }
        y[i * d.m + j] = v;
      }
    }
  });
}

// The n rows of x [n, k] as q8_K activations (k / 256 blocks a row), the rows in parallel.
std::vector<BlockQ8K> quantize_rows_q8_K(const float* x, int64_t n, int64_t k) {
  const int64_t nbk = k / kQK_K;
  std::vector<BlockQ8K> xq(size_t(n * nbk));
  parallel_for(n, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) quantize_row_q8_K(x + i * k, xq.data() + i * nbk, k);
  });
  return xq;
}

// y[n, m] = x[n, k] · wᵀ for K-quant w: every row, prompt or decode, through the q8_K products
// llama.cpp computes (its logits are matched only so). Each weight row meets up to kGemmRows
// activation rows per call, its blocks unpacked once for all of them.
void matvec_k(const float* x, const Tensor& w, float* y, const Dims& d) {
  const kern::Table& K = kern::active();
  const int64_t nbk = d.k / kQK_K;
  const std::vector<BlockQ8K> xq = quantize_rows_q8_K(x, d.n, d.k);
  const auto gemm = kern::gemm_k(K, w.dtype());
  const size_t rb = row_bytes(w.dtype(), d.k);
  parallel_for_guided(d.m, 16, [&](int64_t a, int64_t b) {
    for (int64_t i0 = 0; i0 < d.n; i0 += kern::kGemmRows) {
      const int rows = int(std::min<int64_t>(kern::kGemmRows, d.n - i0));
      const BlockQ8K* xr = xq.data() + i0 * nbk;
      for (int64_t j = a; j < b; ++j) {
        const void* row = w.raw() + size_t(j) * rb;
        gemm(row, xr, nbk, rows, d.k, y + i0 * d.m + j, d.m);
      }
    }
  });
}

// y_i[n, m_i] = x[n, k] · w_iᵀ for weights packed in 16-row tiles (q4_0 or q8_0, each with its
// kernels) of width k: x quantized once, then the tiles of all the weights, in order, in pairs,
// shared out guided in one parallel region (contiguous runs of pairs, shorter towards the end).
// One row (decode): the two-tile kernel, one pass over x for 32 rows (a weight's odd last tile
// alone). More rows (batched decode, prefill): each tile meets up to kGemmRows rows per pass,
// read and unpacked once for all of them; every row's values are those the one-row kernel gives.
void matvec_packed(const float* x, int64_t n, int64_t k, const std::vector<const PreparedWeight*>& ws,
                   const std::vector<float*>& ys) {
  const kern::Table& K = kern::active();
  const int64_t nb = k / kQK;
  std::vector<int64_t> first_pair{0};
  for (const PreparedWeight* w : ws)
    first_pair.push_back(first_pair.back() + (w->tensor().dim(0) + 2 * kPackRows - 1) / (2 * kPackRows));
  QuantizedRows xq(K, x, n, k);
  parallel_for_guided(first_pair.back(), 1, [&](int64_t a, int64_t b) {
    constexpr int64_t kOut = 2 * kPackRows;
    float out[kern::kGemmRows * kOut];
    Q8Act xs[kern::kGemmRows];
    size_t wi = 0;
    for (int64_t p = a; p < b; ++p) {
      while (p >= first_pair[wi + 1]) ++wi;
      const PreparedWeight& w = *ws[wi];
      const int64_t m = w.tensor().dim(0), j0 = (p - first_pair[wi]) * kOut, lt = j0 / kPackRows;
      const int64_t rows = std::min(kOut, m - j0), tiles = rows > kPackRows ? 2 : 1;
      for (int64_t i0 = 0; i0 < n; i0 += kern::kGemmRows) {
        const int nr = int(std::min<int64_t>(kern::kGemmRows, n - i0));
        for (int r = 0; r < nr; ++r) xs[r] = xq.row(i0 + r);
        // The pair's tiles (from `first`) times the rows, with the kernels of their type.
        auto run = [&](const auto* first, auto one, auto pair, auto many) {
          if (nr > 1)
            for (int64_t t = 0; t < tiles; ++t) many(first + t * nb, xs, nr, k, out + t * kPackRows, kOut);
          else if (tiles == 2) pair(first, xs[0], k, out);
          else one(first, xs[0], k, out);
        };
        if (w.tiles()) run(w.tiles() + lt * nb, K.gemv_q4_0x16, K.gemv_q4_0x16x2, K.gemm_q4_0x16);
        else run(w.tiles_q8() + lt * nb, K.gemv_q8_0x16, K.gemv_q8_0x16x2, K.gemm_q8_0x16);
        for (int r = 0; r < nr; ++r) std::copy(out + r * kOut, out + r * kOut + rows, ys[wi] + (i0 + r) * m + j0);
      }
    }
  });
}

// A q4_0 / q8_0 matrix [m, k] in 16-row tiles (Tile = BlockQ4_0x16 / BlockQ8_0x16 from Block =
// BlockQ4_0 / BlockQ8_0): chunk c of a tile block holds bytes 4c..4c+3 of each row's qs. Rows
// past m are zero (scale 0) and yield 0.
template <typename Tile, typename Block>
std::shared_ptr<const Storage> pack_tiles(const Tensor& w) {
  constexpr int kChunks = int(sizeof(Tile::qs) / sizeof(Tile::qs[0]));
  static_assert(kChunks * 4 == int(sizeof(Block::qs)), "a chunk takes 4 bytes of each row's block");
  const int64_t m = w.dim(0), k = w.dim(1), nb = k / kQK, n_tiles = (m + kPackRows - 1) / kPackRows;
  std::shared_ptr<Storage> storage = Storage::allocate(size_t(n_tiles * nb) * sizeof(Tile));
  Tile* out = reinterpret_cast<Tile*>(storage->data());
  const Block* src = reinterpret_cast<const Block*>(w.raw());
  parallel_for(n_tiles, 16, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t)
      for (int64_t i = 0; i < nb; ++i) {
        Tile& o = out[t * nb + i];
        std::memset(&o, 0, sizeof(o));
        for (int64_t r = 0; r < kPackRows && t * kPackRows + r < m; ++r) {
          const Block& blk = src[(t * kPackRows + r) * nb + i];
          o.d[r] = blk.d;
          for (int c = 0; c < kChunks; ++c) std::memcpy(o.qs[c] + 4 * r, blk.qs + 4 * c, 4);
        }
      }
  });
  return storage;
}

// A q4_K / q6_K matrix [m, k] (m a multiple of 8) in 8-row tiles.
template <typename Tile, typename Block>
std::shared_ptr<const Storage> pack_k_tiles(const Tensor& w) {
  const int64_t m = w.dim(0), k = w.dim(1), nb = k / kQK_K, n_tiles = m / kKPackRows;
  std::shared_ptr<Storage> storage = Storage::allocate(size_t(n_tiles * nb) * sizeof(Tile));
  Tile* out = reinterpret_cast<Tile*>(storage->data());
  const Block* src = reinterpret_cast<const Block*>(w.raw());
  parallel_for(n_tiles, 1, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t)
      for (int64_t i = 0; i < nb; ++i)
        for (int r = 0; r < int(kKPackRows); ++r) pack_tile_row(src[(t * kKPackRows + r) * nb + i], r, out[t * nb + i]);
  });
  return storage;
}

// y[n, m] = x[n, k] · wᵀ for a q4_K / q6_K matrix in 8-row tiles: x quantized to q8_K once, the
// tiles shared out among the threads, each tile meeting every row of x while it sits in L1.
template <typename Tile>
void matvec_k_tiles(const float* x, int64_t n, int64_t k, int64_t m, const Tile* tiles,
                    void (*gemm)(const Tile*, const BlockQ8K*, int64_t, int, int64_t, float*, int64_t), float* y) {
  const int64_t nbk = k / kQK_K;
  const std::vector<BlockQ8K> xq = quantize_rows_q8_K(x, n, k);
  parallel_for_guided(m / kKPackRows, 4, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t)
      for (int64_t i0 = 0; i0 < n; i0 += kern::kGemmRows)
        gemm(tiles + t * nbk, xq.data() + i0 * nbk, nbk, int(std::min<int64_t>(kern::kGemmRows, n - i0)), k, y + i0 * m + t * kKPackRows, m);
  });
}

// A contiguous tensor copied into new memory on every thread, 2 MiB at a time: the copy, and the
// kernel's zeroing of each fresh huge page at first touch, are most of a large model's load.
Tensor copy_in_parallel(const Tensor& w) {
  Tensor out = Tensor::empty(w.shape(), w.dtype());
  constexpr int64_t kChunk = int64_t(2) << 20;
  const int64_t bytes = int64_t(w.nbytes());
  parallel_for((bytes + kChunk - 1) / kChunk, 1, [&](int64_t a, int64_t b) {
    const int64_t begin = a * kChunk, end = std::min(bytes, b * kChunk);
    std::memcpy(out.raw() + begin, w.raw() + begin, size_t(end - begin));
  });
  return out;
}

void add_bias(float* y, const float* b, int64_t n, int64_t m) {
  parallel_for(n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < m; ++j) y[i * m + j] += b[j];
  });
}

}  // namespace

Tensor matmul(const Tensor& x, const Tensor& w_in, const Tensor* bias) {
  const Dims d = check_matmul(x, w_in, bias, "matmul");
  const Tensor xc = x.contiguous();
  const Tensor w = w_in.contiguous();
  Tensor y = Tensor::empty(out_shape(x, d.m));
  const float* xp = xc.data<float>();
  float* yp = y.data<float>();
  if (w.dtype() == DType::F32) {
    sgemm(false, true, d.n, d.m, d.k, xp, d.k, w.data<float>(), d.k, 0.0f, yp, d.m);
  } else if (is_k_quant(w.dtype())) {
    matvec_k(xp, w, yp, d);
  } else if (d.n < kMatvecMaxRows || w.dtype() == DType::Q8_0 || w.dtype() == DType::Q4_0) {
    matvec(xp, w, yp, d);
  } else {
    for_each_f32_tile(w, d.m, d.k, [&](int64_t j0, int64_t rows, const float* tile) {
      sgemm(false, true, d.n, rows, d.k, xp, d.k, tile, d.k, 0.0f, yp + j0, d.m);
    });
  }
  if (bias) add_bias(yp, bias->contiguous().data<float>(), d.n, d.m);
  return y;
}

PreparedWeight::PreparedWeight(Tensor w) : w_(w.contiguous()) {
  OCELLUS_CHECK(w_.ndim() == 2, "PreparedWeight: weight must be 2-D [m, k], got ", w_.shape().str());
  // A memory-mapped matrix is copied into huge-page memory: decode streams it every token, and
  // through a file mapping's 4 KiB pages that costs a TLB miss per page (as llama.cpp's
  // --no-mmap trades load time for speed). q4_0 / q8_0 get their repacked copies instead.
  const Tensor source = w_;
  const bool k_tiles = (w_.dtype() == DType::Q4_K || w_.dtype() == DType::Q6_K) && w_.dim(0) % kKPackRows == 0;
  if (w_.is_mapped() && w_.dtype() != DType::Q4_0 && w_.dtype() != DType::Q8_0 && !k_tiles) w_ = copy_in_parallel(w_);
  if (w_.dtype() == DType::Q4_0) packed_ = pack_tiles<BlockQ4_0x16, BlockQ4_0>(w_);
  if (w_.dtype() == DType::Q8_0) packed8_ = pack_tiles<BlockQ8_0x16, BlockQ8_0>(w_);
  if (k_tiles && w_.dtype() == DType::Q4_K) packed_k_ = pack_k_tiles<BlockQ4Kx8, BlockQ4K>(w_);
  if (k_tiles && w_.dtype() == DType::Q6_K) packed_k_ = pack_k_tiles<BlockQ6Kx8, BlockQ6K>(w_);
  // Every mapped matrix was copied or repacked above: its pages in the file leave resident
  // memory (the model held once, not twice; copying measured faster for decode than streaming
  // the mapping's 4 KiB pages). A no-op for a matrix already in memory.
  source.release_mapped_pages();
}

Tensor matmul(const Tensor& x, const PreparedWeight& w, const Tensor* bias) {
  const Dims d = check_matmul(x, w.tensor(), bias, "matmul");
  if (!w.packed() && !w.tiles_q4_K() && !w.tiles_q6_K()) return matmul(x, w.tensor(), bias);
  const kern::Table& K = kern::active();
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(out_shape(x, d.m));
  if (w.tiles_q4_K()) matvec_k_tiles(xc.data<float>(), d.n, d.k, d.m, w.tiles_q4_K(), K.gemm_q4_Kx8, y.data<float>());
  else if (w.tiles_q6_K()) matvec_k_tiles(xc.data<float>(), d.n, d.k, d.m, w.tiles_q6_K(), K.gemm_q6_Kx8, y.data<float>());
  else matvec_packed(xc.data<float>(), d.n, d.k, {&w}, {y.data<float>()});
  if (bias) add_bias(y.data<float>(), bias->contiguous().data<float>(), d.n, d.m);
  return y;
}

std::vector<Tensor> linear_many(const Tensor& x, const std::vector<std::pair<const PreparedWeight*, Tensor>>& layers,
                                bool ggml_order) {
  std::vector<Tensor> out;
  bool fused = x.ndim() == 2 && x.dim(0) <= kern::kGemmRows;  // one pass over the tiles
  for (const auto& [w, b] : layers) fused = fused && w->packed();
  if (!fused) {
    for (const auto& [w, b] : layers) out.push_back(linear(x, *w, b, ggml_order));
    return out;
  }
  std::vector<const PreparedWeight*> ws;
  std::vector<float*> ys;
  int64_t k = 0;
  for (const auto& [w, b] : layers) {
    const Dims d = check_matmul(x, w->tensor(), b.defined() ? &b : nullptr, "linear_many");
    out.push_back(Tensor::empty({d.n, d.m}));
    ws.push_back(w), ys.push_back(out.back().data<float>()), k = d.k;
  }
  const Tensor xc = x.contiguous();
  matvec_packed(xc.data<float>(), x.dim(0), k, ws, ys);
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].second.defined())
      add_bias(out[i].data<float>(), layers[i].second.contiguous().data<float>(), x.dim(0), out[i].dim(1));
  return out;
}

Tensor matmul_ggml_order(const Tensor& x, const PreparedWeight& pw, const Tensor* bias) {
  const Tensor& w = pw.tensor();
  if (w.dtype() != DType::F32) return matmul(x, pw, bias);
  const Dims d = check_matmul(x, w, bias, "matmul_ggml_order");
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(out_shape(x, d.m));
  const float *xp = xc.data<float>(), *wp = w.data<float>();
  float* yp = y.data<float>();
  const kern::Table& K = kern::active();
  parallel_for(d.m, 16, [&](int64_t a, int64_t b) {
    for (int64_t j = a; j < b; ++j)
      for (int64_t i = 0; i < d.n; ++i) yp[i * d.m + j] = K.dot_f32_ggml(wp + j * d.k, xp + i * d.k, d.k);
  });
  if (bias) add_bias(yp, bias->contiguous().data<float>(), d.n, d.m);
  return y;
}

void matmul_backward(const Tensor& x, const Tensor& w_in, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db, bool dx_overwrite) {
  const Dims d = check_matmul(x, w_in, nullptr, "matmul_backward");
  detail::require_f32(dy, "matmul_backward", "dy");
  OCELLUS_CHECK(dy.shape() == out_shape(x, d.m), "matmul_backward: dy has shape ",
                dy.shape().str(), ", expected ", out_shape(x, d.m).str());
  detail::check_grad(dx, x.shape(), "matmul_backward", "dx");
  detail::check_grad(dw, w_in.shape(), "matmul_backward", "dw");
  OCELLUS_CHECK(!dw || w_in.dtype() == DType::F32, "matmul_backward: weight gradient needs f32 "
                "weights, got ", dtype_name(w_in.dtype()));
  if (db) OCELLUS_CHECK(db->numel() == d.m && db->is_contiguous(), "matmul_backward: db must hold ",
                        d.m, " values");
  const Tensor dyc = dy.contiguous();
  const float* g = dyc.data<float>();
  if (dx && dw && w_in.dtype() == DType::F32 && num_threads() >= 2) {
    // dx = dy · w and dw += dyᵀ · x side by side: the same flops each, so the threads split into
    // two halves, every thread running its own row range of one product single-threaded
    // (OpenBLAS's OpenMP build runs one thread inside a parallel region). Two independent
    // products then share no packed operand and wait at no barrier inside OpenBLAS: 10-25%
    // faster than the two run one after the other on all threads at a training step's shapes.
    const Tensor w = w_in.contiguous(), xc = x.contiguous();
    const int T = num_threads();
    const int64_t half = T % 2 == 0 ? T / 2 : T;  // pieces per product: T pieces in all, or 2T when T is odd
    float* dxp = dx->data<float>();
    float* dwp = dw->data<float>();
    const float* wp = w.data<float>();
    const float* xp = xc.data<float>();
    parallel_for(2 * half, 1, [&](int64_t a, int64_t b) {
      for (int64_t piece = a; piece < b; ++piece) {
        const int64_t q = piece % half;
        if (piece < half) {  // rows [r0, r1) of dx
          const int64_t r0 = d.n * q / half, r1 = d.n * (q + 1) / half;
          sgemm_here(false, false, r1 - r0, d.k, d.m, g + r0 * d.m, d.m, wp, d.k, dx_overwrite ? 0.0f : 1.0f, dxp + r0 * d.k, d.k);
        } else {  // rows [j0, j1) of dw
          const int64_t j0 = d.m * q / half, j1 = d.m * (q + 1) / half;
          sgemm_here(true, false, j1 - j0, d.k, d.n, g + j0, d.m, xp, d.k, 1.0f, dwp + j0 * d.k, d.k);
        }
      }
    });
    dx = dw = nullptr;  // done
  }
  if (dx) {
    const Tensor w = w_in.contiguous();
    if (w.dtype() == DType::F32) {
      sgemm(false, false, d.n, d.k, d.m, g, d.m, w.data<float>(), d.k, dx_overwrite ? 0.0f : 1.0f, dx->data<float>(), d.k);
    } else {
      if (dx_overwrite) std::memset(dx->raw(), 0, dx->nbytes());
      for_each_f32_tile(w, d.m, d.k, [&](int64_t j0, int64_t rows, const float* tile) {
        sgemm(false, false, d.n, d.k, rows, g + j0, d.m, tile, d.k, 1.0f, dx->data<float>(), d.k);
      });
    }
  }
  if (dw) {
    const Tensor xc = x.contiguous();
    sgemm(true, false, d.m, d.k, d.n, g, d.m, xc.data<float>(), d.k, 1.0f, dw->data<float>(), d.k);
  }
  if (db) {
    float* b = db->data<float>();
    parallel_for(d.m, 256, [&](int64_t j0, int64_t j1) {
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t j = j0; j < j1; ++j) b[j] += g[i * d.m + j];
    });
  }
}

namespace ref {

static std::vector<float> weight_row(const Tensor& w, int64_t j) {
  const int64_t k = w.dim(1);
  std::vector<float> r(static_cast<size_t>(k));
  const uint8_t* p = w.row_ptr(j);
  switch (w.dtype()) {
    case DType::F32:
      for (int64_t i = 0; i < k; ++i) r[i] = *reinterpret_cast<const float*>(p + i * w.stride(1));
      break;
    case DType::F16:
      for (int64_t i = 0; i < k; ++i) r[i] = fp16_to_f32(*reinterpret_cast<const uint16_t*>(p + i * w.stride(1)));
      break;
    case DType::BF16:
      for (int64_t i = 0; i < k; ++i) r[i] = bf16_to_f32(*reinterpret_cast<const uint16_t*>(p + i * w.stride(1)));
      break;
    case DType::Q8_0: dequantize_row_q8_0(reinterpret_cast<const BlockQ8_0*>(p), r.data(), k); break;
    case DType::Q4_0: dequantize_row_q4_0(reinterpret_cast<const BlockQ4_0*>(p), r.data(), k); break;
    default: dequantize_row_k(w.dtype(), p, r.data(), k); break;  // the K-quants' scalar reference
  }
  return r;
}

Tensor matmul(const Tensor& x, const Tensor& w, const Tensor* bias) {
  const Dims d = check_matmul(x, w, bias, "ref::matmul");
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(out_shape(x, d.m));
  for (int64_t j = 0; j < d.m; ++j) {
    const std::vector<float> wr = weight_row(w, j);
    for (int64_t i = 0; i < d.n; ++i) {
      double s = bias ? double(bias->contiguous().data<float>()[j]) : 0.0;
      for (int64_t t = 0; t < d.k; ++t) s += double(xc.data<float>()[i * d.k + t]) * wr[t];
      y.data<float>()[i * d.m + j] = float(s);
    }
  }
  return y;
}

float dot_ggml_order(const float* w, const float* x, int64_t n) {
  const int64_t body = n / 16 * 16;
  float lane[16] = {};
  for (int64_t i = 0; i < body; ++i) lane[i % 16] = std::fma(w[i], x[i], lane[i % 16]);
  auto quarter = [&](int t) { return (lane[t] + lane[t + 8]) + (lane[t + 4] + lane[t + 12]); };
  float s = (quarter(0) + quarter(2)) + (quarter(1) + quarter(3));
  for (int64_t i = body; i < n; ++i) s = std::fma(w[i], x[i], s);
  return s;
}

Tensor matmul_ggml_order(const Tensor& x, const PreparedWeight& pw, const Tensor* bias) {
  const Tensor& w = pw.tensor();
  if (w.dtype() != DType::F32) return matmul(x, w, bias);
  const Dims d = check_matmul(x, w, bias, "ref::matmul_ggml_order");
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(out_shape(x, d.m));
  for (int64_t j = 0; j < d.m; ++j) {
    const std::vector<float> wr = weight_row(w, j);
    for (int64_t i = 0; i < d.n; ++i) {
      const float s = dot_ggml_order(wr.data(), xc.data<float>() + i * d.k, d.k);
      y.data<float>()[i * d.m + j] = bias ? s + bias->at({j}) : s;
    }
  }
  return y;
}

void matmul_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                     Tensor* db) {
  const Dims d = check_matmul(x, w, nullptr, "ref::matmul_backward");
  const Tensor xc = x.contiguous(), g = dy.contiguous();
  const float* xp = xc.data<float>();
  const float* gp = g.data<float>();
  for (int64_t j = 0; j < d.m; ++j) {
    const std::vector<float> wr = weight_row(w, j);
    for (int64_t i = 0; i < d.n; ++i) {
      const float gij = gp[i * d.m + j];
      if (dx) for (int64_t t = 0; t < d.k; ++t) dx->data<float>()[i * d.k + t] += gij * wr[t];
      if (dw) for (int64_t t = 0; t < d.k; ++t) dw->data<float>()[j * d.k + t] += gij * xp[i * d.k + t];
      if (db) db->data<float>()[j] += gij;
    }
  }
}

}  // namespace ref
}  // namespace ocellus::ops
