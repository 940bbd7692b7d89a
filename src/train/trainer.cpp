#include "ocellus/io/json.h"
#include "ocellus/train/trainer.h"

#include "trainer_common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/image.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/lm.h"
#include "ocellus/model/vlm.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/feature_cache.h"
#include "ocellus/train/siglip.h"
#include "ocellus/train/optim.h"
#include "ocellus/vision/vit.h"

namespace ocellus::train {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- the recipe ----------------------------------------------------------------------------

Recipe parse_recipe(const std::string& text, const std::string& path) {
  const json j = io::parse_json(text, path, "recipe");
  OCELLUS_CHECK(j.is_object(), "recipe: ", path, ": not a JSON object");
  static const std::set<std::string> kKeys = {
      "base", "data", "images", "cache", "chat_template", "skip_bad_records", "trainable", "groups", "lr",
      "weight_decay", "beta1", "beta2", "eps", "clip", "warmup", "min_lr_ratio", "steps", "batch", "max_len",
      "seed", "out", "checkpoint_every", "keep", "lora", "tower_from", "micro_batch_tokens", "objective", "siglip", "ignore_images", "loss", "min_turns"};
  for (const auto& [k, v] : j.items())
    OCELLUS_CHECK(kKeys.count(k), "recipe: ", path, ": unknown key '", k, "'");
  Recipe r;
  r.path = path;
  const fs::path dir = fs::path(path).parent_path();
  auto str = [&](const char* k, bool required, bool is_path) {
    if (!j.contains(k)) {
      OCELLUS_CHECK(!required, "recipe: ", path, ": '", k, "' is required");
      return std::string();
    }
    OCELLUS_CHECK(j[k].is_string(), "recipe: ", path, ": '", k, "' must be a string");
    std::string s = j[k].get<std::string>();
    if (is_path && !s.empty() && fs::path(s).is_relative()) s = (dir / s).lexically_normal().string();
    return s;
  };
  auto num = [&](const char* k, double def, double lo, double hi) {
    if (!j.contains(k)) return def;
    OCELLUS_CHECK(j[k].is_number(), "recipe: ", path, ": '", k, "' must be a number");
    const double v = j[k].get<double>();
    OCELLUS_CHECK(v >= lo && v <= hi, "recipe: ", path, ": '", k, "' = ", v, " outside [", lo, ", ", hi, "]");
    return v;
  };
  auto whole = [&](const char* k, double def, double lo, double hi) {  // a count: steps, batch, ...
    const double v = num(k, def, lo, hi);
    OCELLUS_CHECK(v == std::floor(v), "recipe: ", path, ": '", k, "' = ", v, " must be a whole number");
    return int64_t(v);
  };
  r.base = str("base", true, true), r.data = str("data", true, true), r.images = str("images", false, true);
  r.cache = str("cache", false, true), r.chat_template = str("chat_template", false, false), r.out = str("out", true, true);
  if (j.contains("skip_bad_records")) {
    OCELLUS_CHECK(j["skip_bad_records"].is_boolean(), "recipe: ", path, ": 'skip_bad_records' must be true or false");
    r.on_bad = j["skip_bad_records"].get<bool>() ? data::OnBad::Skip : data::OnBad::Fail;
  }
  if (j.contains("loss")) {
    OCELLUS_CHECK(j["loss"] == "assistant" || j["loss"] == "all" || j["loss"] == "not_assistant", "recipe: ", path,
                  ": 'loss' must be \"assistant\", \"all\" or \"not_assistant\"");
    r.loss_on_all = j["loss"] == "all";
    r.loss_not_assistant = j["loss"] == "not_assistant";
  }
  if (j.contains("ignore_images")) {
    OCELLUS_CHECK(j["ignore_images"].is_boolean(), "recipe: ", path, ": 'ignore_images' must be true or false");
    r.ignore_images = j["ignore_images"].get<bool>();
  }
  if (j.contains("trainable")) {
    OCELLUS_CHECK(j["trainable"].is_array(), "recipe: ", path, ": 'trainable' must be a list of name prefixes");
    r.trainable.clear();
    for (const json& p : j["trainable"]) {
      OCELLUS_CHECK(p.is_string(), "recipe: ", path, ": 'trainable' must be a list of name prefixes");
      r.trainable.push_back(p.get<std::string>());
    }
  }
  r.lr = num("lr", r.lr, 0, 10), r.weight_decay = num("weight_decay", r.weight_decay, 0, 10);
  r.beta1 = num("beta1", r.beta1, 0, 0.999999), r.beta2 = num("beta2", r.beta2, 0, 0.999999999);
  r.eps = num("eps", r.eps, 1e-30, 1), r.clip = num("clip", r.clip, 0, 1e9);
  r.warmup = whole("warmup", 0, 0, 1e9), r.min_lr_ratio = num("min_lr_ratio", 0, 0, 1);
  r.steps = whole("steps", double(r.steps), 1, 1e9), r.batch = whole("batch", double(r.batch), 1, 1e6);
  r.max_len = whole("max_len", double(r.max_len), 1, 1e7), r.seed = uint64_t(whole("seed", 1, 0, 1e18));
  r.checkpoint_every = whole("checkpoint_every", 0, 0, 1e9), r.keep = whole("keep", 2, 1, 1e6);
  r.tower_from = whole("tower_from", -1, -1, 1e4);
  r.min_turns = whole("min_turns", 1, 1, 1e6);
  r.micro_batch_tokens = whole("micro_batch_tokens", double(r.micro_batch_tokens), 1, 1e9);
  if (j.contains("lora")) {
    const json& l = j["lora"];
    OCELLUS_CHECK(l.is_object(), "recipe: ", path, ": 'lora' must be an object {rank, alpha, targets}");
    for (const auto& [k, v] : l.items())
      OCELLUS_CHECK(k == "rank" || k == "alpha" || k == "targets", "recipe: ", path, ": unknown key 'lora.", k, "'");
    OCELLUS_CHECK(l.contains("rank") && l["rank"].is_number_integer() && l["rank"].get<int64_t>() > 0, "recipe: ", path,
                  ": 'lora.rank' must be a positive integer");
    r.lora_rank = l["rank"].get<int64_t>();
    if (l.contains("alpha")) {
      OCELLUS_CHECK(l["alpha"].is_number() && l["alpha"].get<double>() > 0, "recipe: ", path, ": 'lora.alpha' must be > 0");
      r.lora_alpha = l["alpha"].get<double>();
    }
    if (l.contains("targets")) {
      OCELLUS_CHECK(l["targets"].is_array() && !l["targets"].empty(), "recipe: ", path, ": 'lora.targets' must be a list of layer names");
      r.lora_targets.clear();
      for (const json& t : l["targets"]) {
        OCELLUS_CHECK(t.is_string(), "recipe: ", path, ": 'lora.targets' must be a list of layer names");
        r.lora_targets.push_back(t.get<std::string>());
      }
    }
  }
  if (j.contains("objective")) {
    OCELLUS_CHECK(j["objective"].is_string() && (j["objective"] == "next_token" || j["objective"] == "siglip"), "recipe: ", path,
                  ": 'objective' must be \"next_token\" or \"siglip\"");
    r.objective = j["objective"].get<std::string>();
  }
  if (j.contains("siglip")) {
    const json& g = j["siglip"];
    OCELLUS_CHECK(g.is_object(), "recipe: ", path, ": 'siglip' must be an object");
    const std::vector<std::pair<const char*, int64_t*>> keys = {
        {"text_embd", &r.siglip.text_embd}, {"text_ff", &r.siglip.text_ff}, {"text_layers", &r.siglip.text_layers},
        {"text_heads", &r.siglip.text_heads}, {"embed_dim", &r.siglip.embed_dim}, {"max_text_len", &r.siglip.max_text_len}};
    for (const auto& item : g.items()) {
      const std::string k = item.key();
      const json& v = item.value();
      const auto it = std::find_if(keys.begin(), keys.end(), [&](const auto& p) { return k == p.first; });
      OCELLUS_CHECK(it != keys.end(), "recipe: ", path, ": unknown key 'siglip.", k, "'");
      OCELLUS_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, "recipe: ", path, ": 'siglip.", k, "' must be a positive integer");
      *it->second = v.get<int64_t>();
    }
    OCELLUS_CHECK(r.siglip.text_embd % r.siglip.text_heads == 0, "recipe: ", path, ": 'siglip.text_embd' must divide into 'text_heads' heads");
  }
  if (j.contains("groups")) {
    OCELLUS_CHECK(j["groups"].is_array(), "recipe: ", path, ": 'groups' must be a list");
    for (const json& g : j["groups"]) {
      OCELLUS_CHECK(g.is_object() && g.contains("prefix") && g["prefix"].is_string(), "recipe: ", path,
                    ": each group needs a 'prefix'");
      RecipeGroup rg;
      rg.prefix = g["prefix"].get<std::string>();
      for (const auto& [k, v] : g.items()) {
        OCELLUS_CHECK(k == "prefix" || k == "lr" || k == "weight_decay", "recipe: ", path, ": group '", rg.prefix, "': unknown key '", k, "'");
        OCELLUS_CHECK(k == "prefix" || (v.is_number() && v.get<double>() >= 0 && v.get<double>() <= 10), "recipe: ", path, ": group '",
                      rg.prefix, "': '", k, "' must be a number in [0, 10]");
      }
      rg.lr = g.value("lr", r.lr);
      rg.weight_decay = g.value("weight_decay", r.weight_decay);
      r.groups.push_back(rg);
    }
  }
  return r;
}

