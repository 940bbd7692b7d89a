#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/lm/family.h"
#include "ocellus/text/chat.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::text;

namespace {

const std::string kFix = OCELLUS_FIXTURES;

const std::vector<Message> kTwoTurns = {
    {"user", "<image>\nWhat is this?"}, {"assistant", "A cat."}, {"user", "Color?"}, {"assistant", "Gray."}};

// The GPT-2 vocabulary with extra control tokens appended (ChatML / Llama 3 markers), written as
// a vocabulary-only GGUF.
Tokenizer gpt2_with(const std::vector<std::string>& extra, const std::string& pre = "gpt-2") {
  io::GgufFile src = io::GgufFile::open(kFix + "/tokenizer/ggml-vocab-gpt-2.gguf");
  io::GgufWriter w;
  w.copy_from(src);
  std::vector<std::string> toks = src.get_strings(io::gguf::key::kTokTokens);
  std::vector<int32_t> types;
  for (int64_t t : src.get_ints(io::gguf::key::kTokTypes)) types.push_back(int32_t(t));
  for (const std::string& e : extra) {
    toks.push_back(e);
    types.push_back(3);
  }
  w.set(io::gguf::key::kTokTokens, io::GgufValue::strings(toks));
  w.set(io::gguf::key::kTokTypes, io::GgufValue::ints(types));
  w.set(io::gguf::key::kTokPre, io::GgufValue::str(pre));
  const std::string path = test::temp_path("vocab.gguf");
  w.write(path);
  Tokenizer t = Tokenizer::from_file(path);
  std::remove(path.c_str());
  return t;
}

// The text of the masked tokens, joined.
std::string masked_text(const Tokenizer& tok, const EncodedChat& e, uint8_t which) {
  std::string s;
  for (size_t i = 0; i < e.ids.size(); ++i)
    if (e.mask[i] == which) s += tok.piece(e.ids[i]);
  return s;
}

}  // namespace

TEST(Chat, VicunaLlava15) {
  EXPECT_EQ(render_chat_text(ChatTemplate::Vicuna, kTwoTurns, false),
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the human's questions. USER: <image>\nWhat is this? ASSISTANT: A cat.</s>"
            "USER: Color? ASSISTANT: Gray.</s>");
  EXPECT_EQ(render_chat_text(ChatTemplate::Vicuna, {{"system", "Be brief."}, {"user", "Hi"}}, true),
            "Be brief. USER: Hi ASSISTANT:");
  const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const EncodedChat e = encode_chat(tok, ChatTemplate::Vicuna, kTwoTurns);
  ASSERT_EQ(e.ids.size(), e.mask.size());
  EXPECT_EQ(e.ids[0], tok.bos());
  EXPECT_EQ(e.mask[0], 0);
  // Trained on: each reply with its leading space and its </s>; nothing else.
  EXPECT_EQ(masked_text(tok, e, 1), " A cat.</s> Gray.</s>");
  EXPECT_EQ(e.ids.back(), tok.eos());
  EXPECT_EQ(e.mask.back(), 1);
}

