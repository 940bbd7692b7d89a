#include "ocellus/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/core/progress.h"
#include "ocellus/io/file.h"
#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/train/dist.h"

namespace ocellus::train {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::pair<std::string, json>> read_metrics_log(const std::string& path) {
  std::vector<std::pair<std::string, json>> out;
  if (!io::is_file(path)) return out;
  std::istringstream in(io::read_text_file(path));
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);  // a line cut by a kill is skipped on purpose
    if (!j.is_discarded() && j.is_object()) out.push_back({line, std::move(j)});
  }
  return out;
}

namespace {

// The order samples are seen in: epoch e is a Fisher-Yates shuffle seeded by (seed, e).
class Order {
 public:
  Order(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  size_t at(int64_t pos) {
    const int64_t epoch = pos / int64_t(n_);
    if (epoch != epoch_) {
      perm_.resize(n_);
      for (size_t i = 0; i < n_; ++i) perm_[i] = i;
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + uint64_t(epoch));
      for (size_t i = n_ - 1; i > 0; --i) std::swap(perm_[i], perm_[size_t(rng() % (i + 1))]);
      epoch_ = epoch;
    }
    return perm_[size_t(pos % int64_t(n_))];
  }

 private:
  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<size_t> perm_;
};

std::string step_dir_name(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof(b), "step-%08lld", static_cast<long long>(step));
  return b;
}

// The optimizer's moments by name: "m.<param>", "v.<param>" (as optimizer.safetensors holds them).
std::vector<std::pair<std::string, Tensor*>> moments(AdamW& opt) {
  std::vector<std::pair<std::string, Tensor*>> out;
  size_t i = 0;
  for (const ParamGroup& g : opt.groups())
    for (const ag::Var& p : g.params) {
      out.push_back({"m." + p->name, &opt.m()[i]});
      out.push_back({"v." + p->name, &opt.v()[i]});
      ++i;
    }
  return out;
}

// checkpoints/step-NNNNNNNN/{model,optimizer}.safetensors + trainer.json, then `latest` names it
// (a kill before that leaves the previous one latest); only the newest `keep` are kept.
void save_checkpoint(const std::string& out, int64_t step, const std::vector<ag::Var>& params, AdamW& opt, int64_t keep) {
  const std::string name = step_dir_name(step);
  const fs::path root = fs::path(out) / "checkpoints", dir = root / name;
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> st;
  io::write_safetensors((dir / "model.safetensors").string(), ag::named_values(params));
  for (const auto& [name, t] : moments(opt)) st.push_back({name, *t});
  io::write_safetensors((dir / "optimizer.safetensors").string(), st, {{"step", std::to_string(opt.steps())}});
  io::write_text_file_atomically((dir / "trainer.json").string(), json{{"step", step}}.dump());
  // Only now does `latest` name it: a kill before this line leaves the previous one latest.
  io::write_text_file_atomically((root / "latest").string(), name);
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().starts_with("step-")) dirs.push_back(e.path().filename().string());
  std::sort(dirs.begin(), dirs.end());
  for (size_t k = 0; k + size_t(keep) < dirs.size(); ++k)
    if (dirs[k] != name) fs::remove_all(root / dirs[k]);
}

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

// Loads the latest checkpoint into params (by name) and the optimizer; returns its step.
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
  for (const auto& [name, t] : moments(opt)) copy_into(o, name, *t);
  opt.set_steps(std::stoll(o.metadata().at("step")));
  return state["step"].get<int64_t>();
}

// The metrics log after a resume: its lines up to `step` kept, later ones dropped (they run again).
void keep_log_until(const std::string& log_path, int64_t step) {
  std::string kept;
  for (const auto& [line, j] : read_metrics_log(log_path))
    if (j.contains("step") && j["step"].get<int64_t>() <= step) kept += line + "\n";
  io::write_text_file_atomically(log_path, kept);
}

