#include "ocellus/io/tensor_source.h"

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"

namespace ocellus::io {

TensorSource gguf_source(const GgufFile& f) {
  return {f.path(), [&f](const std::string& n) { return f.find_tensor(n) != nullptr; },
          [&f](const std::string& n) { return f.tensor(n); }};
}

TensorSource safetensors_source(const SafetensorsModel& m, const std::string& path) {
  return {path, [&m](const std::string& n) { return m.has(n); }, [&m](const std::string& n) { return m.tensor(n); }};
}

Tensor TensorReader::get(const std::string& name, const Shape& shape, bool required) const {
  if (name.empty() || !s.has(name)) {
    if (required) fail(what, ": ", s.path, ": missing tensor '", name, "'");
    return Tensor();
  }
  Tensor t = s.get(name);
  if (t.shape() != shape)
    fail(what, ": ", s.path, ": tensor '", name, "' has shape ", t.shape().str(), ", expected ", shape.str());
  if (shape.ndim == 1 && t.dtype() != DType::F32) t = t.to(DType::F32);
  return t;
}

}  // namespace ocellus::io
