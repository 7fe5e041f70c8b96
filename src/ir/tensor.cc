#include "onnxq/ir/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

namespace onnxq {

Tensor::Buffer::~Buffer() { std::free(data); }

std::shared_ptr<Tensor::Buffer> Tensor::Allocate(size_t bytes) {
  auto b = std::make_shared<Buffer>();
  // aligned_alloc needs a size that is a multiple of the alignment; never request 0 bytes.
  size_t rounded = ((bytes + 63) / 64) * 64;
  if (rounded == 0) rounded = 64;
  b->data = static_cast<std::byte*>(std::aligned_alloc(64, rounded));
  if (!b->data) throw std::bad_alloc();
  std::memset(b->data, 0, rounded);
  b->size = bytes;
  return b;
}

StatusOr<Tensor> Tensor::Create(DataType dtype, std::vector<int64_t> dims,
                                const TensorLimits& limits) {
  if (dtype == DataType::kUndefined) return InvalidArgument("tensor element type is undefined");
  ONNXQ_ASSIGN_OR_RETURN(int64_t n, CheckedElementCount(dims));
  if (n > limits.max_elements)
    return OutOfRange("tensor of shape ", DimsToString(dims), " has ", n,
                      " elements, more than the limit of ", limits.max_elements);
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.numel_ = n;
  if (dtype == DataType::kString) {
    t.strings_.resize(static_cast<size_t>(n));
    return t;
  }
  size_t bytes = 0;
  if (!StorageBytes(dtype, n, &bytes))
    return Unsupported("cannot size a tensor of element type ", DataTypeName(dtype));
  if (static_cast<uint64_t>(bytes) > static_cast<uint64_t>(limits.max_bytes))
    return OutOfRange("tensor of shape ", DimsToString(t.dims_), " needs ", bytes,
                      " bytes, more than the limit of ", limits.max_bytes);
  t.nbytes_ = bytes;
  t.buffer_ = Allocate(bytes);
  return t;
}

StatusOr<Tensor> Tensor::FromBytes(DataType dtype, std::vector<int64_t> dims, const void* bytes,
                                   size_t size, const TensorLimits& limits) {
  if (dtype == DataType::kString) return InvalidArgument("string tensors cannot come from bytes");
  ONNXQ_ASSIGN_OR_RETURN(int64_t n, CheckedElementCount(dims));
  size_t expect = 0;
  if (!StorageBytes(dtype, n, &expect))
    return Unsupported("cannot size a tensor of element type ", DataTypeName(dtype));
  if (expect != size)
    return InvalidArgument("tensor data has ", size, " bytes but shape ", DimsToString(dims),
                           " of ", DataTypeName(dtype), " needs ", expect);
  ONNXQ_ASSIGN_OR_RETURN(Tensor t, Create(dtype, std::move(dims), limits));
  if (size) std::memcpy(t.buffer_->data, bytes, size);
  return t;
}

StatusOr<Tensor> Tensor::FromStrings(std::vector<int64_t> dims, std::vector<std::string> strings) {
  ONNXQ_ASSIGN_OR_RETURN(int64_t n, CheckedElementCount(dims));
  if (static_cast<size_t>(n) != strings.size())
    return InvalidArgument("string tensor of shape ", DimsToString(dims), " needs ", n,
                           " strings, got ", strings.size());
  Tensor t;
  t.dtype_ = DataType::kString;
  t.dims_ = std::move(dims);
  t.numel_ = n;
  t.strings_ = std::move(strings);
  return t;
}

Tensor Tensor::Float(std::vector<int64_t> dims, std::span<const float> values) {
  auto t = Create(DataType::kFloat, std::move(dims));
  assert(t.ok());
  if (!values.empty()) {
    assert(values.size() == static_cast<size_t>(t->numel()));
    std::memcpy(t->mutable_raw(), values.data(), values.size_bytes());
  }
  return std::move(t).value();
}

Tensor Tensor::Int64(std::vector<int64_t> dims, std::span<const int64_t> values) {
  auto t = Create(DataType::kInt64, std::move(dims));
  assert(t.ok());
  if (!values.empty()) {
    assert(values.size() == static_cast<size_t>(t->numel()));
    std::memcpy(t->mutable_raw(), values.data(), values.size_bytes());
  }
  return std::move(t).value();
}

std::byte* Tensor::mutable_raw() {
  if (!buffer_) return nullptr;
  if (buffer_.use_count() > 1) {  // copy on write
    auto fresh = Allocate(buffer_->size);
    std::memcpy(fresh->data, buffer_->data, buffer_->size);
    buffer_ = std::move(fresh);
  }
  return buffer_->data;
}

Tensor Tensor::Clone() const {
  Tensor t = *this;
  if (buffer_) {
    t.buffer_ = Allocate(buffer_->size);
    std::memcpy(t.buffer_->data, buffer_->data, buffer_->size);
  }
  return t;
}

StatusOr<Tensor> Tensor::Reshaped(std::vector<int64_t> dims) const {
  ONNXQ_ASSIGN_OR_RETURN(int64_t n, CheckedElementCount(dims));
  if (n != numel_)
    return InvalidArgument("cannot reshape ", DimsToString(dims_), " (", numel_, " elements) to ",
                           DimsToString(dims));
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

bool Tensor::BitwiseEqual(const Tensor& o) const {
  if (dtype_ != o.dtype_ || dims_ != o.dims_) return false;
  if (dtype_ == DataType::kString) return strings_ == o.strings_;
  if (nbytes_ != o.nbytes_) return false;
  return nbytes_ == 0 || std::memcmp(raw(), o.raw(), nbytes_) == 0;
}

double Tensor::GetAsDouble(int64_t i) const {
  const std::byte* p = raw();
  switch (dtype_) {
    case DataType::kFloat: return reinterpret_cast<const float*>(p)[i];
    case DataType::kDouble: return reinterpret_cast<const double*>(p)[i];
    case DataType::kFloat16: return HalfToFloat(reinterpret_cast<const uint16_t*>(p)[i]);
    case DataType::kBFloat16: return BFloat16ToFloat(reinterpret_cast<const uint16_t*>(p)[i]);
    case DataType::kUint8: return reinterpret_cast<const uint8_t*>(p)[i];
    case DataType::kInt8: return reinterpret_cast<const int8_t*>(p)[i];
    case DataType::kUint16: return reinterpret_cast<const uint16_t*>(p)[i];
    case DataType::kInt16: return reinterpret_cast<const int16_t*>(p)[i];
    case DataType::kInt32: return reinterpret_cast<const int32_t*>(p)[i];
    case DataType::kInt64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[i]);
    case DataType::kUint32: return reinterpret_cast<const uint32_t*>(p)[i];
    case DataType::kUint64: return static_cast<double>(reinterpret_cast<const uint64_t*>(p)[i]);
    case DataType::kBool: return reinterpret_cast<const uint8_t*>(p)[i] ? 1.0 : 0.0;
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

void Tensor::SetFromDouble(int64_t i, double v) {
  std::byte* p = mutable_raw();
  switch (dtype_) {
    case DataType::kFloat: reinterpret_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DataType::kDouble: reinterpret_cast<double*>(p)[i] = v; break;
    case DataType::kFloat16:
      reinterpret_cast<uint16_t*>(p)[i] = FloatToHalf(static_cast<float>(v));
      break;
    case DataType::kBFloat16:
      reinterpret_cast<uint16_t*>(p)[i] = FloatToBFloat16(static_cast<float>(v));
      break;
    case DataType::kUint8: reinterpret_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DataType::kInt8: reinterpret_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DataType::kUint16: reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v); break;
    case DataType::kInt16: reinterpret_cast<int16_t*>(p)[i] = static_cast<int16_t>(v); break;
    case DataType::kInt32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DataType::kInt64: reinterpret_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
    case DataType::kUint32: reinterpret_cast<uint32_t*>(p)[i] = static_cast<uint32_t>(v); break;
    case DataType::kUint64: reinterpret_cast<uint64_t*>(p)[i] = static_cast<uint64_t>(v); break;
    case DataType::kBool: reinterpret_cast<uint8_t*>(p)[i] = v != 0.0; break;
    default: break;
  }
}

bool Tensor::HasNonFinite(int64_t* index) const {
  if (!IsFloatingPoint(dtype_)) return false;
  for (int64_t i = 0; i < numel_; ++i) {
    if (!std::isfinite(GetAsDouble(i))) {
      if (index) *index = i;
      return true;
    }
  }
  return false;
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> Inf
  if (absx < 0x38800000u) {  // subnormal or zero in half
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // value / 2^-24 = m * 2^(e - 126)
    uint32_t res = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (res & 1u))) ++res;  // nearest even
    return static_cast<uint16_t>(sign | res);
  }
  uint32_t e = (absx >> 23) - 127 + 15;
  uint32_t m = absx & 0x7fffffu;
  uint32_t res = (e << 10) | (m >> 13);
  uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (res & 1u))) ++res;
  return static_cast<uint16_t>(sign | res);
}

float BFloat16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToBFloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

}  // namespace onnxq
