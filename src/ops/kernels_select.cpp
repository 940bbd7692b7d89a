#include "ocellus/core/cpu.h"
#include "ops/kernels/kernels.h"

namespace ocellus::kern {

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

}  // namespace ocellus::kern
