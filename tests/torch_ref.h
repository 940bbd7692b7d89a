#pragma once
// Runs tests/reference/torch_ref.py (a PyTorch re-statement, Debian's python3-torch) and reads
// the float32 array it writes. An empty argument is replaced by the output path. A missing
// python3-torch fails the test with the command to install it (scripts/deps.sh installs it).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ocellus/autograd/autograd.h"
#include "ocellus/core/tensor.h"
#include "ocellus/ops/elementwise.h"
#include "testutil.h"

namespace ocellus::test {

inline std::string python() {
  const char* p = std::getenv("OCELLUS_PYTHON");
  return p ? p : "/usr/bin/python3";
}

inline std::string write_temp(const std::string& name, const Tensor& t) {
  const std::string path = temp_path(name);
  const Tensor c = t.contiguous();
  FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_TRUE(f != nullptr) << path;
  if (f) {
    std::fwrite(c.data<float>(), sizeof(float), size_t(c.numel()), f);
    std::fclose(f);
  }
  return path;
}

inline std::vector<float> torch_ref(std::vector<std::string> args, const std::string& out) {
  std::string cmd = python() + " " + OCELLUS_TESTS_DIR "/reference/torch_ref.py";
  bool placed = false;
  for (std::string& a : args) {
    if (a.empty() && !placed) a = out, placed = true;
    cmd += " '" + a + "'";
  }
  cmd += " 2>&1";
  std::string log;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[512];
  while (p && std::fgets(buf, sizeof(buf), p)) log += buf;
  const int rc = p ? pclose(p) : -1;
  if (rc != 0) {
    ADD_FAILURE() << "PyTorch reference failed (rc " << rc << "): " << cmd << "\n" << log
                  << (log.find("No module named 'torch'") != std::string::npos
                          ? "python3-torch is missing: run scripts/deps.sh (apt-get install python3-torch)"
                          : "");
    return {};
  }
  return read_array<float>(out);
}

// Moves every parameter off its initial value (new models start with biases 0 and norm weights
// 1, which would hide a swapped bias or weight from a gradient check): + noise of std `amount`.
inline void perturb(const std::vector<ag::Var>& params, uint32_t seed, float amount = 0.1f) {
  for (size_t i = 0; i < params.size(); ++i)
    params[i]->value = ops::add(params[i]->value, randn(params[i]->value.shape(), seed + uint32_t(i), amount));
}

// A step against a PyTorch reference's output (its loss, then each parameter's gradient in
// order): the loss within rel_tol of it, every gradient within rel_tol (relative L2).
inline void expect_step_matches(const ag::Var& loss, const std::vector<ag::Var>& params, const std::vector<float>& ref,
                                double rel_tol) {
  ASSERT_FALSE(ref.empty());
  EXPECT_NEAR(loss->value.at({0}), ref[0], rel_tol * std::fabs(ref[0]));
  size_t at = 1;
  for (const ag::Var& p : params) {
    const int64_t n = p->value.numel();
    ASSERT_LE(at + size_t(n), ref.size());
    const Tensor want = Tensor::from_vector(p->value.shape(), std::vector<float>(ref.begin() + long(at), ref.begin() + long(at + n)));
    EXPECT_LE(rel_err(p->grad, want), rel_tol) << p->name;
    at += size_t(n);
  }
  EXPECT_EQ(at, ref.size());
}

}  // namespace ocellus::test
