// Integer ONNX operators on the int8 kernels: QLinearConv, ConvInteger, QLinearMatMul,
// MatMulInteger and DynamicQuantizeLinear, plus the com.microsoft QLinearAdd,
// QLinearGlobalAveragePool, QLinearAveragePool and ai.onnxq Int8MaxPool that the QDQ lowering
// (qdq_lowering.cc) emits. Requantization and rounding follow ONNX Runtime's CPU
// kernels bit for bit (see docs/int8.md). Weights that are constant at planning time are packed
// once; otherwise they are packed on every run.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "onnxq/kernels/int8_conv.h"
#include "onnxq/kernels/int8_gemm.h"
#include "onnxq/kernels/int8_nhwc.h"
#include "onnxq/kernels/int8_ops.h"
#include "kernels/int8_internal.h"
#include "runtime/op_kernel.h"
#include "runtime/qdq_lowering.h"

namespace onnxq::runtime {
namespace {

bool Is8Bit(DataType t) { return t == DataType::kUint8 || t == DataType::kInt8; }

// Reads element i of an 8-bit or int32 zero-point tensor.
int32_t ZpAt(DataType t, const void* p, int64_t i) {
  switch (t) {
    case DataType::kUint8: return static_cast<const uint8_t*>(p)[i];
    case DataType::kInt8: return static_cast<const int8_t*>(p)[i];
    case DataType::kInt32: return static_cast<const int32_t*>(p)[i];
    default: return 0;
  }
}

std::vector<int32_t> ReadZps(const TensorRef& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel));
  for (int64_t i = 0; i < t.numel; ++i) v[i] = ZpAt(t.dtype, t.data, i);
  return v;
}
std::vector<int32_t> ReadZps(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = ZpAt(t.dtype(), t.raw(), i);
  return v;
}

// A scale / zero point that must hold one value (a scalar or a 1-element vector).
Status CheckScalar(const InferContext& ctx, size_t i, const Node& node, const char* what) {
  if (!ctx.has(i)) return Status::Ok();
  if (NumElements(ctx.in[i]->dims) != 1 || ctx.in[i]->dims.size() > 1)
    return Unsupported(node.Describe(), ": ", what, " must be a scalar (per-tensor), got shape ",
                       Dims(ctx.in[i]->dims));
  return Status::Ok();
}
// Per-tensor or one value per output channel / column.
Status CheckPerChannel(const InferContext& ctx, size_t i, int64_t channels, const Node& node,
                       const char* what) {
  if (!ctx.has(i)) return Status::Ok();
  const int64_t n = NumElements(ctx.in[i]->dims);
  if (ctx.in[i]->dims.size() > 1 || (n != 1 && n != channels))
    return Unsupported(node.Describe(), ": ", what, " of shape ", Dims(ctx.in[i]->dims),
                       " (expected a scalar or ", channels, " values)");
  return Status::Ok();
}

void OutputRange(DataType t, int32_t* qmin, int32_t* qmax) {
  *qmin = t == DataType::kInt8 ? -128 : 0;
  *qmax = t == DataType::kInt8 ? 127 : 255;
}

// ---------------------------------------------------------------- QLinearConv / ConvInteger

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };

struct ConvAttrs {
  AutoPad auto_pad = AutoPad::kNotSet;
  std::vector<int64_t> kernel_shape, strides, dilations, pads;
  int64_t group = 1;
};

