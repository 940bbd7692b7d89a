#include "ocellus/io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>
#include <limits>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::io {

// ---- types ----------------------------------------------------------------------------------

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
constexpr int kMaxNesting = 8;           // arrays of arrays: deeper is surely corrupt
constexpr uint64_t kDefaultAlignment = 32;

// What each value type is, indexed by its id: name, bytes of one element (0 for strings and
// arrays) and kind: 'u' unsigned integer, 'i' signed integer, 'f' float, 'b' bool, 's' string, 'a' array.
struct TypeInfo {
  const char* name;
  size_t size;
  char kind;
};
constexpr TypeInfo kTypes[] = {
    {"uint8", 1, 'u'},   {"int8", 1, 'i'},   {"uint16", 2, 'u'}, {"int16", 2, 'i'},  {"uint32", 4, 'u'},
    {"int32", 4, 'i'},   {"float32", 4, 'f'}, {"bool", 1, 'b'},  {"string", 0, 's'}, {"array", 0, 'a'},
    {"uint64", 8, 'u'},  {"int64", 8, 'i'},  {"float64", 8, 'f'},
};

bool valid_type(uint32_t t) { return t < std::size(kTypes); }
const TypeInfo& info(GgufType t) {
  static constexpr TypeInfo kInvalid{"invalid", 0, '?'};
  return valid_type(uint32_t(t)) ? kTypes[uint32_t(t)] : kInvalid;
}
size_t scalar_size(GgufType t) { return info(t).size; }
bool integer_type(GgufType t) { return info(t).kind == 'u' || info(t).kind == 'i'; }
bool is_unsigned(GgufType t) { return info(t).kind == 'u' || info(t).kind == 'b'; }

// Smallest number of bytes an element of type t can take in a file.
size_t min_encoded_size(GgufType t) {
  if (t == GgufType::String) return 8;
  if (t == GgufType::Array) return 12;
  return scalar_size(t);
}

// A scalar from little-endian bytes (as the host's) into the value's typed fields.
void decode_scalar(GgufType t, const uint8_t* p, GgufValue& v) {
  v.type = t;
  const TypeInfo& ti = info(t);
  uint64_t x = 0;
  std::memcpy(&x, p, ti.size);
  const int unused_bits = 64 - 8 * int(ti.size);
  if (ti.kind == 'u') v.u = x;
  else if (ti.kind == 'b') v.u = x != 0;
  else if (ti.kind == 'i') v.i = int64_t(x << unused_bits) >> unused_bits;  // sign-extended
  else if (t == GgufType::Float32) v.f = std::bit_cast<float>(uint32_t(x));
  else if (t == GgufType::Float64) v.f = std::bit_cast<double>(x);
}

void encode_scalar(const GgufValue& v, std::string& out) {
  uint64_t x = info(v.type).kind == 'i' ? uint64_t(v.i) : v.u;  // the low bytes: two's complement
  if (v.type == GgufType::Float32) x = std::bit_cast<uint32_t>(float(v.f));
  if (v.type == GgufType::Float64) x = std::bit_cast<uint64_t>(v.f);
  out.append(reinterpret_cast<const char*>(&x), scalar_size(v.type));
}

const GgmlType kGgmlTypes[] = {
    {0, "f32", 1, 4, DType::F32},        {1, "f16", 1, 2, DType::F16},
    {2, "q4_0", 32, 18, DType::Q4_0},    {3, "q4_1", 32, 20, std::nullopt},
    {6, "q5_0", 32, 22, std::nullopt},   {7, "q5_1", 32, 24, std::nullopt},
    {8, "q8_0", 32, 34, DType::Q8_0},    {9, "q8_1", 32, 36, std::nullopt},
    {10, "q2_K", 256, 84, DType::Q2_K},  {11, "q3_K", 256, 110, DType::Q3_K},
    {12, "q4_K", 256, 144, DType::Q4_K}, {13, "q5_K", 256, 176, DType::Q5_K},
    {14, "q6_K", 256, 210, DType::Q6_K}, {15, "q8_K", 256, 292, std::nullopt},
    {16, "iq2_xxs", 256, 66, std::nullopt}, {17, "iq2_xs", 256, 74, std::nullopt},
    {18, "iq3_xxs", 256, 98, std::nullopt}, {19, "iq1_s", 256, 50, std::nullopt},
    {20, "iq4_nl", 32, 18, std::nullopt}, {21, "iq3_s", 256, 110, std::nullopt},
    {22, "iq2_s", 256, 82, std::nullopt}, {23, "iq4_xs", 256, 136, std::nullopt},
    {24, "i8", 1, 1, std::nullopt},      {25, "i16", 1, 2, std::nullopt},
    {26, "i32", 1, 4, std::nullopt},     {27, "i64", 1, 8, std::nullopt},
    {28, "f64", 1, 8, std::nullopt},     {29, "iq1_m", 256, 56, std::nullopt},
    {30, "bf16", 1, 2, DType::BF16},     {34, "tq1_0", 256, 54, std::nullopt},
    {35, "tq2_0", 256, 66, std::nullopt},
};

}  // namespace