Recipe read_recipe(const std::string& path) { return parse_recipe(io::read_text_file(path), path); }

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

struct Sample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  std::string image_key;  // empty: no image
  int64_t counted = 0;    // tokens in the loss
};

std::string step_dir_name(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof(b), "step-%08lld", static_cast<long long>(step));
  return b;
}

}  // namespace

namespace detail {

void save_checkpoint(const std::string& out, int64_t step, const std::vector<std::pair<std::string, Tensor>>& tensors, AdamW& opt,
                     int64_t keep) {
  const fs::path root = fs::path(out) / "checkpoints", dir = root / step_dir_name(step);
  fs::create_directories(dir);
  io::write_safetensors((dir / "model.safetensors").string(), tensors);
  std::vector<std::pair<std::string, Tensor>> st;
  size_t i = 0;
  for (const ParamGroup& g : opt.groups())
    for (const ag::Var& p : g.params) {
      st.push_back({"m." + p->name, opt.m()[i]});
      st.push_back({"v." + p->name, opt.v()[i]});
      ++i;
    }
  io::write_safetensors((dir / "optimizer.safetensors").string(), st, {{"step", std::to_string(opt.steps())}});
  io::write_text_file_atomically((dir / "trainer.json").string(), json{{"step", step}}.dump());
  // Only now does `latest` name it: a kill before this line leaves the previous one latest.
  const std::string name = step_dir_name(step);
  io::write_text_file_atomically((root / "latest").string(), name);
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && starts_with(e.path().filename().string(), "step-")) dirs.push_back(e.path().filename().string());
  std::sort(dirs.begin(), dirs.end());
  for (size_t k = 0; k + size_t(keep) < dirs.size(); ++k)
    if (dirs[k] != name) fs::remove_all(root / dirs[k]);
}