StatusOr<ConvAttrs> ParseConvAttrs(const Node& node) {
  ConvAttrs a;
  ONNXQ_ASSIGN_OR_RETURN(std::string s, node.attrs.GetString("auto_pad", "NOTSET"));
  if (s == "NOTSET" || s.empty()) {
    a.auto_pad = AutoPad::kNotSet;
  } else if (s == "SAME_UPPER") {
    a.auto_pad = AutoPad::kSameUpper;
  } else if (s == "SAME_LOWER") {
    a.auto_pad = AutoPad::kSameLower;
  } else if (s == "VALID") {
    a.auto_pad = AutoPad::kValid;
  } else {
    return InvalidArgument(node.Describe(), ": unknown auto_pad '", s, "'");
  }
  ONNXQ_ASSIGN_OR_RETURN(a.kernel_shape, node.attrs.GetInts("kernel_shape", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.strides, node.attrs.GetInts("strides", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.dilations, node.attrs.GetInts("dilations", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.pads, node.attrs.GetInts("pads", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.group, node.attrs.GetInt("group", 1));
  return a;
}

// Shape of a 2-D convolution from the input dims [N, C, H, W] and weight dims [M, C/g, kh, kw].
StatusOr<kernels::Conv2DShape> ConvShape(const ConvAttrs& a, const std::vector<int64_t>& x,
                                         const std::vector<int64_t>& w, const Node& node) {
  if (x.size() != 4 || w.size() != 4)
    return Unsupported(node.Describe(), ": only 2-D convolutions (4-D input and weights) are "
                                        "supported, got input ", Dims(x), " and weights ", Dims(w));
  kernels::Conv2DShape s;
  s.batch = x[0];
  s.in_channels = x[1];
  s.in_h = x[2];
  s.in_w = x[3];
  s.out_channels = w[0];
  s.kernel_h = w[2];
  s.kernel_w = w[3];
  s.group = a.group;
  if (!a.kernel_shape.empty() &&
      (a.kernel_shape.size() != 2 || a.kernel_shape[0] != w[2] || a.kernel_shape[1] != w[3]))
    return InvalidArgument(node.Describe(), ": kernel_shape does not match weights ", Dims(w));
  if (a.group <= 0 || x[1] % a.group != 0 || w[0] % a.group != 0 || w[1] * a.group != x[1])
    return InvalidArgument(node.Describe(), ": input ", Dims(x), ", weights ", Dims(w),
                           " and group ", a.group, " are inconsistent");
  if ((!a.strides.empty() && a.strides.size() != 2) ||
      (!a.dilations.empty() && a.dilations.size() != 2) || (!a.pads.empty() && a.pads.size() != 4))
    return InvalidArgument(node.Describe(), ": strides / dilations / pads have the wrong length");
  s.stride_h = a.strides.empty() ? 1 : a.strides[0];
  s.stride_w = a.strides.empty() ? 1 : a.strides[1];
  s.dilation_h = a.dilations.empty() ? 1 : a.dilations[0];
  s.dilation_w = a.dilations.empty() ? 1 : a.dilations[1];
  if (s.stride_h <= 0 || s.stride_w <= 0 || s.dilation_h <= 0 || s.dilation_w <= 0)
    return InvalidArgument(node.Describe(), ": strides and dilations must be positive");
  auto same = [&](int64_t in, int64_t k, int64_t st, int64_t d, int64_t* b, int64_t* e) {
    const int64_t out = (in + st - 1) / st;
    const int64_t total = std::max<int64_t>(0, (out - 1) * st + (k - 1) * d + 1 - in);
    const int64_t small = total / 2;
    *b = a.auto_pad == AutoPad::kSameUpper ? small : total - small;
    *e = total - *b;
  };
  switch (a.auto_pad) {
    case AutoPad::kNotSet:
      if (!a.pads.empty()) {
        s.pad_top = a.pads[0];
        s.pad_left = a.pads[1];
        s.pad_bottom = a.pads[2];
        s.pad_right = a.pads[3];
      }
      break;
    case AutoPad::kValid: break;
    default:
      same(s.in_h, s.kernel_h, s.stride_h, s.dilation_h, &s.pad_top, &s.pad_bottom);
      same(s.in_w, s.kernel_w, s.stride_w, s.dilation_w, &s.pad_left, &s.pad_right);
  }
  if (s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0)
    return InvalidArgument(node.Describe(), ": negative pads");
  if (s.out_h() <= 0 || s.out_w() <= 0)
    return InvalidArgument(node.Describe(), ": kernel larger than the padded input ", Dims(x));
  return s;
}

bool SamePads(const kernels::Conv2DShape& a, const kernels::Conv2DShape& b) {
  return a.pad_top == b.pad_top && a.pad_left == b.pad_left && a.pad_bottom == b.pad_bottom &&
         a.pad_right == b.pad_right;
}

class IntConvKernel : public OpKernel {
 public:
  // QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, [B]
  // ConvInteger: x, w, [x_zp], [w_zp]
  // clamp: [qmin, qmax] of a Relu / Clip the QDQ lowering folded in (attribute onnxq_clamp).
  IntConvKernel(const Node& node, ConvAttrs attrs, bool qlinear, kernels::Isa isa,
                std::vector<int64_t> clamp = {})
      : node_(node), attrs_(std::move(attrs)), qlinear_(qlinear), isa_(isa),
        clamp_(std::move(clamp)) {}

  size_t W() const { return qlinear_ ? 3 : 1; }
  size_t XZ() const { return 2; }
  size_t WZ() const { return qlinear_ ? 5 : 3; }

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(W())) return InvalidArgument(node_.Describe(), ": needs x and w");
    if (qlinear_)
      for (size_t i : {1, 2, 4, 5, 6, 7})
        if (!ctx.has(i))
          return InvalidArgument(node_.Describe(), ": input ", i, " (scale / zero point) is missing");
    const DataType xt = ctx.in[0]->dtype, wt = ctx.in[W()]->dtype;
    if (!Is8Bit(xt) || !Is8Bit(wt))
      return Unsupported(node_.Describe(), ": input ", DataTypeName(xt), " / weights ",
                         DataTypeName(wt), " (uint8 or int8 expected)");
    if (ctx.has(XZ()) && ctx.in[XZ()]->dtype != xt)
      return InvalidArgument(node_.Describe(), ": x zero point type differs from x");
    if (ctx.has(WZ()) && ctx.in[WZ()]->dtype != wt)
      return InvalidArgument(node_.Describe(), ": w zero point type differs from w");
    ONNXQ_ASSIGN_OR_RETURN(auto shape, ConvShape(attrs_, ctx.in[0]->dims, ctx.in[W()]->dims, node_));
    const int64_t m = shape.out_channels;
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, XZ(), node_, "x zero point"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, WZ(), m, node_, "w zero point"));
    DataType out = DataType::kInt32;
    if (qlinear_) {
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 1, node_, "x scale"));
      ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 4, m, node_, "w scale"));
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 6, node_, "y scale"));
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 7, node_, "y zero point"));
      for (size_t i : {1, 4, 6})
        if (ctx.in[i]->dtype != DataType::kFloat)
          return Unsupported(node_.Describe(), ": scales must be float32");
      out = ctx.in[7]->dtype;
      if (!Is8Bit(out)) return Unsupported(node_.Describe(), ": output type ", DataTypeName(out));
      if (ctx.has(8)) {
        if (ctx.in[8]->dtype != DataType::kInt32 || NumElements(ctx.in[8]->dims) != m)
          return InvalidArgument(node_.Describe(), ": bias must be int32 with ", m, " values");
      }
    }
    // Pack the weights now when they (and their zero points) are constants.
    const Tensor* w = ctx.value(W());
    const bool wz_known = !ctx.has(WZ()) || ctx.value(WZ()) != nullptr;
    if (w != nullptr && wz_known) {
      std::vector<int32_t> wz = ctx.has(WZ()) ? ReadZps(*ctx.value(WZ())) : std::vector<int32_t>{};
      ONNXQ_ASSIGN_OR_RETURN(conv_, kernels::Int8Conv2D::Create(
                                        shape, w->raw(), wt == DataType::kInt8,
                                        wz.empty() ? nullptr : wz.data(),
                                        static_cast<int64_t>(wz.size()), xt == DataType::kInt8, isa_));
      packed_shape_ = shape;
    }
    ctx.out[0] = {out, {shape.batch, m, shape.out_h(), shape.out_w()}, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& x = ctx.in[0];
    const TensorRef& w = ctx.in[W()];
    ONNXQ_ASSIGN_OR_RETURN(auto shape, ConvShape(attrs_, x.dims, w.dims, node_));
    const int64_t m = shape.out_channels;
    std::unique_ptr<kernels::Int8Conv2D> local;
    const kernels::Int8Conv2D* conv = conv_.get();
    if (conv == nullptr || !SamePads(shape, packed_shape_)) {
      std::vector<int32_t> wz = ctx.in.size() > WZ() && ctx.in[WZ()].present()
                                    ? ReadZps(ctx.in[WZ()]) : std::vector<int32_t>{};
      ONNXQ_ASSIGN_OR_RETURN(local, kernels::Int8Conv2D::Create(
                                        shape, w.data, w.dtype == DataType::kInt8,
                                        wz.empty() ? nullptr : wz.data(),
                                        static_cast<int64_t>(wz.size()),
                                        x.dtype == DataType::kInt8, isa_));
      conv = local.get();
    }
    const int32_t xz = ctx.in.size() > XZ() && ctx.in[XZ()].present()
                           ? ZpAt(ctx.in[XZ()].dtype, ctx.in[XZ()].data, 0) : 0;
    kernels::Int8OutputStage out;
    std::vector<float> scales;
    if (qlinear_) {
      const float xs = *ctx.in[1].ptr<float>(), ys = *ctx.in[6].ptr<float>();
      scales = kernels::Int8OutputScales(xs, ctx.in[4].ptr<float>(), ctx.in[4].numel, ys, m);
      out.scale = scales.data();
      out.zero_point = ZpAt(ctx.in[7].dtype, ctx.in[7].data, 0);
      out.out_signed = ctx.out[0].dtype == DataType::kInt8;
      OutputRange(ctx.out[0].dtype, &out.qmin, &out.qmax);
      if (clamp_.size() == 2) {
        out.qmin = std::max<int32_t>(out.qmin, static_cast<int32_t>(clamp_[0]));
        out.qmax = std::min<int32_t>(out.qmax, static_cast<int32_t>(clamp_[1]));
      }
      if (ctx.in.size() > 8 && ctx.in[8].present()) out.bias = ctx.in[8].ptr<int32_t>();
    }
    conv->Run(x.data, xz, out, ctx.out[0].data, shape.batch, shape.in_h, shape.in_w, ctx.pool);
    return Status::Ok();
  }

 private:
  const Node& node_;
  ConvAttrs attrs_;
  bool qlinear_;
  kernels::Isa isa_;
  std::vector<int64_t> clamp_;
  std::unique_ptr<kernels::Int8Conv2D> conv_;
  kernels::Conv2DShape packed_shape_;
};

float ScalarF(const TensorRef& t);
int32_t ScalarZp(const RunContext& ctx, size_t i);
Status CheckQParams(const InferContext& ctx, size_t si, size_t zi, DataType t, const Node& node,
                    const char* what);

// com.microsoft QLinearConv with channels_last = 1 (as ONNX Runtime's NHWC transformer emits it):
// the QLinearConv inputs, X and Y channels-last ([N, H, W, C]), weights OIHW and constant. The
// QDQ lowering emits it for chains of convolutions (qdq_lowering.cc); attribute
// onnxq_nchw_input = 1 marks the first convolution of a chain, which reads an NCHW X.
//
// ai.onnxq QLinearConvAdd (fused_add): the same plus a QLinearAdd of its output fused into the
// convolution's output stage (the QDQ lowering emits it when the convolution's output feeds only
// the Add): inputs 0-8 as QLinearConv, 9 the Add's other operand (channels-last, the output's
// shape and type), 10-15 A_scale, A_zp, B_scale, B_zp, C_scale, C_zp of the Add; attribute
// conv_operand 0 if the convolution is the Add's A, 1 if B. Y is the Add's output.
class NhwcConvKernel : public OpKernel {
 public:
  NhwcConvKernel(const Node& node, ConvAttrs attrs, bool nchw_input, kernels::Isa isa,
                 std::vector<int64_t> clamp, bool fused_add = false, bool conv_is_a = true)
      : node_(node), attrs_(std::move(attrs)), nchw_input_(nchw_input), isa_(isa),
        clamp_(std::move(clamp)), fused_add_(fused_add), conv_is_a_(conv_is_a) {}

