// Element types and shapes of onnxq's IR. DataType values equal ONNX's TensorProto.DataType so that
// the importer can map them one to one; the IR itself never includes protobuf headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "onnxq/base/status.h"

namespace onnxq {

enum class DataType : int32_t {
  kUndefined = 0,
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
  kComplex64 = 14,
  kComplex128 = 15,
  kBFloat16 = 16,
  kFloat8E4M3FN = 17,
  kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19,
  kFloat8E5M2FNUZ = 20,
  kUint4 = 21,
  kInt4 = 22,
};

// Largest DataType value onnxq knows; the importer refuses anything above.
constexpr int32_t kMaxDataType = 22;

// Bytes per element; 0 for kUndefined and kString (variable size) and for the packed 4-bit types
// (whose storage is ceil(n/2) bytes, see StorageBytes).
size_t ElementSize(DataType t);
// Storage in bytes of n elements of type t in ONNX raw_data layout; false on overflow or unsized type.
bool StorageBytes(DataType t, int64_t n, size_t* bytes);
// "float32", "int8", ...: the numpy spelling where one exists.
const char* DataTypeName(DataType t);
bool IsValidDataType(int32_t v);
bool IsFloatingPoint(DataType t);
bool IsInteger(DataType t);

// One dimension: a known size (>= 0), a symbolic name ("N", "batch"), or unknown (neither).
struct Dim {
  int64_t value = -1;
  std::string param;

  static Dim Known(int64_t v) { return Dim{v, {}}; }
  static Dim Symbolic(std::string p) { return Dim{-1, std::move(p)}; }
  static Dim Unknown() { return Dim{}; }
  bool is_known() const { return value >= 0; }
  bool is_symbolic() const { return value < 0 && !param.empty(); }
  bool operator==(const Dim& o) const { return value == o.value && param == o.param; }
  bool operator!=(const Dim& o) const { return !(*this == o); }
};

class Shape {
 public:
  Shape() = default;
  explicit Shape(std::vector<Dim> dims) : dims_(std::move(dims)) {}
  static Shape FromDims(const std::vector<int64_t>& dims);

  size_t rank() const { return dims_.size(); }
  const Dim& operator[](size_t i) const { return dims_[i]; }
  Dim& operator[](size_t i) { return dims_[i]; }
  const std::vector<Dim>& dims() const { return dims_; }
  std::vector<Dim>& dims() { return dims_; }
  bool is_static() const;
  // Static dims; only meaningful when is_static().
  std::vector<int64_t> static_dims() const;
  // Element count if static and representable, else -1.
  int64_t num_elements() const;
  // "[N,3,224,224]"
  std::string ToString() const;
  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::vector<Dim> dims_;
};

// Product of dims with overflow and negativity checks: refuses before anyone allocates.
StatusOr<int64_t> CheckedElementCount(const std::vector<int64_t>& dims);
std::string DimsToString(const std::vector<int64_t>& dims);

}  // namespace onnxq