const char* gguf_type_name(GgufType t) { return info(t).name; }

const GgmlType* ggml_type(uint32_t id) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

uint32_t ggml_type_id(DType d) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.dtype == d) return t.id;
  fail("gguf: dtype ", dtype_name(d), " has no ggml type");
}

// ---- values ---------------------------------------------------------------------------------

GgufValue GgufValue::u32(uint32_t v) { GgufValue x; x.type = GgufType::Uint32; x.u = v; return x; }
GgufValue GgufValue::i32(int32_t v) { GgufValue x; x.type = GgufType::Int32; x.i = v; return x; }
GgufValue GgufValue::u64(uint64_t v) { GgufValue x; x.type = GgufType::Uint64; x.u = v; return x; }
GgufValue GgufValue::f32(float v) { GgufValue x; x.type = GgufType::Float32; x.f = v; return x; }
GgufValue GgufValue::boolean(bool v) { GgufValue x; x.type = GgufType::Bool; x.u = v; return x; }
GgufValue GgufValue::str(std::string v) { GgufValue x; x.type = GgufType::String; x.s = std::move(v); return x; }

static GgufValue empty_array(GgufType elem) {
  GgufValue x;
  x.type = GgufType::Array;
  x.elem_type = elem;
  return x;
}

GgufValue GgufValue::array(GgufType elem, std::vector<GgufValue> items) {
  GgufValue x = empty_array(elem);
  for (const GgufValue& it : items)
    OCELLUS_CHECK(it.type == elem, "gguf: array of ", gguf_type_name(elem), " given a ",
                  gguf_type_name(it.type), " element");
  if (elem == GgufType::String) {
    for (GgufValue& it : items) x.strs.push_back(std::move(it.s));
  } else if (elem == GgufType::Array) {
    x.arr = std::move(items);
  } else {
    std::string bytes;
    for (const GgufValue& it : items) encode_scalar(it, bytes);
    x.raw.assign(bytes.begin(), bytes.end());
  }
  return x;
}

GgufValue GgufValue::strings(const std::vector<std::string>& items) {
  GgufValue x = empty_array(GgufType::String);
  x.strs = items;
  return x;
}

// An array of fixed-size scalars from their values in memory (little-endian, as in the file).
template <typename T>
static GgufValue raw_array(GgufType elem, const std::vector<T>& items) {
  GgufValue x = empty_array(elem);
  x.raw.resize(items.size() * sizeof(T));
  if (!items.empty()) std::memcpy(x.raw.data(), items.data(), x.raw.size());
  return x;
}
GgufValue GgufValue::floats(const std::vector<float>& items) { return raw_array(GgufType::Float32, items); }
GgufValue GgufValue::ints(const std::vector<int32_t>& items) { return raw_array(GgufType::Int32, items); }

size_t GgufValue::size() const {
  if (type != GgufType::Array) return 0;
  if (elem_type == GgufType::String) return strs.size();
  if (elem_type == GgufType::Array) return arr.size();
  return raw.size() / scalar_size(elem_type);
}

GgufValue GgufValue::at(size_t k) const {
  OCELLUS_CHECK(type == GgufType::Array && k < size(), "gguf: array index ", k, " out of range");
  if (elem_type == GgufType::String) return str(strs[k]);
  if (elem_type == GgufType::Array) return arr[k];
  GgufValue v;
  decode_scalar(elem_type, raw.data() + k * scalar_size(elem_type), v);
  return v;
}