// The recipe's groups (first prefix match), then one at its lr and weight decay for the rest,
// holding the objective's trainable parameters.
std::vector<ParamGroup> param_groups(const Recipe& r, const Objective& obj) {
  std::vector<ParamGroup> groups(r.groups.size() + 1);
  groups.back().lr = r.lr, groups.back().weight_decay = r.weight_decay;
  for (size_t g = 0; g < r.groups.size(); ++g) groups[g].lr = r.groups[g].lr, groups[g].weight_decay = r.groups[g].weight_decay;
  int64_t n_trainable = 0;
  for (const ag::Var& p : obj.params()) {
    if (!p->requires_grad) continue;
    n_trainable += p->value.numel();
    size_t g = 0;
    while (g < r.groups.size() && !p->name.starts_with(r.groups[g].prefix)) ++g;
    groups[g].params.push_back(p);
  }
  OCELLUS_CHECK(n_trainable > 0, "train: ", r.path, ": 'trainable' matches no parameter");
  return groups;
}

}  // namespace

int64_t prepare_out_folder(const Recipe& r, Start start) {
  // What a run writes into out/ (recipes may point out/ anywhere: nothing else there is touched).
  static const char* kRunFiles[] = {"metrics.jsonl", "checkpoints", "model", "gguf", "loss.png", "siglip.safetensors"};
  if (start == Start::Resume) {
    const int64_t step = latest_checkpoint(r.out).second["step"].get<int64_t>();
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
  if (!found.empty() && start == Start::Fresh)
    fail("train: ", r.out, " already holds a run (", join(found), "): --resume continues it, --overwrite starts over (removing those)");
  if (dist().main())
    for (const std::string& f : found) fs::remove_all(fs::path(r.out) / f);
  return 0;
}

void report_skipped(const std::vector<std::string>& skipped, const char* who, const char* what) {
  if (!dist().main()) return;
  for (size_t i = 0; i < skipped.size() && i < 5; ++i) std::fprintf(stderr, "%s: skipped %s\n", who, skipped[i].c_str());
  if (!skipped.empty()) std::fprintf(stderr, "%s: skipped %zu %s\n", who, skipped.size(), what);
}

void for_each_image(const Recipe& r, const std::vector<std::string>& paths, const char* who, std::vector<std::string>& skipped,
                    const std::function<void(size_t, const io::ImageRgb8&)>& use) {
  const auto t0 = std::chrono::steady_clock::now();
  ProgressLine progress;
  for (size_t i = 0; i < paths.size(); ++i) {
    try {
      use(i, io::load_image(paths[i]));
    } catch (const Error& e) {
      if (r.on_bad != data::OnBad::Skip) throw;
      skipped.push_back(e.what());
    }
    progress.update(int64_t(i + 1), int64_t(paths.size()),
                    ocellus::detail::concat(who, ": images ", i + 1, "/", paths.size(), " (",
                                            int(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()), " s)"));
  }
}

Trainer::Trainer(const Recipe& r, Objective& objective)
    : r_(r), obj_(objective), opt_(param_groups(r, objective), r.beta1, r.beta2, r.eps) {
  OCELLUS_CHECK(obj_.separable() || dist().size == 1, "train: ", r.path, ": this objective's loss takes the whole batch at once: one process");
  for (const ParamGroup& g : opt_.groups()) trainable_.insert(trainable_.end(), g.params.begin(), g.params.end());
}

TrainResult Trainer::run(Start start, const std::function<void(const StepStats&)>& on_step, int64_t stop_after) {
  const Recipe& r = r_;
  const Dist& D = dist();
  OCELLUS_CHECK(D.size <= r.batch, "train: ", D.size, " processes for a batch of ", r.batch, " (each needs a sequence)");
  prepare_out_folder(r, start);  // after the objective's data checks, before anything is written
  // Every process has looked at out/ before the first one writes there (else a slower one finds
  // the metrics log just begun and takes the folder for an earlier run's).
  allreduce_sum(0.0);
  fs::create_directories(r.out);
  const std::string log_path = metrics_path(r);
  TrainResult res;
  if (start == Start::Resume) {
    res.first_step = load_checkpoint(r.out, obj_.params(), opt_);
    if (D.main()) keep_log_until(log_path, res.first_step);
    if (D.main()) std::fprintf(stderr, "train: resumed from step %lld\n", (long long)res.first_step);
  } else {
    if (D.main()) io::write_text_file_atomically(log_path, "");
  }

  Order order(obj_.size(), r.seed);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens_total = 0;
  for (int64_t step = res.first_step; step < r.steps; ++step) {
    opt_.zero_grad();
    int64_t weight = 0, tokens = 0;  // weight: the global batch's (every process knows it)
    std::vector<size_t> idx;  // this process's share of the global batch
    for (int64_t j = 0; j < r.batch; ++j) {
      const size_t i = order.at(step * r.batch + j);
      weight += obj_.weight(i);
      if (j % D.size == D.rank) idx.push_back(i);
    }
    // Micro-batches of up to micro_batch_tokens tokens run as one stacked pass each (gradient
    // accumulation); each weighted by its share of the batch's weight, so the gradient is that
    // of the batch's weighted mean whatever the split. An inseparable loss runs in one pass.
    double loss = 0;
    for (size_t at = 0; at < idx.size();) {
      std::vector<size_t> micro;
      int64_t micro_tokens = 0, micro_weight = 0;
      while (at < idx.size() &&
             (micro.empty() || !obj_.separable() || micro_tokens + obj_.tokens(idx[at]) <= r.micro_batch_tokens)) {
        micro_tokens += obj_.tokens(idx[at]), micro_weight += obj_.weight(idx[at]);
        micro.push_back(idx[at++]);
      }
      const ag::Var l = ag::scale(obj_.loss(step, micro), float(double(micro_weight) / double(weight)));
      ag::Tape::current().backward(l);
      loss += double(l->value.data<float>()[0]);
      tokens += micro_tokens;
    }
    if (D.size > 1) {  // the gradients and loss of the whole batch
      for (const ag::Var& p : trainable_) {
        if (!p->grad.defined()) p->grad = Tensor::zeros(p->value.shape());
        allreduce_sum(p->grad.data<float>(), p->grad.numel());
      }
      loss = allreduce_sum(loss);
      tokens = int64_t(allreduce_sum(double(tokens)));
    }
    const double norm = clip_grad_norm(trainable_, r.clip > 0 ? r.clip : 1e30);
    const double factor = cosine_schedule(step, r.warmup, r.steps, r.min_lr_ratio);
    opt_.step(factor);
    tokens_total += tokens;
    res.losses.push_back(loss);
    StepStats s;
    s.step = step + 1, s.steps = r.steps, s.first_step = res.first_step, s.tokens = tokens, s.loss = loss, s.lr = r.lr * factor, s.grad_norm = norm;
    s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_s = double(tokens_total) / std::max(1e-9, s.elapsed_s);
    if (D.main()) {
      json line = {{"step", s.step}, {"loss", loss}, {"lr", s.lr}, {"grad_norm", norm}, {"tokens", tokens},
                   {"tokens_per_s", s.tokens_per_s}, {"elapsed_s", s.elapsed_s}};
      obj_.log_fields(line, weight);
      std::ofstream(log_path, std::ios::app) << line.dump() << "\n";
    }
    if (on_step) on_step(s);
    const bool last = step + 1 == r.steps;
    if (D.main() && (last || (r.checkpoint_every > 0 && (step + 1) % r.checkpoint_every == 0)))
      save_checkpoint(r.out, step + 1, obj_.params(), opt_, r.keep);
    if (stop_after > 0 && step + 1 - res.first_step >= stop_after && !last) return res;
  }
  return res;
}

// ---- the recipe runner: its objective, the one trainer loop, then the loss curve and the export ----

TrainResult run_recipe(const Recipe& r, Start start, const std::function<void(const StepStats&)>& on_step, int64_t stop_after) {
  const std::unique_ptr<Objective> objective = r.objective == "siglip"       ? siglip_objective(r)
                                                : r.objective == "vae"        ? vae_objective(r)
                                                : r.objective == "classifier" ? classifier_objective(r)
                                                : r.objective == "fusion"     ? fusion_objective(r)
                                                                              : next_token_objective(r);
  TrainResult res = Trainer(r, *objective).run(start, on_step, stop_after);
  const bool finished = res.first_step + int64_t(res.losses.size()) == r.steps;  // not stopped early
  if (!finished || !dist().main()) return res;  // the first process writes the results
  // The curve over the whole run (resumed runs included), and the model.
  draw_loss_curve(metrics_path(r), r.out + "/loss.png");
  objective->export_model(r.out, res);
  return res;
}

}  // namespace ocellus::train
