#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>
#include <cstdio>
#include <fstream>

#include "ocellus/core/error.h"
#include "ocellus/core/tensor.h"
#include "ocellus/core/threads.h"
#include "testutil.h"

using namespace ocellus;

TEST(Tensor, ZerosIsZeroedAndContiguous) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_FALSE(t.is_view());
  EXPECT_EQ(t.stride(0), 48);
  EXPECT_EQ(t.stride(2), 4);
  for (float v : t.to_vector()) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
}

// A zero-width last dimension is an empty tensor with rows, not a division by zero (it crashed
// the process with SIGFPE in Shape::rows).
TEST(Tensor, ZeroWidthRowsAreEmpty) {
  const Shape s{3, 0};
  EXPECT_EQ(s.rows(), 3);
  EXPECT_EQ(s.numel(), 0);
  Tensor t = Tensor::zeros({3, 0});
  EXPECT_EQ(t.nbytes(), 0u);
  EXPECT_EQ(Shape({2, 5, 0}).rows(), 10);
  EXPECT_EQ(Shape({7}).rows(), 1);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5});
  Tensor tt = t.transpose(0, 1);
  EXPECT_TRUE(tt.is_view());
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_EQ(tt.shape(), Shape({3, 2}));
  EXPECT_EQ(tt.at({2, 1}), 5.0f);
  Tensor s = t.slice(1, 1, 3);
  EXPECT_EQ(s.to_vector(), (std::vector<float>{1, 2, 4, 5}));
  s.at({0, 0}) = 42.0f;  // writes through to t
  EXPECT_EQ(t.at({0, 1}), 42.0f);
  Tensor c = tt.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector(), (std::vector<float>{0, 3, 42, 4, 2, 5}));
  EXPECT_EQ(t.reshape({3, 2}).at({2, 0}), 4.0f);
  EXPECT_THROW(tt.reshape({6}), Error);
  EXPECT_THROW(t.slice(0, 1, 3), Error);
  EXPECT_THROW(t.at({2, 0}), Error);
}

TEST(Tensor, QuantizedViewsRespectBlocks) {
  Tensor x = test::randn({4, 64}, 1).to(DType::Q8_0);
  EXPECT_NO_THROW(x.slice(1, 32, 64));
  EXPECT_THROW(x.slice(1, 16, 64), Error);
  EXPECT_THROW(x.transpose(0, 1), Error);
  Tensor r = x.slice(0, 1, 3);
  EXPECT_TRUE(r.is_contiguous());
  EXPECT_LE(test::rel_err(r, test::randn({4, 64}, 1).slice(0, 1, 3)), 1e-2);
}

TEST(Tensor, FourDimsAndNonContiguousClone) {
  Tensor t = test::randn({2, 3, 4, 5}, 9);
  Tensor p = t.transpose(1, 3);  // [2, 5, 4, 3]
  Tensor c = p.clone();
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 5; ++b)
      for (int64_t d = 0; d < 3; ++d) ASSERT_EQ(c.at({a, b, 1, d}), t.at({a, d, 1, b}));
  EXPECT_THROW(Tensor::empty({1, 2, 3, 4, 5}), Error);
  EXPECT_THROW(Tensor::empty({-1}), Error);
}

TEST(Tensor, MappedFileRegionIsReadOnlyView) {
  std::string path = ::testing::TempDir() + "/ocellus_map_test.bin";
  {
    std::ofstream f(path, std::ios::binary);
    std::vector<float> v = {9, 9, 1, 2, 3, 4, 5, 6};
    f.write(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  }
  auto file = std::make_shared<MappedFile>(path);
  Tensor t = Tensor::map(file, 8, {2, 3}, DType::F32);
  EXPECT_TRUE(t.is_mapped());
  EXPECT_FALSE(t.writable());
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(Tensor::map(file, 12, {2, 3}, DType::F32), Error);  // one float past the end
  EXPECT_THROW(MappedFile("/nonexistent/ocellus"), Error);
  std::remove(path.c_str());
}

TEST(Threads, ParallelForCoversRangeOnce) {
  set_num_threads(2);
  std::vector<int> hits(1000, 0);
  parallel_for(1000, 10, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) hits[size_t(i)]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

TEST(Threads, DynamicParallelForCoversRangeOnceInChunks) {
  set_num_threads(2);
  for (int64_t n : {1, 7, 64, 1001}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> calls{0};
    parallel_for_dynamic(n, 8, [&](int64_t a, int64_t b) {
      EXPECT_LT(a, b);
      EXPECT_LE(b - a, 8);
      if (b < n) EXPECT_EQ(b - a, 8) << "only the last chunk may be short";
      calls++;
      for (int64_t i = a; i < b; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "n = " << n;
    EXPECT_EQ(calls.load(), n == 1 ? 1 : int((n + 7) / 8));
  }
  set_num_threads(0);
}

namespace {
// Resident kB of this process's mapping of `path` (/proc/self/smaps), 0 when none.
long mapped_rss_kb(const std::string& path) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool in = false;
  long kb = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 16) in = line.find(path) != std::string::npos;
    else if (in && line.rfind("Rss:", 0) == 0) kb += std::atol(line.c_str() + 4);
  }
  return kb;
}
}  // namespace

// A loader copies the matrices out and then drops the file's pages: the model is resident once.
// What is read afterwards faults back in from the file, unchanged.
TEST(Tensor, MappedPagesLeaveResidentMemoryAndReadBackTheSame) {
  const std::string path = test::temp_path("mapped_release.bin");
  std::vector<float> values(size_t(4) << 20);  // 16 MiB
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i % 1000);
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  }
  {
    auto file = std::make_shared<const MappedFile>(path);
    const Tensor half = Tensor::map(file, 0, {int64_t(values.size() / 2)}, DType::F32);
    const Tensor all = Tensor::map(file, 0, {int64_t(values.size())}, DType::F32);
    double sum = 0;
    for (int64_t i = 0; i < all.numel(); ++i) sum += all.data<float>()[i];
    EXPECT_GT(mapped_rss_kb(path), 15 * 1024) << "every page read is resident";
    half.release_mapped_pages();
    const long after_half = mapped_rss_kb(path);
    EXPECT_LT(after_half, 9 * 1024) << "the first half's pages left";
    EXPECT_GT(after_half, 7 * 1024) << "the second half's stayed";
    file->drop_resident();
    EXPECT_LT(mapped_rss_kb(path), 64) << "no page of the file resident";
    double again = 0;
    for (int64_t i = 0; i < all.numel(); ++i) again += all.data<float>()[i];
    EXPECT_EQ(again, sum) << "read back from the file";
  }
  std::remove(path.c_str());
}
