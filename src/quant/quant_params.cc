#include "onnxq/quant/quant_params.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace onnxq::quant {

int32_t QuantSpec::qmin() const {
  if (!is_signed) return 0;
  int32_t m = -(int32_t{1} << (bits - 1));
  return narrow_range ? m + 1 : m;
}

int32_t QuantSpec::qmax() const {
  return is_signed ? (int32_t{1} << (bits - 1)) - 1 : (int32_t{1} << bits) - 1;
}

DataType QuantSpec::storage_type() const {
  if (bits <= 8) return is_signed ? DataType::kInt8 : DataType::kUint8;
  return is_signed ? DataType::kInt16 : DataType::kUint16;
}

Status QuantSpec::Validate() const {
  if (!((bits >= 2 && bits <= 8) || bits == 16))
    return InvalidArgument("quantization bit width ", bits, " is not supported (2..8 or 16)");
  if (narrow_range && !is_signed)
    return InvalidArgument("narrow range is defined for signed quantization only");
  return Status::Ok();
}

std::string QuantSpec::ToString() const {
  std::string s = (is_signed ? "int" : "uint") + std::to_string(bits);
  if (bits < 8) s += is_signed ? "-in-int8" : "-in-uint8";
  if (narrow_range) s += " narrow";
  s += symmetric ? " symmetric" : " asymmetric";
  return s;
}

namespace {
// A zero range (an all-zero tensor) gets scale 1, like ONNX Runtime's recipe: any scale
// represents it exactly, and 1 keeps derived scales (bias = input x weight) sane.
float ToScale(double s) {
  if (s == 0) return 1.0f;
  float f = static_cast<float>(s);
  if (!(f >= kMinScale)) f = kMinScale;  // also catches NaN from 0/0
  return f;
}
}  // namespace

StatusOr<QuantParams> ComputeQuantParams(double lo, double hi, const QuantSpec& spec) {
  ONNXQ_RETURN_IF_ERROR(spec.Validate());
  if (!std::isfinite(lo) || !std::isfinite(hi))
    return InvalidArgument("quantization range [", lo, ", ", hi, "] is not finite");
  if (lo > hi) return InvalidArgument("quantization range [", lo, ", ", hi, "] is inverted");
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  QuantParams p;
  p.qmin = spec.qmin();
  p.qmax = spec.qmax();
  if (spec.symmetric) {
    double t = std::max(-lo, hi);
    if (spec.is_signed) {
      p.zero_point = 0;
      p.scale = ToScale(t / p.qmax);
    } else if (lo >= 0) {
      p.zero_point = 0;
      p.scale = ToScale(hi / p.qmax);
    } else {
      p.zero_point = int32_t{1} << (spec.bits - 1);
      p.scale = ToScale(t / (p.qmax - p.zero_point));
    }
    return p;
  }
  double range = hi - lo;
  p.scale = ToScale(range / (double(p.qmax) - p.qmin));
  double zp = double(p.qmin) - std::nearbyint(lo / double(p.scale));
  zp = std::clamp(zp, double(p.qmin), double(p.qmax));
  p.zero_point = static_cast<int32_t>(zp);
  return p;
}

namespace {

struct Layout {
  int64_t outer = 1, channels = 1, inner = 1;
};

StatusOr<Layout> ChannelLayout(const std::vector<int64_t>& dims, int axis, size_t nparams, size_t n) {
  ONNXQ_ASSIGN_OR_RETURN(int64_t numel, CheckedElementCount(dims));
  if (static_cast<size_t>(numel) != n)
    return InvalidArgument("quantization buffer has ", n, " elements but shape ", DimsToString(dims),
                           " needs ", numel);
  Layout l;
  if (nparams == 1) {
    l.inner = numel;
    return l;
  }
  int rank = static_cast<int>(dims.size());
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return InvalidArgument("quantization axis ", axis, " is out of range for shape ", DimsToString(dims));
  if (static_cast<size_t>(dims[axis]) != nparams)
    return InvalidArgument("per-channel quantization along axis ", axis, " of shape ",
                           DimsToString(dims), " needs ", dims[axis], " parameter sets, got ", nparams);
  for (int i = 0; i < axis; ++i) l.outer *= dims[i];
  l.channels = dims[axis];
  for (int i = axis + 1; i < rank; ++i) l.inner *= dims[i];
  return l;
}

Status CheckParams(std::span<const QuantParams> params) {
  if (params.empty()) return InvalidArgument("no quantization parameters");
  for (const auto& p : params)
    if (!(p.scale > 0) || !std::isfinite(p.scale) || p.zero_point < p.qmin || p.zero_point > p.qmax)
      return InvalidArgument("invalid quantization parameters (scale ", p.scale, ", zero point ",
                             p.zero_point, ", range [", p.qmin, ", ", p.qmax, "])");
  return Status::Ok();
}

}  // namespace

