#include "ocellus/train/feature_cache.h"

#include <chrono>
#include <cstdio>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"
#include "ocellus/vision/preprocess.h"

namespace ocellus::train {

std::string content_key(const std::string& bytes) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64: offset basis, then xor and multiply by the prime
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

int64_t build_feature_cache(const vision::VisionTower& tower, const std::vector<std::string>& paths,
                            const std::string& out_path, int64_t batch, const std::function<void(const CacheProgress&)>& progress,
                            int64_t hidden_after, std::vector<std::string>* skipped) {
  OCELLUS_CHECK(batch > 0, "cache: batch must be > 0");
  // One pass: each file read once, hashed, and decoded from the same bytes when its content is
  // new; the tower runs on every `batch` new pictures.
  const vision::VitConfig& c = tower.config();
  std::set<std::string> seen;
  std::vector<std::string> keys;  // of the pictures waiting in `pix`
  std::vector<Tensor> pix;
  std::vector<std::pair<std::string, Tensor>> out;
  auto encode = [&] {
    if (pix.empty()) return;
    const Tensor f = hidden_after >= 0 ? tower.hidden(pix, hidden_after) : tower.encode(pix);  // [B, n, d]
    for (size_t j = 0; j < keys.size(); ++j)
      out.push_back({keys[j], f.slice(0, int64_t(j), int64_t(j) + 1).reshape({f.dim(1), f.dim(2)}).contiguous()});
    keys.clear(), pix.clear();
  };
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < paths.size(); ++i) {
    try {
      const std::string bytes = io::read_text_file(paths[i], size_t(256) << 20);
      const std::string k = content_key(bytes);
      if (!seen.count(k)) {
        pix.push_back(vision::preprocess(io::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), paths[i]),
                                         c.preprocess));
        keys.push_back(k), seen.insert(k);
      }
    } catch (const Error& e) {  // a missing or broken image: skipped when asked, else the error
      if (!skipped) throw;
      skipped->push_back(e.what());
    }
    const bool last = i + 1 == paths.size();
    if (int64_t(pix.size()) == batch || last) {
      encode();
      if (progress)
        progress({int64_t(i + 1), int64_t(paths.size()), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    }
  }
  io::write_safetensors(out_path, out,
                        {{"ocellus.kind", "feature_cache"}, {"ocellus.key", "fnv1a64"},
                         {"ocellus.n_features", std::to_string(hidden_after >= 0 ? c.n_positions() : c.n_features())},
                         {"ocellus.hidden_after", std::to_string(hidden_after)},
                         {"ocellus.width", std::to_string(c.n_embd)}, {"ocellus.tower", c.kind},
                         {"ocellus.layers_run", std::to_string(c.n_layer_run)}});
  return int64_t(seen.size());
}

FeatureCache FeatureCache::open(const std::string& path, int64_t n_features, int64_t width, int64_t hidden_after) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto& md = f.metadata();
  auto get = [&](const char* k) {
    const auto it = md.find(k);
    OCELLUS_CHECK(it != md.end(), "cache: ", path, ": not a feature cache (no ", k, " metadata)");
    return it->second;
  };
  OCELLUS_CHECK(get("ocellus.kind") == "feature_cache", "cache: ", path, ": not a feature cache");
  // Caches written before 2026-12-06 keyed images by a hash with a mistyped offset basis (one
  // digit short of FNV-1a's); their keys match no image now.
  const auto key = md.find("ocellus.key");
  OCELLUS_CHECK(key != md.end() && key->second == "fnv1a64", "cache: ", path,
                ": built by an earlier ocellus, whose image keys are another hash; rebuild it with ocellus cache");
  const int64_t nf = std::stoll(get("ocellus.n_features")), w = std::stoll(get("ocellus.width"));
  const auto ha = md.find("ocellus.hidden_after");
  const int64_t after = ha == md.end() ? -1 : std::stoll(ha->second);
  OCELLUS_CHECK(after == hidden_after, "cache: ", path, ": holds ",
                after < 0 ? std::string("the tower's features") : "hidden states after block " + std::to_string(after),
                ", the recipe needs ",
                hidden_after < 0 ? std::string("the tower's features") : "hidden states after block " + std::to_string(hidden_after),
                " (ocellus cache --hidden-after N)");
  OCELLUS_CHECK(nf == n_features && w == width, "cache: ", path, ": built for a tower of ", nf, " features x ", w,
                ", the model's tower gives ", n_features, " x ", width);
  return FeatureCache(std::move(f));
}

Tensor FeatureCache::features(const std::string& key) const {
  OCELLUS_CHECK(file_.find(key) != nullptr, "cache: ", file_.path(), ": no features for image ", key);
  return file_.tensor(key);
}

Tensor FeatureCache::features_of(const std::string& image_path) const {
  const std::string key = content_key(io::read_text_file(image_path, size_t(256) << 20));
  OCELLUS_CHECK(file_.find(key) != nullptr, "cache: ", file_.path(), ": ", image_path,
                " is not in the cache (build it again with ocellus cache)");
  return file_.tensor(key);
}

}  // namespace ocellus::train
