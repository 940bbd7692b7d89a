#include "ocellus/train/recipe.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/json.h"

namespace ocellus::train {

namespace fs = std::filesystem;
using nlohmann::json;

Recipe parse_recipe(const std::string& text, const std::string& path) {
  const json j = io::parse_json(text, path, "recipe");
  OCELLUS_CHECK(j.is_object(), "recipe: ", path, ": not a JSON object");
  static const std::set<std::string> kKeys = {
      "base", "data", "images", "cache", "chat_template", "skip_bad_records", "trainable", "groups", "lr",
      "weight_decay", "beta1", "beta2", "eps", "clip", "warmup", "min_lr_ratio", "steps", "batch", "max_len",
      "seed", "out", "checkpoint_every", "keep", "lora", "tower_from", "micro_batch_tokens", "objective", "siglip", "ignore_images", "loss", "min_turns",
      "model", "kl_weight", "labels", "vae", "image_loss_weight", "cfg_dropout", "understanding", "init", "export_dtype"};
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
  auto flag = [&](const char* k, bool def) {
    if (!j.contains(k)) return def;
    OCELLUS_CHECK(j[k].is_boolean(), "recipe: ", path, ": '", k, "' must be true or false");
    return j[k].get<bool>();
  };
  auto strings = [&](const json& v, const char* k, const char* what, bool nonempty) {  // a list of names
    OCELLUS_CHECK(v.is_array() && (!nonempty || !v.empty()), "recipe: ", path, ": '", k, "' must be a list of ", what);
    std::vector<std::string> out;
    for (const json& e : v) {
      OCELLUS_CHECK(e.is_string(), "recipe: ", path, ": '", k, "' must be a list of ", what);
      out.push_back(e.get<std::string>());
    }
    return out;
  };
  if (j.contains("objective")) {
    const std::set<std::string> kinds = {"next_token", "siglip", "vae", "classifier", "fusion"};
    OCELLUS_CHECK(j["objective"].is_string() && kinds.count(j["objective"].get<std::string>()), "recipe: ", path,
                  ": 'objective' must be \"next_token\", \"siglip\", \"vae\", \"classifier\" or \"fusion\"");
    r.objective = j["objective"].get<std::string>();
  }
  // A model made from scratch has its config in the recipe, not a base folder.
  const bool fresh = r.objective == "vae" || r.objective == "classifier";
  OCELLUS_CHECK(!fresh || !j.contains("base"), "recipe: ", path, ": a '", r.objective,
                "' recipe makes its model from scratch ('model'): no 'base'");
  if (j.contains("model")) {
    OCELLUS_CHECK((fresh || r.objective == "fusion") && j["model"].is_object(), "recipe: ", path,
                  ": 'model' (an object: the new model's config) belongs to a 'vae', 'classifier' or 'fusion' recipe");
    r.model_config = j["model"].dump();
  }
  if (j.contains("export_dtype")) {
    const std::string d = str("export_dtype", false, false);
    OCELLUS_CHECK(fresh || r.objective == "fusion", "recipe: ", path, ": 'export_dtype' belongs to a 'vae', 'classifier' or 'fusion' recipe");
    OCELLUS_CHECK(d == "f32" || d == "f16" || d == "bf16", "recipe: ", path, ": 'export_dtype' must be \"f32\", \"f16\" or \"bf16\"");
    r.export_dtype = dtype_from_name(d);
  }
  r.labels = str("labels", r.objective == "classifier", true);
  r.kl_weight = num("kl_weight", r.kl_weight, 0, 1e6);
  r.vae = str("vae", r.objective == "fusion", true);
  r.init = str("init", false, true);
  OCELLUS_CHECK(r.init.empty() || r.objective == "fusion", "recipe: ", path, ": 'init' (a model folder to start from) belongs to a 'fusion' recipe");
  r.image_loss_weight = num("image_loss_weight", r.image_loss_weight, 0, 1e6);
  r.cfg_dropout = num("cfg_dropout", r.cfg_dropout, 0, 1);
  r.understanding = num("understanding", r.understanding, 0, 1);
  r.base = str("base", !fresh, true), r.data = str("data", true, true), r.images = str("images", false, true);
  r.cache = str("cache", false, true), r.chat_template = str("chat_template", false, false), r.out = str("out", true, true);
  r.on_bad = flag("skip_bad_records", false) ? data::OnBad::Skip : data::OnBad::Fail;
  r.ignore_images = flag("ignore_images", false);
  if (j.contains("trainable")) r.trainable = strings(j["trainable"], "trainable", "name prefixes", false);
  if (j.contains("loss")) {
    OCELLUS_CHECK(j["loss"] == "assistant" || j["loss"] == "all" || j["loss"] == "not_assistant", "recipe: ", path,
                  ": 'loss' must be \"assistant\", \"all\" or \"not_assistant\"");
    r.loss_on_all = j["loss"] == "all";
    r.loss_not_assistant = j["loss"] == "not_assistant";
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
    if (l.contains("targets")) r.lora_targets = strings(l["targets"], "lora.targets", "layer names", true);
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

}  // namespace ocellus::train
