// libFuzzer target: the bodies `ocellus serve` reads (serve/api.h) must parse or throw
// serve::ApiError with a status of 400 or 413 (never another exception, never a crash), and a
// parsed chat's messages must render under every chat template and split at their image
// placeholders (the prompt the engine would run) or throw ocellus::Error.
#include <cstdint>
#include <string>
#include <vector>

#include "byte_tokenizer.h"
#include "ocellus/core/error.h"
#include "ocellus/model/vlm.h"
#include "ocellus/serve/api.h"

namespace {

void check_status(const ocellus::serve::ApiError& e) {
  if (e.status != 400 && e.status != 413) __builtin_trap();
  if (e.json().empty()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocellus;
  const std::string body(reinterpret_cast<const char*>(data), size);
  serve::ApiLimits limits;
  limits.max_image_bytes = 1 << 16, limits.max_images = 4;
  try {
    const serve::ChatRequest r = serve::parse_chat_request(body, limits);
    if (r.messages.empty() || r.images.size() > limits.max_images) __builtin_trap();
    for (text::ChatTemplate t : {text::ChatTemplate::Llama2, text::ChatTemplate::Llama3, text::ChatTemplate::Vicuna,
                                 text::ChatTemplate::ChatML, text::ChatTemplate::Phi2}) {
      try {
        const std::string prompt = text::render_chat_text(t, r.messages, true);
        const model::SplicePlan p = model::plan_splice(fuzz::byte_tokenizer(), prompt, r.images.size(), true, "<image>", {"<s>", "</s>"});
        if (p.text_ids.size() != r.images.size() + 1) __builtin_trap();
      } catch (const Error&) {  // a conversation the template cannot render, or "<image>" typed in the text
      }
    }
  } catch (const serve::ApiError& e) {
    check_status(e);
  }
  try {
    (void)serve::parse_completion_request(body);
  } catch (const serve::ApiError& e) {
    check_status(e);
  }
  try {
    (void)serve::parse_embedding_request(body, limits);
  } catch (const serve::ApiError& e) {
    check_status(e);
  }
  try {
    (void)serve::base64_decode(body);
  } catch (const serve::ApiError& e) {
    check_status(e);
  }
  return 0;
}
