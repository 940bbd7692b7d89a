#include "ocellus/ops/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ocellus/core/threads.h"
#include "ops/kernels/kernels.h"
#include "ops/util.h"

namespace ocellus::ops {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kKeyBlock = 128;  // keys scored at once per query

struct Dims {
  int64_t n_q, n_kv, n_head, n_kv_head, d, dv, group;
};

Dims check(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p, const char* op) {
  detail::require_f32(q, op, "q");
  detail::require_f32(k, op, "k");
  detail::require_f32(v, op, "v");
  OCELLUS_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3, op,
                ": q, k, v must be [tokens, heads, head_dim]");
  Dims d{q.dim(0), k.dim(0), q.dim(1), k.dim(1), q.dim(2), v.dim(2), 0};
  OCELLUS_CHECK(k.dim(2) == d.d, op, ": q head_dim ", d.d, " != k head_dim ", k.dim(2));
  OCELLUS_CHECK(v.dim(0) == d.n_kv && v.dim(1) == d.n_kv_head, op, ": v ", v.shape().str(),
                " does not match k ", k.shape().str());
  OCELLUS_CHECK(d.n_kv_head > 0 && d.n_head % d.n_kv_head == 0, op, ": ", d.n_head,
                " query heads are not a multiple of ", d.n_kv_head, " kv heads");
  OCELLUS_CHECK(!p.causal || d.n_kv >= d.n_q, op, ": causal attention needs n_kv >= n_q");
  if (p.mask) {
    detail::require_f32(*p.mask, op, "mask");
    OCELLUS_CHECK(p.mask->shape() == Shape({d.n_q, d.n_kv}), op, ": mask must be [", d.n_q, ", ",
                  d.n_kv, "], got ", p.mask->shape().str());
  }
  d.group = d.n_head / d.n_kv_head;
  return d;
}

// Keys [0, end) a query may see (causal), and the additive mask value of key j.
inline int64_t key_end(const Dims& d, const AttentionParams& p, int64_t i) {
  return p.causal ? i + (d.n_kv - d.n_q) + 1 : d.n_kv;
}

struct Inputs {
  Tensor q, k, v, mask;
  const float *qp, *kp, *vp, *mp = nullptr;
  Inputs(const Tensor& q_, const Tensor& k_, const Tensor& v_, const AttentionParams& p)
      : q(q_.contiguous()), k(k_.contiguous()), v(v_.contiguous()), mask(p.mask ? p.mask->contiguous() : Tensor()),
        qp(q.data<float>()), kp(k.data<float>()), vp(v.data<float>()), mp(p.mask ? mask.data<float>() : nullptr) {}
};

// Score of query row (i, h) against key j: scale * q·k + mask.
inline float score(const Inputs& in, const Dims& d, const AttentionParams& p, const kern::Table& K,
                   int64_t i, int64_t h, int64_t j) {
  const float* qr = in.qp + (i * d.n_head + h) * d.d;
  const float* kr = in.kp + (j * d.n_kv_head + h / d.group) * d.d;
  float s = p.scale * K.dot_f32(qr, kr, d.d);
  if (in.mp) s += in.mp[i * d.n_kv + j];
  return s;
}

}  // namespace

float expf_ggml(float x) {
  // exp(x) = 2^n * exp(b), n = round(x / ln 2) (found by adding and removing 1.5 * 2^23),
  // b = x - n ln 2 in two steps (ln 2 split into a short high part and a correction).
  const float shift = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shift);
  const float n = z - shift;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (n < -192.0f) return 0.0f;
  if (n > 192.0f) return std::numeric_limits<float>::infinity();
  return std::ldexp(j, int(n));
}

