// Text perplexity (eval/perplexity.h): the mean next-token NLL of each text as its own sequence.
#include <gtest/gtest.h>

#include <cmath>

#include "ocellus/core/error.h"
#include "ocellus/eval/perplexity.h"
#include "ocellus/io/gguf.h"
#include "ocellus/model/synth.h"
#include "testutil.h"

using namespace ocellus;

TEST(Perplexity, IsTheMeanNextTokenNllOfEachTextAlone) {
  const std::string path = test::temp_path("ppl_base.gguf");
  model::SynthOptions o;
  o.dtype = DType::F32;
  model::write_synth_model(model::synth_shape("tiny-llama"), o, path);
  const io::GgufFile g = io::GgufFile::open(path);
  const auto m = lm::load_gguf(g);
  const std::vector<std::vector<int32_t>> texts = {{1, 5, 9, 200}, {7}, {3, 3}};
  // By hand: the second text predicts nothing; the third's one token after the first sees only it.
  double want = 0;
  for (const auto& ids : {texts[0], texts[2]}) {
    lm::KvCache c(m->config(), 8, DType::F32);
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const Tensor l = m->forward_ids({ids[i]}, c, false);
      double z = 0;
      for (int64_t v = 0; v < l.numel(); ++v) z += std::exp(double(l.data<float>()[v]));
      want += std::log(z) - double(l.data<float>()[ids[i + 1]]);
    }
  }
  const eval::Perplexity p = eval::text_perplexity(*m, texts);
  EXPECT_EQ(p.tokens, 4);
  EXPECT_NEAR(p.nll, want / 4, 1e-5 * want / 4);
  EXPECT_NEAR(p.ppl, std::exp(want / 4), 1e-4 * std::exp(want / 4));
  EXPECT_THROW(eval::text_perplexity(*m, {{4}}), Error);
}