  Status Infer(InferContext& ctx) override {
    for (size_t i : {0, 1, 2, 3, 4, 5, 6, 7})
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
    const DataType xt = ctx.in[0]->dtype, wt = ctx.in[3]->dtype;
    if (!Is8Bit(xt) || !Is8Bit(wt))
      return Unsupported(node_.Describe(), ": input ", DataTypeName(xt), " / weights ",
                         DataTypeName(wt), " (uint8 or int8 expected)");
    if (ctx.in[2]->dtype != xt || ctx.in[5]->dtype != wt)
      return InvalidArgument(node_.Describe(), ": zero point types differ from the data");
    const auto& xd = ctx.in[0]->dims;
    if (xd.size() != 4)
      return Unsupported(node_.Describe(), ": only 2-D convolutions (4-D input), got ", Dims(xd));
    const std::vector<int64_t> nchw =
        nchw_input_ ? xd : std::vector<int64_t>{xd[0], xd[3], xd[1], xd[2]};
    ONNXQ_ASSIGN_OR_RETURN(shape_, ConvShape(attrs_, nchw, ctx.in[3]->dims, node_));
    const int64_t m = shape_.out_channels;
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 2, node_, "x zero point"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 5, m, node_, "w zero point"));
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 1, node_, "x scale"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 4, m, node_, "w scale"));
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 6, node_, "y scale"));
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 7, node_, "y zero point"));
    for (size_t i : {1, 4, 6})
      if (ctx.in[i]->dtype != DataType::kFloat)
        return Unsupported(node_.Describe(), ": scales must be float32");
    const DataType out = ctx.in[7]->dtype;
    if (!Is8Bit(out)) return Unsupported(node_.Describe(), ": output type ", DataTypeName(out));
    if (ctx.has(8) && (ctx.in[8]->dtype != DataType::kInt32 || NumElements(ctx.in[8]->dims) != m))
      return InvalidArgument(node_.Describe(), ": bias must be int32 with ", m, " values");
    if (!kernels::Int8ConvNhwc::Supports(shape_, nchw_input_))
      return Unsupported(node_.Describe(), ": channels-last convolution with group ",
                         shape_.group, " (only 1 or depthwise)");
    const Tensor* w = ctx.value(3);
    if (w == nullptr || ctx.value(5) == nullptr)
      return Unsupported(node_.Describe(), ": channels-last weights and their zero point must be "
                                           "constants");
    std::vector<int32_t> wz = ReadZps(*ctx.value(5));
    ONNXQ_ASSIGN_OR_RETURN(conv_, kernels::Int8ConvNhwc::Create(
                                      shape_, w->raw(), wt == DataType::kInt8, wz.data(),
                                      static_cast<int64_t>(wz.size()), xt == DataType::kInt8,
                                      nchw_input_, isa_));
    // The multipliers once per plan when the scales are constants (they always are after the
    // lowering); otherwise per run.
    scales_.clear();
    if (ctx.value(1) && ctx.value(4) && ctx.value(6))
      scales_ = kernels::Int8OutputScales(ctx.value(1)->data<float>()[0],
                                          ctx.value(4)->data<float>(), ctx.value(4)->numel(),
                                          ctx.value(6)->data<float>()[0], m);
    ctx.out[0] = {out, {shape_.batch, shape_.out_h(), shape_.out_w(), m}, nullptr};
    if (fused_add_) {
      if (shape_.group != 1)
        return Unsupported(node_.Describe(), ": a fused Add needs a group-1 convolution");
      if (!ctx.has(9) || ctx.in[9]->dtype != out || ctx.in[9]->dims != ctx.out[0].dims)
        return InvalidArgument(node_.Describe(), ": the Add operand (input 9) must be ",
                               DataTypeName(out), " ", Dims(ctx.out[0].dims));
      ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 10, 11, out, node_, "A"));
      ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 12, 13, out, node_, "B"));
      ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 14, 15, out, node_, "C"));
    }
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& x = ctx.in[0];
    const int64_t m = shape_.out_channels;
    const int64_t h = nchw_input_ ? x.dims[2] : x.dims[1], w = nchw_input_ ? x.dims[3] : x.dims[2];
    if (h != shape_.in_h || w != shape_.in_w) {
      // Another plan's spatial size: the packed kernel is reusable unless auto_pad moves pads.
      const std::vector<int64_t> nchw =
          nchw_input_ ? x.dims : std::vector<int64_t>{x.dims[0], x.dims[3], x.dims[1], x.dims[2]};
      ONNXQ_ASSIGN_OR_RETURN(auto s, ConvShape(attrs_, nchw, ctx.in[3].dims, node_));
      if (!SamePads(s, shape_))
        return Unsupported(node_.Describe(), ": channels-last convolution planned with other pads");
    }
    kernels::Int8OutputStage out;
    std::vector<float> scales;
    if (scales_.empty()) {
      scales = kernels::Int8OutputScales(*ctx.in[1].ptr<float>(), ctx.in[4].ptr<float>(),
                                         ctx.in[4].numel, *ctx.in[6].ptr<float>(), m);
      out.scale = scales.data();
    } else {
      out.scale = scales_.data();
    }
    out.zero_point = ZpAt(ctx.in[7].dtype, ctx.in[7].data, 0);
    out.out_signed = ctx.out[0].dtype == DataType::kInt8;
    OutputRange(ctx.out[0].dtype, &out.qmin, &out.qmax);
    if (clamp_.size() == 2) {
      out.qmin = std::max<int32_t>(out.qmin, static_cast<int32_t>(clamp_[0]));
      out.qmax = std::min<int32_t>(out.qmax, static_cast<int32_t>(clamp_[1]));
    }
    if (ctx.in.size() > 8 && ctx.in[8].present()) out.bias = ctx.in[8].ptr<int32_t>();
    const int32_t xz = ZpAt(ctx.in[2].dtype, ctx.in[2].data, 0);
    if (fused_add_) {
      kernels::Int8AddParams p;
      p.a_scale = ScalarF(ctx.in[10]);
      p.a_zp = ScalarZp(ctx, 11);
      p.b_scale = ScalarF(ctx.in[12]);
      p.b_zp = ScalarZp(ctx, 13);
      p.c_scale = ScalarF(ctx.in[14]);
      p.c_zp = ScalarZp(ctx, 15);
      p.is_signed = out.out_signed;
      const kernels::Int8AddConstants r = kernels::Int8AddRatios(p);
      kernels::Int8FusedAdd add;
      add.other = ctx.in[9].data;
      add.ra = r.ra;
      add.rb = r.rb;
      add.k = r.k;
      add.conv_is_a = conv_is_a_;
      if (!conv_->RunWithAdd(x.data, xz, out, add, ctx.out[0].data, x.dims[0], h, w, ctx.pool))
        return Internal(node_.Describe(), ": fused Add on a depthwise convolution");
      return Status::Ok();
    }
    conv_->Run(x.data, xz, out, ctx.out[0].data, x.dims[0], h, w, ctx.pool);
    return Status::Ok();
  }

 private:
  const Node& node_;
  ConvAttrs attrs_;
  bool nchw_input_;
  kernels::Isa isa_;
  std::vector<int64_t> clamp_;
  bool fused_add_, conv_is_a_;
  kernels::Conv2DShape shape_;
  std::unique_ptr<kernels::Int8ConvNhwc> conv_;
  std::vector<float> scales_;
};

// ai.onnxq Int8ConvFloat: x, x_scale, x_zp, w, w_scale, w_zp, [bias int32] -> float Y (NCHW),
// Y = float(sum (x - x_zp)(w - w_zp) + bias) * (x_scale * w_scale[m]). What the QDQ lowering
// makes of a Conv whose output stays float (a classifier after DequantizeLinear): the same
// value as the float Conv on the dequantized tensors up to float rounding (ONNX Runtime computes
// that Conv in float). 1x1, stride 1, unpadded, group 1, constant weights; an input with a
// single pixel per image (NCHW and NHWC coincide) runs on the channels-last GEMM, larger ones on
// Int8Conv2D with an int32 output.
class Int8ConvFloatKernel : public OpKernel {
 public:
  Int8ConvFloatKernel(const Node& node, ConvAttrs attrs, kernels::Isa isa)
      : node_(node), attrs_(std::move(attrs)), isa_(isa) {}

