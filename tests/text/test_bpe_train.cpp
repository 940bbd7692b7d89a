#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "ocellus/core/error.h"
#include "ocellus/text/bpe_train.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::text;

TEST(BpeTrain, MostFrequentPairsFirst) {
  BpeTrainOptions o;
  o.vocab_size = 256 + 2;
  o.min_frequency = 1;
  // Words: "ab" x1, " ab" x2, " cd" x1. Pairs: (a,b) 3, (Ġ,a) 2, (Ġ,c) 1, (c,d) 1.
  const Tokenizer t = train_bpe({"ab ab ab cd"}, o);
  EXPECT_EQ(t.n_vocab(), 258);
  EXPECT_EQ(t.token(256), "ab");
  EXPECT_EQ(t.token(257), "\xc4\xa0" "ab");  // "Ġab": (Ġ, ab) now occurs twice
  EXPECT_EQ(t.encode(" ab", false), (std::vector<int32_t>{257}));
  EXPECT_EQ(t.encode("abcd", false), (std::vector<int32_t>{256, 'c', 'd'}));
}

TEST(BpeTrain, SpecialsVocabularySizeAndRoundTrip) {
  std::string corpus;
  const char* items[] = {"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"};
  const char* places[] = {"top left", "top right", "bottom left", "bottom right"};
  for (int i = 0; i < 400; ++i)
    corpus += std::string("a ") + items[i % 10] + " in the " + places[(i / 10) % 4] + " and a " + items[(i * 7) % 10] +
              " in the " + places[(i / 3) % 4] + ". how many " + items[(i * 3) % 10] + "s? " + std::to_string(i) + "\n";
  corpus += "<image>\n";
  BpeTrainOptions o;
  o.vocab_size = 380;
  o.specials = {"<|endoftext|>", "<image>", "<|im_start|>", "<|im_end|>"};
  o.eos = "<|endoftext|>";
  const Tokenizer t = train_bpe({corpus}, o);
  EXPECT_EQ(t.n_vocab(), 380);
  EXPECT_EQ(t.encode(" sneaker", false).size(), 1u);  // frequent words became single tokens
  EXPECT_EQ(t.encode(" bottom", false).size(), 1u);
  EXPECT_EQ(t.find("<image>"), 1);
  EXPECT_TRUE(t.is_special(1));
  EXPECT_EQ(t.eos(), 0);
  const std::string text = "a sneaker in the top left <image> and 3 bags. ünïcödé too";
  const std::vector<int32_t> ids = t.encode(text, false, true);
  EXPECT_EQ(t.decode(ids, false), text);
  EXPECT_LT(ids.size(), text.size() / 2);  // it learned something
  EXPECT_NE(std::find(ids.begin(), ids.end(), 1), ids.end());
  // Written as tokenizer.json and read back: the same tokens.
  const std::string dir = test::temp_path("bpe");
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  t.save_hf_json(dir + "/tokenizer.json");
  const Tokenizer back = Tokenizer::from_file(dir + "/tokenizer.json");
  EXPECT_EQ(back.n_vocab(), t.n_vocab());
  EXPECT_EQ(back.encode(text, false, true), ids);
  EXPECT_EQ(back.eos(), 0);
  // Deterministic.
  EXPECT_EQ(train_bpe({corpus}, o).encode(corpus, false), t.encode(corpus, false));
  o.vocab_size = 100;
  EXPECT_THROW(train_bpe({corpus}, o), Error);
}
