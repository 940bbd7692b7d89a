#pragma once
// One reply of a VLM to a conversation, the way `ocellus run`, `chat` and `eval` ask for it (and
// a server will): the messages rendered with the chat template, the assistant's turn opened;
// each "<image>" placeholder in them replaced by the rows of the next image; the reply generated
// and streamed as it comes.
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"
#include "ocellus/lm/generate.h"
#include "ocellus/model/vlm.h"
#include "ocellus/text/chat.h"

namespace ocellus::model {

// "<image>\n" once per image: the placeholders put before a user's text for the images sent with it.
std::string image_placeholders(size_t n_images);

// The conversation's prompt tokenized around its placeholders and checked (placeholders against
// n_images, its length against the context `gen` runs in) before any image is encoded. A text
// model (no vision half) takes prompts without images.
SplicePlan plan_answer(const Vlm& vlm, text::ChatTemplate chat_template, const std::vector<text::Message>& messages,
                       size_t n_images, const lm::GenerateParams& gen);

// The reply to a planned prompt, image_rows[k] (VisionModel::embed) in place of placeholder k;
// on_text receives each new piece of text.
lm::GenerateResult answer(const Vlm& vlm, const SplicePlan& prompt, const std::vector<Tensor>& image_rows,
                          const lm::GenerateParams& gen, const std::function<void(const std::string&)>& on_text = {});

// Both in one: the reply to `messages` with their images' rows.
lm::GenerateResult answer(const Vlm& vlm, text::ChatTemplate chat_template, const std::vector<text::Message>& messages,
                          const std::vector<Tensor>& image_rows, const lm::GenerateParams& gen,
                          const std::function<void(const std::string&)>& on_text = {});

}  // namespace ocellus::model