  Status Infer(InferContext& ctx) override {
    for (size_t i : {0, 1, 2, 3, 4, 5})
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
    const DataType xt = ctx.in[0]->dtype, wt = ctx.in[3]->dtype;
    if (!Is8Bit(xt) || !Is8Bit(wt) || ctx.in[2]->dtype != xt || ctx.in[5]->dtype != wt)
      return Unsupported(node_.Describe(), ": 8-bit x / w with zero points of the same types");
    ONNXQ_ASSIGN_OR_RETURN(shape_, ConvShape(attrs_, ctx.in[0]->dims, ctx.in[3]->dims, node_));
    const int64_t m = shape_.out_channels;
    if (shape_.kernel_h != 1 || shape_.kernel_w != 1 || shape_.stride_h != 1 ||
        shape_.stride_w != 1 || shape_.group != 1 || shape_.pad_top || shape_.pad_left ||
        shape_.pad_bottom || shape_.pad_right)
      return Unsupported(node_.Describe(), ": only 1x1, stride 1, unpadded, group 1");
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 1, node_, "x scale"));
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 2, node_, "x zero point"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 4, m, node_, "w scale"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 5, m, node_, "w zero point"));
    if (ctx.in[1]->dtype != DataType::kFloat || ctx.in[4]->dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": scales must be float32");
    if (ctx.has(6) && (ctx.in[6]->dtype != DataType::kInt32 || NumElements(ctx.in[6]->dims) != m))
      return InvalidArgument(node_.Describe(), ": bias must be int32 with ", m, " values");
    const Tensor* w = ctx.value(3);
    if (w == nullptr || ctx.value(5) == nullptr || ctx.value(1) == nullptr || ctx.value(4) == nullptr)
      return Unsupported(node_.Describe(), ": weights, scales and zero points must be constants");
    std::vector<int32_t> wz = ReadZps(*ctx.value(5));
    const bool ws = wt == DataType::kInt8, xs = xt == DataType::kInt8;
    nhwc_.reset();
    nchw_.reset();
    if (shape_.in_h * shape_.in_w == 1) {
      ONNXQ_ASSIGN_OR_RETURN(nhwc_, kernels::Int8ConvNhwc::Create(
                                        shape_, w->raw(), ws, wz.data(),
                                        static_cast<int64_t>(wz.size()), xs, false, isa_));
    } else {
      ONNXQ_ASSIGN_OR_RETURN(nchw_, kernels::Int8Conv2D::Create(
                                        shape_, w->raw(), ws, wz.data(),
                                        static_cast<int64_t>(wz.size()), xs, isa_));
    }
    // x_scale * w_scale[m]: the scale of the int32 accumulator (and of the bias).
    const float xsc = ctx.value(1)->data<float>()[0];
    const Tensor* wsc = ctx.value(4);
    mult_.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i)
      mult_[i] = xsc * wsc->data<float>()[wsc->numel() == 1 ? 0 : i];
    ctx.out[0] = {DataType::kFloat, {shape_.batch, m, shape_.out_h(), shape_.out_w()}, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& x = ctx.in[0];
    if (x.dims[2] != shape_.in_h || x.dims[3] != shape_.in_w)
      return Unsupported(node_.Describe(), ": planned for another spatial size");
    const int32_t xz = ZpAt(ctx.in[2].dtype, ctx.in[2].data, 0);
    const int32_t* bias = ctx.in.size() > 6 && ctx.in[6].present() ? ctx.in[6].ptr<int32_t>() : nullptr;
    float* y = ctx.out[0].ptr<float>();
    if (nhwc_) {
      nhwc_->RunFloat(x.data, xz, bias, mult_.data(), y, x.dims[0], 1, 1, ctx.pool);
      return Status::Ok();
    }
    const int64_t m = shape_.out_channels, hw = x.dims[2] * x.dims[3];
    kernels::Int8OutputStage out;
    out.bias = bias;
    // The int32 accumulators go into the output buffer (same size), then become floats in place.
    nchw_->Run(x.data, xz, out, y, x.dims[0], x.dims[2], x.dims[3], ctx.pool);
    for (int64_t b = 0; b < x.dims[0]; ++b)
      for (int64_t c = 0; c < m; ++c) {
        const int64_t o = (b * m + c) * hw;
        for (int64_t i = 0; i < hw; ++i) {
          int32_t a;
          std::memcpy(&a, y + o + i, sizeof a);
          y[o + i] = static_cast<float>(a) * mult_[c];
        }
      }
    return Status::Ok();
  }

 private:
  const Node& node_;
  ConvAttrs attrs_;
  kernels::Isa isa_;
  kernels::Conv2DShape shape_;
  std::unique_ptr<kernels::Int8ConvNhwc> nhwc_;
  std::unique_ptr<kernels::Int8Conv2D> nchw_;
  std::vector<float> mult_;
};

// ---------------------------------------------------------------- QLinearMatMul / MatMulInteger

struct MatMulDims {
  std::vector<int64_t> out;           // output dims
  std::vector<int64_t> batch;         // broadcast batch dims
  std::vector<int64_t> a_batch, b_batch;
  int64_t m = 0, k = 0, n = 0;
};

StatusOr<MatMulDims> MatMulShape(std::vector<int64_t> a, std::vector<int64_t> b, const Node& node) {
  if (a.empty() || b.empty()) return InvalidArgument(node.Describe(), ": scalar operands");
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  MatMulDims d;
  d.m = a[a.size() - 2];
  d.k = a.back();
  d.n = b.back();
  if (b[b.size() - 2] != d.k)
    return InvalidArgument(node.Describe(), ": inner dimensions differ: ", Dims(a), " x ", Dims(b));
  d.a_batch.assign(a.begin(), a.end() - 2);
  d.b_batch.assign(b.begin(), b.end() - 2);
  ONNXQ_ASSIGN_OR_RETURN(d.batch, BroadcastShapes(d.a_batch, d.b_batch, node));
  d.out = d.batch;
  if (!a1) d.out.push_back(d.m);
  if (!b1) d.out.push_back(d.n);
  return d;
}

// Offset (in matrices) of the operand with batch dims `own` for output batch index `flat`.
int64_t BatchOffset(const std::vector<int64_t>& own, const std::vector<int64_t>& batch, int64_t flat) {
  int64_t off = 0, stride = 1;
  for (int64_t i = static_cast<int64_t>(batch.size()) - 1; i >= 0; --i) {
    const int64_t idx = flat % batch[i];
    flat /= batch[i];
    const int64_t oi = i - (static_cast<int64_t>(batch.size()) - static_cast<int64_t>(own.size()));
    if (oi >= 0) {
      if (own[oi] != 1) off += idx * stride;
      stride *= own[oi];
    }
  }
  return off;
}

class IntMatMulKernel : public OpKernel {
 public:
  // QLinearMatMul: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp
  // MatMulInteger: a, b, [a_zp], [b_zp]
  IntMatMulKernel(const Node& node, bool qlinear, kernels::Isa isa)
      : node_(node), qlinear_(qlinear), isa_(isa) {}

