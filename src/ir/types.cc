#include "onnxq/ir/types.h"

#include <limits>
#include <sstream>

namespace onnxq {

size_t ElementSize(DataType t) {
  switch (t) {
    case DataType::kFloat: return 4;
    case DataType::kUint8: return 1;
    case DataType::kInt8: return 1;
    case DataType::kUint16: return 2;
    case DataType::kInt16: return 2;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kBool: return 1;
    case DataType::kFloat16: return 2;
    case DataType::kDouble: return 8;
    case DataType::kUint32: return 4;
    case DataType::kUint64: return 8;
    case DataType::kComplex64: return 8;
    case DataType::kComplex128: return 16;
    case DataType::kBFloat16: return 2;
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ: return 1;
    case DataType::kUint4:
    case DataType::kInt4:
    case DataType::kString:
    case DataType::kUndefined: return 0;
  }
  return 0;
}

bool StorageBytes(DataType t, int64_t n, size_t* bytes) {
  if (n < 0) return false;
  if (t == DataType::kInt4 || t == DataType::kUint4) {
    *bytes = static_cast<size_t>((n + 1) / 2);
    return true;
  }
  size_t es = ElementSize(t);
  if (es == 0) return false;
  if (static_cast<uint64_t>(n) > std::numeric_limits<size_t>::max() / es) return false;
  *bytes = static_cast<size_t>(n) * es;
  return true;
}

const char* DataTypeName(DataType t) {
  switch (t) {
    case DataType::kUndefined: return "undefined";
    case DataType::kFloat: return "float32";
    case DataType::kUint8: return "uint8";
    case DataType::kInt8: return "int8";
    case DataType::kUint16: return "uint16";
    case DataType::kInt16: return "int16";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kString: return "string";
    case DataType::kBool: return "bool";
    case DataType::kFloat16: return "float16";
    case DataType::kDouble: return "float64";
    case DataType::kUint32: return "uint32";
    case DataType::kUint64: return "uint64";
    case DataType::kComplex64: return "complex64";
    case DataType::kComplex128: return "complex128";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat8E4M3FN: return "float8e4m3fn";
    case DataType::kFloat8E4M3FNUZ: return "float8e4m3fnuz";
    case DataType::kFloat8E5M2: return "float8e5m2";
    case DataType::kFloat8E5M2FNUZ: return "float8e5m2fnuz";
    case DataType::kUint4: return "uint4";
    case DataType::kInt4: return "int4";
  }
  return "unknown";
}

bool IsValidDataType(int32_t v) { return v >= 1 && v <= kMaxDataType; }

bool IsFloatingPoint(DataType t) {
  return t == DataType::kFloat || t == DataType::kDouble || t == DataType::kFloat16 ||
         t == DataType::kBFloat16;
}

bool IsInteger(DataType t) {
  switch (t) {
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kUint16:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
    case DataType::kUint32:
    case DataType::kUint64: return true;
    default: return false;
  }
}

Shape Shape::FromDims(const std::vector<int64_t>& dims) {
  std::vector<Dim> d;
  d.reserve(dims.size());
  for (int64_t v : dims) d.push_back(v >= 0 ? Dim::Known(v) : Dim::Unknown());
  return Shape(std::move(d));
}

bool Shape::is_static() const {
  for (const Dim& d : dims_)
    if (!d.is_known()) return false;
  return true;
}

std::vector<int64_t> Shape::static_dims() const {
  std::vector<int64_t> out;
  out.reserve(dims_.size());
  for (const Dim& d : dims_) out.push_back(d.value);
  return out;
}

int64_t Shape::num_elements() const {
  if (!is_static()) return -1;
  auto n = CheckedElementCount(static_dims());
  return n.ok() ? *n : -1;
}

std::string Shape::ToString() const {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) os << ',';
    if (dims_[i].is_known())
      os << dims_[i].value;
    else if (dims_[i].is_symbolic())
      os << dims_[i].param;
    else
      os << '?';
  }
  os << ']';
  return os.str();
}

StatusOr<int64_t> CheckedElementCount(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return InvalidArgument("negative dimension ", d, " in shape ", DimsToString(dims));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      return OutOfRange("element count of shape ", DimsToString(dims), " overflows int64");
    n *= d;
  }
  return n;
}

std::string DimsToString(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? "," : "") << dims[i];
  os << ']';
  return os.str();
}

}  // namespace onnxq
