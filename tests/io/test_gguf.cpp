#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/inspect.h"
#include "testutil.h"

using namespace ocellus;
using namespace ocellus::io;

namespace {

const std::string kPeer = std::string(OCELLUS_FIXTURES) + "/peer/";
const std::string kTok = std::string(OCELLUS_FIXTURES) + "/tokenizer/";

using test::read_file;
using test::temp_path;

// Parses bytes held in a string; returns the error message ("" if it parsed).
std::string parse_error(const std::string& bytes) {
  try {
    GgufFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A GGUF file built field by field, so each test can corrupt exactly one field.
struct Bytes {
  std::string s;
  Bytes& u32(uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); return *this; }
  Bytes& u64(uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); return *this; }
  Bytes& str(const std::string& v) { u64(v.size()); s += v; return *this; }
  Bytes& pad(size_t align) { s.resize((s.size() + align - 1) / align * align, '\0'); return *this; }
  Bytes& raw(size_t n, char c = 0) { s.append(n, c); return *this; }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes b;
  b.s = "GGUF";
  return std::move(b.u32(version).u64(n_tensors).u64(n_kv));
}

// One f32 tensor [2, 4] (ne = {4, 2}) named "w" at `offset`.
Bytes& tensor_info(Bytes& b, const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
  b.str(name).u32(uint32_t(ne.size()));
  for (uint64_t e : ne) b.u64(e);
  return b.u32(type).u64(offset);
}

}  // namespace

// ---- the fixtures -------------------------------------------------------------------------------

TEST(Gguf, EveryFixtureLoads) {
  const char* files[] = {"peer/tiny-llama-f32.gguf", "peer/tiny-llama-f16.gguf", "peer/tiny-llama-q8_0.gguf",
                         "peer/tiny-llama-q4_0.gguf", "peer/tiny-qwen2-f32.gguf", "peer/tiny-phi2-f32.gguf",
                         "peer/tiny-stablelm-f32.gguf", "peer/tiny-mmproj-clip-f32.gguf",
                         "peer/tiny-mmproj-clip-f16.gguf", "tokenizer/ggml-vocab-gpt-2.gguf",
                         "tokenizer/ggml-vocab-llama-spm.gguf"};
  for (const char* name : files) {
    const std::string path = std::string(OCELLUS_FIXTURES) + "/" + name;
    SCOPED_TRACE(name);
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_FALSE(f.get_string(gguf::key::kArchitecture).empty());
    // Every computable tensor maps, with the byte size its shape implies.
    for (const GgufTensorInfo& t : f.tensors()) {
      ASSERT_TRUE(t.type->dtype.has_value()) << t.name;
      Tensor x = f.tensor(t.name);
      EXPECT_TRUE(x.is_mapped());
      EXPECT_EQ(x.nbytes(), t.nbytes) << t.name;
    }
    // And inspect summarizes it.
    EXPECT_NE(inspect_model_file(path).find("architecture:"), std::string::npos);
  }
}

TEST(Gguf, LlamaFixtureValues) {
  GgufFile f = GgufFile::open(kPeer + "tiny-llama-q4_0.gguf");
  using namespace gguf;
  EXPECT_EQ(f.get_string(key::kArchitecture), "llama");
  EXPECT_EQ(f.get_int(arch_key("llama", key::kEmbeddingLength)), 64);
  EXPECT_EQ(f.get_int(arch_key("llama", key::kHeadCountKv)), 2);
  EXPECT_EQ(f.get_int(arch_key("llama", key::kFeedForwardLength)), 160);
  EXPECT_DOUBLE_EQ(f.get_float(arch_key("llama", key::kRmsEps)), double(1e-5f));
  EXPECT_EQ(f.get_strings(key::kTokTokens).size(), 32000u);
  EXPECT_EQ(f.get_strings(key::kTokTokens)[1], "<s>");
  EXPECT_EQ(f.get_floats(key::kTokScores).size(), 32000u);
  EXPECT_EQ(f.get_ints(key::kTokTypes)[1], 3);  // control
  EXPECT_TRUE(f.get_bool(key::kTokAddBos));
  Tensor emb = f.tensor(tensor::kTokenEmbd);
  EXPECT_EQ(emb.dtype(), DType::Q4_0);
  EXPECT_EQ(emb.shape(), (Shape{32000, 64}));
  EXPECT_EQ(f.tensor(name(tensor::kAttnK, 1)).shape(), (Shape{32, 64}));
  EXPECT_EQ(f.tensor(tensor::kOutput).dtype(), DType::Q8_0);
  // Missing keys and wrong types are errors that name the key.
  EXPECT_THROW(
      {
        try {
          f.get_int("llama.nonexistent");
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("llama.nonexistent"), std::string::npos);
          throw;
        }
      },
      Error);
  EXPECT_THROW(f.get_int(key::kArchitecture), Error);
}