  size_t B() const { return qlinear_ ? 3 : 1; }
  size_t AZ() const { return 2; }
  size_t BZ() const { return qlinear_ ? 5 : 3; }

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(B())) return InvalidArgument(node_.Describe(), ": needs A and B");
    if (qlinear_)
      for (size_t i : {1, 2, 4, 5, 6, 7})
        if (!ctx.has(i))
          return InvalidArgument(node_.Describe(), ": input ", i, " (scale / zero point) is missing");
    const DataType at = ctx.in[0]->dtype, bt = ctx.in[B()]->dtype;
    if (!Is8Bit(at) || !Is8Bit(bt))
      return Unsupported(node_.Describe(), ": A ", DataTypeName(at), " / B ", DataTypeName(bt),
                         " (uint8 or int8 expected)");
    if (ctx.has(AZ()) && ctx.in[AZ()]->dtype != at)
      return InvalidArgument(node_.Describe(), ": A zero point type differs from A");
    if (ctx.has(BZ()) && ctx.in[BZ()]->dtype != bt)
      return InvalidArgument(node_.Describe(), ": B zero point type differs from B");
    ONNXQ_ASSIGN_OR_RETURN(auto d, MatMulShape(ctx.in[0]->dims, ctx.in[B()]->dims, node_));
    // A per-row A zero point is accepted only when all its values are equal (then it is one).
    if (ctx.has(AZ()) && NumElements(ctx.in[AZ()]->dims) != 1) {
      const Tensor* az = ctx.value(AZ());
      bool uniform = az != nullptr;
      if (az) {
        auto v = ReadZps(*az);
        uniform = std::all_of(v.begin(), v.end(), [&](int32_t z) { return z == v[0]; });
      }
      if (!uniform)
        return Unsupported(node_.Describe(), ": per-row A zero points of shape ",
                           Dims(ctx.in[AZ()]->dims), " (only a single value is supported)");
    }
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, BZ(), d.n, node_, "B zero point"));
    DataType out = DataType::kInt32;
    if (qlinear_) {
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 1, node_, "A scale"));
      ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 4, d.n, node_, "B scale"));
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 6, node_, "y scale"));
      ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, 7, node_, "y zero point"));
      for (size_t i : {1, 4, 6})
        if (ctx.in[i]->dtype != DataType::kFloat)
          return Unsupported(node_.Describe(), ": scales must be float32");
      out = ctx.in[7]->dtype;
      if (!Is8Bit(out)) return Unsupported(node_.Describe(), ": output type ", DataTypeName(out));
    }
    const Tensor* b = ctx.value(B());
    const bool bz_known = !ctx.has(BZ()) || ctx.value(BZ()) != nullptr;
    gemm_.reset();
    if (b != nullptr && bz_known && NumElements(d.b_batch) == 1) {
      std::vector<int32_t> bz = ctx.has(BZ()) ? ReadZps(*ctx.value(BZ())) : std::vector<int32_t>{};
      ONNXQ_ASSIGN_OR_RETURN(gemm_, Pack(b->raw(), bt, d.k, d.n, bz));
    }
    ctx.out[0] = {out, d.out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& a = ctx.in[0];
    const TensorRef& b = ctx.in[B()];
    ONNXQ_ASSIGN_OR_RETURN(auto d, MatMulShape(a.dims, b.dims, node_));
    std::vector<int32_t> bz = ctx.in.size() > BZ() && ctx.in[BZ()].present()
                                  ? ReadZps(ctx.in[BZ()]) : std::vector<int32_t>{};
    const int32_t az = ctx.in.size() > AZ() && ctx.in[AZ()].present()
                           ? ZpAt(ctx.in[AZ()].dtype, ctx.in[AZ()].data, 0) : 0;
    kernels::Int8OutputStage out;
    std::vector<float> scales;
    if (qlinear_) {
      scales = kernels::Int8OutputScales(*ctx.in[1].ptr<float>(), ctx.in[4].ptr<float>(),
                                         ctx.in[4].numel, *ctx.in[6].ptr<float>(), d.n);
      out.scale = scales.data();
      out.zero_point = ZpAt(ctx.in[7].dtype, ctx.in[7].data, 0);
      out.out_signed = ctx.out[0].dtype == DataType::kInt8;
      OutputRange(ctx.out[0].dtype, &out.qmin, &out.qmax);
    }
    const size_t esize = qlinear_ ? 1 : 4;
    const int64_t batches = NumElements(d.batch);
    // The GEMM computes Y^T = B^T A^T (weights on the left); Y is its transpose.
    std::vector<uint8_t> yt(static_cast<size_t>(d.n * d.m) * esize);
    std::unique_ptr<kernels::Int8Gemm> local;
    for (int64_t t = 0; t < batches; ++t) {
      const int64_t ao = BatchOffset(d.a_batch, d.batch, t);
      const int64_t bo = BatchOffset(d.b_batch, d.batch, t);
      const kernels::Int8Gemm* gemm = gemm_.get();
      if (gemm == nullptr) {
        ONNXQ_ASSIGN_OR_RETURN(local, Pack(static_cast<const uint8_t*>(b.data) + bo * d.k * d.n,
                                           b.dtype, d.k, d.n, bz));
        gemm = local.get();
      }
      const uint8_t* ap = static_cast<const uint8_t*>(a.data) + ao * d.m * d.k;
      gemm->Run(ap, a.dtype == DataType::kInt8, 1, d.k, az, d.m, out, yt.data(), d.m, ctx.pool);
      uint8_t* y = static_cast<uint8_t*>(ctx.out[0].data) + t * d.m * d.n * esize;
      for (int64_t i = 0; i < d.m; ++i)
        for (int64_t j = 0; j < d.n; ++j)
          std::memcpy(y + (i * d.n + j) * esize, yt.data() + (j * d.m + i) * esize, esize);
    }
    return Status::Ok();
  }

 private:
  StatusOr<std::unique_ptr<kernels::Int8Gemm>> Pack(const void* b, DataType bt, int64_t k,
                                                    int64_t n, const std::vector<int32_t>& bz) const {
    // W = B^T, [n x k].
    std::vector<uint8_t> wt(static_cast<size_t>(n * k));
    const uint8_t* src = static_cast<const uint8_t*>(b);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < n; ++j) wt[j * k + i] = src[i * n + j];
    return kernels::Int8Gemm::Create(n, k, wt.data(), k, bt == DataType::kInt8,
                                     bz.empty() ? nullptr : bz.data(),
                                     static_cast<int64_t>(bz.size()), isa_);
  }

  const Node& node_;
  bool qlinear_;
  kernels::Isa isa_;
  std::unique_ptr<kernels::Int8Gemm> gemm_;
};

// ---------------------------------------------------------------- DynamicQuantizeLinear

// uint8 output; scale = (max(0, max x) - min(0, min x)) / 255 (1 when x is all zeros, as ONNX
// Runtime), zero point = round_half_even(clamp(0 - min / scale, 0, 255)),
// y = saturate(round_half_even(x / scale) + zero point).
class DynamicQuantizeKernel : public OpKernel {
 public:
  DynamicQuantizeKernel(const Node& node, kernels::Isa isa)
      : node_(node), table_(kernels::int8::TableForIsa(static_cast<int>(isa))) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": needs x");
    if (ctx.in[0]->dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 input is supported");
    ctx.out[0] = {DataType::kUint8, ctx.in[0]->dims, nullptr};
    if (ctx.out.size() > 1) ctx.out[1] = {DataType::kFloat, {}, nullptr};
    if (ctx.out.size() > 2) ctx.out[2] = {DataType::kUint8, {}, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const float* x = ctx.in[0].ptr<float>();
    const int64_t n = ctx.in[0].numel;
    // Range: per chunk (SIMD where the ISA has it, chunks spread over the pool), then combined
    // with 0, which the range must contain.
    constexpr int64_t kChunk = 1 << 16;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<float> los(static_cast<size_t>(chunks)), his(static_cast<size_t>(chunks));
    std::vector<char> nan(static_cast<size_t>(chunks), 0);
    ParallelFor(ctx.pool, chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const float* p = x + c * kChunk;
        const int64_t m = std::min(kChunk, n - c * kChunk);
        float lo = p[0], hi = p[0];
        bool ok = true;
        if (table_.minmax != nullptr) {
          ok = table_.minmax(p, m, &lo, &hi);
        } else {
          for (int64_t i = 0; i < m; ++i) {
            ok = ok && p[i] == p[i];
            lo = p[i] < lo ? p[i] : lo;
            hi = p[i] > hi ? p[i] : hi;
          }
        }
        los[static_cast<size_t>(c)] = lo;
        his[static_cast<size_t>(c)] = hi;
        nan[static_cast<size_t>(c)] = !ok;
      }
    });
    float lo = 0.f, hi = 0.f;
    for (int64_t c = 0; c < chunks; ++c) {
      if (nan[static_cast<size_t>(c)])
        return InvalidArgument(node_.Describe(), ": input contains a non-finite value (NaN)");
      lo = std::min(lo, los[static_cast<size_t>(c)]);
      hi = std::max(hi, his[static_cast<size_t>(c)]);
    }
    if (!std::isfinite(lo) || !std::isfinite(hi))
      return InvalidArgument(node_.Describe(), ": input contains a non-finite value (infinity)");
    const float scale = hi == lo ? 1.f : (hi - lo) / 255.f;
    float zp = 0.f - lo / scale;
    zp = std::nearbyint(std::min(std::max(zp, 0.f), 255.f));
    uint8_t* y = ctx.out[0].ptr<uint8_t>();
    const kernels::int8::Quantize8Fn q8 = table_.quantize8;
    ParallelFor(ctx.pool, n, 16384, [&](int64_t b, int64_t e) {
      if (q8 != nullptr) {  // the same formula in SIMD: clamp(round_half_even(x / scale) + zp)
        q8(x + b, e - b, scale, static_cast<int32_t>(zp), false, y + b);
        return;
      }
      for (int64_t i = b; i < e; ++i) {
        float q = std::nearbyint(x[i] / scale) + zp;
        y[i] = static_cast<uint8_t>(std::min(std::max(q, 0.f), 255.f));
      }
    });
    if (ctx.out.size() > 1 && ctx.out[1].data) *ctx.out[1].ptr<float>() = scale;
    if (ctx.out.size() > 2 && ctx.out[2].data) *ctx.out[2].ptr<uint8_t>() = static_cast<uint8_t>(zp);
    return Status::Ok();
  }

 private:
  const Node& node_;
  kernels::int8::Table table_;  // chosen once, for the session's ISA
};