namespace {

// The latest checkpoint's folder and its trainer.json.
std::pair<fs::path, json> latest_checkpoint(const std::string& out) {
  const fs::path root = fs::path(out) / "checkpoints";
  const std::string latest = (root / "latest").string();
  OCELLUS_CHECK(io::is_file(latest), "train: --resume: no checkpoint in ", root.string());
  const fs::path dir = root / io::read_text_file(latest, 256);
  const json state = io::read_json_file((dir / "trainer.json").string(), "train");
  OCELLUS_CHECK(state.is_object() && state.contains("step") && state["step"].is_number_integer(), "train: ", dir.string(), "/trainer.json is damaged");
  return {dir, state};
}

}  // namespace

int64_t load_checkpoint(const std::string& out, const std::vector<ag::Var>& params, AdamW& opt) {
  const auto [dir, state] = latest_checkpoint(out);
  const io::SafetensorsFile m = io::SafetensorsFile::open((dir / "model.safetensors").string());
  const io::SafetensorsFile o = io::SafetensorsFile::open((dir / "optimizer.safetensors").string());
  auto copy_into = [&](const io::SafetensorsFile& f, const std::string& name, Tensor& dst) {
    OCELLUS_CHECK(f.find(name) != nullptr, "train: checkpoint ", f.path(), " has no '", name, "' (another model?)");
    const Tensor t = f.tensor(name);
    OCELLUS_CHECK(t.shape() == dst.shape(), "train: checkpoint tensor '", name, "' has shape ", t.shape().str(), ", the model ", dst.shape().str());
    std::memcpy(dst.raw(), t.contiguous().raw(), dst.nbytes());
  };
  for (const ag::Var& p : params) copy_into(m, p->name, p->value);
  size_t i = 0;
  for (const ParamGroup& g : opt.groups())
    for (const ag::Var& p : g.params) {
      copy_into(o, "m." + p->name, opt.m()[i]);
      copy_into(o, "v." + p->name, opt.v()[i]);
      ++i;
    }
  opt.set_steps(std::stoll(o.metadata().at("step")));
  return state["step"].get<int64_t>();
}

