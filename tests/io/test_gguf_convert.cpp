// `ocellus quantize` (io/gguf_convert.h): a GGUF file's weight matrices at another plain type,
// everything else as it was; the model it writes computes what the original does to that type's
// rounding; bad requests are refused before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "cliutil.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_convert.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/lm/lm.h"
#include "ocellus/model/synth.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::test;

namespace {

Tensor logits_of(const std::string& path, const std::vector<int32_t>& ids) {
  const io::GgufFile g = io::GgufFile::open(path);
  const auto m = lm::load_gguf(g);
  lm::KvCache c(m->config(), 16, DType::F32);
  return m->forward_ids(ids, c, true);
}

// A folder of the test's own with the synth tiny llama written at each dtype as NAME.gguf.
std::string synth_files(const std::string& name, const std::vector<std::pair<std::string, DType>>& files) {
  const std::string dir = temp_path(name);
  std::filesystem::create_directories(dir);
  for (const auto& [file, dtype] : files) {
    model::SynthOptions o;
    o.dtype = dtype;
    model::write_synth_model(model::synth_shape("tiny-llama"), o, dir + "/" + file);
  }
  return dir;
}

}  // namespace

TEST(GgufConvert, WeightsAtTheNewTypeEverythingElseAsItWas) {
  const std::string dir = synth_files("gguf_convert", {{"f32.gguf", DType::F32}});
  const std::vector<int32_t> ids = {1, 7, 42, 300, 11, 5};
  const Tensor want = logits_of(dir + "/f32.gguf", ids);
  const io::GgufFile in = io::GgufFile::open(dir + "/f32.gguf");
  // f16 from f32, then q8_0 from that f16 (as llama-quantize is used on a converter's f16 file).
  // Logits against the f32 model, measured on an Intel Xeon (AVX-512 VNNI): f16 4.6e-4, q8_0
  // 1.0e-2 (8-bit weights and, in q8_0's products, 8-bit activations on a random model).
  const struct {
    std::string from, to, type;
    DType dtype;
    uint32_t file_type;
    double bound;
  } cases[] = {{"f32.gguf", "f16.gguf", "F16", DType::F16, 1, 2e-3}, {"f16.gguf", "q8.gguf", "q8_0", DType::Q8_0, 7, 2e-2}};
  for (const auto& c : cases) {
    const io::ConvertResult r = io::convert_gguf(dir + "/" + c.from, dir + "/" + c.to, io::quant_target_from_name(c.type), false);
    EXPECT_GT(r.converted, 10);
    EXPECT_LT(r.out_bytes, r.in_bytes);
    const io::GgufFile out = io::GgufFile::open(dir + "/" + c.to);
    EXPECT_EQ(out.get_int(io::gguf::key::kFileType), c.file_type);
    ASSERT_EQ(out.tensors().size(), in.tensors().size());
    for (const io::GgufTensorInfo& t : out.tensors()) {
      const bool matrix = t.shape.ndim >= 2 && t.name.ends_with(".weight") && t.shape.last() % 32 == 0;
      EXPECT_EQ(t.type->dtype, matrix ? c.dtype : in.tensor_info(t.name).type->dtype) << t.name;
      EXPECT_EQ(t.shape, in.tensor_info(t.name).shape) << t.name;
    }
    for (const auto& [k, v] : in.metadata())
      if (k != io::gguf::key::kFileType) EXPECT_TRUE(out.has(k)) << k;
    const double e = rel_err(logits_of(dir + "/" + c.to, ids), want);
    std::printf("%s logits vs f32: rel err %.2e\n", c.type.c_str(), e);
    EXPECT_LE(e, c.bound);
    EXPECT_GT(e, 0.0);
  }
}

TEST(GgufConvert, RefusesBadRequestsBeforeWriting) {
  const std::string dir = synth_files("gguf_convert_bad", {{"q8.gguf", DType::Q8_0}, {"f16.gguf", DType::F16}});
  auto err = [&](const std::string& in, const std::string& out, const std::string& type, bool force) {
    return error_of([&] { io::convert_gguf(dir + "/" + in, dir + "/" + out, io::quant_target_from_name(type), force); });
  };
  EXPECT_NE(err("q8.gguf", "x.gguf", "f16", false).find("already quantized"), std::string::npos);
  EXPECT_NE(err("f16.gguf", "q8.gguf", "q8_0", false).find("exists (--force"), std::string::npos);
  EXPECT_NE(err("f16.gguf", "f16.gguf", "q8_0", true).find("is the input file"), std::string::npos);
  EXPECT_NE(err("f16.gguf", "x.gguf", "Q4_K_X", false).find("type 'Q4_K_X' is not supported (supported: F32"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
  // The verb: one line, status 1; with --force it replaces the file.
  const CliResult bad = run_cli("quantize '" + dir + "/f16.gguf' '" + dir + "/q8.gguf' Q8_0");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("exists (--force to replace it)"), std::string::npos) << bad.err;
  const CliResult ok = run_cli("quantize '" + dir + "/f16.gguf' '" + dir + "/q8.gguf' Q8_0 --force");
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("wrote " + dir + "/q8.gguf"), std::string::npos) << ok.out;
  EXPECT_EQ(io::GgufFile::open(dir + "/q8.gguf").tensor_info("blk.0.attn_q.weight").type->dtype, DType::Q8_0);
}

// The K mixes against llama.cpp's own files, made by llama-quantize from the same f16 file: the
// same tensors in the same order, the same type for each, the same bytes in every tensor, and
// the same file.
class KMixEqualsLlamaCpp : public ::testing::TestWithParam<const char*> {};

TEST_P(KMixEqualsLlamaCpp, TypeAndBytesOfEveryTensor) {
  const std::string dir = std::string(OCELLUS_FIXTURES) + "/kquant/", mix = GetParam();
  std::string lower = mix;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const std::string out = temp_path("kmix_" + lower + ".gguf");
  const io::ConvertResult r = io::convert_gguf(dir + "tiny-llama256-f16.gguf", out, io::quant_target_from_name(lower), true);
  EXPECT_EQ(r.fallback, 0);
  const io::GgufFile ours = io::GgufFile::open(out), theirs = io::GgufFile::open(dir + "tiny-llama256-" + lower + ".gguf");
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
  for (size_t i = 0; i < ours.tensors().size(); ++i) {
    const io::GgufTensorInfo &a = ours.tensors()[i], &b = theirs.tensors()[i];
    ASSERT_EQ(a.name, b.name) << "tensor " << i;
    EXPECT_EQ(a.type_id, b.type_id) << a.name << ": " << a.type->name << " vs llama.cpp's " << b.type->name;
    ASSERT_EQ(a.nbytes, b.nbytes) << a.name;
    size_t differ = 0;
    for (size_t k = 0; k < a.nbytes; ++k) differ += ours.tensor_data(a)[k] != theirs.tensor_data(b)[k];
    EXPECT_EQ(differ, 0u) << a.name << " (" << a.type->name << "): " << differ << " of " << a.nbytes << " bytes differ";
  }
  EXPECT_EQ(ours.get_int(io::gguf::key::kFileType), theirs.get_int(io::gguf::key::kFileType));
  EXPECT_TRUE(read_file(out) == read_file(dir + "tiny-llama256-" + lower + ".gguf")) << "the files differ outside the tensors";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, KMixEqualsLlamaCpp, ::testing::Values("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"));