Tensor attention_ggml_order(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const AttentionParams p;
  const Dims d = check(q, k, v, p, "attention_ggml_order");
  const Inputs in(q, k, v, p);
  Tensor out = Tensor::empty({d.n_q, d.n_head, d.dv});
  float* op = out.data<float>();
  constexpr int64_t kQueries = 32;  // queries per task; the head's keys are transposed once per task
  const int64_t n_blocks = (d.n_q + kQueries - 1) / kQueries;
  parallel_for(d.n_head * n_blocks, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> kt(size_t(d.d * d.n_kv)), qs(size_t(d.d)), row(size_t(d.n_kv));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t h = r / n_blocks, hk = h / d.group, i0 = (r % n_blocks) * kQueries;
      for (int64_t j = 0; j < d.n_kv; ++j)  // kt[t][j]: the inner loops below run over keys / channels,
        for (int64_t t = 0; t < d.d; ++t)   // each lane its own sequential sum (vectorizes, same rounding)
          kt[size_t(t * d.n_kv + j)] = in.kp[(j * d.n_kv_head + hk) * d.d + t];
      for (int64_t i = i0; i < std::min(d.n_q, i0 + kQueries); ++i) {
        const float* qr = in.qp + (i * d.n_head + h) * d.d;
        for (int64_t t = 0; t < d.d; ++t) qs[size_t(t)] = qr[t] * scale;
        float* sc = row.data();
        for (int64_t j = 0; j < d.n_kv; ++j) sc[j] = 0.0f;
        for (int64_t t = 0; t < d.d; ++t) {  // score j: sum over t of k*q, each product rounded
          const float qt = qs[size_t(t)];
          const float* kr = kt.data() + t * d.n_kv;
          for (int64_t j = 0; j < d.n_kv; ++j) sc[j] += kr[j] * qt;
        }
        float mx = kNegInf;
        for (int64_t j = 0; j < d.n_kv; ++j) mx = std::max(mx, sc[j]);
        double sum = 0.0;
        int64_t j = 0;
        for (; j + 16 <= d.n_kv; j += 16) {
          float e[16], h8[8], h4[4];
          for (int t = 0; t < 16; ++t) sc[j + t] = e[t] = expf_ggml(sc[j + t] - mx);
          for (int t = 0; t < 8; ++t) h8[t] = e[t + 8] + e[t];  // the 512-bit register's reduction tree
          for (int t = 0; t < 4; ++t) h4[t] = h8[t + 4] + h8[t];
          sum += double((h4[0] + h4[2]) + (h4[1] + h4[3]));
        }
        for (; j < d.n_kv; ++j) {
          sc[j] = std::exp(sc[j] - mx);
          sum += double(sc[j]);
        }
        const float inv = float(1.0 / sum);
        for (int64_t t = 0; t < d.n_kv; ++t) sc[t] *= inv;
        float* o = op + (i * d.n_head + h) * d.dv;
        for (int64_t c = 0; c < d.dv; ++c) o[c] = 0.0f;
        for (int64_t t = 0; t < d.n_kv; ++t) {  // output c: sum over keys of v*p, each product rounded
          const float pt = sc[t];
          const float* vr = in.vp + (t * d.n_kv_head + hk) * d.dv;
          for (int64_t c = 0; c < d.dv; ++c) o[c] += vr[c] * pt;
        }
      }
    }
  });
  return out;
}

