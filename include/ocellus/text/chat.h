#pragma once
// Chat templates of the models in scope, and conversations rendered to token ids with a loss
// mask (1 on the tokens of assistant replies and their end marker: what supervised fine-tuning
// trains on). Each piece of the conversation is tokenized on its own, so the mask is exact; the
// pieces must also tokenize exactly as the whole rendered text does, otherwise the template
// and the tokenizer disagree and encode_chat throws rather than train on a wrong mask.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ocellus/text/tokenizer.h"

namespace ocellus::io {
class GgufFile;
}

namespace ocellus::text {

enum class ChatTemplate {
  Llama2,  // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] reply </s>
  Llama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  Vicuna,  // LLaVA-1.5 (conv_vicuna_v1): "SYSTEM USER: ... ASSISTANT: reply</s>"
  ChatML,  // Qwen2: <|im_start|>role\n...<|im_end|>\n
  Phi2,    // Phi-2 / TinyLLaVA (conv_phi_v0): "SYSTEM USER: ... ASSISTANT: reply<|endoftext|>"
};

// Whether a rendered conversation starts with the tokenizer's BOS (where its vocabulary adds
// one): Vicuna and Phi-2. Llama 2 / 3 write theirs in the text; ChatML has none. Training
// (encode_chat) and inference (the VLM splice) follow this one rule.
bool bos_from_tokenizer(ChatTemplate t);

struct Message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// By name: llama2, llama3, vicuna (or llava), chatml (or qwen2), phi2 (or tinyllava).
ChatTemplate chat_template_from_name(const std::string& name);
const char* chat_template_name(ChatTemplate t);
// The template a chat template's Jinja text is (by the markers it writes); none when unknown.
// A model without one gets its family's default (lm::detect_chat_template).
std::optional<ChatTemplate> chat_template_from_jinja(const std::string& jinja);
// A Hugging Face folder's tokenizer_config.json chat_template (Jinja text); "" when it has none.
std::string hf_chat_template_text(const std::string& hf_dir);

// A rendered conversation as consecutive pieces of text.
struct ChatPiece {
  std::string text;
  bool assistant = false;  // part of a reply (trained on)
  bool special = false;    // contains template markers written as special tokens
};
std::vector<ChatPiece> render_chat(ChatTemplate t, const std::vector<Message>& messages,
                                   bool add_generation_prompt);
std::string render_chat_text(ChatTemplate t, const std::vector<Message>& messages, bool add_generation_prompt);

struct EncodedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // 1 = assistant token
};
EncodedChat encode_chat(const Tokenizer& tok, ChatTemplate t, const std::vector<Message>& messages,
                        bool add_generation_prompt = false);

// The same for a conversation with image placeholders (`marker` in user or system text): -1
// for each of an image's n_image_tokens rows (mask 0) in place of each marker, the text between
// images tokenized chunk by chunk as inference splices it (model::splice_prompt).
EncodedChat encode_chat_with_images(const Tokenizer& tok, ChatTemplate t, const std::vector<Message>& messages,
                                    int64_t n_image_tokens, const std::string& marker = "<image>");

}  // namespace ocellus::text
