#pragma once
// CPU features, read at run time: the binary built on one x86-64 machine runs on any other and
// picks the widest kernels that machine supports.
#include <string>

namespace ocellus {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false,
       avx512vnni = false;
  bool amd = false;  // vendor AuthenticAMD: the kernels' prefetch hint differs (ops/kernels)
  std::string str() const;
};
const CpuFeatures& cpu_features();

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
// The ISA kernels run with: the best supported, or OCELLUS_ISA=generic|avx2|avx512 when set
// (capped to what the CPU supports, with a warning).
Isa active_isa();
void set_active_isa(Isa isa);  // throws if unsupported

// OpenBLAS's kernel set ("Haswell", "SkylakeX", "Cooperlake", ...): its own pick from the CPU,
// or OPENBLAS_CORETYPE's. On AVX-512 machines the AVX-512 sets run f32 GEMM up to ~1.9x faster
// than Haswell's (Zen 5, 2 threads: 376 vs 200 GFLOP/s); ocellus leaves the choice to OpenBLAS
// and the user.
std::string blas_core();

}  // namespace ocellus