TEST(Gguf, MmprojFixtureShapes) {
  GgufFile f = GgufFile::open(kPeer + "tiny-mmproj-clip-f32.gguf");
  using namespace gguf;
  EXPECT_EQ(f.get_string(key::kArchitecture), "clip");
  EXPECT_EQ(f.get_int(key::kClipBlockCount), 3);
  EXPECT_EQ(f.tensor(tensor::kVPatchEmbd).shape(), (Shape{48, 3, 8, 8}));
  EXPECT_EQ(f.tensor(tensor::kVPositionEmbd).shape(), (Shape{17, 48}));
  EXPECT_EQ(f.tensor(name(tensor::kVFfnFirst, 0)).shape(), (Shape{96, 48}));  // ffn_down is d -> ff
  EXPECT_EQ(f.get_floats(key::kClipImageMean).size(), 3u);
}

// ---- writing ------------------------------------------------------------------------------------

// Files written by llama.cpp come out byte for byte the same when read and written back.
TEST(Gguf, FixturesRoundTripBitExactly) {
  for (const char* name : {"peer/tiny-llama-q4_0.gguf", "peer/tiny-mmproj-clip-f16.gguf", "peer/tiny-phi2-f32.gguf",
                           "tokenizer/ggml-vocab-llama-spm.gguf"}) {
    SCOPED_TRACE(name);
    const std::string src = std::string(OCELLUS_FIXTURES) + "/" + name, dst = temp_path("rt.gguf");
    GgufWriter w;
    w.copy_from(GgufFile::open(src));
    w.write(dst);
    EXPECT_TRUE(read_file(src) == read_file(dst));
    std::remove(dst.c_str());
  }
}

