#include "ocellus/train/trainer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"
#include "ocellus/io/tensor_source.h"
#include "ocellus/lm/family.h"
#include "ocellus/model/export.h"
#include "ocellus/model/vlm.h"
#include "ocellus/model/vlm_train.h"
#include "ocellus/text/tokenizer.h"
#include "ocellus/data/llava_json.h"
#include "ocellus/train/dist.h"
#include "ocellus/train/feature_cache.h"

namespace ocellus::train {

namespace {

struct Sample {
  model::TrainSample seq;  // its image's features come from the cache at each step
  std::string image_key;   // empty: no image
  int64_t counted = 0;     // tokens in the loss
};

model::TrainVlmConfig vlm_config(const Recipe& r) {
  model::TrainVlmConfig tc = model::train_config_from_hf(io::read_hf_config(r.base));
  tc.tower_from = r.tower_from;
  return tc;
}

class NextToken final : public Objective {
 public:
  explicit NextToken(const Recipe& r)
      : r_(r), tok_(text::Tokenizer::from_file(r.base)), tmpl_(lm::resolve_chat_template(r.chat_template, r.base, tok_)),
        st_(io::SafetensorsModel::open(r.base)), vlm_(vlm_config(r), io::safetensors_source(st_, r.base)) {
    // With the tower's upper blocks training, the cache holds the hidden states below them.
    // Text-only data (language-model pretraining) needs no cache.
    if (!r.cache.empty())  // made by the base's tower (the blocks below tower_from when those above train)
      cache_.emplace(FeatureCache::open(r.cache, model::load_hf_vision(r.base)->tower(), r.tower_from));
    read_samples();
    if (r.lora_rank > 0) vlm_.enable_lora(r.lora_rank, float(r.lora_alpha), r.lora_targets, r.seed);
    // Which parameters train. With LoRA the adapters train and the text model's own weights stay frozen.
    for (const ag::Var& p : vlm_.params()) {
      p->requires_grad = r.trains(p->name);
      if (r.lora_rank > 0 && (p->name.starts_with("model.") || p->name.starts_with("lm_head.")))
        p->requires_grad = p->name.find(".lora_") != std::string::npos;
    }
  }

  const std::vector<ag::Var>& params() const override { return vlm_.params(); }
  size_t size() const override { return samples_.size(); }
  int64_t tokens(size_t i) const override { return int64_t(samples_[i].seq.ids.size()); }
  int64_t weight(size_t i) const override { return samples_[i].counted; }  // the loss is a mean over tokens

  ag::Var loss(int64_t, const std::vector<size_t>& idx) override {
    std::vector<model::TrainSample> batch;
    for (size_t i : idx) {
      model::TrainSample ts = samples_[i].seq;
      if (!samples_[i].image_key.empty()) ts.features.push_back(cache_->features(samples_[i].image_key));
      batch.push_back(std::move(ts));
    }
    return vlm_.loss_batch(batch);
  }

  void log_fields(nlohmann::json& line, int64_t batch_weight) const override { line["loss_tokens"] = batch_weight; }

  void export_model(const std::string& out, TrainResult& res) const override {
    res.model_dir = out + "/model";
    res.gguf_model = out + "/gguf/model.gguf", res.gguf_mmproj = out + "/gguf/mmproj.gguf";
    model::export_trained_vlm(vlm_, r_.base, tok_, res.model_dir, res.gguf_model, res.gguf_mmproj);
  }

 private:
  // Records -> sequences; a record whose image is not cached is an error naming it.
  void read_samples();

  const Recipe& r_;
  const text::Tokenizer tok_;
  const text::ChatTemplate tmpl_;
  const io::SafetensorsModel st_;
  model::TrainableVlm vlm_;
  std::optional<FeatureCache> cache_;
  std::vector<Sample> samples_;
};

void NextToken::read_samples() {
  const Recipe& r = r_;
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
  int64_t truncated = 0, empty = 0;
  for (const data::Record& rec : records) {
    const data::Encoded e = data::encode_record(rec, tok_, tmpl_, vlm_.n_image_tokens(), r.max_len);
    Sample s{{e.ids, e.mask, {}}, {}, 0};
    if (r.loss_on_all) std::fill(s.seq.mask.begin(), s.seq.mask.end(), uint8_t(1));
    if (r.loss_not_assistant)  // the prompts' text, not the replies (a language model without the answers)
      for (uint8_t& m : s.seq.mask) m = !m;
    s.counted = model::TrainableVlm::counted_tokens(s.seq);
    truncated += e.truncated;
    if (s.counted == 0) {
      ++empty;
      continue;
    }
    if (e.has_image) {
      OCELLUS_CHECK(cache_.has_value(), "train: ", r.path, ": record '", rec.id, "' has an image, but the recipe names no 'cache' ",
                    "(build one with ocellus cache)");
      const std::string img = r.images.empty() ? rec.image : r.images + "/" + rec.image;
      try {
        s.image_key = content_key(io::read_text_file(img, size_t(256) << 20));
        OCELLUS_CHECK(cache_->has_key(s.image_key), "train: ", img, " (record '", rec.id, "') is not in the cache ", r.cache,
                      " (run ocellus cache on this data; ocellus cache --skip-bad leaves broken images out)");
      } catch (const Error& err) {  // a missing image, or one the cache left out (broken)
        if (r.on_bad != data::OnBad::Skip) throw;
        skipped.push_back(err.what());
        continue;
      }
    }
    samples_.push_back(std::move(s));
  }
  report_skipped(skipped);
  OCELLUS_CHECK(!samples_.empty(), "train: ", r.data, ": no usable samples");
  if (say && truncated) std::fprintf(stderr, "train: %lld sequence(s) truncated to %lld tokens\n", (long long)truncated, (long long)r.max_len);
  if (say && empty) std::fprintf(stderr, "train: %lld sequence(s) with no reply tokens left were dropped\n", (long long)empty);
}

}  // namespace

std::unique_ptr<Objective> next_token_objective(const Recipe& r) { return std::make_unique<NextToken>(r); }

}  // namespace ocellus::train