bool GgufValue::is_integer() const { return integer_type(type); }

int64_t GgufValue::as_int() const {
  OCELLUS_CHECK(is_integer(), "gguf: expected an integer, found ", gguf_type_name(type));
  if (is_unsigned(type)) {
    OCELLUS_CHECK(u <= uint64_t(std::numeric_limits<int64_t>::max()), "gguf: integer ", u, " too large");
    return int64_t(u);
  }
  return i;
}

double GgufValue::as_double() const {
  if (is_float()) return f;
  return double(as_int());
}

std::string GgufValue::str_value() const {
  switch (type) {
    case GgufType::String: return "\"" + s + "\"";
    case GgufType::Bool: return u ? "true" : "false";
    case GgufType::Float32: case GgufType::Float64: return detail::concat(f);
    case GgufType::Array: {
      const size_t n = size();
      if (n <= 8 && elem_type != GgufType::Array) {
        std::string r = "[";
        for (size_t k = 0; k < n; ++k) r += (k ? ", " : "") + at(k).str_value();
        return r + "]";
      }
      return detail::concat("[", n, " ", gguf_type_name(elem_type), "]");
    }
    default: return is_unsigned(type) ? std::to_string(u) : std::to_string(i);
  }
}

// ---- reader ---------------------------------------------------------------------------------

