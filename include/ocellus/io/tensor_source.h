#pragma once
// Where model loaders find their tensors: a GGUF file or safetensors checkpoint behind one small
// interface, and a reader that checks each tensor's presence and shape with errors naming the
// file and tensor. Shared by the text models, vision towers and connectors.
#include <functional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::io {

class GgufFile;
class SafetensorsModel;

struct TensorSource {
  std::string path;
  std::function<bool(const std::string&)> has;
  std::function<Tensor(const std::string&)> get;
  // The name a tensor has in the file (renamed sources answer with their base's name; empty
  // function: the same name). Exporters write trained tensors back under it.
  std::function<std::string(const std::string&)> locate;
  std::string file_name(const std::string& n) const { return locate ? locate(n) : n; }
};
// The source refers to f / m, which must outlive it (the tensors it returns need not: they
// keep their file mapped).
TensorSource gguf_source(const GgufFile& f);
TensorSource safetensors_source(const SafetensorsModel& m, const std::string& path);
// The tensors of `base` under other names: a name starting with a rule's prefix (the first rule
// that matches) is looked up in base with that prefix replaced by the rule's base prefix; names
// no rule matches are not there. (A LLaVA checkpoint's text model read as a plain one:
// {"model.", "model.language_model."}, {"lm_head.", "lm_head."}.)
struct Rename {
  std::string prefix, base_prefix;
};
TensorSource renamed_source(const TensorSource& base, const std::vector<Rename>& rules);
// The tensors of `over`, and those of `base` it does not have (a model saved as the tensors that
// changed, over the file it started from).
TensorSource overlay_source(const TensorSource& over, const TensorSource& base);

// Reads tensors of known shape: a missing required tensor or a wrong shape is an error naming
// `what` (the component), the file and the tensor; a missing optional one (or an empty name)
// is an undefined Tensor. 1-D tensors (norms, biases) come back as f32.
struct TensorReader {
  const TensorSource& s;
  std::string what;
  Tensor get(const std::string& name, const Shape& shape, bool required) const;
};

}  // namespace ocellus::io
