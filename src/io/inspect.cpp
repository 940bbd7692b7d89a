#include "ocellus/io/inspect.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"
#include "ocellus/io/hf_config.h"
#include "ocellus/io/safetensors.h"

namespace ocellus::io {

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

namespace {

std::string human_count(uint64_t n) {
  char buf[32];
  if (n >= 1000000000) std::snprintf(buf, sizeof buf, "%.2f B", double(n) / 1e9);
  else if (n >= 1000000) std::snprintf(buf, sizeof buf, "%.2f M", double(n) / 1e6);
  else if (n >= 1000) std::snprintf(buf, sizeof buf, "%.1f K", double(n) / 1e3);
  else std::snprintf(buf, sizeof buf, "%llu", (unsigned long long)n);
  return buf;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t k = 0; k < s.size(); ++k) r += (k ? ", " : "") + std::to_string(s[k]);
  return r + "]";
}

// Tensors per dtype, for the "dtypes:" line.
struct DTypeCount {
  int n = 0;
  bool computable = true;
};
std::string dtypes_line(const std::map<std::string, DTypeCount>& counts) {
  std::string dt;
  for (const auto& [name, c] : counts)
    dt += (dt.empty() ? "" : ", ") + name + " x" + std::to_string(c.n) + (c.computable ? "" : " (not computable by ocellus)");
  return dt;
}

void line(std::ostringstream& os, const char* label, const std::string& value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%-16s", label);
  os << buf << value << "\n";
}

std::string inspect_gguf(const std::string& path, const InspectOptions& opt) {
  namespace key = gguf::key;
  const GgufFile f = GgufFile::open(path);
  std::ostringstream os;
  line(os, "file:", path);
  line(os, "format:", detail::concat("GGUF v", f.version(), ", alignment ", f.alignment(), ", ",
                                     f.metadata().size(), " metadata keys"));
  const std::string arch = f.get_string(key::kArchitecture, "(none)");
  std::string name = f.get_string(key::kName, "");
  line(os, "architecture:", arch + (arch == "clip" ? " (vision projector, mmproj)" : "") +
                                (name.empty() ? "" : "  name \"" + name + "\""));

  // Key hyperparameters: the architecture's own keys (clip.* for an mmproj).
  std::string hp;
  const std::string prefix = arch == "clip" ? "clip." : arch + ".";
  for (const auto& [k, v] : f.metadata()) {
    if (k.rfind(prefix, 0) != 0) continue;
    if (v.type == GgufType::Array && v.size() > 8) continue;
    hp += (hp.empty() ? "" : "\n                ") + k.substr(prefix.size()) + " = " + v.str_value();
  }
  if (!hp.empty()) line(os, "hyperparams:", hp);

  if (f.has(key::kTokModel)) {
    const std::string model = f.get_string(key::kTokModel);
    const char* kind = model == "llama" ? "SentencePiece" : model == "gpt2" ? "byte-level BPE" : "other";
    std::string tok = model + " (" + kind + ")";
    if (const GgufValue* t = f.find(key::kTokTokens)) tok += detail::concat(", ", t->size(), " tokens");
    if (const GgufValue* m = f.find(key::kTokMerges)) tok += detail::concat(", ", m->size(), " merges");
    if (f.has(key::kTokPre)) tok += ", pre \"" + f.get_string(key::kTokPre) + "\"";
    if (f.has(key::kTokBos)) tok += detail::concat(", bos ", f.get_int(key::kTokBos));
    if (f.has(key::kTokEos)) tok += detail::concat(", eos ", f.get_int(key::kTokEos));
    if (f.has(key::kTokChatTemplate)) tok += ", chat template";
    line(os, "tokenizer:", tok);
  } else {
    line(os, "tokenizer:", "none");
  }

  std::map<std::string, DTypeCount> counts;
  uint64_t params = 0, bytes = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    DTypeCount& c = counts[t.type->name];
    ++c.n;
    c.computable = t.type->dtype.has_value();
    params += uint64_t(t.shape.numel());
    bytes += t.nbytes;
  }
  line(os, "tensors:", detail::concat(f.tensors().size(), " (", human_count(params), " parameters)"));
  if (const std::string dt = dtypes_line(counts); !dt.empty()) line(os, "dtypes:", dt);
  line(os, "size:", human_bytes(bytes) + " of tensor data");

