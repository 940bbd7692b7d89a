#pragma once
// Tensor: up to 4 dimensions, row-major (dim 0 outermost), byte strides, a dtype, and storage
// that is owned (aligned heap memory), a view of another tensor's storage, or a read-only memory
// map of a file region. Quantized tensors keep each row's blocks contiguous.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "ocellus/core/dtype.h"

namespace ocellus {

constexpr int kMaxDims = 4;

struct Shape {
  int ndim = 0;
  int64_t d[kMaxDims] = {1, 1, 1, 1};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  static Shape of(const int64_t* dims, int n);
  int64_t operator[](int i) const { return d[i]; }
  int64_t& operator[](int i) { return d[i]; }
  int64_t numel() const;
  int64_t last() const { return ndim ? d[ndim - 1] : 1; }
  // Product of all but the last dimension (the number of rows; also when the last is 0).
  int64_t rows() const {
    int64_t r = 1;
    for (int i = 0; i + 1 < ndim; ++i) r *= d[i];
    return r;
  }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 3]"
};

// A file mapped read-only into memory; storages of mapped tensors keep it alive.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops every page of the mapping from this process's resident memory (the mapping stays
  // valid: a later read faults its page back in from the file). A loader calls it once its
  // matrices are copied out, for what per-tensor releases leave behind: pages at tensors'
  // edges, and 2 MiB folios a part of which was still mapped.
  void drop_resident() const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class Storage {
 public:
  enum class Kind { Owned, Mapped };
  // 64-byte aligned (2 MiB and huge pages when large), uninitialized: Tensor::empty's op writes
  // every element, Tensor::zeros fills it. OCELLUS_POISON=1 fills it with NaNs to catch a read
  // of memory never written.
  static std::shared_ptr<Storage> allocate(size_t bytes);
  static std::shared_ptr<Storage> map(std::shared_ptr<const MappedFile> file, size_t offset,
                                      size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  Kind kind() const { return kind_; }
  bool writable() const { return kind_ == Kind::Owned; }

 private:
  Storage() = default;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;  // bytes allocated (owned storage): at least size_
  Kind kind_ = Kind::Owned;
  std::shared_ptr<const MappedFile> file_;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  // A read-only tensor over bytes [offset, offset + nbytes) of a mapped file.
  static Tensor map(std::shared_ptr<const MappedFile> file, size_t offset, const Shape& shape,
                    DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim; }
  int64_t dim(int i) const { return shape_[i < 0 ? i + shape_.ndim : i]; }
  int64_t stride(int i) const { return strides_[i < 0 ? i + shape_.ndim : i]; }  // bytes
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const;  // bytes of the elements if contiguous
  bool is_contiguous() const;
  bool is_view() const { return is_view_; }
  bool is_mapped() const { return storage_ && storage_->kind() == Storage::Kind::Mapped; }
  bool writable() const { return storage_ && storage_->writable(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  uint8_t* raw() const { return storage_->data() + offset_; }
  template <typename T>
  T* data() const { return reinterpret_cast<T*>(raw()); }
  // Pointer to the start of the row with outer indices (i0, i1, i2) (unused ones 0).
  uint8_t* row_ptr(int64_t i0, int64_t i1 = 0, int64_t i2 = 0) const;
  // f32 element by full index (naive kernels and tests); dtype must be F32.
  float& at(std::initializer_list<int64_t> idx) const;

  // Views (share storage; no copy).
  Tensor reshape(const Shape& shape) const;  // requires contiguous
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor transpose(int a, int b) const;  // not the last dim of a quantized tensor
  Tensor row(int64_t i) const { return slice(0, i, i + 1); }

  // Copies.
  Tensor contiguous() const;  // *this if already contiguous
  Tensor clone() const;
  // For a tensor over a mapped file: drops its pages from this process's resident memory
  // (madvise DONTNEED; the mapping stays valid and reads fault them back in from the file).
  // For a copy made at load: the model is then resident once. No-op for owned storage.
  void release_mapped_pages() const;
  Tensor to(DType dtype) const;  // contiguous result; quantizes / dequantizes rows
  std::vector<float> to_vector() const;  // f32 values in logical order

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  int64_t strides_[kMaxDims] = {0, 0, 0, 0};
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  bool is_view_ = false;

  void set_contiguous_strides();
};

}  // namespace ocellus