// ---------------------------------------------------------------- com.microsoft / ai.onnxq ops

float ScalarF(const TensorRef& t) { return *t.ptr<float>(); }
int32_t ScalarZp(const RunContext& ctx, size_t i) {
  return i < ctx.in.size() && ctx.in[i].present() ? ZpAt(ctx.in[i].dtype, ctx.in[i].data, 0) : 0;
}
// Checks a per-tensor float scale at `si` and an optional zero point at `zi` of type `t`.
Status CheckQParams(const InferContext& ctx, size_t si, size_t zi, DataType t, const Node& node,
                    const char* what) {
  if (!ctx.has(si)) return InvalidArgument(node.Describe(), ": ", what, " scale is missing");
  if (ctx.in[si]->dtype != DataType::kFloat)
    return Unsupported(node.Describe(), ": ", what, " scale must be float32");
  ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, si, node, what));
  if (ctx.has(zi)) {
    if (ctx.in[zi]->dtype != t)
      return InvalidArgument(node.Describe(), ": ", what, " zero point type differs from the data");
    ONNXQ_RETURN_IF_ERROR(CheckScalar(ctx, zi, node, what));
  }
  return Status::Ok();
}

// com.microsoft QLinearAdd: A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp. Equal shapes or
// one operand with a single element (the broadcasts the int8 kernel implements).
class QLinearAddKernel : public OpKernel {
 public:
  explicit QLinearAddKernel(const Node& node) : node_(node) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(3)) return InvalidArgument(node_.Describe(), ": needs A and B");
    const DataType t = ctx.in[0]->dtype;
    if (!Is8Bit(t) || ctx.in[3]->dtype != t)
      return Unsupported(node_.Describe(), ": A and B must both be uint8 or both int8");
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 1, 2, t, node_, "A"));
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 4, 5, t, node_, "B"));
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 6, 7, t, node_, "C"));
    const auto& a = ctx.in[0]->dims;
    const auto& b = ctx.in[3]->dims;
    std::vector<int64_t> out;
    if (a == b || NumElements(b) == 1) {
      ONNXQ_ASSIGN_OR_RETURN(out, BroadcastShapes(a, b, node_));
    } else if (NumElements(a) == 1) {
      ONNXQ_ASSIGN_OR_RETURN(out, BroadcastShapes(a, b, node_));
    } else {
      return Unsupported(node_.Describe(), ": broadcasting ", Dims(a), " with ", Dims(b),
                         " (only equal shapes or a single-element operand)");
    }
    if (NumElements(out) != std::max(NumElements(a), NumElements(b)))
      return Unsupported(node_.Describe(), ": broadcasting ", Dims(a), " with ", Dims(b));
    ctx.out[0] = {t, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    kernels::Int8AddParams p;
    p.a_scale = ScalarF(ctx.in[1]);
    p.b_scale = ScalarF(ctx.in[4]);
    p.c_scale = ScalarF(ctx.in[6]);
    p.a_zp = ScalarZp(ctx, 2);
    p.b_zp = ScalarZp(ctx, 5);
    p.c_zp = ScalarZp(ctx, 7);
    p.is_signed = ctx.in[0].dtype == DataType::kInt8;
    const int64_t n = ctx.out[0].numel;
    const bool as = ctx.in[0].numel == 1 && n > 1, bs = ctx.in[3].numel == 1 && n > 1;
    const auto* a = static_cast<const uint8_t*>(ctx.in[0].data);
    const auto* b = static_cast<const uint8_t*>(ctx.in[3].data);
    auto* c = static_cast<uint8_t*>(ctx.out[0].data);
    const kernels::Isa isa = ctx.isa;
    // Element-wise: any split gives the same bytes.
    ParallelFor(ctx.pool, n, 32768, [&](int64_t lo, int64_t hi) {
      kernels::Int8Add(p, as ? a : a + lo, as, bs ? b : b + lo, bs, c + lo, hi - lo, isa);
    });
    return Status::Ok();
  }

 private:
  const Node& node_;
};

// com.microsoft QLinearGlobalAveragePool: X, x_scale, x_zp, y_scale, y_zp (NCHW: channels_last 0).
// channels_last 1 with onnxq_nchw_output 1 (the QDQ lowering's chains): NHWC X, Y as NCHW
// [N, C, 1, ...], which holds the same bytes as the NHWC [N, 1, ..., C].
class QLinearGlobalAveragePoolKernel : public OpKernel {
 public:
  explicit QLinearGlobalAveragePoolKernel(const Node& node) : node_(node) {}

  Status Infer(InferContext& ctx) override {
    ONNXQ_ASSIGN_OR_RETURN(int64_t cl, node_.attrs.GetInt("channels_last", 0));
    ONNXQ_ASSIGN_OR_RETURN(int64_t nchw_out, node_.attrs.GetInt("onnxq_nchw_output", 0));
    channels_last_ = cl != 0;
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": needs X");
    const DataType t = ctx.in[0]->dtype;
    if (!Is8Bit(t)) return Unsupported(node_.Describe(), ": X must be uint8 or int8");
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 1, 2, t, node_, "x"));
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 3, 4, t, node_, "y"));
    const auto& x = ctx.in[0]->dims;
    if (x.size() < 3) return InvalidArgument(node_.Describe(), ": X must have rank >= 3");
    std::vector<int64_t> out = {x[0], x[1]};
    out.resize(x.size(), 1);
    if (channels_last_ && nchw_out == 0) {  // [N, spatial..., C] -> [N, 1..., C]
      out.assign(x.size(), 1);
      out.front() = x.front();
      out.back() = x.back();
    } else if (channels_last_) {  // the same bytes as NCHW [N, C, 1...] (onnxq_nchw_output 1)
      out.assign(x.size(), 1);
      out[0] = x.front();
      out[1] = x.back();
    }
    ctx.out[0] = {t, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const auto& x = ctx.in[0];
    if (channels_last_) {
      const int64_t n = x.dims.front(), c = x.dims.back();
      const int64_t pixels = n * c > 0 ? x.numel / (n * c) : 0;
      kernels::Int8GlobalAveragePoolNhwc(x.data, n, pixels, c, ScalarF(ctx.in[1]),
                                         ScalarZp(ctx, 2), ScalarF(ctx.in[3]), ScalarZp(ctx, 4),
                                         x.dtype == DataType::kInt8, ctx.out[0].data, ctx.pool);
      return Status::Ok();
    }
    const int64_t planes = x.dims[0] * x.dims[1];
    const int64_t size = planes > 0 ? x.numel / planes : 0;
    kernels::Int8GlobalAveragePool(x.data, planes, size, ScalarF(ctx.in[1]), ScalarZp(ctx, 2),
                                   ScalarF(ctx.in[3]), ScalarZp(ctx, 4),
                                   x.dtype == DataType::kInt8, ctx.out[0].data, ctx.pool);
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool channels_last_ = false;
};

// Attributes of a 2-D pool (MaxPool / AveragePool / QLinearAveragePool) and its output size, as
// ONNX defines it (floor or ceil mode; a ceil-mode window starting in the right padding dropped).
struct PoolAttrs {
  AutoPad auto_pad = AutoPad::kNotSet;
  std::vector<int64_t> kernel, strides, dilations, pads;
  int64_t ceil_mode = 0, count_include_pad = 0;
};

StatusOr<PoolAttrs> ParsePoolAttrs(const Node& node) {
  PoolAttrs p;
  ONNXQ_ASSIGN_OR_RETURN(ConvAttrs c, ParseConvAttrs(node));
  p.auto_pad = c.auto_pad;
  p.kernel = c.kernel_shape;
  p.strides = c.strides;
  p.dilations = c.dilations;
  p.pads = c.pads;
  ONNXQ_ASSIGN_OR_RETURN(p.ceil_mode, node.attrs.GetInt("ceil_mode", 0));
  ONNXQ_ASSIGN_OR_RETURN(p.count_include_pad, node.attrs.GetInt("count_include_pad", 0));
  ONNXQ_ASSIGN_OR_RETURN(int64_t order, node.attrs.GetInt("storage_order", 0));
  ONNXQ_ASSIGN_OR_RETURN(int64_t cl, node.attrs.GetInt("channels_last", 0));
  if (order != 0 || cl != 0) return Unsupported(node.Describe(), ": only NCHW row-major pooling");
  if (p.kernel.size() != 2)
    return Unsupported(node.Describe(), ": only 2-D pooling (kernel_shape of 2 values)");
  if ((!p.strides.empty() && p.strides.size() != 2) ||
      (!p.dilations.empty() && p.dilations.size() != 2) || (!p.pads.empty() && p.pads.size() != 4))
    return InvalidArgument(node.Describe(), ": strides / dilations / pads have the wrong length");
  return p;
}