Status QuantizeArray(std::span<const float> x, const std::vector<int64_t>& dims, int axis,
                     std::span<const QuantParams> params, std::span<int32_t> out) {
  ONNXQ_RETURN_IF_ERROR(CheckParams(params));
  ONNXQ_ASSIGN_OR_RETURN(Layout l, ChannelLayout(dims, axis, params.size(), x.size()));
  if (out.size() != x.size()) return InvalidArgument("quantize: output size mismatch");
  size_t i = 0;
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) {
      const QuantParams& p = params[params.size() == 1 ? 0 : c];
      for (int64_t k = 0; k < l.inner; ++k, ++i) out[i] = QuantizeValue(x[i], p);
    }
  return Status::Ok();
}

Status DequantizeArray(std::span<const int32_t> q, const std::vector<int64_t>& dims, int axis,
                       std::span<const QuantParams> params, std::span<float> out) {
  ONNXQ_RETURN_IF_ERROR(CheckParams(params));
  ONNXQ_ASSIGN_OR_RETURN(Layout l, ChannelLayout(dims, axis, params.size(), q.size()));
  if (out.size() != q.size()) return InvalidArgument("dequantize: output size mismatch");
  size_t i = 0;
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) {
      const QuantParams& p = params[params.size() == 1 ? 0 : c];
      for (int64_t k = 0; k < l.inner; ++k, ++i) out[i] = DequantizeValue(q[i], p);
    }
  return Status::Ok();
}

void FakeQuantize(const float* x, float* out, int64_t n, const QuantParams& p) {
  // Clamping before rounding equals saturating after it (the bounds are integers), and keeps
  // |v| < 2^22, where adding and subtracting 1.5 * 2^23 rounds half to even exactly like
  // nearbyint in the default rounding mode. Branch-free, so the loop vectorizes.
  const float lo = static_cast<float>(p.qmin - p.zero_point);
  const float hi = static_cast<float>(p.qmax - p.zero_point);
  const float s = p.scale;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] / s;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    float r = (v + kMagic) - kMagic;
    out[i] = r * s;
  }
  // NaN inputs: the comparisons above let NaN through; fix them up to the zero point (0.0), as
  // QuantizeValue does. Rare, so a separate pass keeps the hot loop branch-free.
  for (int64_t i = 0; i < n; ++i)
    if (x[i] != x[i]) out[i] = 0.0f;
}

Status FakeQuantizeArray(std::span<const float> x, const std::vector<int64_t>& dims, int axis,
                         std::span<const QuantParams> params, std::span<float> out) {
  ONNXQ_RETURN_IF_ERROR(CheckParams(params));
  ONNXQ_ASSIGN_OR_RETURN(Layout l, ChannelLayout(dims, axis, params.size(), x.size()));
  if (out.size() != x.size()) return InvalidArgument("fake-quantize: output size mismatch");
  size_t i = 0;
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) {
      const QuantParams& p = params[params.size() == 1 ? 0 : c];
      FakeQuantize(x.data() + i, out.data() + i, l.inner, p);
      i += l.inner;
    }
  return Status::Ok();
}

double Sqnr(std::span<const float> reference, std::span<const float> approx) {
  double sig = 0, noise = 0;
  if (reference.size() != approx.size()) return std::numeric_limits<double>::quiet_NaN();
  size_t n = reference.size();
  for (size_t i = 0; i < n; ++i) {
    double r = reference[i], d = r - double(approx[i]);
    sig += r * r;
    noise += d * d;
  }
  if (noise == 0) return std::numeric_limits<double>::infinity();
  if (sig == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sig / noise);
}

}  // namespace onnxq::quant
