#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/model/synth.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::io;
namespace tn = ocellus::io::gguf::tensor;
namespace key = ocellus::io::gguf::key;

using test::read_file;
using test::temp_path;

// Every test-sized shape in every dtype: the file loads, has the architecture's tensors with
// the right shapes and dtypes, and a vocabulary of the stated size.
TEST(Synth, TinyShapesHaveTheirArchitecturesLayout) {
  for (const model::SynthShape& s : model::synth_shapes()) {
    if (s.name.rfind("tiny-", 0) != 0) continue;
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
      SCOPED_TRACE(s.name + " " + dtype_name(dt));
      const std::string path = temp_path("synth.gguf");
      model::SynthOptions opt;
      opt.dtype = dt;
      model::write_synth_model(s, opt, path);
      GgufFile f = GgufFile::open(path);
      EXPECT_EQ(f.get_string(key::kArchitecture), s.arch);
      const int64_t d = s.n_embd;
      if (s.vision) {
        EXPECT_EQ(f.get_int(key::kClipBlockCount), s.n_layer);
        const int64_t np = (s.image_size / s.patch_size) * (s.image_size / s.patch_size);
        EXPECT_EQ(f.tensor(tn::kVPositionEmbd).shape(), (Shape{np + (s.siglip ? 0 : 1), d}));
        EXPECT_EQ(f.has(key::kClipUseGelu) && f.get_bool(key::kClipUseGelu), s.siglip);
        EXPECT_EQ(f.find_tensor(tn::kVClassEmbd) != nullptr, !s.siglip);
        EXPECT_EQ(f.find_tensor(tn::kVPostLn) != nullptr, s.siglip);
        EXPECT_EQ(f.tensor(gguf::name(tn::kVFfnFirst, 1)).shape(), (Shape{s.n_ff, d}));
        EXPECT_EQ(f.tensor(gguf::name(tn::kVAttnQ, 0)).dtype(), dt);
        EXPECT_EQ(f.tensor(tn::kMm2).shape(), (Shape{s.proj_dim, s.proj_dim}));
      } else {
        EXPECT_EQ(f.get_int(gguf::arch_key(s.arch, key::kBlockCount)), s.n_layer);
        EXPECT_EQ(f.get_strings(key::kTokTokens).size(), size_t(s.n_vocab));
        EXPECT_EQ(f.tensor(tn::kTokenEmbd).shape(), (Shape{s.n_vocab, d}));
        EXPECT_EQ(f.find_tensor(tn::kOutput) != nullptr, !s.tied);
        const int64_t kv = s.n_head_kv * (d / s.n_head);
        if (s.arch == "phi2") {
          EXPECT_EQ(f.tensor(gguf::name(tn::kAttnQkv, 1)).shape(), (Shape{d + 2 * kv, d}));
          EXPECT_TRUE(f.find_tensor(tn::kOutputBias));
        } else {
          EXPECT_EQ(f.tensor(gguf::name(tn::kAttnK, 1)).shape(), (Shape{kv, d}));
          EXPECT_EQ(f.tensor(gguf::name(tn::kFfnGate, 0)).dtype(), dt);
          EXPECT_EQ(f.find_tensor(gguf::name(tn::kAttnQBias, 0)) != nullptr, s.qkv_bias);
        }
        EXPECT_EQ(f.tensor(gguf::name(tn::kAttnNorm, 0)).dtype(), DType::F32);
      }
      std::remove(path.c_str());
    }
  }
}

TEST(Synth, DeterministicInTheSeed) {
  const auto& s = model::synth_shape("tiny-llama");
  const std::string a = temp_path("a.gguf"), b = temp_path("b.gguf"), c = temp_path("c.gguf");
  model::SynthOptions opt;
  opt.dtype = DType::Q4_0;
  model::write_synth_model(s, opt, a);
  model::write_synth_model(s, opt, b);
  opt.seed = 2;
  model::write_synth_model(s, opt, c);
  EXPECT_TRUE(read_file(a) == read_file(b));
  EXPECT_FALSE(read_file(a) == read_file(c));
  for (const auto& p : {a, b, c}) std::remove(p.c_str());
}

// A real-size shape, cut to one block to stay small: TinyLlama's matrices at q4_0 (output q8_0,
// as llama.cpp's q4_0 files) and CLIP-ViT-L/14-336's tower.
TEST(Synth, RealShapesWithOneBlock) {
  model::SynthOptions opt;
  opt.dtype = DType::Q4_0;
  opt.layers = 1;
  const std::string p = temp_path("tl.gguf");
  model::write_synth_model(model::synth_shape("tinyllama-1.1b"), opt, p);
  {
    GgufFile f = GgufFile::open(p);
    EXPECT_EQ(f.tensor(gguf::name(tn::kFfnUp, 0)).shape(), (Shape{5632, 2048}));
    EXPECT_EQ(f.tensor(gguf::name(tn::kAttnV, 0)).shape(), (Shape{256, 2048}));
    EXPECT_EQ(f.tensor(tn::kOutput).dtype(), DType::Q8_0);
    EXPECT_EQ(f.get_strings(key::kTokTokens).size(), 32000u);
  }
  model::write_synth_model(model::synth_shape("siglip-so400m-14-384"), opt, p);
  {
    GgufFile f = GgufFile::open(p);
    EXPECT_EQ(f.tensor(tn::kVPositionEmbd).shape(), (Shape{729, 1152}));
    EXPECT_EQ(f.tensor(tn::kVPatchEmbd).shape(), (Shape{1152, 3, 14, 14}));
    EXPECT_EQ(f.tensor(tn::kVPatchEmbd).dtype(), DType::F16);
    EXPECT_EQ(f.tensor(gguf::name(tn::kVAttnQ, 0)).dtype(), DType::Q4_0);
    EXPECT_EQ(f.tensor(gguf::name(tn::kVFfnSecond, 0)).dtype(), DType::F16);  // 4304 columns
    EXPECT_EQ(f.tensor(gguf::name(tn::kVFfnFirst, 0)).dtype(), DType::Q4_0);
  }
  std::remove(p.c_str());
  EXPECT_THROW(model::synth_shape("gpt-5"), Error);
}