namespace {

// Bounds-checked little-endian reads from the file's bytes. Every error names the file, what
// was being read and where.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name) : p_(data), n_(size), name_(name) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  [[noreturn]] void error(const std::string& field, const std::string& problem) const {
    fail("gguf: ", name_, ": ", field, ": ", problem, " (at byte ", pos_, " of ", n_, ")");
  }
  void need(size_t bytes, const std::string& field) const {
    if (bytes > remaining()) error(field, detail::concat("needs ", bytes, " bytes but the file ends"));
  }
  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& field) {
    const uint64_t len = read<uint64_t>(field + " length");
    if (len > remaining())
      error(field, detail::concat("string length ", len, " is larger than the rest of the file"));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  const uint8_t* take(size_t bytes, const std::string& field) {
    need(bytes, field);
    const uint8_t* q = p_ + pos_;
    pos_ += bytes;
    return q;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& name_;
};

GgufType read_type(Cursor& c, const std::string& field) {
  const uint32_t t = c.read<uint32_t>(field + " type");
  if (!valid_type(t)) c.error(field, detail::concat("unknown value type ", t));
  return GgufType(t);
}

GgufValue read_value(Cursor& c, GgufType type, int depth, const std::string& field) {
  GgufValue v;
  v.type = type;
  if (type == GgufType::String) {
    v.s = c.read_string(field);
  } else if (type == GgufType::Array) {
    if (depth >= kMaxNesting) c.error(field, detail::concat("arrays nested deeper than ", kMaxNesting));
    v.elem_type = read_type(c, field + " element");
    const uint64_t count = c.read<uint64_t>(field + " element count");
    const size_t min_size = min_encoded_size(v.elem_type);
    // Checked before anything is allocated: the elements must fit in the rest of the file.
    if (count > c.remaining() / min_size)
      c.error(field, detail::concat("array of ", count, " ", gguf_type_name(v.elem_type),
                                    " cannot fit in the remaining ", c.remaining(), " bytes"));
    if (v.elem_type == GgufType::String) {
      v.strs.reserve(size_t(count));
      for (uint64_t k = 0; k < count; ++k) v.strs.push_back(c.read_string(field + "[" + std::to_string(k) + "]"));
    } else if (v.elem_type == GgufType::Array) {
      v.arr.reserve(size_t(count));
      for (uint64_t k = 0; k < count; ++k)
        v.arr.push_back(read_value(c, GgufType::Array, depth + 1, field + "[" + std::to_string(k) + "]"));
    } else {
      const uint8_t* b = c.take(size_t(count) * min_size, field);
      v.raw.assign(b, b + size_t(count) * min_size);
    }
  } else {
    decode_scalar(type, c.take(scalar_size(type), field), v);
  }
  return v;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

GgufFile GgufFile::open(const std::string& path) {
  auto file = std::make_shared<const MappedFile>(path);
  GgufFile g = parse(file->data(), file->size(), path);
  g.file_ = std::move(file);
  return g;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile g;
  g.name_ = name;
  g.data_ = data;
  g.size_ = size;
  Cursor c(data, size, g.name_);

  if (size < 4) c.error("header", "file too small to be GGUF");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) {
    char m[5] = {};
    std::memcpy(m, &magic, 4);
    for (char& ch : m) if (ch && (ch < 32 || ch > 126)) ch = '?';
    c.error("magic", detail::concat("not a GGUF file (starts with '", m, "', expected 'GGUF')"));
  }
  g.version_ = c.read<uint32_t>("version");
  if (g.version_ == 1) c.error("version", "GGUF v1 (32-bit counts) is not supported; re-convert the model");
  if (g.version_ != 2 && g.version_ != 3) {
    if ((g.version_ & 0xffff) == 0) c.error("version", "big-endian GGUF files are not supported");
    c.error("version", detail::concat("unsupported GGUF version ", g.version_, " (2 and 3 are)"));
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 24.
  if (n_kv > c.remaining() / 13)
    c.error("metadata count", detail::concat(n_kv, " key/values cannot fit in the file"));
  if (n_tensors > c.remaining() / 24)
    c.error("tensor count", detail::concat(n_tensors, " tensors cannot fit in the file"));

  g.kv_.reserve(size_t(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string field = "metadata #" + std::to_string(k);
    std::string key = c.read_string(field + " key");
    if (g.kv_index_.count(key)) c.error("metadata key '" + key + "'", "duplicate key");
    const GgufType t = read_type(c, "metadata '" + key + "'");
    GgufValue v = read_value(c, t, 0, "metadata '" + key + "'");
    g.kv_index_[key] = g.kv_.size();
    g.kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = g.find("general.alignment")) {
    if (a->type != GgufType::Uint32)
      c.error("metadata 'general.alignment'", std::string("must be uint32, found ") + gguf_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      c.error("metadata 'general.alignment'", detail::concat(a->u, " is not a power of two"));
    g.alignment_ = a->u;
  }

  g.tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor #" + std::to_string(k) + " name");
    const std::string field = "tensor '" + t.name + "'";
    if (g.tensor_index_.count(t.name)) c.error(field, "duplicate tensor name");
    const uint32_t n_dims = c.read<uint32_t>(field + " dimension count");
    if (n_dims == 0 || n_dims > uint32_t(kMaxDims))
      c.error(field, detail::concat(n_dims, " dimensions (1 to ", kMaxDims, " allowed)"));
    uint64_t ne[kMaxDims];
    for (uint32_t d = 0; d < n_dims; ++d) ne[d] = c.read<uint64_t>(field + " dimension");
    t.type_id = c.read<uint32_t>(field + " type");
    t.offset = c.read<uint64_t>(field + " offset");
    t.type = ggml_type(t.type_id);
    if (!t.type) c.error(field, detail::concat("unknown ggml tensor type ", t.type_id));
    // Sizes: every dimension and the element count must stay within int64, the row a whole
    // number of blocks.
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      if (ne[d] > uint64_t(std::numeric_limits<int64_t>::max()))
        c.error(field, detail::concat("dimension ", d, " = ", ne[d], " is absurd"));
      if (ne[d] != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / ne[d])
        c.error(field, "element count overflows 64 bits");
      numel *= ne[d];
    }
    if (ne[0] % uint64_t(t.type->block_size) != 0)
      c.error(field, detail::concat("row of ", ne[0], " elements is not a whole number of ",
                                    t.type->name, " blocks (", t.type->block_size, ")"));
    const uint64_t blocks = numel / uint64_t(t.type->block_size);
    if (blocks > uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(t.type->block_bytes))
      c.error(field, "byte size overflows 64 bits");
    t.nbytes = blocks * uint64_t(t.type->block_bytes);
    int64_t dims[kMaxDims];
    for (uint32_t d = 0; d < n_dims; ++d) dims[d] = int64_t(ne[n_dims - 1 - d]);
    t.shape = Shape::of(dims, int(n_dims));
    g.tensor_index_[t.name] = g.tensors_.size();
    g.tensors_.push_back(std::move(t));
  }

  g.data_offset_ = align_up(c.pos(), g.alignment_);
  const uint64_t data_size = g.data_offset_ <= size ? size - g.data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : g.tensors_) {
    const std::string field = "tensor '" + t.name + "'";
    if (t.offset % g.alignment_ != 0)
      c.error(field, detail::concat("offset ", t.offset, " is not a multiple of the alignment ", g.alignment_));
    if (t.nbytes == 0) continue;
    if (g.data_offset_ > size || t.offset > data_size || t.nbytes > data_size - t.offset)
      c.error(field, detail::concat("data [", t.offset, ", +", t.nbytes, ") runs past the end of the file (",
                                    data_size, " bytes of tensor data)"));
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k]->offset < by_offset[k - 1]->offset + by_offset[k - 1]->nbytes)
      c.error("tensor '" + by_offset[k]->name + "'",
              "data overlaps tensor '" + by_offset[k - 1]->name + "'");
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("gguf: ", name_, ": missing metadata key '", key, "'");
  return *v;
}