StatusOr<kernels::Int8Pool2DShape> PoolShape(const PoolAttrs& a, const std::vector<int64_t>& x,
                                             const Node& node) {
  if (x.size() != 4) return Unsupported(node.Describe(), ": only 4-D (NCHW) input, got ", Dims(x));
  kernels::Int8Pool2DShape s;
  s.in_h = x[2];
  s.in_w = x[3];
  s.kernel_h = a.kernel[0];
  s.kernel_w = a.kernel[1];
  s.stride_h = a.strides.empty() ? 1 : a.strides[0];
  s.stride_w = a.strides.empty() ? 1 : a.strides[1];
  s.dilation_h = a.dilations.empty() ? 1 : a.dilations[0];
  s.dilation_w = a.dilations.empty() ? 1 : a.dilations[1];
  if (s.kernel_h <= 0 || s.kernel_w <= 0 || s.stride_h <= 0 || s.stride_w <= 0 ||
      s.dilation_h <= 0 || s.dilation_w <= 0)
    return InvalidArgument(node.Describe(), ": kernel, strides and dilations must be positive");
  auto dim = [&](int64_t in, int64_t k, int64_t st, int64_t d, int64_t* pb, int64_t* pe,
                 int64_t* out) -> Status {
    const int64_t ek = (k - 1) * d + 1;
    switch (a.auto_pad) {
      case AutoPad::kNotSet: {
        const int64_t span = in + *pb + *pe - ek;
        if (span < 0) return InvalidArgument(node.Describe(), ": window larger than the input");
        *out = (a.ceil_mode ? (span + st - 1) / st : span / st) + 1;
        if (a.ceil_mode && (*out - 1) * st >= in + *pb) --*out;
        break;
      }
      case AutoPad::kValid:
        *pb = *pe = 0;
        if (in < ek) return InvalidArgument(node.Describe(), ": window larger than the input");
        *out = (in - ek) / st + 1;
        break;
      default: {
        *out = (in + st - 1) / st;
        const int64_t total = std::max<int64_t>(0, (*out - 1) * st + ek - in);
        const int64_t small = total / 2;
        *pb = a.auto_pad == AutoPad::kSameUpper ? small : total - small;
        *pe = total - *pb;
      }
    }
    return Status::Ok();
  };
  if (!a.pads.empty()) {
    s.pad_top = a.pads[0];
    s.pad_left = a.pads[1];
    s.pad_bottom = a.pads[2];
    s.pad_right = a.pads[3];
  }
  ONNXQ_RETURN_IF_ERROR(dim(s.in_h, s.kernel_h, s.stride_h, s.dilation_h, &s.pad_top, &s.pad_bottom, &s.out_h));
  ONNXQ_RETURN_IF_ERROR(dim(s.in_w, s.kernel_w, s.stride_w, s.dilation_w, &s.pad_left, &s.pad_right, &s.out_w));
  if (s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0)
    return InvalidArgument(node.Describe(), ": negative pads");
  if (s.out_h <= 0 || s.out_w <= 0) return InvalidArgument(node.Describe(), ": empty output");
  return s;
}

// com.microsoft QLinearAveragePool (X, x_scale, x_zp, y_scale, y_zp) and ai.onnxq Int8MaxPool (X).
class Int8PoolKernel : public OpKernel {
 public:
  Int8PoolKernel(const Node& node, PoolAttrs attrs, bool average)
      : node_(node), attrs_(std::move(attrs)), average_(average) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": needs X");
    const DataType t = ctx.in[0]->dtype;
    if (!Is8Bit(t)) return Unsupported(node_.Describe(), ": X must be uint8 or int8");
    if (average_) {
      ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 1, 2, t, node_, "x"));
      ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 3, 4, t, node_, "y"));
      if (!attrs_.dilations.empty() && (attrs_.dilations[0] != 1 || attrs_.dilations[1] != 1))
        return Unsupported(node_.Describe(), ": dilated average pooling");
    }
    const auto& x = ctx.in[0]->dims;
    ONNXQ_ASSIGN_OR_RETURN(auto s, PoolShape(attrs_, x, node_));
    ctx.out[0] = {t, {x[0], x[1], s.out_h, s.out_w}, nullptr};
    if (ctx.out.size() > 1) return Unsupported(node_.Describe(), ": the Indices output");
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const auto& x = ctx.in[0];
    ONNXQ_ASSIGN_OR_RETURN(auto s, PoolShape(attrs_, x.dims, node_));
    const bool sg = x.dtype == DataType::kInt8;
    const int64_t planes = x.dims[0] * x.dims[1];
    if (average_) {
      kernels::Int8AveragePool2D(x.data, planes, s, attrs_.count_include_pad != 0,
                                 ScalarF(ctx.in[1]), ScalarZp(ctx, 2), ScalarF(ctx.in[3]),
                                 ScalarZp(ctx, 4), sg, ctx.out[0].data, ctx.pool);
    } else {
      kernels::Int8MaxPool2D(x.data, planes, s, sg, ctx.out[0].data, ctx.pool);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  PoolAttrs attrs_;
  bool average_;
};

// com.microsoft QGemm with an 8-bit output: A, a_scale, a_zp, B, b_scale, b_zp, [C int32], y_scale,
// y_zp; transA 0, alpha 1, B constant. Y = requant(A B' + C) with multipliers
// (a_scale * b_scale[n]) / y_scale, as QLinearMatMul; C is added to the int32 accumulator.
class QGemmKernel : public OpKernel {
 public:
  QGemmKernel(const Node& node, bool trans_b, kernels::Isa isa)
      : node_(node), trans_b_(trans_b), isa_(isa) {}

  Status Infer(InferContext& ctx) override {
    for (size_t i : {0, 1, 3, 4})
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
    if (!ctx.has(7)) return Unsupported(node_.Describe(), ": float output (no y_scale)");
    const DataType at = ctx.in[0]->dtype, bt = ctx.in[3]->dtype;
    if (!Is8Bit(at) || !Is8Bit(bt))
      return Unsupported(node_.Describe(), ": A and B must be uint8 or int8");
    const auto& a = ctx.in[0]->dims;
    const auto& b = ctx.in[3]->dims;
    if (a.size() != 2 || b.size() != 2)
      return InvalidArgument(node_.Describe(), ": A and B must be matrices");
    const int64_t m = a[0], k = a[1];
    const int64_t n = trans_b_ ? b[0] : b[1];
    if ((trans_b_ ? b[1] : b[0]) != k)
      return InvalidArgument(node_.Describe(), ": inner dimensions differ: ", Dims(a), " x ", Dims(b));
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 1, 2, at, node_, "A"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 4, n, node_, "B scale"));
    ONNXQ_RETURN_IF_ERROR(CheckPerChannel(ctx, 5, n, node_, "B zero point"));
    const DataType yt = ctx.has(8) ? ctx.in[8]->dtype : DataType::kUint8;
    if (!Is8Bit(yt)) return Unsupported(node_.Describe(), ": output type ", DataTypeName(yt));
    ONNXQ_RETURN_IF_ERROR(CheckQParams(ctx, 7, 8, yt, node_, "y"));
    if (ctx.has(6) && (ctx.in[6]->dtype != DataType::kInt32 || NumElements(ctx.in[6]->dims) != n))
      return Unsupported(node_.Describe(), ": C must be int32 with one value per column (", n, ")");
    const Tensor* bv = ctx.value(3);
    if (bv == nullptr || (ctx.has(5) && ctx.value(5) == nullptr))
      return Unsupported(node_.Describe(), ": B and its zero point must be constants");
    std::vector<int32_t> bz = ctx.has(5) ? ReadZps(*ctx.value(5)) : std::vector<int32_t>{};
    // W = B' as [n x k] rows.
    std::vector<uint8_t> w(static_cast<size_t>(n * k));
    const uint8_t* src = reinterpret_cast<const uint8_t*>(bv->raw());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) w[r * k + c] = trans_b_ ? src[r * k + c] : src[c * n + r];
    ONNXQ_ASSIGN_OR_RETURN(gemm_, kernels::Int8Gemm::Create(n, k, w.data(), k, bt == DataType::kInt8,
                                                           bz.empty() ? nullptr : bz.data(),
                                                           static_cast<int64_t>(bz.size()), isa_));
    ctx.out[0] = {yt, {m, n}, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& a = ctx.in[0];
    const int64_t m = a.dims[0], k = a.dims[1], n = gemm_->m();
    kernels::Int8OutputStage out;
    std::vector<float> scales = kernels::Int8OutputScales(
        ScalarF(ctx.in[1]), ctx.in[4].ptr<float>(), ctx.in[4].numel, ScalarF(ctx.in[7]), n);
    out.scale = scales.data();
    out.zero_point = ScalarZp(ctx, 8);
    out.out_signed = ctx.out[0].dtype == DataType::kInt8;
    OutputRange(ctx.out[0].dtype, &out.qmin, &out.qmax);
    if (ctx.in.size() > 6 && ctx.in[6].present()) out.bias = ctx.in[6].ptr<int32_t>();
    // Y' = W A' (n x m), then transposed.
    std::vector<uint8_t> yt(static_cast<size_t>(n * m));
    gemm_->Run(a.data, a.dtype == DataType::kInt8, 1, k, ScalarZp(ctx, 2), m, out, yt.data(), m,
               ctx.pool);
    uint8_t* y = static_cast<uint8_t*>(ctx.out[0].data);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = yt[j * m + i];
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool trans_b_;
  kernels::Isa isa_;
  std::unique_ptr<kernels::Int8Gemm> gemm_;
};

