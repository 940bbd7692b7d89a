#include "ocellus/io/json.h"
#include "ocellus/text/chat.h"

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"

#include <nlohmann/json.hpp>

namespace ocellus::text {

namespace {

const char* kVicunaSystem =
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.";
const char* kPhiSystem =
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.";
const char* kQwenSystem = "You are a helpful assistant.";

// The system prompt (if any) and the turns, checked: user and assistant alternate, user first.
struct Turns {
  std::string system;
  bool has_system = false;
  std::vector<const Message*> turns;
};

Turns split(const std::vector<Message>& m) {
  Turns t;
  size_t i = 0;
  if (!m.empty() && m[0].role == "system") {
    t.system = m[0].content;
    t.has_system = true;
    i = 1;
  }
  for (; i < m.size(); ++i) {
    const bool want_user = (t.turns.size() % 2) == 0;
    const std::string& r = m[i].role;
    if (r != "user" && r != "assistant" && r != "system")
      fail("chat: message ", i, " has role '", r, "' (system, user, assistant are known)");
    if (r == "system") fail("chat: message ", i, " is a system message after the first message");
    if ((r == "user") != want_user)
      fail("chat: message ", i, " is from the ", r, " but the ", want_user ? "user" : "assistant", " speaks next");
    t.turns.push_back(&m[i]);
  }
  return t;
}

void add(std::vector<ChatPiece>& p, std::string text, bool assistant, bool special) {
  if (!p.empty() && p.back().assistant == assistant) {  // join neighbours of the same kind
    p.back().text += text;
    p.back().special = p.back().special || special;
    return;
  }
  p.push_back({std::move(text), assistant, special});
}

}  // namespace

ChatTemplate chat_template_from_name(const std::string& n) {
  if (n == "llama2" || n == "llama-2") return ChatTemplate::Llama2;
  if (n == "llama3" || n == "llama-3") return ChatTemplate::Llama3;
  if (n == "vicuna" || n == "llava" || n == "llava-1.5" || n == "vicuna_v1") return ChatTemplate::Vicuna;
  if (n == "chatml" || n == "qwen2") return ChatTemplate::ChatML;
  if (n == "phi2" || n == "phi-2" || n == "tinyllava" || n == "phi") return ChatTemplate::Phi2;
  fail("chat: unknown template '", n, "' (llama2, llama3, vicuna / llava, chatml / qwen2, phi2 / tinyllava)");
}

const char* chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::Llama2: return "llama2";
    case ChatTemplate::Llama3: return "llama3";
    case ChatTemplate::Vicuna: return "vicuna";
    case ChatTemplate::ChatML: return "chatml";
    case ChatTemplate::Phi2: return "phi2";
  }
  return "?";
}

std::optional<ChatTemplate> chat_template_from_jinja(const std::string& jinja) {
  if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate::ChatML;
  if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::Llama3;
  if (jinja.find("[INST]") != std::string::npos) return ChatTemplate::Llama2;
  if (jinja.find("ASSISTANT:") != std::string::npos)
    return jinja.find("<|endoftext|>") != std::string::npos ? ChatTemplate::Phi2 : ChatTemplate::Vicuna;
  return std::nullopt;
}

std::string hf_chat_template_text(const std::string& hf_dir) {
  const std::string tc = hf_dir + "/tokenizer_config.json";
  if (!io::is_file(tc)) return "";
  const nlohmann::json j = io::read_json_file(tc, "chat template");
  return j.is_object() && j.contains("chat_template") && j["chat_template"].is_string() ? j["chat_template"].get<std::string>() : "";
}