namespace {

// The value under key when ok(value), else an error naming what the getter expected.
template <typename Ok>
const GgufValue& typed(const GgufFile& g, const std::string& key, const char* expected, Ok ok) {
  const GgufValue& v = g.get(key);
  if (!ok(v)) {
    const std::string found = v.type == GgufType::Array ? std::string("an array of ") + gguf_type_name(v.elem_type)
                                                        : gguf_type_name(v.type);
    fail("gguf: ", g.path(), ": metadata '", key, "' is ", found, ", expected ", expected);
  }
  return v;
}

}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  return typed(*this, key, "string", [](const GgufValue& v) { return v.type == GgufType::String; }).s;
}

int64_t GgufFile::get_int(const std::string& key) const {
  return typed(*this, key, "an integer", [](const GgufValue& v) { return v.is_integer(); }).as_int();
}

double GgufFile::get_float(const std::string& key) const {
  return typed(*this, key, "a number", [](const GgufValue& v) { return v.is_float() || v.is_integer(); }).as_double();
}

bool GgufFile::get_bool(const std::string& key) const {
  return typed(*this, key, "bool", [](const GgufValue& v) { return v.type == GgufType::Bool; }).u != 0;
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  return typed(*this, key, "an array of strings",
               [](const GgufValue& v) { return v.type == GgufType::Array && v.elem_type == GgufType::String; })
      .strs;
}

std::vector<float> GgufFile::get_floats(const std::string& key) const {
  const GgufValue& v = typed(*this, key, "an array of numbers", [](const GgufValue& v) {
    return v.type == GgufType::Array && v.elem_type != GgufType::String && v.elem_type != GgufType::Array;
  });
  std::vector<float> out(v.size());
  for (size_t k = 0; k < out.size(); ++k) out[k] = float(v.at(k).as_double());
  return out;
}

std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  const GgufValue& v =
      typed(*this, key, "an array of integers", [](const GgufValue& v) { return v.type == GgufType::Array && integer_type(v.elem_type); });
  std::vector<int64_t> out(v.size());
  for (size_t k = 0; k < out.size(); ++k) out[k] = v.at(k).as_int();
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor_info(const std::string& name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("gguf: ", name_, ": no tensor named '", name, "'");
  return *t;
}

Tensor GgufFile::tensor(const std::string& name) const {
  const GgufTensorInfo& t = tensor_info(name);
  if (!t.type->dtype)
    fail("gguf: ", name_, ": tensor '", name, "' has type ", t.type->name,
         ", which ocellus does not compute with (supported: f32, f16, bf16, q8_0, q4_0)");
  OCELLUS_CHECK(file_, "gguf: ", name_, ": parsed from memory; tensors need a mapped file");
  return Tensor::map(file_, size_t(data_offset_ + t.offset), t.shape, *t.type->dtype);
}

