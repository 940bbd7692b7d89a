// init_llava for every trainable text family: the folder's text model is written under the
// family's Hugging Face names and layout, exactly the tensors the loader reads (no more, no
// fewer), and loads as that family.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <set>

#include "ocellus/io/gguf.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/lm/family.h"
#include "ocellus/model/init.h"
#include "ocellus/model/synth.h"
#include "ocellus/text/tokenizer.h"
#include "testutil.h"

using namespace ocellus;

TEST(InitFamilies, EachTrainableFamilyWritesWhatItsLoaderReads) {
  // A byte-level BPE vocabulary (init writes tokenizer.json, which needs one).
  const std::string vocab = test::temp_path("init_vocab.gguf");
  model::write_synth_model(model::synth_shape("tiny-qwen2"), {}, vocab);
  const text::Tokenizer tok = text::Tokenizer::from_gguf(io::GgufFile::open(vocab));
  for (const lm::Family* f : lm::families()) {
    if (!f->trainable) continue;
    for (bool tied : {true, false}) {
      SCOPED_TRACE(f->gguf_arch + (tied ? " tied" : " untied"));
      model::InitSpec s;
      s.family = f->gguf_arch, s.qkv_bias = !tied, s.tied = tied;
      s.n_embd = 32, s.n_ff = 48, s.n_layer = 2, s.n_head = 4, s.n_head_kv = 2, s.n_ctx = 64;
      s.image_size = 14, s.patch_size = 7, s.vision_embd = 16, s.vision_ff = 32, s.vision_layers = 1, s.vision_heads = 2;
      const std::string dir = test::temp_path("init_" + f->gguf_arch);
      ASSERT_EQ(std::system(("rm -rf " + dir).c_str()), 0);
      model::init_llava(s, tok, dir);
      const auto m = lm::load_model(dir);
      const lm::LmConfig& c = m->config();
      EXPECT_EQ(c.arch, f->gguf_arch);
      EXPECT_EQ(c.norm, f->norm);
      EXPECT_EQ(c.act, f->act);
      EXPECT_EQ(c.gated_ffn, f->layout.gated);
      EXPECT_EQ(c.parallel_block, f->parallel_block);
      // The family's own defaults where the config is silent (phi2: partial rotary, q/k/v biases).
      const io::HfTextConfig t = *io::read_hf_config(dir).text;
      EXPECT_EQ(c.rope.n_rot, int64_t(double(c.head_dim) * t.partial_rotary_factor));
      EXPECT_EQ(m->weights().layers[0].bq.defined(), t.qkv_bias);
      EXPECT_EQ(t.qkv_bias, s.qkv_bias || f->gguf_arch == "qwen2" || f->gguf_arch == "phi2");
      // The text tensors in the file are exactly those the model has (hf_tensors lists what
      // it loaded, under the same names).
      std::set<std::string> written, loaded;
      for (const std::string& n : io::SafetensorsModel::open(dir).names())
        if (n.rfind("language_model.", 0) == 0) written.insert(n.substr(15));
      for (const auto& [n, t] : lm::hf_tensors(*m)) loaded.insert(n);
      // (A tied output is listed too: the exporter cannot tell the prepared copy of the
      // embedding from a matrix of its own.)
      EXPECT_EQ(written.count("lm_head.weight"), tied ? 0u : 1u);
      if (tied) loaded.erase("lm_head.weight");
      EXPECT_EQ(written, loaded);
      lm::KvCache kv(c, 8);
      const Tensor logits = m->forward_ids({1, 2, 3}, kv, false);
      for (int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits.data<float>()[i]));
      std::system(("rm -rf " + dir).c_str());
    }
  }
  std::remove(vocab.c_str());
}

TEST(InitFamilies, UnknownFamilyIsAnErrorNamingTheKnownOnes) {
  model::InitSpec s;
  s.family = "gptj";
  const std::string e = test::error_of([&] { s.validate(); });
  EXPECT_NE(e.find("'gptj'"), std::string::npos) << e;
  EXPECT_NE(e.find("llama"), std::string::npos) << e;
}
