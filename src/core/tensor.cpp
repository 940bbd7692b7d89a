#include "ocellus/core/tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>
#include <algorithm>
#include <sstream>

#include "ocellus/core/error.h"
#include "ocellus/core/threads.h"
#include "ocellus/core/quant.h"

namespace ocellus {

// ---- Shape --------------------------------------------------------------------------------

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(of(dims.begin(), int(dims.size()))) {}

Shape Shape::of(const int64_t* dims, int n) {
  OCELLUS_CHECK(n >= 0 && n <= kMaxDims, "tensor: at most ", kMaxDims, " dimensions, got ", n);
  Shape s;
  for (int i = 0; i < n; ++i) {
    OCELLUS_CHECK(dims[i] >= 0, "tensor: negative dimension ", dims[i]);
    s.d[s.ndim++] = dims[i];
  }
  return s;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) {
    OCELLUS_CHECK(d[i] == 0 || n <= INT64_MAX / d[i], "tensor: element count of ", str(),
                  " overflows");
    n *= d[i];
  }
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (d[i] != o.d[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << d[i];
  os << ']';
  return os.str();
}

// ---- MappedFile / Storage -----------------------------------------------------------------

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  // Closed on every way out (the errors below read errno before the unwinding closes it).
  const struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, ": cannot stat: ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(path, ": is a directory, not a file");
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail(path, ": cannot map: ", std::strerror(errno));
    data_ = static_cast<const uint8_t*>(p);
    // No huge pages asked for here: the matrices are copied out at load (into huge-page memory,
    // PreparedWeight) and what is read from the mapping later is small and scattered (biases,
    // norms, embedding rows). With 2 MiB folios each such read mapped 2 MiB around it: 250 MB
    // of a CLIP-ViT-L file resident again after one encode (measured).
  }
}