void keep_log_until(const std::string& log_path, int64_t step) {
  std::string kept;
  if (io::is_file(log_path)) {
    std::istringstream in(io::read_text_file(log_path));
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
    }
  }
  io::write_text_file_atomically(log_path, kept);
}

std::vector<double> logged_losses(const std::string& log_path) {
  std::vector<double> all;
  std::istringstream in(io::read_text_file(log_path));
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("loss")) all.push_back(j["loss"].get<double>());
  }
  return all;
}

// A line chart of the losses, as loss.png.
void draw_loss_curve(const std::vector<double>& losses, const std::string& path) {
  if (losses.empty()) return;
  io::ImageRgb8 img;
  img.width = 640, img.height = 320;
  img.rgb.assign(size_t(img.width * img.height * 3), 255);
  double lo = *std::min_element(losses.begin(), losses.end()), hi = *std::max_element(losses.begin(), losses.end());
  if (hi - lo < 1e-12) hi = lo + 1;
  const int x0 = 40, y0 = 20, w = img.width - 60, h = img.height - 50;
  auto put = [&](int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
    uint8_t* p = img.rgb.data() + (size_t(y) * size_t(img.width) + size_t(x)) * 3;
    p[0] = r, p[1] = g, p[2] = b;
  };
  for (int x = x0; x <= x0 + w; ++x) put(x, y0 + h, 0, 0, 0);
  for (int y = y0; y <= y0 + h; ++y) put(x0, y, 0, 0, 0);
  int px = -1, py = -1;
  for (size_t i = 0; i < losses.size(); ++i) {
    const int x = x0 + int(double(w) * double(i) / double(std::max<size_t>(1, losses.size() - 1)));
    const int y = y0 + int(double(h) * (hi - losses[i]) / (hi - lo));
    if (px >= 0) {
      const int n = std::max(std::abs(x - px), std::abs(y - py));
      for (int k = 0; k <= n; ++k) put(px + (x - px) * k / std::max(1, n), py + (y - py) * k / std::max(1, n), 200, 30, 30);
    } else {
      put(x, y, 200, 30, 30);
    }
    px = x, py = y;
  }
  io::save_png(path, img);
}

}  // namespace detail

namespace {
using namespace detail;

}  // namespace

void export_folder(const std::string& base_dir, const std::map<std::string, Tensor>& trained, const std::string& dir) {
  const io::SafetensorsModel base = io::SafetensorsModel::open(base_dir);
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> out;
  size_t replaced = 0;
  for (const std::string& n : base.names()) {
    const auto it = trained.find(n);
    if (it != trained.end()) out.push_back({n, it->second}), ++replaced;
    else out.push_back({n, base.tensor(n)});
  }
  OCELLUS_CHECK(replaced == trained.size(), "train: export placed ", replaced, " of ", trained.size(), " trained tensors");
  io::write_safetensors(dir + "/model.safetensors", out);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"}) {
    const std::string src = base_dir + "/" + f;
    if (io::is_file(src)) fs::copy_file(src, dir + "/" + f, fs::copy_options::overwrite_existing);
  }
}

int64_t prepare_out_folder(const Recipe& r, Start start) {
  // What a run writes into out/ (recipes may point out/ anywhere: nothing else there is touched).
  static const char* kRunFiles[] = {"metrics.jsonl", "checkpoints", "model", "gguf", "loss.png", "siglip.safetensors"};
  if (start == Start::Resume) {
    const int64_t step = detail::latest_checkpoint(r.out).second["step"].get<int64_t>();
    OCELLUS_CHECK(step <= r.steps, "train: ", r.out, ": the checkpoint is at step ", step, ", past the recipe's 'steps' = ", r.steps,
                  " (", r.path, "): raise 'steps' to go on, or --overwrite to start over");
    if (step == r.steps && dist().main())
      std::fprintf(stderr, "train: %s: the checkpoint is at the recipe's last step (%lld): nothing left to train; exporting\n",
                   r.out.c_str(), (long long)step);
    return step;
  }
  std::vector<std::string> found;
  for (const char* f : kRunFiles)
    if (fs::exists(fs::path(r.out) / f)) found.push_back(f);
  if (!found.empty() && start == Start::Fresh) {
    std::string list;
    for (const std::string& f : found) list += (list.empty() ? "" : ", ") + f;
    fail("train: ", r.out, " already holds a run (", list, "): --resume continues it, --overwrite starts over (removing those)");
  }
  if (dist().main())
    for (const std::string& f : found) fs::remove_all(fs::path(r.out) / f);
  return 0;
}

