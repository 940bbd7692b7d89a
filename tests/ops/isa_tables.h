#pragma once
// The kernel tables (generic, AVX2, AVX-512) a test compares under. A table this CPU lacks is
// named as not tested (a line on stdout and the test property "not_tested"), never dropped
// silently from the comparison.
#include <gtest/gtest.h>

#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "ocellus/core/cpu.h"

namespace ocellus::test {

// The ISAs among `isas` this CPU runs; the others reported as not tested.
inline std::vector<Isa> tested_isas(std::initializer_list<Isa> isas = {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
  std::vector<Isa> v;
  std::string missing;
  for (Isa i : isas) {
    if (isa_supported(i)) {
      v.push_back(i);
      continue;
    }
    std::printf("not tested: %s (CPU lacks it)\n", isa_name(i));
    missing += std::string(missing.empty() ? "" : " ") + isa_name(i);
  }
  if (!missing.empty()) ::testing::Test::RecordProperty("not_tested", missing);
  return v;
}

// fn(isa) with each supported table active in turn; the table active before is restored.
template <typename Fn>
void for_each_isa(Fn&& fn) {
  const Isa saved = active_isa();
  for (Isa i : tested_isas()) {
    set_active_isa(i);
    SCOPED_TRACE(std::string("kernel table ") + isa_name(i));
    fn(i);
  }
  set_active_isa(saved);
}

}  // namespace ocellus::test