namespace {

constexpr int64_t kGemmQueries = 64;  // queries per block of the GEMM form

// Many queries (prefill, vision towers): per head and block of 64 queries, the scores as one
// GEMM against the keys, an exact softmax over each row, then one GEMM with the values. Memory
// O(64 * n_kv) per thread, so still O(seq) per head. OpenBLAS runs single-threaded inside the
// parallel region (its OpenMP build does so by itself); the blocks are the parallelism.
void attention_gemm(const Inputs& in, const Dims& d, const AttentionParams& p, float* op, Tensor* lse) {
  const int64_t n_blocks = (d.n_q + kGemmQueries - 1) / kGemmQueries;
  const int64_t ldq = d.n_head * d.d, ldk = d.n_kv_head * d.d, ldv = d.n_kv_head * d.dv, ldo = d.n_head * d.dv;
  const kern::Table& K = kern::active();
  parallel_for_dynamic(d.n_head * n_blocks, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> S;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t h = r / n_blocks, hk = h / d.group, i0 = (r % n_blocks) * kGemmQueries;
      const int64_t nb = std::min(kGemmQueries, d.n_q - i0);
      const int64_t kend = key_end(d, p, i0 + nb - 1);  // keys the block's last query sees
      float* o = op + i0 * ldo + h * d.dv;
      if (kend <= 0) {
        for (int64_t i = 0; i < nb; ++i)
          for (int64_t c = 0; c < d.dv; ++c) o[i * ldo + c] = 0.0f;
        if (lse) for (int64_t i = 0; i < nb; ++i) lse->data<float>()[h * d.n_q + i0 + i] = kNegInf;
        continue;
      }
      S.resize(size_t(nb * kend));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nb), int(kend), int(d.d), p.scale, in.qp + i0 * ldq + h * d.d,
                  int(ldq), in.kp + hk * d.d, int(ldk), 0.0f, S.data(), int(kend));
      for (int64_t i = 0; i < nb; ++i) {
        float* s = S.data() + i * kend;
        const int64_t end = key_end(d, p, i0 + i);
        if (in.mp)
          for (int64_t j = 0; j < end; ++j) s[j] += in.mp[(i0 + i) * d.n_kv + j];
        const float m = detail::lane_max(end, [s](int64_t j) { return s[j]; });
        double sum = 0;
        if (m != kNegInf) {
          K.exp_affine(s, 1.0f, -m, s, end);  // vectorized exp (within 2 ulp)
          sum = detail::lane_sum(end, [s](int64_t j) { return s[j]; });
        }
        const float inv = sum > 0 ? float(1.0 / sum) : 0.0f;
        for (int64_t j = 0; j < end; ++j) s[j] = m != kNegInf ? s[j] * inv : 0.0f;
        for (int64_t j = end; j < kend; ++j) s[j] = 0.0f;  // causal: keys past this query
        if (lse) lse->data<float>()[h * d.n_q + i0 + i] = sum > 0 ? m + float(std::log(sum)) : kNegInf;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nb), int(d.dv), int(kend), 1.0f, S.data(), int(kend),
                  in.vp + hk * d.dv, int(ldv), 0.0f, o, int(ldo));
    }
  });
}

