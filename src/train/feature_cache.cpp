#include "ocellus/train/feature_cache.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/image.h"
#include "ocellus/vision/preprocess.h"

namespace ocellus::train {

namespace {

// FNV-1a 64: the offset basis, then each byte xored in and multiplied by the prime. Large
// buffers (a tower's weights) go in 8-byte little-endian words, the same step on a word: 8x
// fewer multiplies, every byte still counted.
struct Fnv1a64 {
  uint64_t h = 14695981039346656037ull;
  static constexpr uint64_t kPrime = 1099511628211ull;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * kPrime;
  }
  void words(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, b + i, 8);
      h = (h ^ w) * kPrime;
    }
    bytes(b + i, n - i);
  }
  void str(const std::string& s) { bytes(s.data(), s.size() + 1); }  // the NUL keeps fields apart
  void tensor(const Tensor& t) {
    if (!t.defined()) return str("-");
    const Tensor c = t.contiguous();
    str(t.shape().str() + dtype_name(t.dtype()));
    words(c.raw(), c.nbytes());
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

}  // namespace

std::string content_key(const std::string& bytes) {
  Fnv1a64 f;
  f.bytes(bytes.data(), bytes.size());
  return f.hex();
}

TowerFingerprint tower_fingerprint(const vision::VisionTower& tower, int64_t hidden_after) {
  const vision::VitConfig& c = tower.config();
  const vision::VitWeights& w = tower.weights();
  const bool features = hidden_after < 0;
  const int64_t blocks = features ? c.n_layer_run : hidden_after;
  OCELLUS_CHECK(blocks >= 0 && blocks <= int64_t(w.blocks.size()), "cache: hidden state after ", blocks, " blocks of a tower of ",
                w.blocks.size());
  const vision::PreprocessConfig& p = c.preprocess;
  char pre[160];
  std::snprintf(pre, sizeof(pre), "%s %dpx mean %.9g %.9g %.9g std %.9g %.9g %.9g", vision::mode_name(p.mode), p.size,
                double(p.mean[0]), double(p.mean[1]), double(p.mean[2]), double(p.std[0]), double(p.std[1]), double(p.std[2]));
  TowerFingerprint fp;
  fp.desc = c.kind + " " + std::to_string(p.size) + "px " + vision::mode_name(p.mode) + ", " +
            (features ? "feature layer " + std::to_string(c.n_layer_run) : "hidden after block " + std::to_string(hidden_after));
  // What the stored features pass through: preprocessing, embeddings and the blocks below the
  // feature layer (or hidden_after), then the feature-only steps. Blocks above are not read, so
  // training them (TinyLLaVA's "share") keeps the cache.
  Fnv1a64 h;
  h.str(pre);
  h.str(std::to_string(c.image_size) + " " + std::to_string(c.patch_size) + " " + std::to_string(c.n_embd) + " " +
        std::to_string(c.n_head) + " " + std::to_string(blocks));
  h.bytes(&c.norm_eps, sizeof(c.norm_eps));
  h.str(std::to_string(int(c.act)) + (c.class_token ? " cls" : "") + (c.pre_norm ? " pre" : ""));
  for (const Tensor* t : {&w.patch_w, &w.patch_b, &w.class_embd, &w.pos_embd, &w.pre_ln_w, &w.pre_ln_b}) h.tensor(*t);
  for (int64_t i = 0; i < blocks; ++i) {
    const vision::VitBlock& b = w.blocks[size_t(i)];
    for (const Tensor* t : {&b.ln1_w, &b.ln1_b, &b.ln2_w, &b.ln2_b, &b.q_b, &b.k_b, &b.v_b, &b.o_b, &b.fc1_b, &b.fc2_b}) h.tensor(*t);
    for (const ops::PreparedWeight* m : {&b.q, &b.k, &b.v, &b.o, &b.fc1, &b.fc2}) h.tensor(m->tensor());
  }
  if (features) {
    h.str(std::string(c.post_norm ? "post" : "") + (c.drop_class_token ? " patch" : " cls_patch"));
    if (c.post_norm) h.tensor(w.post_ln_w), h.tensor(w.post_ln_b);
  }
  fp.hash = h.hex();
  return fp;
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
  const TowerFingerprint fp = tower_fingerprint(tower, hidden_after);
  io::write_safetensors(out_path, out,
                        {{"ocellus.kind", "feature_cache"}, {"ocellus.key", "fnv1a64"},
                         {"ocellus.tower_hash", fp.hash}, {"ocellus.tower_desc", fp.desc},
                         {"ocellus.n_features", std::to_string(hidden_after >= 0 ? c.n_positions() : c.n_features())},
                         {"ocellus.hidden_after", std::to_string(hidden_after)},
                         {"ocellus.width", std::to_string(c.n_embd)}, {"ocellus.tower", c.kind},
                         {"ocellus.layers_run", std::to_string(c.n_layer_run)}});
  return int64_t(seen.size());
}

FeatureCache FeatureCache::open(const std::string& path, const vision::VisionTower& tower, int64_t hidden_after) {
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
  // Caches written before 2026-12-07 name only the tower's shape, which another tower shares.
  const auto th = md.find("ocellus.tower_hash");
  OCELLUS_CHECK(th != md.end(), "cache: ", path,
                ": built by an earlier ocellus, which did not record the tower it ran; rebuild it with ocellus cache");
  const vision::VitConfig& c = tower.config();
  const int64_t n_features = hidden_after >= 0 ? c.n_positions() : c.n_features(), width = c.n_embd;
  const int64_t nf = std::stoll(get("ocellus.n_features")), w = std::stoll(get("ocellus.width"));
  const auto ha = md.find("ocellus.hidden_after");
  const int64_t after = ha == md.end() ? -1 : std::stoll(ha->second);
  auto held = [](int64_t a) { return a < 0 ? std::string("the tower's features") : "hidden states after block " + std::to_string(a); };
  OCELLUS_CHECK(after == hidden_after, "cache: ", path, ": holds ", held(after), ", the recipe needs ", held(hidden_after),
                " (ocellus cache --hidden-after N)");
  OCELLUS_CHECK(nf == n_features && w == width, "cache: ", path, ": built for a tower of ", nf, " features x ", w,
                ", the model's tower gives ", n_features, " x ", width);
  const TowerFingerprint fp = tower_fingerprint(tower, hidden_after);
  const auto desc = md.find("ocellus.tower_desc");
  OCELLUS_CHECK(th->second == fp.hash, "cache: ", path, ": made by tower ", th->second, " (",
                desc == md.end() ? std::string("?") : desc->second, "), this model's tower is ", fp.hash, " (", fp.desc,
                "): its features differ; rebuild it with ocellus cache");
  return FeatureCache(std::move(f));
}

Tensor FeatureCache::features(const std::string& key) const {
  OCELLUS_CHECK(file_.find(key) != nullptr, "cache: ", file_.path(), ": no features for image ", key);
  return file_.tensor(key);
}

}  // namespace ocellus::train
