// The family registry (lm/family.h): every registered family is found by its GGUF architecture
// and by each of its Hugging Face model_types, has a tiny synth shape, and that file loads as
// its descriptor says, has a chat template by architecture, and survives both exporters:
// GGUF -> Hugging Face folder -> GGUF gives the same model.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/family.h"
#include "ocellus/model/synth.h"
#include "ocellus/text/chat.h"
#include "ocellus/text/tokenizer.h"
#include "testutil.h"

using namespace ocellus;

TEST(LmFamily, EachFamilyIsFoundByEveryOneOfItsNames) {
  std::set<std::string> archs, types;
  ASSERT_FALSE(lm::families().empty());
  for (const lm::Family* f : lm::families()) {
    SCOPED_TRACE(f->gguf_arch);
    EXPECT_TRUE(archs.insert(f->gguf_arch).second) << "two families share the architecture";
    EXPECT_EQ(&lm::family_by_arch(f->gguf_arch), f);
    ASSERT_FALSE(f->hf_model_types.empty());
    for (const std::string& t : f->hf_model_types) {
      EXPECT_TRUE(types.insert(t).second) << "two families share model_type " << t;
      EXPECT_EQ(lm::find_family_hf(t), f);
      EXPECT_EQ(&lm::family_by_hf(t, "config.json"), f);
    }
    EXPECT_NE(f->hf_names, nullptr);
    EXPECT_TRUE(f->trainable);
  }
  const std::vector<std::string> known = lm::known_architectures();
  EXPECT_EQ(std::set<std::string>(known.begin(), known.end()), archs);
}

TEST(LmFamily, UnknownNamesAreErrorsListingTheKnownOnes) {
  const std::string e = test::error_of([] { lm::family_by_arch("gptj", "x.gguf"); });
  EXPECT_NE(e.find("x.gguf"), std::string::npos) << e;
  EXPECT_NE(e.find("'gptj'"), std::string::npos) << e;
  const std::string h = test::error_of([] { lm::family_by_hf("bert", "cfg.json"); });
  EXPECT_NE(h.find("cfg.json"), std::string::npos) << h;
  for (const lm::Family* f : lm::families()) {
    EXPECT_NE(e.find(f->gguf_arch), std::string::npos) << e;
    for (const std::string& t : f->hf_model_types) EXPECT_NE(h.find(t), std::string::npos) << h;
  }
  EXPECT_EQ(lm::find_family_hf("bert"), nullptr);
}

// Every synth text shape names a registered family.
TEST(LmFamily, SynthShapesNameRegisteredFamilies) {
  for (const model::SynthShape& s : model::synth_shapes())
    if (!s.vision) EXPECT_NO_THROW(lm::family_by_arch(s.arch)) << s.name;
}

TEST(LmFamily, TinySynthModelOfEachFamilyRoundTripsThroughBothFormats) {
  for (const lm::Family* f : lm::families()) {
    SCOPED_TRACE(f->gguf_arch);
    const model::SynthShape& s = model::synth_shape("tiny-" + f->gguf_arch);  // every family has one
    ASSERT_EQ(s.arch, f->gguf_arch);
    const std::string gguf = test::temp_path("family.gguf"), back = test::temp_path("family_back.gguf");
    const std::string dir = test::temp_path("family_hf");
    model::SynthOptions opt;
    opt.dtype = DType::F32;
    model::write_synth_model(s, opt, gguf);
    const io::GgufFile file = io::GgufFile::open(gguf);
    const auto m = lm::load_gguf(file);
    const lm::LmConfig& c = m->config();
    EXPECT_EQ(c.arch, f->gguf_arch);
    EXPECT_EQ(c.norm, f->norm);
    EXPECT_EQ(c.act, f->act);
    EXPECT_EQ(c.gated_ffn, f->layout.gated);
    EXPECT_EQ(c.parallel_block, f->parallel_block);
    EXPECT_EQ(c.rope.mode, f->gguf_rope);
    EXPECT_EQ(c.rope.n_rot, s.n_rot);
    EXPECT_FLOAT_EQ(c.norm_eps, float(s.norm_eps));

    // The file holds exactly the tensors the model has (the exporter writes what it loaded; a
    // tied output is written too, as it cannot tell the prepared copy of the embedding from a
    // matrix of its own).
    // text/chat.cpp knows a template for the architecture (the file has no chat_template).
    EXPECT_NO_THROW(lm::detect_chat_template(file));
    const text::Tokenizer tok = text::Tokenizer::from_gguf(file);
    lm::write_gguf(*m, tok, back);
    std::set<std::string> written, held;
    for (const auto& t : file.tensors()) written.insert(t.name);
    const io::GgufFile direct = io::GgufFile::open(back);
    for (const auto& t : direct.tensors()) held.insert(t.name);
    if (s.tied) held.erase(io::gguf::tensor::kOutput);
    EXPECT_EQ(written, held);

    // GGUF -> Hugging Face folder: its config names the family.
    ASSERT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
    io::write_safetensors(dir + "/model.safetensors", lm::hf_tensors(*m));
    std::ofstream(dir + "/config.json") << lm::hf_config_json(*m);
    const io::HfConfig hc = io::read_hf_config(dir);
    ASSERT_TRUE(hc.text);
    EXPECT_EQ(lm::find_family_hf(hc.text->model_type), f);
    const auto hf = lm::load_model(dir);
    EXPECT_EQ(hf->config().arch, f->gguf_arch);
    EXPECT_EQ(hf->config().rope.mode, ops::RopeMode::RotateHalf);
    EXPECT_EQ(hf->config().rope.n_rot, s.n_rot);

    // ... -> GGUF again: the same model as the synth file (Q/K rows back in the family's order).
    lm::write_gguf(*hf, tok, back);
    const auto again = lm::load_gguf(io::GgufFile::open(back));
    EXPECT_EQ(again->config().rope.mode, f->gguf_rope);
    const std::vector<int32_t> ids = {1, 5, 9, 200, 7, 3};
    lm::KvCache ca(c, 16), cb(again->config(), 16);
    const Tensor want = m->forward_ids(ids, ca, true), got = again->forward_ids(ids, cb, true);
    EXPECT_EQ(test::max_abs_diff(got, want), 0.0);
    std::system(("rm -rf " + dir).c_str());
    std::remove(gguf.c_str()), std::remove(back.c_str());
  }
}
