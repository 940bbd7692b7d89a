#include "ocellus/io/gguf_convert.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "ocellus/core/error.h"
#include "ocellus/io/gguf.h"
#include "ocellus/io/gguf_names.h"

namespace ocellus::io {

namespace fs = std::filesystem;

DType convert_type_from_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0})
    if (lower == dtype_name(t)) return t;
  fail("quantize: type '", name, "' is not supported (supported: F32, F16, BF16, Q8_0)");
}

namespace {
// llama.cpp's llama_ftype values.
uint32_t file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    default: fail("quantize: no file type for ", dtype_name(t));
  }
}
}  // namespace

ConvertResult convert_gguf(const std::string& in, const std::string& out, DType type, bool force) {
  convert_type_from_name(dtype_name(type));  // a supported type
  const GgufFile f = GgufFile::open(in);
  std::error_code ec;
  OCELLUS_CHECK(!fs::equivalent(in, out, ec), "quantize: ", out, " is the input file");
  OCELLUS_CHECK(force || !fs::exists(out), "quantize: ", out, " exists (--force to replace it)");
  for (const GgufTensorInfo& t : f.tensors())
    OCELLUS_CHECK(t.type->block_size == 1, "quantize: ", in, " is already quantized (tensor '", t.name, "' is ", t.type->name,
                  "): quantize the f32, f16 or bf16 file it was made from");
  GgufWriter w(f.version());
  for (const auto& [k, v] : f.metadata()) w.set(k, v);
  w.set(gguf::key::kFileType, GgufValue::u32(file_type(type)));
  ConvertResult r;
  for (const GgufTensorInfo& info : f.tensors()) {
    const Tensor t = f.tensor(info.name);
    const bool convert = t.ndim() >= 2 && info.name.ends_with(".weight") && t.shape().last() % dtype_info(type).block_size == 0;
    const Tensor o = convert ? t.to(type) : t;
    (convert && t.dtype() != type ? r.converted : r.kept)++;
    r.in_bytes += info.nbytes, r.out_bytes += uint64_t(o.nbytes());
    w.add_tensor(info.name, o);
  }
  w.write(out);
  return r;
}

}  // namespace ocellus::io