// The backward in the same GEMM form: per kv head (its gradients are owned by one task), per
// query head of its group and block of 64 queries, the probabilities recomputed from lse, then
// dV += Pᵀ dO, dP = dO Vᵀ, dS = P (dP − D), dQ += scale dS K, dK += scale dSᵀ Q.
void attention_backward_gemm(const Inputs& in, const Dims& d, const AttentionParams& p, const float* g, const float* L,
                             const std::vector<float>& D, float* dqp, float* dkp, float* dvp) {
  const int64_t n_blocks = (d.n_q + kGemmQueries - 1) / kGemmQueries;
  const int64_t ldq = d.n_head * d.d, ldk = d.n_kv_head * d.d, ldv = d.n_kv_head * d.dv, ldo = d.n_head * d.dv;
  const kern::Table& K = kern::active();
  parallel_for_dynamic(d.n_kv_head, 1, [&](int64_t k0, int64_t k1) {
    std::vector<float> P, dS;
    for (int64_t hk = k0; hk < k1; ++hk)
      for (int64_t h = hk * d.group; h < (hk + 1) * d.group; ++h)
        for (int64_t b = 0; b < n_blocks; ++b) {
          const int64_t i0 = b * kGemmQueries, nb = std::min(kGemmQueries, d.n_q - i0);
          const int64_t kend = key_end(d, p, i0 + nb - 1);
          if (kend <= 0) continue;
          P.resize(size_t(nb * kend)), dS.resize(size_t(nb * kend));
          const float* qb = in.qp + i0 * ldq + h * d.d;
          const float* gb = g + i0 * ldo + h * d.dv;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nb), int(kend), int(d.d), p.scale, qb, int(ldq),
                      in.kp + hk * d.d, int(ldk), 0.0f, P.data(), int(kend));
          for (int64_t i = 0; i < nb; ++i) {
            float* pr = P.data() + i * kend;
            const int64_t end = key_end(d, p, i0 + i);
            const float lv = L[h * d.n_q + i0 + i];
            if (lv != kNegInf) {
              if (in.mp)
                for (int64_t j = 0; j < end; ++j) pr[j] += in.mp[(i0 + i) * d.n_kv + j];
              K.exp_affine(pr, 1.0f, -lv, pr, end);  // vectorized exp (within 2 ulp)
            } else {
              std::fill(pr, pr + end, 0.0f);
            }
            std::fill(pr + end, pr + kend, 0.0f);
          }
          if (dvp)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(kend), int(d.dv), int(nb), 1.0f, P.data(), int(kend), gb,
                        int(ldo), 1.0f, dvp + hk * d.dv, int(ldv));
          if (!dqp && !dkp) continue;
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nb), int(kend), int(d.dv), 1.0f, gb, int(ldo),
                      in.vp + hk * d.dv, int(ldv), 0.0f, dS.data(), int(kend));
          for (int64_t i = 0; i < nb; ++i) {
            const float Di = D[size_t(h * d.n_q + i0 + i)];
            float *ds = dS.data() + i * kend, *pr = P.data() + i * kend;
            for (int64_t j = 0; j < kend; ++j) ds[j] = pr[j] * (ds[j] - Di);
          }
          if (dqp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nb), int(d.d), int(kend), p.scale, dS.data(), int(kend),
                        in.kp + hk * d.d, int(ldk), 1.0f, dqp + i0 * ldq + h * d.d, int(ldq));
          if (dkp)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(kend), int(d.d), int(nb), p.scale, dS.data(), int(kend),
                        qb, int(ldq), 1.0f, dkp + hk * d.d, int(ldk));
        }
  });
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                 Tensor* lse) {
  const Dims d = check(q, k, v, p, "attention");
  const Inputs in(q, k, v, p);
  Tensor out = Tensor::empty({d.n_q, d.n_head, d.dv});
  if (lse) *lse = Tensor::empty({d.n_head, d.n_q});
  if (!p.f16_probs && d.n_q >= kGemmQueries / 4) {
    attention_gemm(in, d, p, out.data<float>(), lse);
    return out;
  }
  float* op = out.data<float>();
  const kern::Table& K = kern::active();
  parallel_for(d.n_q * d.n_head, 4, [&](int64_t r0, int64_t r1) {
    std::vector<float> s(static_cast<size_t>(kKeyBlock));
    std::vector<float> row;  // f16_probs: one row of scores, O(n_kv)
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / d.n_head, h = r % d.n_head, hk = h / d.group;
      float* acc = op + (i * d.n_head + h) * d.dv;  // unnormalized output, rescaled as the max grows
      for (int64_t c = 0; c < d.dv; ++c) acc[c] = 0.0f;
      float m = kNegInf, l = 0.0f;
      const int64_t end = key_end(d, p, i);
      if (p.f16_probs) {
        // All scores of the row once, their max, exp and sum, then the normalized probabilities
        // rounded to f16.
        row.resize(static_cast<size_t>(end));
        for (int64_t j = 0; j < end; ++j) m = std::max(m, row[size_t(j)] = score(in, d, p, K, i, h, j));
        double sum = 0;
        if (m != kNegInf)
          for (int64_t j = 0; j < end; ++j) sum += row[size_t(j)] = std::exp(row[size_t(j)] - m);
        if (sum > 0) {
          const float inv_sum = float(1.0 / sum);
          for (int64_t j = 0; j < end; ++j) {
            const float w = fp16_to_f32(f32_to_fp16(row[size_t(j)] * inv_sum));
            const float* vr = in.vp + (j * d.n_kv_head + hk) * d.dv;
            for (int64_t c = 0; c < d.dv; ++c) acc[c] += w * vr[c];
          }
        }
        if (lse) lse->data<float>()[h * d.n_q + i] = sum > 0 ? m + float(std::log(sum)) : kNegInf;
        continue;
      }
      for (int64_t j0 = 0; j0 < end; j0 += kKeyBlock) {
        const int64_t nb = std::min(kKeyBlock, end - j0);
        float bm = kNegInf;
        for (int64_t t = 0; t < nb; ++t) bm = std::max(bm, s[t] = score(in, d, p, K, i, h, j0 + t));
        if (bm == kNegInf) continue;  // every key of the block masked
        const float m_new = std::max(m, bm), corr = std::exp(m - m_new);
        l *= corr;
        for (int64_t c = 0; c < d.dv; ++c) acc[c] *= corr;
        for (int64_t t = 0; t < nb; ++t) {
          const float w = std::exp(s[t] - m_new);
          if (w == 0.0f) continue;
          l += w;
          const float* vr = in.vp + ((j0 + t) * d.n_kv_head + hk) * d.dv;
          for (int64_t c = 0; c < d.dv; ++c) acc[c] += w * vr[c];
        }
        m = m_new;
      }
      const float inv = l > 0 ? 1.0f / l : 0.0f;  // a fully masked query yields zeros
      for (int64_t c = 0; c < d.dv; ++c) acc[c] *= inv;
      if (lse) lse->data<float>()[h * d.n_q + i] = l > 0 ? m + std::log(l) : kNegInf;
    }
  });
  return out;
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out_in,
                        const Tensor& lse_in, const Tensor& dout_in, const AttentionParams& p,
                        Tensor* dq, Tensor* dk, Tensor* dv) {
  const Dims d = check(q, k, v, p, "attention_backward");
  detail::check_grad(dq, q.shape(), "attention_backward", "dq");
  detail::check_grad(dk, k.shape(), "attention_backward", "dk");
  detail::check_grad(dv, v.shape(), "attention_backward", "dv");
  OCELLUS_CHECK(lse_in.shape() == Shape({d.n_head, d.n_q}), "attention_backward: lse must be [",
                d.n_head, ", ", d.n_q, "]");
  const Inputs in(q, k, v, p);
  const Tensor out = out_in.contiguous(), dout = dout_in.contiguous(), lse = lse_in.contiguous();
  const float *o = out.data<float>(), *g = dout.data<float>(), *L = lse.data<float>();
  const kern::Table& K = kern::active();
  // D[h, i] = dout_i · out_i
  std::vector<float> D(size_t(d.n_head * d.n_q));
  for (int64_t i = 0; i < d.n_q; ++i)
    for (int64_t h = 0; h < d.n_head; ++h)
      D[h * d.n_q + i] = K.dot_f32(g + (i * d.n_head + h) * d.dv, o + (i * d.n_head + h) * d.dv, d.dv);
  if (!p.f16_probs && d.n_q >= kGemmQueries / 4) {
    attention_backward_gemm(in, d, p, g, L, D, dq ? dq->data<float>() : nullptr, dk ? dk->data<float>() : nullptr,
                            dv ? dv->data<float>() : nullptr);
    return;
  }
  auto prob = [&](int64_t i, int64_t h, int64_t j) {
    const float lv = L[h * d.n_q + i];
    return lv == kNegInf ? 0.0f : std::exp(score(in, d, p, K, i, h, j) - lv);
  };
  // dS_ij = P_ij (dout_i · v_j − D_i)
  auto dscore = [&](int64_t i, int64_t h, int64_t j, float P) {
    const float* vr = in.vp + (j * d.n_kv_head + h / d.group) * d.dv;
    return P * (K.dot_f32(g + (i * d.n_head + h) * d.dv, vr, d.dv) - D[h * d.n_q + i]);
  };
  if (dq) {  // pass 1: each query row owns its gradient
    float* dqp = dq->data<float>();
    parallel_for(d.n_q * d.n_head, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t i = r / d.n_head, h = r % d.n_head;
        float* dqr = dqp + (i * d.n_head + h) * d.d;
        for (int64_t j = 0; j < key_end(d, p, i); ++j) {
          const float P = prob(i, h, j);
          if (P == 0.0f) continue;
          const float ds = p.scale * dscore(i, h, j, P);
          const float* kr = in.kp + (j * d.n_kv_head + h / d.group) * d.d;
          for (int64_t c = 0; c < d.d; ++c) dqr[c] += ds * kr[c];
        }
      }
    });
  }
  if (dk || dv) {  // pass 2: each key row owns its gradients, summed over its query heads
    float* dkp = dk ? dk->data<float>() : nullptr;
    float* dvp = dv ? dv->data<float>() : nullptr;
    parallel_for(d.n_kv * d.n_kv_head, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t j = r / d.n_kv_head, hk = r % d.n_kv_head;
        for (int64_t h = hk * d.group; h < (hk + 1) * d.group; ++h)
          for (int64_t i = 0; i < d.n_q; ++i) {
            if (j >= key_end(d, p, i)) continue;
            const float P = prob(i, h, j);
            if (P == 0.0f) continue;
            const float* gr = g + (i * d.n_head + h) * d.dv;
            if (dvp) for (int64_t c = 0; c < d.dv; ++c) dvp[(j * d.n_kv_head + hk) * d.dv + c] += P * gr[c];
            if (dkp) {
              const float ds = p.scale * dscore(i, h, j, P);
              const float* qr = in.qp + (i * d.n_head + h) * d.d;
              for (int64_t c = 0; c < d.d; ++c) dkp[(j * d.n_kv_head + hk) * d.d + c] += ds * qr[c];
            }
          }
      }
    });
  }
}

