#include "ocellus/io/json.h"
#include "ocellus/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "ocellus/core/error.h"
#include "ocellus/io/file.h"

namespace ocellus::io {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeader = 100'000'000;  // as Hugging Face's own reader

struct StDType {
  const char* name;
  uint64_t size;
  std::optional<DType> core;
};
const StDType kDTypes[] = {
    {"F32", 4, DType::F32}, {"F16", 2, DType::F16}, {"BF16", 2, DType::BF16},
    {"F64", 8, std::nullopt}, {"I64", 8, std::nullopt}, {"U64", 8, std::nullopt},
    {"I32", 4, std::nullopt}, {"U32", 4, std::nullopt}, {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt}, {"I8", 1, std::nullopt}, {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const StDType* find_dtype(const std::string& name) {
  for (const StDType& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const char* st_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: fail("safetensors: cannot store dtype ", dtype_name(t), " (F32, F16 and BF16 can be)");
  }
}

[[noreturn]] void bad(const std::string& file, const std::string& where, const std::string& problem) {
  fail("safetensors: ", file, ": ", where, ": ", problem);
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  auto file = std::make_shared<const MappedFile>(path);
  SafetensorsFile f = parse(file->data(), file->size(), path);
  f.file_ = std::move(file);
  return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  SafetensorsFile f;
  f.name_ = name;
  f.data_ = data;
  f.size_ = size;
  if (size < 8) bad(name, "header", "file too small to be safetensors (" + std::to_string(size) + " bytes)");
  uint64_t n;
  std::memcpy(&n, data, 8);
  if (n > kMaxHeader) bad(name, "header length", std::to_string(n) + " bytes is beyond the 100 MB limit");
  if (n > size - 8) bad(name, "header length", std::to_string(n) + " bytes runs past the end of the file");
  if (n < 2 || data[8] != '{') bad(name, "header", "does not start with a JSON object");
  f.data_start_ = size_t(8 + n);
  const uint64_t data_size = size - f.data_start_;

  const json h = parse_json(std::string(reinterpret_cast<const char*>(data) + 8, size_t(n)), name + " header", "safetensors");
  if (!h.is_object()) bad(name, "header", "is not a JSON object");

  struct Range { uint64_t begin, end; size_t idx; };
  std::vector<Range> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) bad(name, "__metadata__", "is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(name, "__metadata__['" + m.key() + "']", "is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!v.is_object()) bad(name, where, "entry is not an object");
    SafetensorsInfo t;
    t.name = key;
    const auto dt = v.find("dtype"), sh = v.find("shape"), off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) bad(name, where, "missing or non-string 'dtype'");
    if (sh == v.end() || !sh->is_array()) bad(name, where, "missing or non-array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2) bad(name, where, "'data_offsets' must be [begin, end]");
    t.dtype = dt->get<std::string>();
    const StDType* d = find_dtype(t.dtype);
    if (!d) bad(name, where, "unknown dtype '" + t.dtype + "'");
    t.core_dtype = d->core;
    if (sh->size() > 8) bad(name, where, std::to_string(sh->size()) + " dimensions is absurd");
    uint64_t numel = 1;
    for (const json& x : *sh) {
      if (!x.is_number_unsigned()) bad(name, where, "shape entries must be non-negative integers");
      const uint64_t e = x.get<uint64_t>();
      if (e > uint64_t(std::numeric_limits<int64_t>::max()) || (e && numel > uint64_t(std::numeric_limits<int64_t>::max()) / e))
        bad(name, where, "element count overflows 64 bits");
      numel *= e;
      t.shape.push_back(int64_t(e));
    }
    for (const json& x : *off)
      if (!x.is_number_unsigned()) bad(name, where, "data_offsets must be non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.end < t.begin) bad(name, where, "data_offsets end before they begin");
    if (t.end > data_size)
      bad(name, where, "data [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                           ") runs past the end of the file (" + std::to_string(data_size) + " data bytes)");
    if (numel > uint64_t(std::numeric_limits<int64_t>::max()) / d->size || t.end - t.begin != numel * d->size)
      bad(name, where, "holds " + std::to_string(t.end - t.begin) + " bytes but its shape and dtype need " +
                           std::to_string(numel * d->size));
    f.index_[t.name] = f.tensors_.size();
    ranges.push_back({t.begin, t.end, f.tensors_.size()});
    f.tensors_.push_back(std::move(t));
  }
  // File order = data order (JSON object key order is not kept by the parser).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t k = 1; k < ranges.size(); ++k)
    if (ranges[k].begin < ranges[k - 1].end)
      bad(name, "tensor '" + f.tensors_[ranges[k].idx].name + "'",
          "data overlaps tensor '" + f.tensors_[ranges[k - 1].idx].name + "'");
  std::vector<SafetensorsInfo> ordered;
  ordered.reserve(f.tensors_.size());
  for (const Range& r : ranges) ordered.push_back(std::move(f.tensors_[r.idx]));
  f.tensors_ = std::move(ordered);
  f.index_.clear();
  for (size_t k = 0; k < f.tensors_.size(); ++k) f.index_[f.tensors_[k].name] = k;
  return f;
}

const SafetensorsInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsInfo* t = find(name);
  if (!t) fail("safetensors: ", name_, ": no tensor named '", name, "'");
  if (!t->core_dtype)
    fail("safetensors: ", name_, ": tensor '", name, "' has dtype ", t->dtype,
         ", which ocellus does not compute with (F32, F16, BF16 are supported)");
  if (t->shape.size() > size_t(kMaxDims))
    fail("safetensors: ", name_, ": tensor '", name, "' has ", t->shape.size(), " dimensions (at most ", kMaxDims, ")");
  OCELLUS_CHECK(file_, "safetensors: ", name_, ": parsed from memory; tensors need a mapped file");
  // A 0-dim tensor (a scalar) is a 1-element vector here.
  const Shape shape = t->shape.empty() ? Shape{1} : Shape::of(t->shape.data(), int(t->shape.size()));
  return Tensor::map(file_, data_start_ + size_t(t->begin), shape, *t->core_dtype);
}

// ---- sharded model --------------------------------------------------------------------------

SafetensorsModel SafetensorsModel::open(const std::string& path) {
  SafetensorsModel m;
  auto add = [&m](SafetensorsFile f) {
    const size_t idx = m.files_.size();
    for (const SafetensorsInfo& t : f.tensors()) {
      if (m.where_.count(t.name))
        fail("safetensors: tensor '", t.name, "' appears in both ", m.files_[m.where_[t.name]].path(), " and ", f.path());
      m.where_[t.name] = idx;
    }
    m.files_.push_back(std::move(f));
  };
  if (!is_directory(path)) {
    add(SafetensorsFile::open(path));
    return m;
  }
  const std::string index_path = path + "/model.safetensors.index.json";
  if (is_file(index_path)) {
    const json idx = read_json_file(index_path, "safetensors");
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("safetensors: ", index_path, ": missing 'weight_map' object");
    std::map<std::string, std::string> wanted;  // tensor -> shard
    std::set<std::string> shards;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("safetensors: ", index_path, ": weight_map['", it.key(), "'] is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..")
        fail("safetensors: ", index_path, ": shard name '", shard, "' must be a file in the same folder");
      wanted[it.key()] = shard;
      shards.insert(shard);
    }
    for (const std::string& s : shards) add(SafetensorsFile::open(path + "/" + s));
    for (const auto& [tensor, shard] : wanted) {
      auto it = m.where_.find(tensor);
      if (it == m.where_.end() || m.files_[it->second].path() != path + "/" + shard)
        fail("safetensors: ", index_path, ": tensor '", tensor, "' is not in shard ", shard);
    }
    return m;
  }
  const std::string single = path + "/model.safetensors";
  if (!is_file(single)) fail("safetensors: ", path, ": no model.safetensors or model.safetensors.index.json");
  add(SafetensorsFile::open(single));
  return m;
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> n;
  for (const auto& kv : where_) n.push_back(kv.first);
  return n;
}

