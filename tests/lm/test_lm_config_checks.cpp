// A text model's sizes are checked when its file is read, each error naming the file and the key:
// every size key the GGUF loader reads, set to 0 (and context_length to 0, which once loaded).
#include <gtest/gtest.h>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/lm/lm.h"
#include "testutil.h"

namespace ocellus {
namespace {

TEST(LmConfigChecks, EverySizeKeyOfAGgufIsChecked) {
  const io::GgufFile src = io::GgufFile::open(std::string(OCELLUS_FIXTURES) + "/peer/tiny-llama-f32.gguf");
  const std::string path = test::temp_path("bad_size.gguf");
  for (const char* suffix : {io::gguf::key::kEmbeddingLength, io::gguf::key::kFeedForwardLength, io::gguf::key::kBlockCount,
                             io::gguf::key::kHeadCount, io::gguf::key::kHeadCountKv, io::gguf::key::kContextLength}) {
    const std::string key = io::gguf::arch_key("llama", suffix);
    io::GgufWriter w;
    w.copy_from(src);
    w.set(key, io::GgufValue::u32(0));
    w.write(path);
    try {
      lm::load_model(path);
      ADD_FAILURE() << key << " = 0 was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path + ": " + key + " = 0"), std::string::npos) << e.what();
    }
  }
  // Heads that do not divide the width.
  io::GgufWriter w;
  w.copy_from(src);
  w.set(io::gguf::arch_key("llama", io::gguf::key::kHeadCountKv), io::GgufValue::u32(3));
  w.write(path);
  try {
    lm::load_model(path);
    ADD_FAILURE() << "3 key/value heads for 4 heads were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": 4 heads (3 key/value heads) do not divide"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(LmConfigChecks, HfContextLengthZeroIsRefused) {
  try {
    io::parse_hf_config(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                            "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 0})",
                        "cfg/config.json");
    ADD_FAILURE() << "max_position_embeddings 0 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg/config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ocellus