namespace ref {

// Full probability matrix P[h][i][j] in double.
static std::vector<double> probs(const Tensor& q, const Tensor& k, const AttentionParams& p,
                                 const Dims& d, std::vector<double>* lse) {
  std::vector<double> P(size_t(d.n_head * d.n_q * d.n_kv), 0.0);
  if (lse) lse->assign(size_t(d.n_head * d.n_q), -INFINITY);
  for (int64_t h = 0; h < d.n_head; ++h)
    for (int64_t i = 0; i < d.n_q; ++i) {
      double* row = &P[(h * d.n_q + i) * d.n_kv];
      double m = -INFINITY;
      for (int64_t j = 0; j < d.n_kv; ++j) {
        if (p.causal && j > i + (d.n_kv - d.n_q)) { row[j] = -INFINITY; continue; }
        double s = 0;
        for (int64_t c = 0; c < d.d; ++c) s += double(q.at({i, h, c})) * k.at({j, h / d.group, c});
        row[j] = s * p.scale + (p.mask ? double(p.mask->at({i, j})) : 0.0);
        m = std::max(m, row[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < d.n_kv; ++j) sum += row[j] = m == -INFINITY ? 0.0 : std::exp(row[j] - m);
      for (int64_t j = 0; j < d.n_kv; ++j) row[j] = sum > 0 ? row[j] / sum : 0.0;
      if (lse && sum > 0) (*lse)[h * d.n_q + i] = m + std::log(sum);
    }
  return P;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                 Tensor* lse) {
  const Dims d = check(q, k, v, p, "ref::attention");
  std::vector<double> L;
  const std::vector<double> P = probs(q, k, p, d, &L);
  Tensor out = Tensor::empty({d.n_q, d.n_head, d.dv});
  for (int64_t h = 0; h < d.n_head; ++h)
    for (int64_t i = 0; i < d.n_q; ++i)
      for (int64_t c = 0; c < d.dv; ++c) {
        double s = 0;
        for (int64_t j = 0; j < d.n_kv; ++j) s += P[(h * d.n_q + i) * d.n_kv + j] * v.at({j, h / d.group, c});
        out.at({i, h, c}) = float(s);
      }
  if (lse) {
    *lse = Tensor::empty({d.n_head, d.n_q});
    for (size_t t = 0; t < L.size(); ++t) lse->data<float>()[t] = float(L[t]);
  }
  return out;
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& /*out*/,
                        const Tensor& /*lse*/, const Tensor& dout, const AttentionParams& p,
                        Tensor* dq, Tensor* dk, Tensor* dv) {
  const Dims d = check(q, k, v, p, "ref::attention_backward");
  const std::vector<double> P = probs(q, k, p, d, nullptr);
  for (int64_t h = 0; h < d.n_head; ++h) {
    const int64_t hk = h / d.group;
    for (int64_t i = 0; i < d.n_q; ++i) {
      const double* row = &P[(h * d.n_q + i) * d.n_kv];
      std::vector<double> dP(size_t(d.n_kv));
      double dot = 0;
      for (int64_t j = 0; j < d.n_kv; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d.dv; ++c) s += double(dout.at({i, h, c})) * v.at({j, hk, c});
        dP[j] = s;
        dot += s * row[j];
      }
      for (int64_t j = 0; j < d.n_kv; ++j) {
        const double dS = row[j] * (dP[j] - dot) * p.scale;
        for (int64_t c = 0; c < d.d; ++c) {
          if (dq) dq->at({i, h, c}) += float(dS * k.at({j, hk, c}));
          if (dk) dk->at({j, hk, c}) += float(dS * q.at({i, h, c}));
        }
        if (dv)
          for (int64_t c = 0; c < d.dv; ++c) dv->at({j, hk, c}) += float(row[j] * dout.at({i, h, c}));
      }
    }
  }
}

}  // namespace ref
}  // namespace ocellus::ops