const SafetensorsInfo& SafetensorsModel::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("safetensors: no tensor named '", name, "'");
  return *files_[it->second].find(name);
}

Tensor SafetensorsModel::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail("safetensors: no tensor named '", name, "'");
  return files_[it->second].tensor(name);
}

// ---- writer ---------------------------------------------------------------------------------

Tensor safetensors_storable(const Tensor& t) {
  return t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16 ? t : t.to(DType::F32);
}

std::vector<std::pair<std::string, Tensor>> matrices_as(std::vector<std::pair<std::string, Tensor>> tensors, DType dtype) {
  for (auto& [name, t] : tensors)
    if (t.ndim() >= 2 && t.dtype() != dtype) t = t.to(dtype);
  return tensors;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  ordered_json h = ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::vector<Tensor> data;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    OCELLUS_CHECK(name != "__metadata__" && seen.insert(name).second, "safetensors: ", path,
                  ": duplicate or reserved tensor name '", name, "'");
    Tensor c = t.contiguous();
    ordered_json e;
    e["dtype"] = st_name(c.dtype());
    std::vector<int64_t> shape(c.shape().d, c.shape().d + c.ndim());
    e["shape"] = shape;
    e["data_offsets"] = {offset, offset + c.nbytes()};
    offset += c.nbytes();
    h[name] = e;
    data.push_back(c);
  }
  std::string header = h.dump();
  header.resize((header.size() + 7) / 8 * 8, ' ');  // data starts 8-byte aligned
  const uint64_t n = header.size();
  write_file_atomically(path, [&](std::FILE* f) {
    write_bytes(f, &n, 8, path);
    write_bytes(f, header.data(), header.size(), path);
    for (const Tensor& t : data) write_bytes(f, t.raw(), t.nbytes(), path);
  });
}

void write_safetensors_sharded(const std::string& dir, const std::vector<std::pair<std::string, Tensor>>& tensors,
                               uint64_t max_shard_bytes) {
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t bytes = 0, total = 0;
  for (const auto& nt : tensors) {
    const uint64_t b = nt.second.nbytes();
    if (!shards.back().empty() && bytes + b > max_shard_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(nt);
    bytes += b;
    total += b;
  }
  if (shards.size() == 1) {
    write_safetensors(dir + "/model.safetensors", tensors);
    return;
  }
  ordered_json weight_map = ordered_json::object();
  char fname[64];
  for (size_t s = 0; s < shards.size(); ++s) {
    std::snprintf(fname, sizeof fname, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    write_safetensors(dir + "/" + fname, shards[s]);
    for (const auto& nt : shards[s]) weight_map[nt.first] = fname;
  }
  ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = weight_map;
  write_text_file_atomically(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace ocellus::io