TEST(Chat, Llama2) {
  EXPECT_EQ(render_chat_text(ChatTemplate::Llama2, {{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}, {"user", "Q"}}, true),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo </s><s>[INST] Q [/INST]");
  const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-llama-spm.gguf");
  const EncodedChat e = encode_chat(tok, ChatTemplate::Llama2, {{"user", "Hi"}, {"assistant", "Yo"}});
  EXPECT_EQ(e.ids[0], tok.bos());  // written by the template, not added twice
  EXPECT_NE(e.ids[1], tok.bos());
  EXPECT_EQ(masked_text(tok, e, 1), " Yo </s>");
}

TEST(Chat, Phi2TinyLlava) {
  const Tokenizer tok = Tokenizer::from_file(kFix + "/tokenizer/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(render_chat_text(ChatTemplate::Phi2, {{"user", "Hi"}, {"assistant", "Yo"}}, false),
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: Hi ASSISTANT: Yo<|endoftext|>");
  const EncodedChat e = encode_chat(tok, ChatTemplate::Phi2, kTwoTurns);
  EXPECT_EQ(masked_text(tok, e, 1), " A cat.<|endoftext|> Gray.<|endoftext|>");
  EXPECT_EQ(std::count(e.mask.begin(), e.mask.end(), 1), 7);  // " A", " cat", ".", eot, " Gray", ".", eot
}

TEST(Chat, ChatMLQwen2) {
  const Tokenizer tok = gpt2_with({"<|im_start|>", "<|im_end|>"}, "qwen2");
  EXPECT_EQ(render_chat_text(ChatTemplate::ChatML, {{"user", "Hi"}, {"assistant", "Yo"}}, false),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nYo<|im_end|>\n");
  const EncodedChat e = encode_chat(tok, ChatTemplate::ChatML, kTwoTurns);
  EXPECT_EQ(masked_text(tok, e, 1), "A cat.<|im_end|>Gray.<|im_end|>");
  EXPECT_EQ(e.ids[0], tok.find("<|im_start|>"));
  const EncodedChat g = encode_chat(tok, ChatTemplate::ChatML, {{"user", "Hi"}}, true);
  EXPECT_EQ(std::count(g.mask.begin(), g.mask.end(), 1), 0);
}

TEST(Chat, Llama3) {
  const Tokenizer tok = gpt2_with({"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}, "llama-bpe");
  EXPECT_EQ(render_chat_text(ChatTemplate::Llama3, {{"system", "S"}, {"user", "Hi"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  const EncodedChat e = encode_chat(tok, ChatTemplate::Llama3, kTwoTurns);
  EXPECT_EQ(masked_text(tok, e, 1), "A cat.<|eot_id|>Gray.<|eot_id|>");
}

TEST(Chat, BadConversationsAreErrors) {
  EXPECT_THROW(render_chat(ChatTemplate::Vicuna, {{"assistant", "x"}}, false), Error);
  EXPECT_THROW(render_chat(ChatTemplate::Vicuna, {{"user", "a"}, {"user", "b"}}, false), Error);
  EXPECT_THROW(render_chat(ChatTemplate::ChatML, {{"user", "a"}, {"bot", "b"}}, false), Error);
  EXPECT_THROW(render_chat(ChatTemplate::ChatML, {{"user", "a"}}, false), Error);  // needs a reply or gen prompt
  EXPECT_THROW(chat_template_from_name("alpaca"), Error);
  EXPECT_EQ(chat_template_from_name("llava"), ChatTemplate::Vicuna);
  EXPECT_EQ(chat_template_from_name("tinyllava"), ChatTemplate::Phi2);
}

TEST(Chat, DetectedFromModelFiles) {
  EXPECT_EQ(lm::detect_chat_template(io::GgufFile::open(kFix + "/peer/tiny-llama-f32.gguf")), ChatTemplate::Vicuna);
  EXPECT_EQ(lm::detect_chat_template(io::GgufFile::open(kFix + "/peer/tiny-qwen2-f32.gguf")), ChatTemplate::ChatML);
  EXPECT_EQ(lm::detect_chat_template(io::GgufFile::open(kFix + "/peer/tiny-phi2-f32.gguf")), ChatTemplate::Phi2);
  EXPECT_THROW(lm::detect_chat_template(io::GgufFile::open(kFix + "/peer/tiny-mmproj-clip-f32.gguf")), Error);
}

// A reply whose first characters join the template's last ones into one word tokenizes
// differently piecewise than whole: an error, not a sample with a shifted mask.
TEST(Chat, TemplateTokenizerMismatchIsAnError) {
  const Tokenizer tok = gpt2_with({"<|im_start|>", "<|im_end|>"}, "qwen2");
  try {
    encode_chat(tok, ChatTemplate::ChatML, {{"user", "Hi"}, {"assistant", "\nYo"}});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
  }
}
