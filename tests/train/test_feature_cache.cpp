// The feature cache is keyed by the tower that made it: a cache of another tower of the same shape,
// of another feature layer or preprocessing, is refused naming both towers; the same tower (and one
// whose blocks above the cached hidden state differ) is accepted.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "ocellus/core/error.h"
#include "ocellus/model/vlm.h"
#include "ocellus/train/feature_cache.h"
#include "testutil.h"

using namespace ocellus;

namespace {

const std::string kImages = std::string(OCELLUS_FIXTURES) + "/images/";

vision::VisionTower fixture_tower() {
  return model::load_mmproj(std::string(OCELLUS_FIXTURES) + "/peer/tiny-mmproj-clip-f32.gguf")->tower();
}

// The tower with one weight of block `b` (its query bias) moved: same shape, other weights.
vision::VisionTower nudged(const vision::VisionTower& t, size_t b) {
  vision::VitWeights w = t.weights();
  w.blocks[b].q_b = w.blocks[b].q_b.clone();
  w.blocks[b].q_b.data<float>()[0] += 1e-3f;
  return vision::VisionTower(t.config(), w);
}

std::string build(const vision::VisionTower& t, const std::string& name, int64_t hidden_after = -1) {
  const std::string path = test::temp_path(name + ".safetensors");
  EXPECT_EQ(train::build_feature_cache(t, {kImages + "chelsea.png", kImages + "coffee.png"}, path, 8, {}, hidden_after), 2);
  return path;
}

// The error opening `path` with `tower` gives ("" when it opens).
std::string open_error(const std::string& path, const vision::VisionTower& tower, int64_t hidden_after = -1) {
  try {
    train::FeatureCache::open(path, tower, hidden_after);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_refused(const std::string& path, const vision::VisionTower& made_by, const vision::VisionTower& other,
                    int64_t hidden_after = -1) {
  const std::string e = open_error(path, other, hidden_after);
  ASSERT_FALSE(e.empty()) << "another tower's cache was opened";
  for (const std::string& s : {path, train::tower_fingerprint(made_by, hidden_after).hash,
                               train::tower_fingerprint(other, hidden_after).hash, std::string("rebuild it with ocellus cache")})
    EXPECT_NE(e.find(s), std::string::npos) << "'" << s << "' not in: " << e;
}

}  // namespace

TEST(FeatureCacheTower, AnotherTowerOfTheSameShapeIsRefused) {
  const vision::VisionTower a = fixture_tower(), b = nudged(a, 0);
  ASSERT_EQ(a.config().n_features(), b.config().n_features());
  ASSERT_EQ(a.config().n_embd, b.config().n_embd);
  const std::string path = build(a, "cache_tower_a");
  EXPECT_EQ(open_error(path, a), "");  // the same tower (loaded again): accepted
  EXPECT_EQ(open_error(path, fixture_tower()), "");
  expect_refused(path, a, b);
  // The message says what each tower is.
  const std::string e = open_error(path, b);
  std::printf("%s\n", e.c_str());
  EXPECT_NE(e.find("clip 32px pad, feature layer 2"), std::string::npos) << e;
  std::filesystem::remove(path);
}

TEST(FeatureCacheTower, AnotherFeatureLayerOrPreprocessingIsRefused) {
  const vision::VisionTower a = fixture_tower();
  const std::string path = build(a, "cache_layer");
  vision::VitConfig c1 = a.config();
  c1.n_layer_run = 1;  // the same weights, features after one block: same shape
  const vision::VisionTower l1(c1, a.weights());
  ASSERT_EQ(l1.config().n_features(), a.config().n_features());
  expect_refused(path, a, l1);
  EXPECT_NE(open_error(path, l1).find("feature layer 1"), std::string::npos);
  vision::VitConfig cm = a.config();
  cm.preprocess.mean[0] += 0.01f;
  expect_refused(path, a, vision::VisionTower(cm, a.weights()));
  std::filesystem::remove(path);
}

// Hidden states after block 1 depend on block 0 only: a tower whose block 1 differs (trained
// above the cache, TinyLLaVA's "share") keeps the cache; one whose block 0 differs does not.
TEST(FeatureCacheTower, HiddenStatesDependOnTheBlocksBelowOnly) {
  const vision::VisionTower a = fixture_tower();
  const std::string path = build(a, "cache_hidden", 1);
  EXPECT_EQ(open_error(path, a, 1), "");
  EXPECT_EQ(open_error(path, nudged(a, 1), 1), "");
  expect_refused(path, a, nudged(a, 0), 1);
  EXPECT_NE(open_error(path, a, -1).find("hidden states after block 1"), std::string::npos);  // features wanted
  std::filesystem::remove(path);
}

// Every byte of the weights counts, the dtype too (the same values stored as f16 are another tower).
TEST(FeatureCacheTower, FingerprintCoversEveryWeightByte) {
  const vision::VisionTower a = fixture_tower();
  const std::string h = train::tower_fingerprint(a).hash;
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(train::tower_fingerprint(fixture_tower()).hash, h);
  vision::VitWeights w = a.weights();
  w.pos_embd = w.pos_embd.clone();
  const int64_t last = w.pos_embd.numel() - 1;
  w.pos_embd.data<float>()[last] = std::nextafter(w.pos_embd.data<float>()[last], 1.0f);  // one bit of the last value
  EXPECT_NE(train::tower_fingerprint(vision::VisionTower(a.config(), w)).hash, h);
  vision::VitWeights w16 = a.weights();
  w16.blocks[1].fc2 = ops::PreparedWeight(w16.blocks[1].fc2.tensor().to(DType::F16));
  EXPECT_NE(train::tower_fingerprint(vision::VisionTower(a.config(), w16)).hash, h);
  EXPECT_EQ(train::tower_fingerprint(vision::VisionTower(a.config(), w16), 1).hash, train::tower_fingerprint(a, 1).hash);
}

// A cache from before the tower was recorded is refused with what to do.
TEST(FeatureCacheTower, CachesWithoutTheTowerAreRefused) {
  const std::string path = test::temp_path("cache_no_tower.safetensors");
  io::write_safetensors(path, {{"0123456789abcdef", Tensor::zeros({16, 48})}},
                        {{"ocellus.kind", "feature_cache"}, {"ocellus.key", "fnv1a64"}, {"ocellus.n_features", "16"},
                         {"ocellus.hidden_after", "-1"}, {"ocellus.width", "48"}, {"ocellus.tower", "clip"},
                         {"ocellus.layers_run", "2"}});
  const std::string e = open_error(path, fixture_tower());
  EXPECT_NE(e.find("did not record the tower"), std::string::npos) << e;
  EXPECT_NE(e.find("rebuild it with ocellus cache"), std::string::npos) << e;
  std::filesystem::remove(path);
}