  if (opt.metadata) {
    os << "\nmetadata:\n";
    for (const auto& [k, v] : f.metadata())
      os << "  " << k << " (" << gguf_type_name(v.type) << (v.type == GgufType::Array ? std::string(" of ") + gguf_type_name(v.elem_type) : "")
         << ") = " << v.str_value() << "\n";
  }
  if (opt.tensors) {
    os << "\n";
    char buf[512];
    std::snprintf(buf, sizeof buf, "  %-40s %-8s %-22s %12s %12s\n", "name", "dtype", "shape", "bytes", "offset");
    os << buf;
    for (const GgufTensorInfo& t : f.tensors()) {
      std::snprintf(buf, sizeof buf, "  %-40s %-8s %-22s %12llu %12llu\n", t.name.c_str(), t.type->name,
                    t.shape.str().c_str(), (unsigned long long)t.nbytes, (unsigned long long)t.offset);
      os << buf;
    }
  }
  return os.str();
}

std::string inspect_safetensors(const std::string& path, const InspectOptions& opt) {
  const SafetensorsModel m = SafetensorsModel::open(path);
  std::ostringstream os;
  line(os, "file:", path);
  line(os, "format:", detail::concat("safetensors, ", m.files().size(), m.files().size() == 1 ? " file" : " shards"));
  const std::string cfg = is_directory(path) ? path + "/config.json" : "";
  if (!cfg.empty() && is_file(cfg)) {
    const HfConfig c = read_hf_config(cfg);
    std::string arch = c.model_type;
    for (const std::string& a : c.architectures) arch += (arch.empty() ? "" : "  ") + a;
    line(os, "architecture:", arch);
    if (c.text)
      line(os, "text model:", detail::concat(c.text->model_type, ": hidden ", c.text->hidden_size, ", ffn ",
                                             c.text->intermediate_size, ", layers ", c.text->num_hidden_layers, ", heads ",
                                             c.text->num_attention_heads, "/", c.text->num_key_value_heads, " (kv), vocab ",
                                             c.text->vocab_size, ", ctx ", c.text->max_position_embeddings,
                                             c.text->tie_word_embeddings ? ", tied embeddings" : ""));
    if (c.vision)
      line(os, "vision tower:", detail::concat(c.vision->model_type, ": hidden ", c.vision->hidden_size, ", ffn ",
                                               c.vision->intermediate_size, ", layers ", c.vision->num_hidden_layers,
                                               ", heads ", c.vision->num_attention_heads, ", image ", c.vision->image_size,
                                               ", patch ", c.vision->patch_size));
    if (c.projector)
      line(os, "projector:", detail::concat(c.projector->type, ", feature layer ", c.projector->vision_feature_layer,
                                            ", ", c.projector->vision_feature_select));
  }
  const std::string tok = is_directory(path) ? path + "/tokenizer.json" : "";
  line(os, "tokenizer:", !tok.empty() && is_file(tok) ? "tokenizer.json" : "none");
  std::map<std::string, DTypeCount> counts;
  uint64_t params = 0, bytes = 0;
  for (const std::string& n : m.names()) {
    const SafetensorsInfo& t = m.info(n);
    ++counts[t.dtype].n;
    uint64_t e = 1;
    for (int64_t d : t.shape) e *= uint64_t(d);
    params += e;
    bytes += t.end - t.begin;
  }
  line(os, "tensors:", detail::concat(m.names().size(), " (", human_count(params), " parameters)"));
  if (const std::string dt = dtypes_line(counts); !dt.empty()) line(os, "dtypes:", dt);
  line(os, "size:", human_bytes(bytes) + " of tensor data");
  if (opt.metadata)
    for (const SafetensorsFile& f : m.files())
      for (const auto& [k, v] : f.metadata()) os << "  " << k << " = " << v << "\n";
  if (opt.tensors) {
    os << "\n";
    char buf[512];
    for (const std::string& n : m.names()) {
      const SafetensorsInfo& t = m.info(n);
      std::snprintf(buf, sizeof buf, "  %-48s %-6s %-22s %12llu\n", n.c_str(), t.dtype.c_str(), shape_str(t.shape).c_str(),
                    (unsigned long long)(t.end - t.begin));
      os << buf;
    }
  }
  return os.str();
}

}  // namespace

std::string inspect_model_file(const std::string& path, const InspectOptions& opt) {
  if (is_directory(path)) return inspect_safetensors(path, opt);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(path, ": cannot open");
  char magic[4] = {};
  const size_t got = std::fread(magic, 1, 4, f);
  std::fclose(f);
  if (got == 4 && std::string(magic, 4) == "GGUF") return inspect_gguf(path, opt);
  if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors") return inspect_safetensors(path, opt);
  fail(path, ": not a model file ocellus knows (GGUF, .safetensors, or a Hugging Face folder)");
}

}  // namespace ocellus::io
