#pragma once
// GGUF (llama.cpp's model format), versions 2 and 3: metadata key/values of every type
// (nested arrays included), tensor infos, aligned tensor data memory-mapped without copying.
// The reader treats the file as untrusted: every count, length, offset and size is checked
// against the file before use, and nothing is allocated beyond what the file's size justifies.
// The writer produces files the reader and llama.cpp accept; reading a file it wrote and
// writing that back gives the same bytes.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ocellus/core/tensor.h"

namespace ocellus::io {

enum class GgufType : uint32_t {
  Uint8 = 0, Int8 = 1, Uint16 = 2, Int16 = 3, Uint32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, Uint64 = 10, Int64 = 11, Float64 = 12,
};
const char* gguf_type_name(GgufType t);

// A metadata value. Scalars keep their exact type; arrays keep their element type. Arrays of
// fixed-size scalars are stored as their raw little-endian bytes (a token-score array costs what
// it costs in the file, not a value object per element).
struct GgufValue {
  GgufType type = GgufType::Uint8;
  GgufType elem_type = GgufType::Uint8;  // arrays only
  uint64_t u = 0;                        // unsigned integers, bool
  int64_t i = 0;                         // signed integers
  double f = 0;                          // floats
  std::string s;                         // strings
  std::vector<uint8_t> raw;              // array of fixed-size scalars: the elements' bytes
  std::vector<std::string> strs;         // array of strings
  std::vector<GgufValue> arr;            // array of arrays

  size_t size() const;          // number of array elements
  GgufValue at(size_t k) const;  // array element k as a value

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue array(GgufType elem, std::vector<GgufValue> items);
  static GgufValue strings(const std::vector<std::string>& items);
  static GgufValue floats(const std::vector<float>& items);
  static GgufValue ints(const std::vector<int32_t>& items);

  bool is_integer() const;
  bool is_float() const { return type == GgufType::Float32 || type == GgufType::Float64; }
  // Numeric value as int64 / double (throws for non-numbers or an unsigned value past int64).
  int64_t as_int() const;
  double as_double() const;
  std::string str_value() const;  // readable rendering: "3", "1e-05", "\"llama\"", "[32000 strings]"
};

// ggml's tensor types: the ones the core computes with map to a DType; the others (k-quants,
// i-quants, integer types) are known by name and size so files holding them load and inspect,
// and using such a tensor's data is a clear error.
struct GgmlType {
  uint32_t id;
  const char* name;
  int64_t block_size;
  int64_t block_bytes;
  std::optional<DType> dtype;
};
const GgmlType* ggml_type(uint32_t id);  // nullptr for an unknown id
uint32_t ggml_type_id(DType t);

struct GgufTensorInfo {
  std::string name;
  Shape shape;          // numpy order (GGUF stores ne0 = innermost first)
  uint32_t type_id = 0;
  const GgmlType* type = nullptr;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  // Maps and parses a file; throws an Error naming the file, the field and the problem.
  static GgufFile open(const std::string& path);
  // Parses bytes in memory (fuzzing, tests); the caller keeps them alive. `name` goes into errors.
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }

  // Metadata in file order, and lookup by key.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: throw naming the key when missing or of the wrong type.
  const GgufValue& get(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<float> get_floats(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const GgufTensorInfo& tensor_info(const std::string& name) const;  // throws if absent
  // The tensor's bytes inside the file.
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return data_ + data_offset_ + t.offset; }
  // A read-only Tensor over the mapped data (no copy); throws for a type the core lacks.
  Tensor tensor(const std::string& name) const;
  // The mapping (null when parsed from memory).
  const std::shared_ptr<const MappedFile>& mapped_file() const { return file_; }

 private:
  std::string name_;
  std::shared_ptr<const MappedFile> file_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF file: metadata in insertion order, tensors in insertion order, each tensor's
// data aligned to general.alignment (default 32) as llama.cpp lays it out. Tensor data is
// produced while writing, so models larger than memory can be written. The file appears
// atomically (written to a temporary name, then renamed).
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}
  void set(const std::string& key, GgufValue value);  // replaces an existing key in place
  // A tensor from memory (any DType; made contiguous).
  void add_tensor(const std::string& name, const Tensor& t);
  // A tensor whose bytes `fill` writes into the buffer it is given (exactly nbytes).
  void add_tensor(const std::string& name, uint32_t type_id, const Shape& shape,
                  std::function<void(uint8_t*)> fill);
  // Copies every key and tensor of a file (its bytes as they are, any type). A mapped file is
  // kept alive by the writer; bytes parsed from memory must outlive write().
  void copy_from(const GgufFile& f);
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    uint32_t type_id;
    Shape shape;
    uint64_t nbytes;
    std::function<void(uint8_t*)> fill;
  };
  uint32_t version_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Pending> tensors_;
};

}  // namespace ocellus::io
