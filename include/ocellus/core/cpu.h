#pragma once
// CPU features, read at run time: the binary built on one x86-64 machine runs on any other and
// picks the widest kernels that machine supports.
#include <string>

namespace ocellus {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false,
       avx512vnni = false;
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

}  // namespace ocellus
