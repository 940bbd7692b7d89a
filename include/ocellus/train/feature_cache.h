#pragma once
// The embedding cache: a frozen vision tower run once over a dataset's images, its features
// ([n_features, d_vision] per image, before the connector) stored in one safetensors file
// (memory-mapped on read) under the hex FNV-1a 64 hash of each image file's bytes, so the same
// picture under two names is encoded once and a renamed file still hits. The metadata records
// the tower it came from (a hash of what the features pass through: weights, preprocessing,
// feature layer), so a cache of another tower, even one of the same shape, is refused.
#include <functional>
#include <string>
#include <vector>

#include "ocellus/io/safetensors.h"
#include "ocellus/vision/vit.h"

namespace ocellus::train {

std::string content_key(const std::string& bytes);  // 16 hex digits

// What a cache's features depend on, hashed (16 hex digits, FNV-1a 64): the preprocessing, the
// embeddings and the blocks the features pass through (those below the feature layer, or the
// first hidden_after blocks when hidden_after >= 0) with the settings that change them. Blocks
// above are left out: training them keeps the cache. desc says it in words ("clip 336px pad,
// feature layer 23").
struct TowerFingerprint {
  std::string hash, desc;
};
TowerFingerprint tower_fingerprint(const vision::VisionTower& tower, int64_t hidden_after = -1);

struct CacheProgress {
  int64_t done = 0, total = 0;  // image paths read (a repeated picture is encoded once)
  double seconds = 0;
};

// Encodes every distinct image of `paths` (each file read once; batches of `batch` new pictures
// per tower call) and writes
// the cache atomically to out_path. A missing or broken image is an error naming it, or, with
// `skipped`, left out and its error added there. Returns the count of
// distinct images encoded. hidden_after >= 0 stores instead the hidden state after that many
// blocks ([n_positions, width]), for training the blocks above it.
int64_t build_feature_cache(const vision::VisionTower& tower, const std::vector<std::string>& paths,
                            const std::string& out_path, int64_t batch = 8,
                            const std::function<void(const CacheProgress&)>& progress = {}, int64_t hidden_after = -1,
                            std::vector<std::string>* skipped = nullptr);

class FeatureCache {
 public:
  // Refuses a cache that `tower` would not have made (tower_fingerprint(tower, hidden_after)
  // differs), naming both towers, and one of another kind (hidden states vs features) or shape.
  static FeatureCache open(const std::string& path, const vision::VisionTower& tower, int64_t hidden_after = -1);
  bool has_key(const std::string& key) const { return file_.find(key) != nullptr; }
  Tensor features(const std::string& key) const;  // [n_features, width] f32 view of the mapping

 private:
  explicit FeatureCache(io::SafetensorsFile f) : file_(std::move(f)) {}
  io::SafetensorsFile file_;
};

}  // namespace ocellus::train
