#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/inspect.h"
#include "ocellus/io/safetensors.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::io;

namespace {

std::string temp_dir(const std::string& name) {
  const std::string d = test::temp_path(name);
  ::mkdir(d.c_str(), 0755);
  return d;
}

// A safetensors file from a header string and a data section.
std::string file_bytes(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

std::string parse_error(const std::string& bytes) {
  try {
    SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST(Safetensors, WriteReadRoundTrip) {
  const std::string dir = temp_dir("st1");
  Tensor a = test::randn({3, 5}, 1), b = test::randn({7}, 2).to(DType::F16), c = test::randn({2, 2, 4}, 3).to(DType::BF16);
  write_safetensors(dir + "/m.safetensors", {{"a", a}, {"b.weight", b}, {"c", c}}, {{"format", "pt"}});
  SafetensorsFile f = SafetensorsFile::open(dir + "/m.safetensors");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  for (const auto& [name, want] : std::vector<std::pair<std::string, Tensor>>{{"a", a}, {"b.weight", b}, {"c", c}}) {
    Tensor got = f.tensor(name);
    EXPECT_TRUE(got.is_mapped());
    EXPECT_EQ(got.dtype(), want.dtype());
    EXPECT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name;
  }
  // Data begins 8-byte aligned.
  uint64_t n;
  std::ifstream(dir + "/m.safetensors", std::ios::binary).read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_THROW(write_safetensors(dir + "/q.safetensors", {{"q", a.to(DType::Q8_0)}}), Error);
}

TEST(Safetensors, ShardedCheckpointThroughTheIndex) {
  const std::string dir = temp_dir("st2");
  std::vector<std::pair<std::string, Tensor>> ts;
  for (int i = 0; i < 5; ++i) ts.push_back({"layer." + std::to_string(i) + ".w", test::randn({16, 16}, uint32_t(i))});
  write_safetensors_sharded(dir, ts, 2 * 16 * 16 * 4);  // two tensors per shard -> 3 shards
  ASSERT_TRUE(is_file(dir + "/model.safetensors.index.json"));
  ASSERT_TRUE(is_file(dir + "/model-00003-of-00003.safetensors"));
  SafetensorsModel m = SafetensorsModel::open(dir);
  EXPECT_EQ(m.files().size(), 3u);
  EXPECT_EQ(m.names().size(), 5u);
  for (const auto& [name, want] : ts) EXPECT_EQ(test::rel_err(m.tensor(name), want), 0.0) << name;
  EXPECT_NE(inspect_model_file(dir).find("3 shards"), std::string::npos);
  // An index naming a tensor that its shard lacks is an error naming both.
  write_text(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"layer.0.w": "model-00002-of-00003.safetensors"}})");
  try {
    SafetensorsModel::open(dir);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.0.w"), std::string::npos) << e.what();
  }
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map": {"x": "../etc/passwd"}})");
  EXPECT_THROW(SafetensorsModel::open(dir), Error);
}

TEST(Safetensors, OtherDtypesAreReportedByName) {
  const std::string hdr = R"({"i":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})";
  const std::string dir = temp_dir("st3");
  write_text(dir + "/i.safetensors", file_bytes(hdr, std::string(16, '\0')));
  SafetensorsFile f = SafetensorsFile::open(dir + "/i.safetensors");
  EXPECT_EQ(f.tensors()[0].dtype, "I64");
  try {
    f.tensor("i");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("I64"), std::string::npos);
  }
}

TEST(SafetensorsCorrupt, EachFieldIsCheckedAgainstTheFile) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  EXPECT_EQ(parse_error(file_bytes(ok, std::string(16, '\0'))), "");
  EXPECT_NE(parse_error("abc").find("too small"), std::string::npos);
  std::string huge(16, '\0');
  const uint64_t big = uint64_t(1) << 40;
  std::memcpy(huge.data(), &big, 8);
  EXPECT_NE(parse_error(huge).find("100 MB limit"), std::string::npos);
  std::string past = file_bytes(ok, "");
  const uint64_t n = 1000;
  std::memcpy(past.data(), &n, 8);
  EXPECT_NE(parse_error(past).find("runs past the end"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes("[1, 2]", "")).find("JSON object"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes("{\"w\": {", "")).find("invalid JSON"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "xxxx")).find("'dtype'"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", "xxxx"))
                .find("unknown dtype 'F33'"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "xxxx"))
                .find("need 8"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", "xxxx"))
                .find("past the end"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "xxxx"))
                .find("end before"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "xxxx"))
                .find("non-negative"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(
                R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", "xxxx"))
                .find("overflows"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   std::string(12, '\0')))
                .find("overlaps"), std::string::npos);
  EXPECT_NE(parse_error(file_bytes(R"({"__metadata__":{"a":1}})", "")).find("not a string"), std::string::npos);
}