// The [qmin, qmax] clamp of a Relu / Clip the QDQ lowering folded into a node (empty: none).
StatusOr<std::vector<int64_t>> FoldedClamp(const Node& node) {
  ONNXQ_ASSIGN_OR_RETURN(auto clamp, node.attrs.GetInts("onnxq_clamp", {}));
  if (!clamp.empty() && (clamp.size() != 2 || clamp[0] > clamp[1]))
    return InvalidArgument(node.Describe(), ": onnxq_clamp must be [qmin, qmax]");
  return clamp;
}

}  // namespace

void RegisterIntegerOps(std::vector<OpRegistration>& r) {
  r.push_back({"QLinearConv", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseConvAttrs(*info.node));
                 ONNXQ_ASSIGN_OR_RETURN(auto clamp, FoldedClamp(*info.node));
                 return MakeKernel<IntConvKernel>(*info.node, std::move(attrs), true, info.isa,
                                                  std::move(clamp));
               },
               "2-D; uint8/int8 input and output, uint8/int8 weights with per-tensor or "
               "per-channel scale and zero point, int32 bias; ONNX Runtime's requantization"});
  r.push_back({"ConvInteger", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseConvAttrs(*info.node));
                 return MakeKernel<IntConvKernel>(*info.node, std::move(attrs), false, info.isa);
               },
               "2-D; uint8/int8 input and weights, per-tensor or per-channel weight zero point"});
  r.push_back({"QLinearMatMul", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 return MakeKernel<IntMatMulKernel>(*info.node, true, info.isa);
               },
               "uint8/int8; per-tensor A, per-tensor or per-column B scale / zero point; "
               "batch broadcasting"});
  r.push_back({"MatMulInteger", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 return MakeKernel<IntMatMulKernel>(*info.node, false, info.isa);
               },
               "uint8/int8; single A zero point, per-tensor or per-column B zero point"});
  r.push_back({"DynamicQuantizeLinear", 11, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 return MakeKernel<DynamicQuantizeKernel>(*info.node, info.isa);
               },
               "float32 in, uint8 out; ONNX Runtime's scale / zero point rounding"});
}

void RegisterContribIntegerOps(std::vector<DomainOpRegistration>& r) {
  r.push_back({"com.microsoft",
               {"QLinearAdd", 1, 1,
                [](const OpInfo& info) { return MakeKernel<QLinearAddKernel>(*info.node); },
                "uint8/int8, per-tensor; equal shapes or a single-element operand; ONNX Runtime's "
                "x86 rounding"}});
  r.push_back({"com.microsoft",
               {"QLinearConv", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  const Attributes& at = info.node->attrs;
                  ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseConvAttrs(*info.node));
                  ONNXQ_ASSIGN_OR_RETURN(auto clamp, FoldedClamp(*info.node));
                  ONNXQ_ASSIGN_OR_RETURN(int64_t cl, at.GetInt("channels_last", 0));
                  ONNXQ_ASSIGN_OR_RETURN(int64_t nchw_in, at.GetInt("onnxq_nchw_input", 0));
                  if (cl == 0)
                    return MakeKernel<IntConvKernel>(*info.node, std::move(attrs), true, info.isa,
                                                     std::move(clamp));
                  return MakeKernel<NhwcConvKernel>(*info.node, std::move(attrs), nchw_in != 0,
                                                    info.isa, std::move(clamp));
                },
                "QLinearConv; channels_last 1: NHWC X / Y, constant OIHW weights, group 1 or "
                "depthwise (onnxq_nchw_input 1: X is NCHW)"}});
  r.push_back({"com.microsoft",
               {"QLinearGlobalAveragePool", 1, 1,
                [](const OpInfo& info) {
                  return MakeKernel<QLinearGlobalAveragePoolKernel>(*info.node);
                },
                "uint8/int8, NCHW or channels_last"}});
  r.push_back({"com.microsoft",
               {"QLinearAveragePool", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  ONNXQ_ASSIGN_OR_RETURN(auto a, ParsePoolAttrs(*info.node));
                  return MakeKernel<Int8PoolKernel>(*info.node, std::move(a), true);
                },
                "uint8/int8, 2-D NCHW, no dilation"}});
  r.push_back({"com.microsoft",
               {"QGemm", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  const Attributes& at = info.node->attrs;
                  ONNXQ_ASSIGN_OR_RETURN(int64_t ta, at.GetInt("transA", 0));
                  ONNXQ_ASSIGN_OR_RETURN(int64_t tb, at.GetInt("transB", 0));
                  ONNXQ_ASSIGN_OR_RETURN(float alpha, at.GetFloat("alpha", 1.f));
                  if (ta != 0 || alpha != 1.f)
                    return Unsupported(info.node->Describe(), ": transA / alpha other than 0 / 1");
                  return MakeKernel<QGemmKernel>(*info.node, tb != 0, info.isa);
                },
                "8-bit output only; transA 0, alpha 1; constant B (per-tensor or per-column "
                "scale / zero point); int32 C per column"}});
  r.push_back({"ai.onnxq",
               {"QLinearConvAdd", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  const Attributes& at = info.node->attrs;
                  ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseConvAttrs(*info.node));
                  ONNXQ_ASSIGN_OR_RETURN(auto clamp, FoldedClamp(*info.node));
                  ONNXQ_ASSIGN_OR_RETURN(int64_t nchw_in, at.GetInt("onnxq_nchw_input", 0));
                  ONNXQ_ASSIGN_OR_RETURN(int64_t operand, at.GetInt("conv_operand", 0));
                  if (operand != 0 && operand != 1)
                    return InvalidArgument(info.node->Describe(), ": conv_operand must be 0 or 1");
                  return MakeKernel<NhwcConvKernel>(*info.node, std::move(attrs), nchw_in != 0,
                                                    info.isa, std::move(clamp), true, operand == 0);
                },
                "channels-last QLinearConv (group 1) with a QLinearAdd fused into its output "
                "stage: QLinearConv inputs, the Add's other operand, A/B/C scales and zero points"}});
  r.push_back({"ai.onnxq",
               {"Int8ConvFloat", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseConvAttrs(*info.node));
                  return MakeKernel<Int8ConvFloatKernel>(*info.node, std::move(attrs), info.isa);
                },
                "x, x_scale, x_zp, w, w_scale, w_zp, [int32 bias] -> float; 1x1 Conv on 8-bit "
                "data with a float output (constant weights)"}});
  r.push_back({"ai.onnxq",
               {"Int8MaxPool", 1, 1,
                [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                  ONNXQ_ASSIGN_OR_RETURN(auto a, ParsePoolAttrs(*info.node));
                  return MakeKernel<Int8PoolKernel>(*info.node, std::move(a), false);
                },
                "MaxPool on uint8/int8 data (MaxPool attributes), 2-D NCHW, no Indices output"}});
}

}  // namespace onnxq::runtime
