// QuantizeLinear / DequantizeLinear, per tensor or per axis. Quantization rounds half to even
// (nearbyint in the default rounding mode) and saturates to the output type, as ONNX specifies.
#include <algorithm>
#include <cfenv>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/int8_internal.h"
#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

// Checks scale / zero point shapes against x; returns the channel axis (-1: per tensor).
StatusOr<int64_t> QuantAxis(const InferContext& ctx, int64_t axis_attr, const Node& node) {
  const auto& x = *ctx.in[0];
  const auto& s = *ctx.in[1];
  const int64_t ns = NumElements(s.dims);
  if (ctx.has(2) && ctx.in[2]->dims != s.dims && NumElements(ctx.in[2]->dims) != ns)
    return InvalidArgument(node.Describe(), ": scale ", Dims(s.dims), " and zero point ",
                           Dims(ctx.in[2]->dims), " differ in shape");
  if (s.dims.empty() || (s.dims.size() == 1 && ns == 1 && x.dims.empty())) return -1;
  if (s.dims.size() != 1)
    return Unsupported(node.Describe(), ": scale of shape ", Dims(s.dims),
                       " (blocked quantization) is not supported");
  if (x.dims.empty()) return InvalidArgument(node.Describe(), ": per-axis scale on a scalar");
  ONNXQ_ASSIGN_OR_RETURN(int64_t axis,
                         NormalizeAxis(axis_attr, static_cast<int64_t>(x.dims.size()), node));
  if (x.dims[axis] != ns) {
    if (ns == 1) return -1;  // a 1-element vector is per tensor
    return InvalidArgument(node.Describe(), ": scale has ", ns, " entries but axis ", axis,
                           " of the input has ", x.dims[axis]);
  }
  return axis;
}


// As MLAS: x / scale clamped to [lo - z, hi - z] (NaN -> lo - z), rounded half to even, plus z.
// The clamped value is far below 2^22, where adding and subtracting 1.5 * 2^23 rounds to an
// integer (half to even) exactly; unlike nearbyint this vectorises (8- and 16-bit outputs).
template <typename Q>
void QuantizeRow(const float* __restrict x, Q* __restrict y, int64_t n, float scale, float z,
                 float lo, float hi) {
  const float vlo = lo - z, vhi = hi - z;
  constexpr float kMagic = 12582912.f;
  for (int64_t j = 0; j < n; ++j) {
    float v = x[j] / scale;
    v = v > vlo ? v : vlo;
    v = v < vhi ? v : vhi;
    v = (v + kMagic) - kMagic;
    y[j] = static_cast<Q>(static_cast<int32_t>(v + z));
  }
}