void MappedFile::drop_resident() const {
  if (data_) ::madvise(const_cast<uint8_t*>(data_), size_, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

namespace {

// Bytes actually allocated for a request, and whether the block is 2 MiB aligned (huge pages).
constexpr size_t kHuge = size_t(2) << 20;
size_t padded_size(size_t bytes) {
  size_t padded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  if (padded >= 2 * kHuge) padded = (padded + kHuge - 1) / kHuge * kHuge;
  return padded;
}

// Freed large blocks kept for reuse: a training step allocates about the same activation and
// gradient sizes every step, and fresh memory from the kernel costs a page fault and a zeroing
// per 4 KiB. A request takes the smallest cached block that holds it with at most a quarter to
// spare, not only one of its exact size: a batch's token count differs from step to step, and
// with exact sizes most activations of one step found no block freed by the last (measured on
// the fashion model's stage 2, 40 steps: ~7k page faults per step with exact sizes, ~2k with
// this). Bounded; the oldest go first.
class BlockCache {
 public:
  static constexpr size_t kMinBlock = size_t(64) << 10;
  static BlockCache& get() {
    static BlockCache* c = new BlockCache();  // never destroyed: storages may outlive statics
    return *c;
  }
  // A block of at least `padded` bytes and its capacity, or {nullptr, 0}.
  std::pair<void*, size_t> take(size_t padded) {
    if (padded < kMinBlock) return {nullptr, 0};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.lower_bound(padded);
    if (it == blocks_.end() || it->first > padded + padded / 4) return {nullptr, 0};
    const std::pair<void*, size_t> got{it->second.first, it->first};
    bytes_ -= it->first;
    blocks_.erase(it);
    return got;
  }
  void give(void* p, size_t capacity) {
    if (capacity < kMinBlock || capacity > limit_) {
      std::free(p);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    while (bytes_ + capacity > limit_ && !blocks_.empty()) {
      auto oldest = std::min_element(blocks_.begin(), blocks_.end(), [](const auto& x, const auto& y) {
        return x.second.second < y.second.second;
      });
      std::free(oldest->second.first);
      bytes_ -= oldest->first;
      blocks_.erase(oldest);
    }
    blocks_.emplace(capacity, std::make_pair(p, clock_++));
    bytes_ += capacity;
  }

 private:
  BlockCache() {
    const char* mb = std::getenv("OCELLUS_BLOCK_CACHE_MB");
    limit_ = (mb ? size_t(std::strtoull(mb, nullptr, 10)) : size_t(512)) << 20;
  }
  std::mutex mu_;
  std::multimap<size_t, std::pair<void*, uint64_t>> blocks_;  // capacity -> block, when given
  size_t bytes_ = 0, limit_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t bytes) {
  static const bool poison = std::getenv("OCELLUS_POISON") != nullptr;  // read once, not per tensor
  std::shared_ptr<Storage> s(new Storage());
  // Large buffers (weights, caches) on 2 MiB boundaries with transparent huge pages asked
  // for: a matrix streamed every token then costs a TLB miss per 2 MiB, not per 4 KiB.
  const size_t padded = padded_size(bytes);
  const bool huge = padded >= 2 * kHuge;
  const auto [block, capacity] = BlockCache::get().take(padded);
  s->data_ = static_cast<uint8_t*>(block);
  s->capacity_ = capacity ? capacity : padded;
  if (!s->data_) {
    s->data_ = static_cast<uint8_t*>(std::aligned_alloc(huge ? kHuge : 64, padded));
    if (!s->data_) fail("tensor: out of memory allocating ", bytes, " bytes");
    if (huge) ::madvise(s->data_, padded, MADV_HUGEPAGE);
  }
  if (poison) std::memset(s->data_, 0xff, padded);  // NaN: finds reads of unwritten memory
  s->size_ = bytes;
  s->kind_ = Kind::Owned;
  return s;
}

std::shared_ptr<Storage> Storage::map(std::shared_ptr<const MappedFile> file, size_t offset,
                                      size_t bytes) {
  OCELLUS_CHECK(offset <= file->size() && bytes <= file->size() - offset, file->path(),
                ": region [", offset, ", +", bytes, ") lies past the end of the file (",
                file->size(), " bytes)");
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = const_cast<uint8_t*>(file->data()) + offset;  // PROT_READ: never written
  s->size_ = bytes;
  s->kind_ = Kind::Mapped;
  s->file_ = std::move(file);
  return s;
}

Storage::~Storage() {
  if (kind_ == Kind::Owned) BlockCache::get().give(data_, capacity_);
}

// ---- Tensor -------------------------------------------------------------------------------

void Tensor::set_contiguous_strides() {
  const int n = shape_.ndim;
  if (n == 0) return;
  int64_t s = int64_t(row_bytes(dtype_, shape_[n - 1]));
  strides_[n - 1] = dtype_info(dtype_).quantized ? 0 : dtype_info(dtype_).block_bytes;
  for (int i = n - 2; i >= 0; --i) {
    strides_[i] = s;
    OCELLUS_CHECK(shape_[i] == 0 || s <= INT64_MAX / shape_[i], "tensor: size of ", shape_.str(),
                  " overflows");
    s *= shape_[i];
  }
}

size_t Tensor::nbytes() const {
  if (shape_.ndim == 0) return dtype_info(dtype_).block_bytes;
  return row_bytes(dtype_, shape_.last()) * size_t(shape_.rows());
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.set_contiguous_strides();
  t.storage_ = Storage::allocate(t.nbytes());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  // Large buffers (gradients in training) zeroed by all threads: one alone leaves the others idle.
  const size_t n = t.nbytes(), chunk = size_t(1) << 18;
  uint8_t* p = t.raw();
  if (n < 4 * chunk) {
    std::memset(p, 0, n);
  } else {
    parallel_for(int64_t((n + chunk - 1) / chunk), 1, [&](int64_t a, int64_t b) {
      const size_t lo = size_t(a) * chunk, hi = std::min(n, size_t(b) * chunk);
      std::memset(p + lo, 0, hi - lo);
    });
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = value;
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  OCELLUS_CHECK(int64_t(values.size()) == shape.numel(), "tensor: ", values.size(),
                " values do not fill shape ", shape.str());
  Tensor t = empty(shape);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::map(std::shared_ptr<const MappedFile> file, size_t offset, const Shape& shape,
                   DType dtype) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.set_contiguous_strides();
  t.storage_ = Storage::map(std::move(file), offset, t.nbytes());
  return t;
}

bool Tensor::is_contiguous() const {
  int64_t expect = shape_.ndim ? int64_t(row_bytes(dtype_, shape_.last())) : 0;
  if (shape_.ndim && !dtype_info(dtype_).quantized && shape_.last() > 1 &&
      strides_[shape_.ndim - 1] != dtype_info(dtype_).block_bytes)
    return false;
  for (int i = shape_.ndim - 2; i >= 0; --i) {
    if (shape_[i] > 1 && strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

uint8_t* Tensor::row_ptr(int64_t i0, int64_t i1, int64_t i2) const {
  const int64_t idx[3] = {i0, i1, i2};
  uint8_t* p = raw();
  for (int i = 0; i < shape_.ndim - 1 && i < 3; ++i) p += idx[i] * strides_[i];
  return p;
}

float& Tensor::at(std::initializer_list<int64_t> idx) const {
  OCELLUS_CHECK(dtype_ == DType::F32, "tensor: at() needs f32, tensor is ", dtype_name(dtype_));
  OCELLUS_CHECK(int(idx.size()) == shape_.ndim, "tensor: at() got ", idx.size(),
                " indices for shape ", shape_.str());
  uint8_t* p = raw();
  int i = 0;
  for (int64_t v : idx) {
    OCELLUS_CHECK(v >= 0 && v < shape_[i], "tensor: index ", v, " out of range for dim ", i,
                  " of ", shape_.str());
    p += v * strides_[i++];
  }
  return *reinterpret_cast<float*>(p);
}

Tensor Tensor::reshape(const Shape& shape) const {
  OCELLUS_CHECK(is_contiguous(), "tensor: reshape of a non-contiguous tensor; call contiguous()");
  OCELLUS_CHECK(shape.numel() == numel(), "tensor: cannot reshape ", shape_.str(), " to ",
                shape.str());
  Tensor t = *this;
  t.shape_ = shape;
  t.set_contiguous_strides();
  t.is_view_ = true;
  return t;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
  if (dim < 0) dim += shape_.ndim;
  OCELLUS_CHECK(dim >= 0 && dim < shape_.ndim, "tensor: slice dim ", dim, " out of range for ",
                shape_.str());
  OCELLUS_CHECK(0 <= start && start <= end && end <= shape_[dim], "tensor: slice [", start, ", ",
                end, ") out of range for dim ", dim, " of ", shape_.str());
  Tensor t = *this;
  if (dim == shape_.ndim - 1) {
    t.offset_ += row_bytes(dtype_, start);  // checks block alignment for quantized types
    row_bytes(dtype_, end - start);
  } else {
    t.offset_ += size_t(start * strides_[dim]);
  }
  t.shape_[dim] = end - start;
  t.is_view_ = true;
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  if (a < 0) a += shape_.ndim;
  if (b < 0) b += shape_.ndim;
  OCELLUS_CHECK(a >= 0 && a < shape_.ndim && b >= 0 && b < shape_.ndim,
                "tensor: transpose dims out of range for ", shape_.str());
  OCELLUS_CHECK(!dtype_info(dtype_).quantized || (a != shape_.ndim - 1 && b != shape_.ndim - 1),
                "tensor: cannot transpose the block dimension of a ", dtype_name(dtype_),
                " tensor");
  Tensor t = *this;
  std::swap(t.shape_.d[a], t.shape_.d[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  t.is_view_ = true;
  return t;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

void Tensor::release_mapped_pages() const {
  if (!is_mapped() || nbytes() == 0) return;
  // Whole pages around the bytes: a neighbour sharing a boundary page faults it back if read.
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(raw()) / page * page, end = (uintptr_t(raw()) + nbytes() + page - 1) / page * page;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_);
  const int64_t rows = shape_.rows(), n = shape_.last();
  if (rows == 0 || n == 0) return out;
  const size_t rb = row_bytes(dtype_, n);
  const int64_t d0 = shape_.ndim > 3 ? shape_[shape_.ndim - 4] : 1;
  const int64_t d1 = shape_.ndim > 2 ? shape_[shape_.ndim - 3] : 1;
  const int64_t d2 = shape_.ndim > 1 ? shape_[shape_.ndim - 2] : 1;
  auto st = [&](int back) { return shape_.ndim > back ? strides_[shape_.ndim - 1 - back] : 0; };
  const int64_t es = dtype_info(dtype_).block_bytes;
  uint8_t* dst = out.raw();
  for (int64_t a = 0; a < d0; ++a)
    for (int64_t b = 0; b < d1; ++b)
      for (int64_t c = 0; c < d2; ++c, dst += rb) {
        const uint8_t* src = raw() + a * st(3) + b * st(2) + c * st(1);
        if (dtype_info(dtype_).quantized || strides_[shape_.ndim - 1] == es) {
          std::memcpy(dst, src, rb);
        } else {
          for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * es, src + i * st(0), size_t(es));
        }
      }
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor src = contiguous();
  Tensor out = empty(shape_, dtype);
  const int64_t rows = shape_.rows(), n = shape_.last();
  std::vector<float> tmp(static_cast<size_t>(n));
  const size_t in_rb = row_bytes(dtype_, n), out_rb = row_bytes(dtype, n);
  for (int64_t r = 0; r < rows; ++r) {
    const float* f = reinterpret_cast<const float*>(src.raw() + r * in_rb);
    if (dtype_ != DType::F32) {
      dequantize_row(dtype_, src.raw() + r * in_rb, tmp.data(), n);
      f = tmp.data();
    }
    quantize_row(dtype, f, out.raw() + r * out_rb, n);
  }
  return out;
}

std::vector<float> Tensor::to_vector() const {
  Tensor f = to(DType::F32);
  const float* p = f.data<float>();
  return std::vector<float>(p, p + f.numel());
}

}  // namespace ocellus
