#include "ocellus/io/tensor_source.h"

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/safetensors.h"

namespace ocellus::io {

TensorSource gguf_source(const GgufFile& f) {
  return {f.path(), [&f](const std::string& n) { return f.find_tensor(n) != nullptr; },
          [&f](const std::string& n) { return f.tensor(n); }, {}};
}

TensorSource safetensors_source(const SafetensorsModel& m, const std::string& path) {
  return {path, [&m](const std::string& n) { return m.has(n); }, [&m](const std::string& n) { return m.tensor(n); }, {}};
}

TensorSource renamed_source(const TensorSource& base, const std::vector<Rename>& rules) {
  auto to_base = [rules](const std::string& n) -> std::string {
    for (const Rename& r : rules)
      if (n.compare(0, r.prefix.size(), r.prefix) == 0) return r.base_prefix + n.substr(r.prefix.size());
    return std::string();
  };
  return {base.path, [base, to_base](const std::string& n) { const std::string b = to_base(n); return !b.empty() && base.has(b); },
          [base, to_base](const std::string& n) {
            const std::string b = to_base(n);
            if (b.empty()) fail(base.path, ": no tensor '", n, "'");
            return base.get(b);
          },
          [base, to_base](const std::string& n) { return base.file_name(to_base(n)); }};
}

TensorSource overlay_source(const TensorSource& over, const TensorSource& base) {
  return {over.path + " over " + base.path, [over, base](const std::string& n) { return over.has(n) || base.has(n); },
          [over, base](const std::string& n) { return over.has(n) ? over.get(n) : base.get(n); },
          [over, base](const std::string& n) { return over.has(n) ? over.file_name(n) : base.file_name(n); }};
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