std::vector<ChatPiece> render_chat(ChatTemplate t, const std::vector<Message>& messages, bool gen) {
  const Turns c = split(messages);
  std::vector<ChatPiece> p;
  switch (t) {
    case ChatTemplate::Vicuna:
    case ChatTemplate::Phi2: {
      const std::string end = t == ChatTemplate::Vicuna ? "</s>" : "<|endoftext|>";
      add(p, (c.has_system ? c.system : std::string(t == ChatTemplate::Vicuna ? kVicunaSystem : kPhiSystem)) + " ",
          false, false);
      for (size_t i = 0; i < c.turns.size(); ++i) {
        if (i % 2 == 0) {
          add(p, "USER: " + c.turns[i]->content + " ASSISTANT:", false, false);
        } else {
          add(p, " " + c.turns[i]->content + end, true, true);
        }
      }
      break;
    }
    case ChatTemplate::ChatML: {
      add(p, "<|im_start|>system\n" + (c.has_system ? c.system : std::string(kQwenSystem)) + "<|im_end|>\n", false,
          true);
      for (size_t i = 0; i < c.turns.size(); ++i) {
        if (i % 2 == 0) {
          add(p, "<|im_start|>user\n" + c.turns[i]->content + "<|im_end|>\n<|im_start|>assistant\n", false, true);
        } else {
          add(p, c.turns[i]->content + "<|im_end|>", true, true);
          add(p, "\n", false, false);
        }
      }
      break;
    }
    case ChatTemplate::Llama3: {
      add(p, "<|begin_of_text|>", false, true);
      if (c.has_system) add(p, "<|start_header_id|>system<|end_header_id|>\n\n" + c.system + "<|eot_id|>", false, true);
      for (size_t i = 0; i < c.turns.size(); ++i) {
        if (i % 2 == 0) {
          add(p, "<|start_header_id|>user<|end_header_id|>\n\n" + c.turns[i]->content +
                     "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false, true);
        } else {
          add(p, c.turns[i]->content + "<|eot_id|>", true, true);
        }
      }
      break;
    }
    case ChatTemplate::Llama2: {
      for (size_t i = 0; i < c.turns.size(); ++i) {
        if (i % 2 == 0) {
          std::string u = c.turns[i]->content;
          if (i == 0 && c.has_system) u = "<<SYS>>\n" + c.system + "\n<</SYS>>\n\n" + u;
          add(p, "<s>[INST] " + u + " [/INST]", false, true);
        } else {
          add(p, " " + c.turns[i]->content + " </s>", true, true);
        }
      }
      break;
    }
  }
  if (!gen && c.turns.size() % 2 == 1) fail("chat: the conversation ends with the user; ask for a generation prompt");
  // The generation prompt is already in place: every user turn ends with the assistant's header.
  if (gen && c.turns.size() % 2 == 0 && !c.turns.empty())
    fail("chat: a generation prompt after an assistant reply: add the next user message first");
  return p;
}

std::string render_chat_text(ChatTemplate t, const std::vector<Message>& messages, bool gen) {
  std::string s;
  for (const ChatPiece& p : render_chat(t, messages, gen)) s += p.text;
  return s;
}

bool bos_from_tokenizer(ChatTemplate t) { return t == ChatTemplate::Vicuna || t == ChatTemplate::Phi2; }

namespace {

// Rendered pieces to ids and mask. With a marker, the text between markers is one chunk,
// tokenized on its own as inference does (model::splice_prompt), and each marker becomes
// n_image_tokens rows of -1 (mask 0). Inside a chunk the pieces are tokenized one by one for
// the mask, and must give the chunk's own tokens: else the template and the tokenizer disagree
// at a boundary and the mask cannot be trusted.
EncodedChat encode_pieces(const Tokenizer& tok, ChatTemplate t, const std::vector<ChatPiece>& pieces, const std::string& marker,
                          int64_t n_image_tokens) {
  std::vector<std::vector<ChatPiece>> chunks(1);
  for (const ChatPiece& p : pieces) {
    size_t at = 0;
    for (size_t q; !marker.empty() && (q = p.text.find(marker, at)) != std::string::npos; at = q + marker.size()) {
      OCELLUS_CHECK(!p.assistant, "chat: an image placeholder in an assistant reply");
      chunks.back().push_back({p.text.substr(at, q - at), false, p.special});
      chunks.emplace_back();
    }
    chunks.back().push_back({p.text.substr(at), p.assistant, p.special});
  }
  EncodedChat e;
  // BOS from the tokenizer only where the template does not write it itself.
  if (bos_from_tokenizer(t) && tok.add_bos() && tok.bos() >= 0) e.ids.push_back(tok.bos()), e.mask.push_back(0);
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (c > 0) {
      e.ids.insert(e.ids.end(), size_t(n_image_tokens), -1);
      e.mask.insert(e.mask.end(), size_t(n_image_tokens), 0);
    }
    std::vector<int32_t> ids;
    std::string whole;
    bool at_start = true;
    for (const ChatPiece& p : chunks[c]) {
      const std::vector<int32_t> piece = tok.encode(p.text, false, true, at_start);
      ids.insert(ids.end(), piece.begin(), piece.end());
      e.mask.insert(e.mask.end(), piece.size(), p.assistant ? 1 : 0);
      whole += p.text;
      if (!piece.empty()) at_start = tok.is_special(piece.back());
    }
    const std::vector<int32_t> all = tok.encode(whole, false, true);
    if (all != ids) {
      size_t at = 0;
      while (at < all.size() && at < ids.size() && all[at] == ids[at]) ++at;
      fail("chat: template ", chat_template_name(t), " and the tokenizer disagree at token ", at,
           chunks.size() > 1 ? " of the text after image " + std::to_string(c) : std::string(), " (piecewise ",
           at < ids.size() ? std::to_string(ids[at]) : "end", ", whole text ", at < all.size() ? std::to_string(all[at]) : "end",
           "): the loss mask cannot be trusted");
    }
    e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  }
  return e;
}

}  // namespace

EncodedChat encode_chat(const Tokenizer& tok, ChatTemplate t, const std::vector<Message>& messages, bool gen) {
  return encode_pieces(tok, t, render_chat(t, messages, gen), "", 0);
}

EncodedChat encode_chat_with_images(const Tokenizer& tok, ChatTemplate t, const std::vector<Message>& messages,
                                    int64_t n_image_tokens, const std::string& marker) {
  OCELLUS_CHECK(n_image_tokens > 0, "chat: images need at least one token each");
  return encode_pieces(tok, t, render_chat(t, messages, false), marker, n_image_tokens);
}

}  // namespace ocellus::text
