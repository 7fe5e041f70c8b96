// Tensor: element type, dims and owned bytes. Storage is a 64-byte aligned buffer shared between
// copies and cloned on the first write (copy on write), so passing initializers around is cheap and
// a pass that edits weights never changes someone else's copy.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/types.h"

namespace onnxq {

// Limits enforced wherever a tensor is created from untrusted input (importer, .npy reader).
struct TensorLimits {
  int64_t max_elements = int64_t{1} << 32;  // 4 Gi elements
  int64_t max_bytes = int64_t{16} << 30;    // 16 GiB per tensor
};

class Tensor {
 public:
  Tensor() = default;

  // Zero-filled tensor. Fails on negative dims, overflow or limits; never allocates first.
  static StatusOr<Tensor> Create(DataType dtype, std::vector<int64_t> dims,
                                 const TensorLimits& limits = {});
  // Copies `bytes` (must be exactly StorageBytes(dtype, numel)).
  static StatusOr<Tensor> FromBytes(DataType dtype, std::vector<int64_t> dims, const void* bytes,
                                    size_t size, const TensorLimits& limits = {});
  static StatusOr<Tensor> FromStrings(std::vector<int64_t> dims, std::vector<std::string> strings);
  // Convenience for code and tests with trusted sizes.
  static Tensor Float(std::vector<int64_t> dims, std::span<const float> values = {});
  static Tensor Int64(std::vector<int64_t> dims, std::span<const int64_t> values = {});

  bool empty_type() const { return dtype_ == DataType::kUndefined; }
  DataType dtype() const { return dtype_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  size_t rank() const { return dims_.size(); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return nbytes_; }

  const std::byte* raw() const { return buffer_ ? buffer_->data : nullptr; }
  std::byte* mutable_raw();
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(raw());
  }
  template <typename T>
  T* mutable_data() {
    return reinterpret_cast<T*>(mutable_raw());
  }
  template <typename T>
  std::span<const T> span() const {
    return {data<T>(), static_cast<size_t>(numel_)};
  }

  const std::vector<std::string>& strings() const { return strings_; }
  std::vector<std::string>& mutable_strings() { return strings_; }

  // Same dims and element type, fresh copy of the bytes.
  Tensor Clone() const;
  // Reinterprets with new dims of the same element count (shares storage).
  StatusOr<Tensor> Reshaped(std::vector<int64_t> dims) const;
  // Byte-equal contents (and dtype and dims).
  bool BitwiseEqual(const Tensor& other) const;
  // Reads element i as double, whatever the numeric dtype (float16/bfloat16 included).
  double GetAsDouble(int64_t i) const;
  // Writes element i from a double (rounds and saturates as a cast to the dtype would not: callers
  // pass representable values).
  void SetFromDouble(int64_t i, double v);
  // True if a float-typed tensor holds NaN or Inf (first offending index in *index).
  bool HasNonFinite(int64_t* index = nullptr) const;

 private:
  struct Buffer {
    std::byte* data = nullptr;
    size_t size = 0;
    ~Buffer();
  };
  static std::shared_ptr<Buffer> Allocate(size_t bytes);

  DataType dtype_ = DataType::kUndefined;
  std::vector<int64_t> dims_;
  int64_t numel_ = 0;
  size_t nbytes_ = 0;
  std::shared_ptr<Buffer> buffer_;
  std::vector<std::string> strings_;  // only for kString
};

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float BFloat16ToFloat(uint16_t b);
uint16_t FloatToBFloat16(float f);

}  // namespace onnxq
