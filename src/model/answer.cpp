#include "ocellus/model/answer.h"

namespace ocellus::model {

std::string image_placeholders(size_t n_images) {
  std::string s;
  for (size_t i = 0; i < n_images; ++i) s += "<image>\n";
  return s;
}

SplicePlan plan_answer(const Vlm& v, text::ChatTemplate t, const std::vector<text::Message>& messages, size_t n_images,
                       const lm::GenerateParams& gen) {
  const std::string prompt = text::render_chat_text(t, messages, true);
  // BOS from the vocabulary only where the template leaves it to the tokenizer (text::bos_from_tokenizer).
  OCELLUS_CHECK(v.vision || n_images == 0, "this model reads no images (a text model without an mmproj)");
  SplicePlan plan = plan_splice(v.tok, prompt, n_images, v.tok.add_bos() && text::bos_from_tokenizer(t), "<image>",
                                v.vision ? v.vision->markers() : ImageMarkers{});
  lm::check_prompt_fits(plan.n_tokens(v.vision ? v.vision->n_tokens_per_image() : 0), lm::context_size(gen, v.lm->config()));
  return plan;
}

lm::GenerateResult answer(const Vlm& v, const SplicePlan& prompt, const std::vector<Tensor>& image_rows, const lm::GenerateParams& gen,
                          const std::function<void(const std::string&)>& on_text) {
  const Spliced sp = splice_prompt(*v.lm, prompt, image_rows);
  return lm::generate_embedded(*v.lm, v.tok, sp.embeddings, sp.ids, gen, on_text);
}

lm::GenerateResult answer(const Vlm& v, text::ChatTemplate t, const std::vector<text::Message>& messages,
                          const std::vector<Tensor>& image_rows, const lm::GenerateParams& gen,
                          const std::function<void(const std::string&)>& on_text) {
  return answer(v, plan_answer(v, t, messages, image_rows.size(), gen), image_rows, gen, on_text);
}

}  // namespace ocellus::model
