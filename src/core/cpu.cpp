#include "ocellus/core/cpu.h"

#include <cpuid.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ocellus/core/error.h"

namespace ocellus {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
    __builtin_cpu_init();
    // libgcc's checks include the OS's XSAVE support for the wider registers.
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    // F16C (CPUID.1:ECX bit 29) through cpuid: clang's builtin does not know the name. It needs
    // AVX's OS support, which the avx2 check above already implies for our use.
    unsigned a = 0, b = 0, cx = 0, d = 0;
    c.f16c = __get_cpuid(1, &a, &b, &cx, &d) && (cx & (1u << 29));
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512dq = __builtin_cpu_supports("avx512dq");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
    unsigned vendor[4] = {0, 0, 0, 0};  // leaf 0: EBX, EDX, ECX spell the vendor
    if (__get_cpuid(0, &vendor[3], &vendor[0], &vendor[2], &vendor[1]))
      c.amd = std::memcmp(vendor, "AuthenticAMD", 12) == 0;
    return c;
  }();
  return f;
}

std::string CpuFeatures::str() const {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512dq, "avx512dq");
  add(avx512vnni, "avx512vnni");
  add(amd, "(amd)");
  return s.empty() ? "(none beyond x86-64)" : s;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  const CpuFeatures& c = cpu_features();
  switch (isa) {
    case Isa::Generic: return true;
    case Isa::Avx2: return c.avx2 && c.fma && c.f16c;
    case Isa::Avx512:
      return isa_supported(Isa::Avx2) && c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq &&
             c.avx512vnni;
  }
  return false;
}

static Isa best_isa() {
  Isa best = Isa::Avx512;
  while (!isa_supported(best)) best = Isa(int(best) - 1);
  if (const char* env = std::getenv("OCELLUS_ISA")) {
    Isa want = best;
    if (!std::strcmp(env, "generic")) want = Isa::Generic;
    else if (!std::strcmp(env, "avx2")) want = Isa::Avx2;
    else if (!std::strcmp(env, "avx512")) want = Isa::Avx512;
    else std::fprintf(stderr, "ocellus: warning: OCELLUS_ISA=%s not understood; using %s\n", env,
                      isa_name(best));
    if (int(want) > int(best))
      std::fprintf(stderr, "ocellus: warning: OCELLUS_ISA=%s not supported by this CPU; using %s\n",
                   env, isa_name(best));
    else
      best = want;
  }
  return best;
}

static Isa& active_isa_ref() {
  static Isa isa = best_isa();
  return isa;
}

Isa active_isa() { return active_isa_ref(); }

void set_active_isa(Isa isa) {
  OCELLUS_CHECK(isa_supported(isa), "cpu: ISA ", isa_name(isa), " is not supported by this CPU");
  active_isa_ref() = isa;
}

extern "C" char* openblas_get_corename(void);

std::string blas_core() {
  const char* c = openblas_get_corename();
  return c ? c : "unknown";
}

}  // namespace ocellus