class QuantizeKernel : public OpKernel {
 public:
  QuantizeKernel(const Node& node, int64_t axis, DataType out_attr)
      : node_(node), axis_(axis), out_attr_(out_attr) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs x and y_scale");
    if (ctx.in[0]->dtype != DataType::kFloat || ctx.in[1]->dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 x and y_scale are supported");
    DataType out = ctx.has(2) ? ctx.in[2]->dtype
                              : (out_attr_ != DataType::kUndefined ? out_attr_ : DataType::kUint8);
    if (out != DataType::kUint8 && out != DataType::kInt8 && out != DataType::kUint16 &&
        out != DataType::kInt16)
      return Unsupported(node_.Describe(), ": quantizing to ", DataTypeName(out),
                         " is not supported (uint8, int8, uint16, int16 are)");
    ONNXQ_RETURN_IF_ERROR(QuantAxis(ctx, axis_, node_).status());
    ctx.out[0] = {out, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    switch (ctx.out[0].dtype) {
      case DataType::kUint8: Apply<uint8_t>(ctx); break;
      case DataType::kInt8: Apply<int8_t>(ctx); break;
      case DataType::kUint16: Apply<uint16_t>(ctx); break;
      case DataType::kInt16: Apply<int16_t>(ctx); break;
      default: return Internal(node_.Describe(), ": unexpected output type");
    }
    return Status::Ok();
  }

 private:
  template <typename Q>
  void Apply(const RunContext& ctx) const {
    const TensorRef& x = ctx.in[0];
    const TensorRef& s = ctx.in[1];
    const bool has_zp = ctx.in.size() > 2 && ctx.in[2].present();
    const int64_t axis = s.numel > 1 ? (axis_ < 0 ? axis_ + static_cast<int64_t>(x.rank()) : axis_) : -1;
    int64_t outer, ch, inner;
    AxisSplit(x.dims, axis, &outer, &ch, &inner);
    const float* xp = x.ptr<float>();
    const float* sp = s.ptr<float>();
    const Q* zp = has_zp ? ctx.in[2].ptr<Q>() : nullptr;
    Q* yp = ctx.out[0].ptr<Q>();
    const float lo = static_cast<float>(std::numeric_limits<Q>::min());
    const float hi = static_cast<float>(std::numeric_limits<Q>::max());
    const kernels::int8::Quantize8Fn q8 =
        kernels::int8::TableForIsa(static_cast<int>(ctx.isa)).quantize8;
    ParallelFor(ctx.pool, outer * ch, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                [&](int64_t b, int64_t e) {
                  if constexpr (sizeof(Q) == 1) {
                    if (axis < 0 && q8 != nullptr) {  // the int8 kernels' SIMD loop, same values
                      q8(xp + b, e - b, sp[0], zp ? static_cast<int32_t>(zp[0]) : 0,
                         std::is_signed_v<Q>, yp + b);
                      return;
                    }
                  }
                  if constexpr (sizeof(Q) <= 2) {
                    if (axis < 0) {  // per tensor: one run of (e - b) elements
                      QuantizeRow(xp + b, yp + b, e - b, sp[0],
                                  zp ? static_cast<float>(zp[0]) : 0.f, lo, hi);
                      return;
                    }
                  }
                  for (int64_t t = b; t < e; ++t) {
                    const int64_t c = axis < 0 ? 0 : t % ch;
                    const float scale = sp[c];
                    const float z = zp ? static_cast<float>(zp[c]) : 0.f;
                    const float* xi = xp + t * inner;
                    Q* yi = yp + t * inner;
                    if constexpr (sizeof(Q) <= 2) {
                      QuantizeRow(xi, yi, inner, scale, z, lo, hi);
                    } else {
                      for (int64_t j = 0; j < inner; ++j) {
                        // nearbyint rounds half to even in the default rounding mode.
                        float q = std::nearbyint(xi[j] / scale) + z;
                        q = std::min(std::max(q, lo), hi);
                        yi[j] = static_cast<Q>(q);
                      }
                    }
                  }
                });
  }

  const Node& node_;
  int64_t axis_;
  DataType out_attr_;
};

class DequantizeKernel : public OpKernel {
 public:
  DequantizeKernel(const Node& node, int64_t axis) : node_(node), axis_(axis) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs x and x_scale");
    const DataType t = ctx.in[0]->dtype;
    if (t != DataType::kUint8 && t != DataType::kInt8 && t != DataType::kInt32 &&
        t != DataType::kUint16 && t != DataType::kInt16)
      return Unsupported(node_.Describe(), ": dequantizing ", DataTypeName(t),
                         " is not supported (uint8, int8, int16, uint16, int32 are)");
    if (ctx.in[1]->dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 x_scale is supported");
    if (ctx.has(2) && ctx.in[2]->dtype != t)
      return InvalidArgument(node_.Describe(), ": zero point type differs from x");
    ONNXQ_RETURN_IF_ERROR(QuantAxis(ctx, axis_, node_).status());
    ctx.out[0] = {DataType::kFloat, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    switch (ctx.in[0].dtype) {
      case DataType::kUint8: Apply<uint8_t>(ctx); break;
      case DataType::kInt8: Apply<int8_t>(ctx); break;
      case DataType::kUint16: Apply<uint16_t>(ctx); break;
      case DataType::kInt16: Apply<int16_t>(ctx); break;
      case DataType::kInt32: Apply<int32_t>(ctx); break;
      default: return Internal(node_.Describe(), ": unexpected input type");
    }
    return Status::Ok();
  }

 private:
  template <typename Q>
  void Apply(const RunContext& ctx) const {
    const TensorRef& x = ctx.in[0];
    const TensorRef& s = ctx.in[1];
    const bool has_zp = ctx.in.size() > 2 && ctx.in[2].present();
    const int64_t axis = s.numel > 1 ? (axis_ < 0 ? axis_ + static_cast<int64_t>(x.rank()) : axis_) : -1;
    int64_t outer, ch, inner;
    AxisSplit(x.dims, axis, &outer, &ch, &inner);
    const Q* xp = x.ptr<Q>();
    const float* sp = s.ptr<float>();
    const Q* zp = has_zp ? ctx.in[2].ptr<Q>() : nullptr;
    float* yp = ctx.out[0].ptr<float>();
    ParallelFor(ctx.pool, outer * ch, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                [&](int64_t b, int64_t e) {
                  for (int64_t t = b; t < e; ++t) {
                    const int64_t c = axis < 0 ? 0 : t % ch;
                    const float scale = sp[c];
                    const int64_t z = zp ? static_cast<int64_t>(zp[c]) : 0;
                    const Q* xi = xp + t * inner;
                    float* yi = yp + t * inner;
                    for (int64_t j = 0; j < inner; ++j)
                      yi[j] = static_cast<float>(static_cast<int64_t>(xi[j]) - z) * scale;
                  }
                });
  }

  const Node& node_;
  int64_t axis_;
};

}  // namespace

void RegisterQuantOps(std::vector<OpRegistration>& r) {
  r.push_back({"QuantizeLinear", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, at.GetInt("axis", 1));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t block, at.GetInt("block_size", 0));
                 if (block != 0)
                   return Unsupported(info.node->Describe(), ": blocked quantization (block_size=",
                                      block, ") is not supported");
                 ONNXQ_ASSIGN_OR_RETURN(int64_t sat, at.GetInt("saturate", 1));
                 (void)sat;  // only affects float8 outputs, which are refused
                 ONNXQ_ASSIGN_OR_RETURN(int64_t odt, at.GetInt("output_dtype", 0));
                 return MakeKernel<QuantizeKernel>(*info.node, axis, static_cast<DataType>(odt));
               },
               "float32 in; uint8/int8 (and 16-bit) out; per tensor or per axis; round half to "
               "even, saturating"});
  r.push_back({"DequantizeLinear", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, at.GetInt("axis", 1));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t block, at.GetInt("block_size", 0));
                 if (block != 0)
                   return Unsupported(info.node->Describe(), ": blocked dequantization is not supported");
                 return MakeKernel<DequantizeKernel>(*info.node, axis);
               },
               "uint8/int8/int16/uint16/int32 in (int32 for biases); per tensor or per axis"});
}

}  // namespace onnxq::runtime