TrainResult run_recipe(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step, int64_t stop_after) {
  if (r.objective == "siglip") return run_siglip(r, start, on_step, stop_after);
  const bool resume = start == Start::Resume;
  const io::HfConfig cfg = io::read_hf_config(r.base);
  const text::Tokenizer tok = text::Tokenizer::from_file(r.base);
  const text::ChatTemplate tmpl = text::resolve_chat_template(r.chat_template, r.base, tok);
  const io::SafetensorsModel st = io::SafetensorsModel::open(r.base);
  model::TrainVlmConfig tc = model::train_config_from_hf(cfg);
  tc.tower_from = r.tower_from;
  model::TrainableVlm vlm(tc, io::safetensors_source(st, r.base));
  // With the tower's upper blocks training, the cache holds the hidden states below them. Text-only
  // data (language-model pretraining) needs no cache.
  std::optional<FeatureCache> cache;
  if (!r.cache.empty())  // made by the base's tower (the blocks below tower_from when those above train)
    cache.emplace(FeatureCache::open(r.cache, model::load_hf_vision(r.base)->tower(), r.tower_from));

  // Data: records -> sequences; a record whose image is not cached is an error naming it.
  std::vector<std::string> skipped;
  std::vector<data::Record> records = data::read_llava_json(r.data, r.on_bad, &skipped);
  int64_t too_short = 0;
  if (r.min_turns > 1) {  // only the conversations with at least min_turns replies
    const size_t before = records.size();
    std::erase_if(records, [&](const data::Record& rec) {
      return std::count_if(rec.messages.begin(), rec.messages.end(), [](const text::Message& m) { return m.role == "assistant"; }) <
             r.min_turns;
    });
    too_short = int64_t(before - records.size());
  }
  if (r.ignore_images)  // the text alone: no image, no placeholder
    for (data::Record& rec : records) {
      rec.image.clear();
      for (text::Message& m : rec.messages)
        for (const char* tag : {"<image>\n", "<image>"})
          for (size_t at; (at = m.content.find(tag)) != std::string::npos;) m.content.erase(at, std::strlen(tag));
    }
  const bool say = dist().main();  // one process reports
  if (say && too_short)
    std::fprintf(stderr, "train: %lld record(s) with fewer than %lld replies left out (min_turns)\n", (long long)too_short,
                 (long long)r.min_turns);
  std::vector<Sample> samples;
  int64_t truncated = 0, empty = 0;
  for (const data::Record& rec : records) {
    const data::Encoded e = data::encode_record(rec, tok, tmpl, vlm.n_image_tokens(), r.max_len);
    Sample s{e.ids, e.mask, {}, 0};
    if (r.loss_on_all) std::fill(s.mask.begin(), s.mask.end(), uint8_t(1));
    if (r.loss_not_assistant)  // the prompts' text, not the replies (a language model without the answers)
      for (uint8_t& m : s.mask) m = !m;
    for (size_t i = 1; i < s.ids.size(); ++i) s.counted += s.mask[i] && s.ids[i] >= 0;
    truncated += e.truncated;
    if (s.counted == 0) {
      ++empty;
      continue;
    }
    if (e.has_image) {
      OCELLUS_CHECK(cache.has_value(), "train: ", r.path, ": record '", rec.id, "' has an image, but the recipe names no 'cache' ",
                    "(build one with ocellus cache)");
      const std::string img = r.images.empty() ? rec.image : r.images + "/" + rec.image;
      try {
        s.image_key = content_key(io::read_text_file(img, size_t(256) << 20));
        OCELLUS_CHECK(cache->has_key(s.image_key), "train: ", img, " (record '", rec.id, "') is not in the cache ", r.cache,
                      " (run ocellus cache on this data; ocellus cache --skip-bad leaves broken images out)");
      } catch (const Error& err) {  // a missing image, or one the cache left out (broken)
        if (r.on_bad != data::OnBad::Skip) throw;
        skipped.push_back(err.what());
        continue;
      }
    }
    samples.push_back(std::move(s));
  }
  for (size_t i = 0; say && i < skipped.size() && i < 5; ++i) std::fprintf(stderr, "train: skipped %s\n", skipped[i].c_str());
  if (say && !skipped.empty())
    std::fprintf(stderr, "train: skipped %zu record(s) (malformed, or a missing or broken image)\n", skipped.size());
  OCELLUS_CHECK(!samples.empty(), "train: ", r.data, ": no usable samples");
  if (say && truncated) std::fprintf(stderr, "train: %lld sequence(s) truncated to %lld tokens\n", (long long)truncated, (long long)r.max_len);
  if (say && empty) std::fprintf(stderr, "train: %lld sequence(s) with no reply tokens left were dropped\n", (long long)empty);

  if (r.lora_rank > 0) vlm.enable_lora(r.lora_rank, float(r.lora_alpha), r.lora_targets, r.seed);
  // Parameters: which train, in which group. With LoRA the adapters train and the text model's
  // own weights stay frozen.
  std::vector<ParamGroup> groups(r.groups.size() + 1);
  groups.back().lr = r.lr, groups.back().weight_decay = r.weight_decay;
  for (size_t g = 0; g < r.groups.size(); ++g) groups[g].lr = r.groups[g].lr, groups[g].weight_decay = r.groups[g].weight_decay;
  int64_t n_trainable = 0;
  for (const ag::Var& p : vlm.params()) {
    p->requires_grad = std::any_of(r.trainable.begin(), r.trainable.end(), [&](const std::string& pre) { return starts_with(p->name, pre); });
    if (r.lora_rank > 0 && (starts_with(p->name, "model.") || starts_with(p->name, "lm_head.")))
      p->requires_grad = p->name.find(".lora_") != std::string::npos;
    if (!p->requires_grad) continue;
    n_trainable += p->value.numel();
    size_t g = 0;
    while (g < r.groups.size() && !starts_with(p->name, r.groups[g].prefix)) ++g;
    groups[g].params.push_back(p);
  }
  OCELLUS_CHECK(n_trainable > 0, "train: ", r.path, ": 'trainable' matches no parameter");
  std::vector<ag::Var> trainable;
  for (const ParamGroup& g : groups) trainable.insert(trainable.end(), g.params.begin(), g.params.end());
  AdamW opt(groups, r.beta1, r.beta2, r.eps);

  const Dist& D = dist();
  OCELLUS_CHECK(D.size <= r.batch, "train: ", D.size, " processes for a batch of ", r.batch, " (each needs a sequence)");
  prepare_out_folder(r, start);  // after the data's checks, before anything is written
  fs::create_directories(r.out);
  const std::string log_path = r.out + "/metrics.jsonl";
  TrainResult res;
  if (resume) {
    res.first_step = load_checkpoint(r.out, vlm.params(), opt);
    if (D.main()) keep_log_until(log_path, res.first_step);
    if (D.main()) std::fprintf(stderr, "train: resumed from step %lld\n", (long long)res.first_step);
  } else {
    if (D.main()) io::write_text_file_atomically(log_path, "");
  }

  Order order(samples.size(), r.seed);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_total = 0;
  for (int64_t step = res.first_step; step < r.steps; ++step) {
    opt.zero_grad();
    int64_t counted = 0, tokens = 0;  // counted: the global batch's tokens in the loss (every process knows them)
    std::vector<size_t> idx;  // this process's share of the global batch
    for (int64_t j = 0; j < r.batch; ++j) {
      const size_t i = order.at(step * r.batch + j);
      counted += samples[i].counted;
      if (j % D.size == D.rank) idx.push_back(i);
    }
    // Micro-batches of up to micro_batch_tokens tokens run as one stacked pass each (gradient
    // accumulation); each weighted by its share of the counted tokens, so the gradient is that
    // of the batch's token mean whatever the split.
    const int64_t kTokenBudget = r.micro_batch_tokens;
    double loss = 0;
    for (size_t at = 0; at < idx.size();) {
      std::vector<model::TrainSample> micro;
      int64_t micro_tokens = 0, micro_counted = 0;
      while (at < idx.size() && (micro.empty() || micro_tokens + int64_t(samples[idx[at]].ids.size()) <= kTokenBudget)) {
        const Sample& s = samples[idx[at++]];
        model::TrainSample ts{s.ids, s.mask, {}};
        if (!s.image_key.empty()) ts.features.push_back(cache->features(s.image_key));
        micro.push_back(std::move(ts));
        micro_tokens += int64_t(s.ids.size()), micro_counted += s.counted;
      }
      const ag::Var l = ag::scale(vlm.loss_batch(micro), float(double(micro_counted) / double(counted)));
      ag::Tape::current().backward(l);
      loss += double(l->value.data<float>()[0]);
      tokens += micro_tokens;
    }
    if (D.size > 1) {  // the gradients and loss of the whole batch
      for (const ag::Var& p : trainable) {
        if (!p->grad.defined()) p->grad = Tensor::zeros(p->value.shape());
        allreduce_sum(p->grad.data<float>(), p->grad.numel());
      }
      loss = allreduce_sum(loss);
      tokens = int64_t(allreduce_sum(double(tokens)));
    }
    const double norm = r.clip > 0 ? clip_grad_norm(trainable, r.clip) : clip_grad_norm(trainable, 1e30);
    const double factor = cosine_schedule(step, r.warmup, r.steps, r.min_lr_ratio);
    opt.step(factor);
    tokens_total += tokens;
    res.losses.push_back(loss);
    StepStats s;
    s.step = step + 1, s.steps = r.steps, s.first_step = res.first_step, s.tokens = tokens, s.loss = loss, s.lr = r.lr * factor, s.grad_norm = norm;
    s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_s = double(tokens_total) / std::max(1e-9, s.elapsed_s);
    if (D.main()) {
      std::ofstream log(log_path, std::ios::app);
      log << json{{"step", s.step}, {"loss", loss}, {"lr", s.lr}, {"grad_norm", norm}, {"tokens", tokens}, {"loss_tokens", counted},
                  {"tokens_per_s", s.tokens_per_s}, {"elapsed_s", s.elapsed_s}}.dump() << "\n";
    }
    if (on_step) on_step(s);
    const bool last = step + 1 == r.steps;
    if (D.main() && (last || (r.checkpoint_every > 0 && (step + 1) % r.checkpoint_every == 0)))
      save_checkpoint(r.out, step + 1, vlm.tensors(), opt, r.keep);
    if (stop_after > 0 && step + 1 - res.first_step >= stop_after && !last) return res;
  }
  res.model_dir = r.out + "/model";
  res.gguf_model = r.out + "/gguf/model.gguf", res.gguf_mmproj = r.out + "/gguf/mmproj.gguf";
  if (!D.main()) return res;  // the first process writes the results
  // The curve over the whole run (resumed runs included), and the model.
  draw_loss_curve(logged_losses(log_path), r.out + "/loss.png");
  {
    // Each trained tensor goes back under the name it was read from.
    std::map<std::string, Tensor> trained;
    for (const auto& [n, t] : vlm.merged_tensors()) trained[vlm.file_name(n)] = t;
    export_folder(r.base, trained, res.model_dir);
  }
  // The same model as a GGUF pair (text model + mmproj) for llama.cpp-style runners.
  fs::create_directories(r.out + "/gguf");
  std::string jinja;  // the folder's chat template travels into the GGUF, so runners pick it up
  if (io::is_file(r.base + "/tokenizer_config.json")) {
    const json tc = io::read_json_file(r.base + "/tokenizer_config.json", "train");
    if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string()) jinja = tc["chat_template"].get<std::string>();
  }
  lm::write_gguf(*lm::load_hf(res.model_dir), tok, r.out + "/gguf/model.gguf", jinja);
  std::vector<std::pair<std::string, Tensor>> proj;
  for (const auto& [n, t] : vlm.tensors()) {
    const std::string lin = "multi_modal_projector.linear_", pre = "multi_modal_projector.";
    if (starts_with(n, lin))  // MLP / linear: llama.cpp's mm.0 / mm.2
      proj.push_back({std::string("mm.") + (n[lin.size()] == '1' ? "0" : "2") + n.substr(lin.size() + 1), t});
    else if (starts_with(n, pre))  // attn_blocks: the same local names under mm.
      proj.push_back({"mm." + n.substr(pre.size()), t});
  }
  model::write_mmproj(model::load_hf_vision(res.model_dir)->tower(), vlm.config().connector, proj, vlm.lm_config().n_embd,
                      r.out + "/gguf/mmproj.gguf", vlm.config().merge);
  return res;
}

}  // namespace ocellus::train