// ---- Hugging Face config.json -------------------------------------------------------------------

TEST(HfConfig, LlavaWithSubConfigs) {
  // The shape of llava-hf/llava-1.5-7b-hf's config: text_config omits what LlamaConfig defaults.
  const HfConfig c = parse_hf_config(R"({
    "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
    "image_token_index": 32000, "projector_hidden_act": "gelu",
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
    "text_config": {"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "vocab_size": 32064},
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768}})", "llava.json");
  ASSERT_TRUE(c.text && c.vision && c.projector);
  EXPECT_EQ(c.architectures[0], "LlavaForConditionalGeneration");
  EXPECT_EQ(c.text->model_type, "llama");
  EXPECT_EQ(c.text->hidden_size, 4096);
  EXPECT_EQ(c.text->num_key_value_heads, 32);
  EXPECT_EQ(c.text->vocab_size, 32064);
  EXPECT_EQ(c.text->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.text->norm_eps, 1e-5);
  EXPECT_EQ(c.vision->image_size, 336);
  EXPECT_EQ(c.vision->patch_size, 14);
  EXPECT_EQ(c.vision->hidden_act, "quick_gelu");
  EXPECT_EQ(c.projector->type, "mlp2x_gelu");
  EXPECT_EQ(c.projector->vision_feature_layer, -2);
  EXPECT_EQ(c.projector->vision_feature_select, "patch");
  EXPECT_EQ(c.projector->image_token_index, 32000);
}

TEST(HfConfig, OriginalLlavaFlatKeysAndPlainModels) {
  const HfConfig l = parse_hf_config(R"({"model_type": "llava_llama", "hidden_size": 2048, "intermediate_size": 5632,
    "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
    "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
    "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "pad",
    "eos_token_id": [2, 7]})", "tinyllava.json");
  ASSERT_TRUE(l.text && l.projector);
  EXPECT_FALSE(l.vision);
  EXPECT_EQ(l.text->num_key_value_heads, 4);
  EXPECT_EQ(l.text->head_dim(), 64);
  EXPECT_EQ(l.text->eos_token_id, 2);
  EXPECT_EQ(l.projector->vision_tower, "openai/clip-vit-large-patch14-336");
  EXPECT_EQ(l.projector->image_aspect_ratio, "pad");

  const HfConfig q = parse_hf_config(R"({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "rope_theta": 1000000.0, "tie_word_embeddings": true})", "qwen.json");
  EXPECT_TRUE(q.text->qkv_bias);
  EXPECT_TRUE(q.text->tie_word_embeddings);
  EXPECT_EQ(q.text->rope_theta, 1e6);
  EXPECT_FALSE(q.projector);

  const HfConfig p = parse_hf_config(R"({"model_type": "phi", "partial_rotary_factor": 0.4,
    "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 32, "num_attention_heads": 32})", "phi.json");
  EXPECT_DOUBLE_EQ(p.text->partial_rotary_factor, 0.4);
  EXPECT_EQ(p.text->hidden_act, "gelu_new");

  const HfConfig s = parse_hf_config(R"({"model_type": "siglip_vision_model", "hidden_size": 1152,
    "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 384,
    "patch_size": 14})", "siglip.json");
  ASSERT_TRUE(s.vision);
  EXPECT_FALSE(s.text);
  EXPECT_EQ(s.vision->hidden_act, "gelu_pytorch_tanh");
  EXPECT_DOUBLE_EQ(s.vision->layer_norm_eps, 1e-6);
}

TEST(HfConfig, BadValuesNameTheField) {
  auto err = [](const std::string& text) {
    try {
      parse_hf_config(text, "cfg.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("{").find("invalid JSON"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llama","hidden_size":"big"})").find("hidden_size"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llama","num_attention_heads":0})").find("num_attention_heads"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llama","hidden_size":100,"num_attention_heads":3})").find("does not divide"),
            std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llava","text_config":{"num_key_value_heads":5}})").find("text_config.num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(err(R"({"model_type":"siglip_vision_model","image_size":10,"patch_size":14})").find("patch_size"),
            std::string::npos);
}

TEST(HfConfig, HuggingFaceFolderInspects) {
  const std::string dir = temp_dir("hf");
  write_text(dir + "/config.json", R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 160,
    "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100})");
  write_safetensors(dir + "/model.safetensors", {{"model.embed_tokens.weight", test::randn({100, 64}, 1).to(DType::BF16)}});
  const std::string s = inspect_model_file(dir, {true, false});
  EXPECT_NE(s.find("llama: hidden 64"), std::string::npos) << s;
  EXPECT_NE(s.find("BF16 x1"), std::string::npos) << s;
  EXPECT_NE(s.find("model.embed_tokens.weight"), std::string::npos) << s;
}