TEST(Gguf, EveryValueTypeAndTensorDtypeRoundTrips) {
  GgufWriter w;
  GgufValue v;
  auto scalar = [](GgufType t, uint64_t u, int64_t i, double f) {
    GgufValue x;
    x.type = t, x.u = u, x.i = i, x.f = f;
    return x;
  };
  w.set("t.u8", scalar(GgufType::Uint8, 200, 0, 0));
  w.set("t.i8", scalar(GgufType::Int8, 0, -100, 0));
  w.set("t.u16", scalar(GgufType::Uint16, 60000, 0, 0));
  w.set("t.i16", scalar(GgufType::Int16, 0, -30000, 0));
  w.set("t.u32", GgufValue::u32(4000000000u));
  w.set("t.i32", GgufValue::i32(-2000000000));
  w.set("t.f32", GgufValue::f32(1.5f));
  w.set("t.bool", GgufValue::boolean(true));
  w.set("t.str", GgufValue::str("héllo"));
  w.set("t.u64", GgufValue::u64(~0ull));
  w.set("t.i64", scalar(GgufType::Int64, 0, INT64_MIN, 0));
  w.set("t.f64", scalar(GgufType::Float64, 0, 0, 0.1));
  w.set("t.strs", GgufValue::strings({"a", "", "ccc"}));
  w.set("t.floats", GgufValue::floats({1.0f, -2.5f}));
  w.set("t.nested", GgufValue::array(GgufType::Array, {GgufValue::ints({1, 2}), GgufValue::strings({"x"})}));
  w.set("t.empty", GgufValue::ints({}));
  w.set("general.alignment", GgufValue::u32(64));
  Tensor a = test::randn({3, 64}, 1);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0})
    w.add_tensor(std::string("w.") + dtype_name(t), a.to(t));
  const std::string path = temp_path("types.gguf"), again = temp_path("types2.gguf");
  w.write(path);

  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get("t.u8").u, 200u);
  EXPECT_EQ(f.get("t.i8").i, -100);
  EXPECT_EQ(f.get("t.u16").u, 60000u);
  EXPECT_EQ(f.get("t.i16").i, -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.get_string("t.str"), "héllo");
  EXPECT_EQ(f.get("t.u64").u, ~0ull);
  EXPECT_THROW(f.get("t.u64").as_int(), Error);  // past int64: reported, not wrapped
  EXPECT_EQ(f.get_int("t.i64"), INT64_MIN);
  EXPECT_EQ(f.get_float("t.f64"), 0.1);
  EXPECT_EQ(f.get_strings("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_floats("t.floats"), (std::vector<float>{1.0f, -2.5f}));
  const GgufValue& nested = f.get("t.nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested.at(0).at(1).as_int(), 2);
  EXPECT_EQ(nested.at(1).at(0).s, "x");
  EXPECT_EQ(f.get("t.empty").size(), 0u);
  for (const GgufTensorInfo& t : f.tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    Tensor got = f.tensor(std::string("w.") + dtype_name(t));
    Tensor want = a.to(t);
    ASSERT_EQ(got.dtype(), t);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << dtype_name(t);
  }
  // Written again from what was read: the same bytes.
  GgufWriter w2;
  w2.copy_from(f);
  w2.write(again);
  EXPECT_TRUE(read_file(path) == read_file(again));
  std::remove(path.c_str());
  std::remove(again.c_str());
}

TEST(Gguf, UnsupportedTensorTypeIsReportedByName) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.add_tensor("k", 16 /* iq2_xxs */, Shape{2, 256}, [](uint8_t* p) { std::memset(p, 0, 2 * 66); });
  const std::string path = temp_path("iq2xxs.gguf");
  w.write(path);
  GgufFile f = GgufFile::open(path);
  EXPECT_STREQ(f.tensor_info("k").type->name, "iq2_xxs");
  EXPECT_EQ(f.tensor_info("k").nbytes, 132u);
  try {
    f.tensor("k");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iq2_xxs"), std::string::npos) << e.what();
  }
  EXPECT_NE(inspect_model_file(path).find("iq2_xxs x1 (not computable"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Gguf, WriteIsAtomic) {
  // A failing tensor producer leaves the previous file untouched and no temporary behind.
  const std::string path = temp_path("atomic.gguf");
  GgufWriter ok;
  ok.set("a", GgufValue::u32(1));
  ok.write(path);
  const std::string before = read_file(path);
  GgufWriter bad;
  bad.set("a", GgufValue::u32(2));
  bad.add_tensor("t", 0, Shape{4}, [](uint8_t*) { fail("producer failed"); });
  EXPECT_THROW(bad.write(path), Error);
  EXPECT_EQ(read_file(path), before);
  EXPECT_FALSE(std::ifstream(path + ".tmp." + std::to_string(::getpid())).good());
  std::remove(path.c_str());
}

// ---- untrusted files ----------------------------------------------------------------------------

TEST(GgufCorrupt, ValidHandMadeFileParses) {
  Bytes b = header(1, 1);
  b.str("general.architecture").u32(8).str("llama");
  tensor_info(b, "w", {4, 2}, 0, 0).pad(32).raw(32, 1);
  EXPECT_EQ(parse_error(b.s), "");
}

TEST(GgufCorrupt, EveryTruncationIsACleanError) {
  std::string full = read_file(kPeer + "tiny-mmproj-clip-f32.gguf");
  // Every cut inside the header and metadata, then a sample of cuts through the data.
  for (size_t n = 0; n < full.size(); n += (n < 4096 ? 1 : 997)) {
    const std::string err = parse_error(full.substr(0, n));
    ASSERT_NE(err, "") << "cut at " << n;
    ASSERT_NE(err.find("test.gguf"), std::string::npos) << err;
  }
  EXPECT_EQ(parse_error(full), "");
}

TEST(GgufCorrupt, BadMagicAndVersion) {
  EXPECT_NE(parse_error("GGML\x03\0\0\0").find("not a GGUF file"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 1).s).find("v1"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 7).s).find("unsupported GGUF version 7"), std::string::npos);
  EXPECT_NE(parse_error(header(0, 0, 0x03000000).s).find("big-endian"), std::string::npos);
  EXPECT_NE(parse_error("GG").find("too small"), std::string::npos);
  EXPECT_EQ(parse_error(header(0, 0, 2).s), "");  // v2 is fine
}

TEST(GgufCorrupt, CountsLargerThanTheFile) {
  EXPECT_NE(parse_error(header(0, uint64_t(1) << 60).s).find("metadata count"), std::string::npos);
  EXPECT_NE(parse_error(header(uint64_t(1) << 60, 0).s).find("tensor count"), std::string::npos);
  Bytes s = header(0, 1);
  s.u64(uint64_t(1) << 62).raw(16);  // key length
  EXPECT_NE(parse_error(s.s).find("larger than the rest of the file"), std::string::npos);
  Bytes a = header(0, 1);
  a.str("arr").u32(9).u32(6).u64(uint64_t(1) << 61);  // 2^61 float32s
  const std::string err = parse_error(a.s);
  EXPECT_NE(err.find("metadata 'arr'"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot fit"), std::string::npos) << err;
  Bytes as = header(0, 1);
  as.str("arr").u32(9).u32(8).u64(1000).u64(5).raw(5, 'x');  // 1000 strings, one present
  EXPECT_NE(parse_error(as.s).find("cannot fit"), std::string::npos);
}

TEST(GgufCorrupt, BadValueTypesAndNesting) {
  Bytes t = header(0, 1);
  t.str("k").u32(13).u32(0);
  EXPECT_NE(parse_error(t.s).find("unknown value type 13"), std::string::npos);
  Bytes e = header(0, 1);
  e.str("k").u32(9).u32(42).u64(0);
  EXPECT_NE(parse_error(e.s).find("unknown value type 42"), std::string::npos);
  Bytes deep = header(0, 1);
  deep.str("k").u32(9);
  for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
  deep.u32(4).u64(0);
  EXPECT_NE(parse_error(deep.s).find("nested deeper"), std::string::npos);
  Bytes dup = header(0, 2);
  dup.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
  EXPECT_NE(parse_error(dup.s).find("duplicate key"), std::string::npos);
  Bytes al = header(0, 1);
  al.str("general.alignment").u32(4).u32(24);
  EXPECT_NE(parse_error(al.s).find("not a power of two"), std::string::npos);
  Bytes al2 = header(0, 1);
  al2.str("general.alignment").u32(8).str("32");
  EXPECT_NE(parse_error(al2.s).find("must be uint32"), std::string::npos);
}

TEST(GgufCorrupt, BadTensorInfos) {
  auto one = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data = 64) {
    Bytes b = header(1, 0);
    tensor_info(b, "w", ne, type, offset).pad(32).raw(data, 1);
    return parse_error(b.s);
  };
  EXPECT_EQ(one({4, 2}, 0, 0), "");
  EXPECT_NE(one({4, 2, 1, 1, 1}, 0, 0).find("5 dimensions"), std::string::npos);
  EXPECT_NE(one({}, 0, 0).find("0 dimensions"), std::string::npos);
  EXPECT_NE(one({4, 2}, 99, 0).find("unknown ggml tensor type 99"), std::string::npos);
  EXPECT_NE(one({uint64_t(1) << 63, 2}, 0, 0).find("absurd"), std::string::npos);
  EXPECT_NE(one({uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0).find("overflows"), std::string::npos);
  EXPECT_NE(one({uint64_t(1) << 61, 1}, 0, 0).find("overflows"), std::string::npos);  // bytes, not elements
  EXPECT_NE(one({33, 1}, 8, 0).find("whole number of q8_0 blocks"), std::string::npos);
  EXPECT_NE(one({4, 2}, 0, 16).find("not a multiple of the alignment"), std::string::npos);
  EXPECT_NE(one({4, 2}, 0, 64).find("past the end"), std::string::npos);
  EXPECT_NE(one({1024, 1024}, 0, 0).find("past the end"), std::string::npos);
  EXPECT_NE(one({4, 2}, 0, uint64_t(-32)).find("past the end"), std::string::npos);  // offset + size wraps
  // Overlapping and duplicate tensors.
  Bytes ov = header(2, 0);
  tensor_info(ov, "a", {16}, 0, 0);
  tensor_info(ov, "b", {16}, 0, 32).pad(32).raw(128);
  EXPECT_NE(parse_error(ov.s).find("overlaps tensor 'a'"), std::string::npos);
  Bytes dup = header(2, 0);
  tensor_info(dup, "a", {8}, 0, 0);
  tensor_info(dup, "a", {8}, 0, 32).pad(32).raw(64);
  EXPECT_NE(parse_error(dup.s).find("duplicate tensor name"), std::string::npos);
}

TEST(GgufCorrupt, OpenNamesTheFile) {
  const std::string path = temp_path("bad.gguf");
  {
    std::ofstream o(path, std::ios::binary);
    o << "not a model";
  }
  try {
    GgufFile::open(path);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  std::remove(path.c_str());
  EXPECT_THROW(GgufFile::open(path), Error);  // missing file
}
