#include "ocellus/core/cpu.h"
#include "ocellus/core/dtype.h"
#include "ops/kernels/kernels.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ocellus::kern {

// Measured with the q4_0 one-row kernel (BM_Matvec, BM_Decode; 2 threads): on Zen 5 the
// non-temporal hint beats no prefetch (57 -> 69 GB/s); on an Intel Xeon (Sapphire Rapids VM)
// it is the worst choice, 0.41 of the copy bandwidth against 0.93 with the L2 hint (Intel's
// NTA fills one L1 way, and lines 9 KB ahead are evicted before they are read).
static int choose_tile_prefetch() {
  if (const char* env = std::getenv("OCELLUS_PREFETCH")) {
    if (!std::strcmp(env, "l2")) return kPrefetchL2;
    if (!std::strcmp(env, "nta")) return kPrefetchNta;
    std::fprintf(stderr, "ocellus: warning: OCELLUS_PREFETCH=%s not understood (l2 or nta)\n", env);
  }
  return cpu_features().amd ? kPrefetchNta : kPrefetchL2;
}
const int g_tile_prefetch = choose_tile_prefetch();

const Table* for_isa(int isa) {
  if (!isa_supported(Isa(isa))) return nullptr;
  switch (Isa(isa)) {
    case Isa::Generic: return &kGeneric;
    case Isa::Avx2: return &kAvx2;
    case Isa::Avx512: return &kAvx512;
  }
  return nullptr;
}

const Table& active() { return *for_isa(int(active_isa())); }

GemmK gemm_k(const Table& T, DType t) {
  switch (t) {
    case DType::Q2_K: return T.gemm_q2_K;
    case DType::Q3_K: return T.gemm_q3_K;
    case DType::Q4_K: return T.gemm_q4_K;
    case DType::Q5_K: return T.gemm_q5_K;
    case DType::Q6_K: return T.gemm_q6_K;
    default: return nullptr;
  }
}

}  // namespace ocellus::kern
