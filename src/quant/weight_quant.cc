#include "onnxq/quant/weight_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "onnxq/base/thread_pool.h"

namespace onnxq::quant {

std::vector<float> QuantizedWeight::scales() const {
  std::vector<float> s;
  s.reserve(params.size());
  for (const auto& p : params) s.push_back(p.scale);
  return s;
}

namespace {

double SquaredError(std::span<const float> v, const QuantParams& p, std::vector<float>& tmp) {
  tmp.resize(v.size());
  FakeQuantize(v.data(), tmp.data(), static_cast<int64_t>(v.size()), p);
  double e = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    double d = double(v[i]) - tmp[i];
    e += d * d;
  }
  return e;
}

QuantParams SymmetricForMax(double amax, const QuantSpec& spec) {
  auto p = ComputeQuantParams(-amax, amax, spec);
  // amax is finite and >= 0 here, so this cannot fail; fall back to a harmless value regardless.
  return p.ok() ? *p : QuantParams{1.0f, 0, spec.qmin(), spec.qmax()};
}

}  // namespace

QuantParams ChooseSymmetricParams(std::span<const float> values, const WeightQuantOptions& o) {
  const QuantSpec spec = o.spec();
  double amax = 0;
  for (float v : values) amax = std::max(amax, double(std::fabs(v)));
  QuantParams best = SymmetricForMax(amax, spec);
  if (o.method != WeightScaleMethod::kMse || amax == 0) return best;
  std::vector<float> tmp;
  double best_err = SquaredError(values, best, tmp), best_r = 1.0;
  auto consider = [&](double r) {
    if (r <= 0 || r > 1) return;
    QuantParams p = SymmetricForMax(r * amax, spec);
    double e = SquaredError(values, p, tmp);
    if (e < best_err) best_err = e, best = p, best_r = r;
  };
  double step = o.mse_coarse_step;
  for (double r = 1.0 - step; r >= o.mse_min_ratio - 1e-12; r -= step) consider(r);
  double center = best_r, fine = step / o.mse_fine_steps;
  for (int k = -o.mse_fine_steps + 1; k < o.mse_fine_steps; ++k)
    if (k != 0) consider(center + k * fine);
  return best;
}

StatusOr<QuantizedWeight> QuantizeWeight(const Tensor& w, const WeightQuantOptions& o, ThreadPool* pool) {
  const QuantSpec spec = o.spec();
  ONNXQ_RETURN_IF_ERROR(spec.Validate());
  if (w.dtype() != DataType::kFloat)
    return Unsupported("weight quantization needs a float32 tensor, got ", DataTypeName(w.dtype()));
  if (o.method == WeightScaleMethod::kMse &&
      !(o.mse_coarse_step > 0 && o.mse_coarse_step < 1 && o.mse_min_ratio > 0 &&
        o.mse_min_ratio <= 1 && o.mse_fine_steps >= 1))
    return InvalidArgument("bad MSE weight-scale search settings");
  int64_t bad_index = -1;
  if (w.HasNonFinite(&bad_index))
    return InvalidArgument("weight has a non-finite value at index ", bad_index);
  const int rank = static_cast<int>(w.rank());
  QuantizedWeight out;
  int64_t outer = 1, ch = 1, inner = w.numel();
  if (o.per_channel && o.axis >= -rank && o.axis < rank && rank > 0) {
    out.axis = o.axis < 0 ? o.axis + rank : o.axis;
    outer = 1;
    inner = 1;
    ch = w.dims()[out.axis];
    for (int i = 0; i < out.axis; ++i) outer *= w.dims()[i];
    for (int i = out.axis + 1; i < rank; ++i) inner *= w.dims()[i];
  } else if (o.per_channel) {
    return InvalidArgument("per-channel axis ", o.axis, " is out of range for a weight of shape ",
                           DimsToString(w.dims()));
  }
  out.params.resize(static_cast<size_t>(std::max<int64_t>(ch, 0)));
  const float* x = w.data<float>();
  auto do_channels = [&](int64_t begin, int64_t end) {
    std::vector<float> buf;
    for (int64_t c = begin; c < end; ++c) {
      buf.resize(static_cast<size_t>(outer * inner));
      for (int64_t ou = 0; ou < outer; ++ou)
        std::copy_n(x + (ou * ch + c) * inner, inner, buf.data() + ou * inner);
      out.params[static_cast<size_t>(c)] = ChooseSymmetricParams(buf, o);
    }
  };
  if (pool && ch > 1)
    pool->ParallelFor(ch, do_channels);
  else
    do_channels(0, ch);

  ONNXQ_ASSIGN_OR_RETURN(out.q, Tensor::Create(spec.storage_type(), w.dims()));
  std::vector<float> deq(static_cast<size_t>(w.numel()));
  int64_t i = 0;
  for (int64_t ou = 0; ou < outer; ++ou)
    for (int64_t c = 0; c < ch; ++c) {
      const QuantParams& p = out.params[static_cast<size_t>(c)];
      for (int64_t k = 0; k < inner; ++k, ++i) {
        int32_t q = QuantizeValue(x[i], p);
        if (spec.bits <= 8)
          out.q.mutable_data<int8_t>()[i] = static_cast<int8_t>(q);
        else
          out.q.mutable_data<int16_t>()[i] = static_cast<int16_t>(q);
        deq[static_cast<size_t>(i)] = DequantizeValue(q, p);
      }
    }
  out.sqnr_db = Sqnr(w.span<float>(), deq);
  return out;
}

StatusOr<QuantizedBias> QuantizeBias(const Tensor& bias, float input_scale,
                                     std::span<const float> weight_scales) {
  if (bias.dtype() != DataType::kFloat)
    return Unsupported("bias quantization needs a float32 tensor, got ", DataTypeName(bias.dtype()));
  if (!(input_scale > 0) || !std::isfinite(input_scale))
    return InvalidArgument("bias quantization: input scale ", input_scale, " is not positive");
  const int64_t n = bias.numel();
  if (weight_scales.size() != 1 && static_cast<int64_t>(weight_scales.size()) != n)
    return InvalidArgument("bias of ", n, " elements needs 1 or ", n, " weight scales, got ",
                           weight_scales.size());
  int64_t bad_index = -1;
  if (bias.HasNonFinite(&bad_index))
    return InvalidArgument("bias has a non-finite value at index ", bad_index);
  QuantizedBias out;
  for (float ws : weight_scales) {
    if (!(ws > 0) || !std::isfinite(ws))
      return InvalidArgument("bias quantization: weight scale ", ws, " is not positive");
    // float32 product: the exported DequantizeLinear uses exactly this float.
    float s = input_scale * ws;
    if (!(s > 0)) return InvalidArgument("bias scale underflows to 0 (input scale ", input_scale,
                                         " x weight scale ", ws, ")");
    out.scales.push_back(s);
  }
  ONNXQ_ASSIGN_OR_RETURN(out.q, Tensor::Create(DataType::kInt32, bias.dims()));
  const float* b = bias.data<float>();
  int32_t* q = out.q.mutable_data<int32_t>();
  constexpr double kLo = std::numeric_limits<int32_t>::min(), kHi = std::numeric_limits<int32_t>::max();
  for (int64_t i = 0; i < n; ++i) {
    double s = out.scales[out.scales.size() == 1 ? 0 : static_cast<size_t>(i)];
    double v = std::nearbyint(double(b[i]) / s);
    if (v < kLo || v > kHi) {
      ++out.saturated;
      v = std::clamp(v, kLo, kHi);
    }
    q[i] = static_cast<int32_t>(v);
  }
  return out;
}

}  // namespace onnxq::quant
