#pragma once
// safetensors (Hugging Face): an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
// data. Read memory-mapped (tensors are views of the file); sharded checkpoints through
// model.safetensors.index.json; written atomically. The header is untrusted: sizes, offsets,
// shapes and dtypes are all checked against the file.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::io {

struct SafetensorsInfo {
  std::string name;
  std::string dtype;               // as in the file: "F32", "BF16", "I64", ...
  std::optional<DType> core_dtype;  // set for F32 / F16 / BF16
  std::vector<int64_t> shape;      // any rank in the file; tensor() needs at most 4
  uint64_t begin = 0, end = 0;     // byte range within the data section
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return name_; }
  const std::vector<SafetensorsInfo>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsInfo* find(const std::string& name) const;
  const uint8_t* tensor_data(const SafetensorsInfo& t) const { return data_ + data_start_ + t.begin; }
  // A read-only view of the mapped bytes; throws for dtypes other than F32 / F16 / BF16.
  Tensor tensor(const std::string& name) const;

 private:
  std::string name_;
  std::shared_ptr<const MappedFile> file_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t data_start_ = 0;
  std::vector<SafetensorsInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// The tensors of a Hugging Face folder: model.safetensors, or the shards listed by
// model.safetensors.index.json (every shard is opened and every listed tensor must exist in
// the shard the index names). Also accepts the path of a single .safetensors file.
class SafetensorsModel {
 public:
  static SafetensorsModel open(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsInfo& info(const std::string& name) const;
  Tensor tensor(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor -> file index
};

// A tensor as safetensors holds it: f32 / f16 / bf16 as they are, block-quantized dequantized to f32.
Tensor safetensors_storable(const Tensor& t);

// The tensors with those of two or more dimensions (matrices, kernels) converted to `dtype`; norms
// and biases stay f32, as GGUF files keep them. For models saved at 16 bits.
std::vector<std::pair<std::string, Tensor>> matrices_as(std::vector<std::pair<std::string, Tensor>> tensors, DType dtype);

// Writes tensors (F32 / F16 / BF16, in the order given) with optional string metadata.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes a sharded checkpoint into `dir`: model-0000i-of-0000n.safetensors files of at most
// max_shard_bytes each (a larger tensor gets a shard of its own) and model.safetensors.index.json;
// one shard is written as model.safetensors with no index.
void write_safetensors_sharded(const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
                               uint64_t max_shard_bytes);

}  // namespace ocellus::io