// ---- writer ---------------------------------------------------------------------------------

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, uint32_t type_id, const Shape& shape,
                            std::function<void(uint8_t*)> fill) {
  const GgmlType* t = ggml_type(type_id);
  OCELLUS_CHECK(t, "gguf: tensor '", name, "': unknown ggml type ", type_id);
  OCELLUS_CHECK(shape.ndim >= 1, "gguf: tensor '", name, "' has no dimensions");
  OCELLUS_CHECK(shape.last() % t->block_size == 0, "gguf: tensor '", name, "': row of ", shape.last(),
                " is not a whole number of ", t->name, " blocks");
  for (const Pending& p : tensors_) OCELLUS_CHECK(p.name != name, "gguf: duplicate tensor '", name, "'");
  const uint64_t nbytes = uint64_t(shape.numel() / t->block_size) * uint64_t(t->block_bytes);
  tensors_.push_back({name, type_id, shape, nbytes, std::move(fill)});
}

void GgufWriter::add_tensor(const std::string& name, const Tensor& t) {
  const Tensor c = t.contiguous();
  add_tensor(name, ggml_type_id(c.dtype()), c.shape(),
             [c](uint8_t* dst) { std::memcpy(dst, c.raw(), c.nbytes()); });
}

void GgufWriter::copy_from(const GgufFile& f) {
  for (const auto& kv : f.metadata()) set(kv.first, kv.second);
  // The producers hold the mapping, so the writer may outlive `f`.
  std::shared_ptr<const MappedFile> keep = f.mapped_file();
  for (const GgufTensorInfo& t : f.tensors()) {
    const uint8_t* src = f.tensor_data(t);
    const size_t n = size_t(t.nbytes);
    add_tensor(t.name, t.type_id, t.shape, [src, n, keep](uint8_t* dst) { std::memcpy(dst, src, n); });
  }
}

namespace {

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void put_string(std::string& out, const std::string& s) {
  put_u64(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufValue& v) {
  if (v.type == GgufType::String) {
    put_string(out, v.s);
  } else if (v.type == GgufType::Array) {
    put_u32(out, uint32_t(v.elem_type));
    put_u64(out, v.size());
    if (v.elem_type == GgufType::String) {
      for (const std::string& s : v.strs) put_string(out, s);
    } else if (v.elem_type == GgufType::Array) {
      for (const GgufValue& e : v.arr) put_value(out, e);
    } else {
      out.append(reinterpret_cast<const char*>(v.raw.data()), v.raw.size());
    }
  } else {
    encode_scalar(v, out);
  }
}

}  // namespace

void GgufWriter::write(const std::string& path) const {
  uint64_t alignment = kDefaultAlignment;
  for (const auto& kv : kv_)
    if (kv.first == "general.alignment") {
      OCELLUS_CHECK(kv.second.type == GgufType::Uint32 && kv.second.u && !(kv.second.u & (kv.second.u - 1)),
                    "gguf: general.alignment must be a uint32 power of two");
      alignment = kv.second.u;
    }
  std::string head;
  put_u32(head, kMagic);
  put_u32(head, version_);
  put_u64(head, tensors_.size());
  put_u64(head, kv_.size());
  for (const auto& kv : kv_) {
    put_string(head, kv.first);
    put_u32(head, uint32_t(kv.second.type));
    put_value(head, kv.second);
  }
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    put_string(head, t.name);
    put_u32(head, uint32_t(t.shape.ndim));
    for (int d = t.shape.ndim - 1; d >= 0; --d) put_u64(head, uint64_t(t.shape[d]));
    put_u32(head, t.type_id);
    put_u64(head, offset);
    offset = align_up(offset + t.nbytes, alignment);
  }
  // As llama.cpp: the data section (and so the padding before it) only when there are tensors.
  if (!tensors_.empty()) head.resize(size_t(align_up(head.size(), alignment)), '\0');

  write_file_atomically(path, [&](std::FILE* f) {
    write_bytes(f, head.data(), head.size(), path);
    std::vector<uint8_t> buf;
    for (const Pending& t : tensors_) {
      const size_t padded = size_t(align_up(t.nbytes, alignment));
      buf.assign(padded, 0);
      t.fill(buf.data());
      write_bytes(f, buf.data(), padded, path);
    }
  });
}

}  // namespace ocellus::io
