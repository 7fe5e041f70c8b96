// Conv, ConvTranspose, Gemm, MatMul, BatchNormalization. Conv runs on kernels::Conv2D (created
// once per node and padding, weights packed then) and Gemm / MatMul with a constant B on
// kernels::PackedGemmB; both pick their ISA when created, never per call.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/gemm.h"
#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

enum class AutoPad { kNotSet, kSameUpper, kSameLower, kValid };

StatusOr<AutoPad> ParseAutoPad(const Node& node) {
  ONNXQ_ASSIGN_OR_RETURN(std::string s, node.attrs.GetString("auto_pad", "NOTSET"));
  if (s == "NOTSET" || s.empty()) return AutoPad::kNotSet;
  if (s == "SAME_UPPER") return AutoPad::kSameUpper;
  if (s == "SAME_LOWER") return AutoPad::kSameLower;
  if (s == "VALID") return AutoPad::kValid;
  return InvalidArgument(node.Describe(), ": unknown auto_pad '", s, "'");
}

// Attributes shared by Conv and the pools: per spatial axis.
struct WindowAttrs {
  AutoPad auto_pad = AutoPad::kNotSet;
  std::vector<int64_t> kernel_shape, strides, dilations, pads;  // empty: derive / defaults
  int64_t group = 1;
};

StatusOr<WindowAttrs> ParseWindowAttrs(const Node& node) {
  WindowAttrs a;
  ONNXQ_ASSIGN_OR_RETURN(a.auto_pad, ParseAutoPad(node));
  ONNXQ_ASSIGN_OR_RETURN(a.kernel_shape, node.attrs.GetInts("kernel_shape", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.strides, node.attrs.GetInts("strides", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.dilations, node.attrs.GetInts("dilations", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.pads, node.attrs.GetInts("pads", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.group, node.attrs.GetInt("group", 1));
  if (a.group < 1) return InvalidArgument(node.Describe(), ": group must be >= 1");
  for (int64_t s : a.strides)
    if (s < 1) return InvalidArgument(node.Describe(), ": strides must be >= 1");
  for (int64_t d : a.dilations)
    if (d < 1) return InvalidArgument(node.Describe(), ": dilations must be >= 1");
  for (int64_t p : a.pads)
    if (p < 0) return InvalidArgument(node.Describe(), ": pads must be >= 0");
  return a;
}

// Resolved geometry of one spatial axis.
struct AxisGeom {
  int64_t in = 1, k = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0, out = 1;
};

// Forward-window geometry (Conv): output size and pads from auto_pad or explicit pads.
StatusOr<std::vector<AxisGeom>> ResolveConvGeometry(const WindowAttrs& a,
                                                    const std::vector<int64_t>& in_spatial,
                                                    const std::vector<int64_t>& kernel,
                                                    const Node& node) {
  size_t r = in_spatial.size();
  auto check = [&](const std::vector<int64_t>& v, size_t want, const char* what) -> Status {
    if (!v.empty() && v.size() != want)
      return InvalidArgument(node.Describe(), ": ", what, " has ", v.size(),
                             " entries, expected ", want);
    return Status::Ok();
  };
  ONNXQ_RETURN_IF_ERROR(check(a.strides, r, "strides"));
  ONNXQ_RETURN_IF_ERROR(check(a.dilations, r, "dilations"));
  ONNXQ_RETURN_IF_ERROR(check(a.pads, 2 * r, "pads"));
  std::vector<AxisGeom> g(r);
  for (size_t i = 0; i < r; ++i) {
    AxisGeom& x = g[i];
    x.in = in_spatial[i];
    x.k = kernel[i];
    x.stride = a.strides.empty() ? 1 : a.strides[i];
    x.dilation = a.dilations.empty() ? 1 : a.dilations[i];
    int64_t eff = (x.k - 1) * x.dilation + 1;
    switch (a.auto_pad) {
      case AutoPad::kNotSet:
        x.pad_begin = a.pads.empty() ? 0 : a.pads[i];
        x.pad_end = a.pads.empty() ? 0 : a.pads[i + r];
        break;
      case AutoPad::kValid:
        break;
      case AutoPad::kSameUpper:
      case AutoPad::kSameLower: {
        int64_t out = (x.in + x.stride - 1) / x.stride;
        int64_t total = std::max<int64_t>(0, (out - 1) * x.stride + eff - x.in);
        int64_t small = total / 2;
        x.pad_begin = a.auto_pad == AutoPad::kSameUpper ? small : total - small;
        x.pad_end = total - x.pad_begin;
        break;
      }
    }
    int64_t span = x.in + x.pad_begin + x.pad_end - eff;
    if (span < 0)
      return InvalidArgument(node.Describe(), ": kernel extent ", eff,
                             " is larger than the padded input ", x.in + x.pad_begin + x.pad_end);
    x.out = span / x.stride + 1;
  }
  return g;
}

// ---------------------------------------------------------------- Conv

class ConvKernel : public OpKernel {
 public:
  ConvKernel(const Node& node, WindowAttrs attrs, const Tensor* w, const Tensor* b,
             kernels::Isa isa)
      : node_(node), attrs_(std::move(attrs)), const_w_(w), const_b_(b), isa_(isa) {}

  bool SupportsFusedActivation() const override { return true; }
  void SetFusedActivation(kernels::Activation act) override { fused_act_ = act; }

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs X and W");
    const auto& x = *ctx.in[0];
    const auto& w = *ctx.in[1];
    if (x.dtype != DataType::kFloat || w.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 Conv is supported (got ",
                         DataTypeName(x.dtype), ")");
    if (x.dims.size() != w.dims.size() || x.dims.size() < 3)
      return InvalidArgument(node_.Describe(), ": X ", Dims(x.dims), " and W ", Dims(w.dims),
                             " must have the same rank >= 3");
    if (x.dims.size() > 4)
      return Unsupported(node_.Describe(), ": only 1-D and 2-D convolutions are supported (input ",
                         Dims(x.dims), ")");
    int64_t c = x.dims[1], m = w.dims[0];
    if (c != w.dims[1] * attrs_.group || m % attrs_.group != 0)
      return InvalidArgument(node_.Describe(), ": W ", Dims(w.dims), " does not match ", c,
                             " input channels in ", attrs_.group, " groups");
    if (ctx.has(2) && (ctx.in[2]->dims.size() != 1 || ctx.in[2]->dims[0] != m))
      return InvalidArgument(node_.Describe(), ": bias must be [", m, "]");
    std::vector<int64_t> in_sp(x.dims.begin() + 2, x.dims.end());
    std::vector<int64_t> k_sp(w.dims.begin() + 2, w.dims.end());
    if (!attrs_.kernel_shape.empty() && attrs_.kernel_shape != k_sp)
      return InvalidArgument(node_.Describe(), ": kernel_shape ", Dims(attrs_.kernel_shape),
                             " differs from W ", Dims(w.dims));
    ONNXQ_ASSIGN_OR_RETURN(auto geom, ResolveConvGeometry(attrs_, in_sp, k_sp, node_));
    std::vector<int64_t> out = {x.dims[0], m};
    for (const auto& g : geom) out.push_back(g.out);
    ctx.out[0] = {DataType::kFloat, out, nullptr};
    if (const_w_ != nullptr && (!ctx.has(2) || const_b_ != nullptr)) {
      // Pre-pack now (plan time) so runs never pack constant weights.
      kernels::Conv2DShape s = MakeShape(x.dims, w.dims, geom);
      const bool fused = ctx.fused && fused_act_.has_value();
      if (Find(s, fused) == nullptr) {
        ONNXQ_ASSIGN_OR_RETURN(
            auto conv, kernels::Conv2D::Create(s, const_w_->data<float>(),
                                               const_b_ ? const_b_->data<float>() : nullptr,
                                               fused ? *fused_act_ : kernels::Activation{}, isa_));
        std::lock_guard<std::mutex> lock(mu_);
        packed_.push_back({s, fused, std::move(conv)});
      }
    }
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef &x = ctx.in[0], &w = ctx.in[1], &y = ctx.out[0];
    std::vector<int64_t> in_sp(x.dims.begin() + 2, x.dims.end());
    std::vector<int64_t> k_sp(w.dims.begin() + 2, w.dims.end());
    ONNXQ_ASSIGN_OR_RETURN(auto geom, ResolveConvGeometry(attrs_, in_sp, k_sp, node_));
    kernels::Conv2DShape s = MakeShape(x.dims, w.dims, geom);
    bool fused = ctx.fused && fused_act_.has_value();
    if (const kernels::Conv2D* conv = Find(s, fused)) {
      conv->Run(x.ptr<float>(), y.ptr<float>(), s.batch, s.in_h, s.in_w, ctx.pool);
      return Status::Ok();
    }
    // Weights computed during the run (or fed): pack for this call only.
    const float* bias = ctx.in.size() > 2 && ctx.in[2].present() ? ctx.in[2].ptr<float>() : nullptr;
    ONNXQ_ASSIGN_OR_RETURN(auto conv,
                           kernels::Conv2D::Create(s, w.ptr<float>(), bias,
                                                   fused ? *fused_act_ : kernels::Activation{},
                                                   ctx.isa));
    conv->Run(x.ptr<float>(), y.ptr<float>(), s.batch, s.in_h, s.in_w, ctx.pool);
    return Status::Ok();
  }

 private:
  struct Packed {
    kernels::Conv2DShape shape;
    bool fused;
    std::unique_ptr<kernels::Conv2D> conv;
  };

  kernels::Conv2DShape MakeShape(const std::vector<int64_t>& xd, const std::vector<int64_t>& wd,
                                 const std::vector<AxisGeom>& g) const {
    kernels::Conv2DShape s;
    s.batch = xd[0];
    s.in_channels = xd[1];
    s.out_channels = wd[0];
    s.group = attrs_.group;
    const AxisGeom one;
    const AxisGeom& gh = g.size() == 2 ? g[0] : one;
    const AxisGeom& gw = g.back();
    s.in_h = gh.in;
    s.in_w = gw.in;
    s.kernel_h = gh.k;
    s.kernel_w = gw.k;
    s.stride_h = gh.stride;
    s.stride_w = gw.stride;
    s.dilation_h = gh.dilation;
    s.dilation_w = gw.dilation;
    s.pad_top = gh.pad_begin;
    s.pad_bottom = gh.pad_end;
    s.pad_left = gw.pad_begin;
    s.pad_right = gw.pad_end;
    return s;
  }

  // Packed kernels are keyed by everything but batch and spatial input size, which Run takes.
  const kernels::Conv2D* Find(const kernels::Conv2DShape& s, bool fused) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& p : packed_) {
      const auto& q = p.shape;
      if (p.fused == fused && q.in_channels == s.in_channels && q.out_channels == s.out_channels &&
          q.kernel_h == s.kernel_h && q.kernel_w == s.kernel_w && q.stride_h == s.stride_h &&
          q.stride_w == s.stride_w && q.dilation_h == s.dilation_h &&
          q.dilation_w == s.dilation_w && q.pad_top == s.pad_top && q.pad_left == s.pad_left &&
          q.pad_bottom == s.pad_bottom && q.pad_right == s.pad_right && q.group == s.group)
        return p.conv.get();
    }
    return nullptr;
  }

  const Node& node_;
  WindowAttrs attrs_;
  const Tensor* const_w_;
  const Tensor* const_b_;
  kernels::Isa isa_;
  std::optional<kernels::Activation> fused_act_;
  mutable std::mutex mu_;
  std::vector<Packed> packed_;
};

// ---------------------------------------------------------------- ConvTranspose

class ConvTransposeKernel : public OpKernel {
 public:
  ConvTransposeKernel(const Node& node, WindowAttrs attrs, std::vector<int64_t> output_padding,
                      std::vector<int64_t> output_shape)
      : node_(node),
        attrs_(std::move(attrs)),
        output_padding_(std::move(output_padding)),
        output_shape_(std::move(output_shape)) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs X and W");
    const auto& x = *ctx.in[0];
    const auto& w = *ctx.in[1];
    if (x.dtype != DataType::kFloat || w.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 ConvTranspose is supported");
    if (x.dims.size() != w.dims.size() || x.dims.size() < 3 || x.dims.size() > 5)
      return InvalidArgument(node_.Describe(), ": X ", Dims(x.dims), " and W ", Dims(w.dims),
                             " must have the same rank, 3 to 5");
    if (w.dims[0] != x.dims[1])
      return InvalidArgument(node_.Describe(), ": W ", Dims(w.dims), " does not match ",
                             x.dims[1], " input channels");
    int64_t m = w.dims[1] * attrs_.group;
    if (ctx.has(2) && (ctx.in[2]->dims.size() != 1 || ctx.in[2]->dims[0] != m))
      return InvalidArgument(node_.Describe(), ": bias must be [", m, "]");
    ONNXQ_ASSIGN_OR_RETURN(auto geom, Geometry(x.dims, w.dims));
    std::vector<int64_t> out = {x.dims[0], m};
    for (const auto& g : geom) out.push_back(g.out);
    ctx.out[0] = {DataType::kFloat, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef &x = ctx.in[0], &w = ctx.in[1], &y = ctx.out[0];
    ONNXQ_ASSIGN_OR_RETURN(auto geom, Geometry(x.dims, w.dims));
    // Pad to three spatial axes so one loop nest covers 1-D to 3-D.
    while (geom.size() < 3) geom.insert(geom.begin(), AxisGeom{});
    const int64_t n = x.dims[0], c = x.dims[1], g = attrs_.group, cg = c / g;
    const int64_t mg = w.dims[1], m = mg * g;
    const int64_t in_sz = geom[0].in * geom[1].in * geom[2].in;
    const int64_t out_sz = geom[0].out * geom[1].out * geom[2].out;
    const int64_t k_sz = geom[0].k * geom[1].k * geom[2].k;
    const float* xp = x.ptr<float>();
    const float* wp = w.ptr<float>();
    const float* bp = ctx.in.size() > 2 && ctx.in[2].present() ? ctx.in[2].ptr<float>() : nullptr;
    float* yp = y.ptr<float>();
    // Each task owns one output channel plane, so there are no write races and the summation
    // order is fixed.
    ParallelFor(ctx.pool, n * m, 1, [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; ++t) {
        const int64_t b = t / m, oc = t % m, grp = oc / mg, ocg = oc % mg;
        float* yo = yp + t * out_sz;
        std::fill(yo, yo + out_sz, bp ? bp[oc] : 0.f);
        for (int64_t icg = 0; icg < cg; ++icg) {
          const int64_t ic = grp * cg + icg;
          const float* xi = xp + (b * c + ic) * in_sz;
          const float* wk = wp + (ic * mg + ocg) * k_sz;
          for (int64_t id = 0; id < geom[0].in; ++id)
            for (int64_t ih = 0; ih < geom[1].in; ++ih)
              for (int64_t iw = 0; iw < geom[2].in; ++iw) {
                const float v = xi[(id * geom[1].in + ih) * geom[2].in + iw];
                for (int64_t kd = 0; kd < geom[0].k; ++kd) {
                  int64_t od = id * geom[0].stride - geom[0].pad_begin + kd * geom[0].dilation;
                  if (od < 0 || od >= geom[0].out) continue;
                  for (int64_t kh = 0; kh < geom[1].k; ++kh) {
                    int64_t oh = ih * geom[1].stride - geom[1].pad_begin + kh * geom[1].dilation;
                    if (oh < 0 || oh >= geom[1].out) continue;
                    for (int64_t kw = 0; kw < geom[2].k; ++kw) {
                      int64_t ow = iw * geom[2].stride - geom[2].pad_begin + kw * geom[2].dilation;
                      if (ow < 0 || ow >= geom[2].out) continue;
                      yo[(od * geom[1].out + oh) * geom[2].out + ow] +=
                          v * wk[(kd * geom[1].k + kh) * geom[2].k + kw];
                    }
                  }
                }
              }
        }
      }
    });
    return Status::Ok();
  }

 private:
  StatusOr<std::vector<AxisGeom>> Geometry(const std::vector<int64_t>& xd,
                                           const std::vector<int64_t>& wd) const {
    size_t r = xd.size() - 2;
    auto sized = [&](const std::vector<int64_t>& v, size_t want, const char* what) -> Status {
      if (!v.empty() && v.size() != want)
        return InvalidArgument(node_.Describe(), ": ", what, " has ", v.size(),
                               " entries, expected ", want);
      return Status::Ok();
    };
    ONNXQ_RETURN_IF_ERROR(sized(attrs_.strides, r, "strides"));
    ONNXQ_RETURN_IF_ERROR(sized(attrs_.dilations, r, "dilations"));
    ONNXQ_RETURN_IF_ERROR(sized(attrs_.pads, 2 * r, "pads"));
    ONNXQ_RETURN_IF_ERROR(sized(output_padding_, r, "output_padding"));
    if (!output_shape_.empty() && output_shape_.size() != r && output_shape_.size() != r + 2)
      return InvalidArgument(node_.Describe(), ": output_shape has ", output_shape_.size(),
                             " entries");
    std::vector<AxisGeom> g(r);
    for (size_t i = 0; i < r; ++i) {
      AxisGeom& a = g[i];
      a.in = xd[i + 2];
      a.k = wd[i + 2];
      if (!attrs_.kernel_shape.empty() && attrs_.kernel_shape.size() == r &&
          attrs_.kernel_shape[i] != a.k)
        return InvalidArgument(node_.Describe(), ": kernel_shape differs from W");
      a.stride = attrs_.strides.empty() ? 1 : attrs_.strides[i];
      a.dilation = attrs_.dilations.empty() ? 1 : attrs_.dilations[i];
      int64_t opad = output_padding_.empty() ? 0 : output_padding_[i];
      int64_t eff = (a.k - 1) * a.dilation + 1;
      int64_t full = a.stride * (a.in - 1) + opad + eff;
      int64_t target = -1;
      if (!output_shape_.empty()) {
        target = output_shape_[output_shape_.size() - r + i];
      } else if (attrs_.auto_pad == AutoPad::kSameUpper || attrs_.auto_pad == AutoPad::kSameLower) {
        target = a.in * a.stride;
      }
      if (target >= 0) {
        // Negative when output_shape asks for more than the full output: the extra positions
        // get only the bias.
        int64_t total = full - target;
        // SAME_LOWER puts the odd padding at the start, SAME_UPPER and NOTSET at the end (as the
        // ONNX backend data expects).
        if (attrs_.auto_pad == AutoPad::kSameLower) {
          a.pad_begin = total - total / 2;
        } else {
          a.pad_begin = total / 2;
        }
        a.pad_end = total - a.pad_begin;
      } else if (attrs_.auto_pad == AutoPad::kNotSet && !attrs_.pads.empty()) {
        a.pad_begin = attrs_.pads[i];
        a.pad_end = attrs_.pads[i + r];
      }
      a.out = full - a.pad_begin - a.pad_end;
      if (a.out <= 0) return InvalidArgument(node_.Describe(), ": output size ", a.out, " <= 0");
    }
    return g;
  }

  const Node& node_;
  WindowAttrs attrs_;
  std::vector<int64_t> output_padding_, output_shape_;
};

// ---------------------------------------------------------------- Gemm

class GemmKernel : public OpKernel {
 public:
  GemmKernel(const Node& node, bool ta, bool tb, float alpha, float beta, const Tensor* const_b,
             kernels::Isa isa)
      : node_(node), ta_(ta), tb_(tb), alpha_(alpha), beta_(beta), const_b_(const_b), isa_(isa) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs A and B");
    const auto& a = *ctx.in[0];
    const auto& b = *ctx.in[1];
    if (a.dtype != DataType::kFloat || b.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 Gemm is supported");
    if (a.dims.size() != 2 || b.dims.size() != 2)
      return InvalidArgument(node_.Describe(), ": A ", Dims(a.dims), " and B ", Dims(b.dims),
                             " must be 2-D");
    int64_t m = ta_ ? a.dims[1] : a.dims[0], k = ta_ ? a.dims[0] : a.dims[1];
    int64_t kb = tb_ ? b.dims[1] : b.dims[0], n = tb_ ? b.dims[0] : b.dims[1];
    if (k != kb)
      return InvalidArgument(node_.Describe(), ": inner dimensions differ (", k, " vs ", kb, ")");
    if (ctx.has(2)) {
      if (ctx.in[2]->dtype != DataType::kFloat)
        return InvalidArgument(node_.Describe(), ": C must be float32");
      ONNXQ_ASSIGN_OR_RETURN(auto bc, BroadcastShapes(ctx.in[2]->dims, {m, n}, node_));
      if (bc != std::vector<int64_t>{m, n})
        return InvalidArgument(node_.Describe(), ": C ", Dims(ctx.in[2]->dims),
                               " does not broadcast to [", m, ",", n, "]");
    }
    ctx.out[0] = {DataType::kFloat, {m, n}, nullptr};
    if (const_b_ != nullptr && !packed_) {
      ONNXQ_ASSIGN_OR_RETURN(packed_, kernels::PackedGemmB::Create(tb_, k, n,
                                                                   const_b_->data<float>(),
                                                                   b.dims[1], isa_));
    }
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef &a = ctx.in[0], &b = ctx.in[1], &y = ctx.out[0];
    const int64_t m = y.dims[0], n = y.dims[1], k = ta_ ? a.dims[0] : a.dims[1];
    float* yp = y.ptr<float>();
    float beta = 0.f;
    if (ctx.in.size() > 2 && ctx.in[2].present() && beta_ != 0.f) {
      // Y = beta * broadcast(C), then the product accumulates into it.
      const TensorRef& c = ctx.in[2];
      std::vector<int64_t> cd = c.dims;
      while (cd.size() < 2) cd.insert(cd.begin(), 1);
      const float* cp = c.ptr<float>();
      const int64_t rs = cd[0] == 1 ? 0 : cd[1], cs = cd[1] == 1 ? 0 : 1;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) yp[i * n + j] = beta_ * cp[i * rs + j * cs];
      beta = 1.f;
    }
    if (packed_) {
      packed_->Run(ta_, m, alpha_, a.ptr<float>(), a.dims[1], beta, yp, n, ctx.pool);
    } else {
      if (beta == 0.f) std::memset(yp, 0, y.nbytes());
      kernels::Sgemm(ta_, tb_, m, n, k, alpha_, a.ptr<float>(), a.dims[1], b.ptr<float>(),
                     b.dims[1], beta, yp, n, ctx.pool, ctx.isa);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool ta_, tb_;
  float alpha_, beta_;
  const Tensor* const_b_;
  kernels::Isa isa_;
  std::unique_ptr<kernels::PackedGemmB> packed_;
};

// ---------------------------------------------------------------- MatMul

class MatMulKernel : public OpKernel {
 public:
  MatMulKernel(const Node& node, const Tensor* const_b, kernels::Isa isa)
      : node_(node), const_b_(const_b), isa_(isa) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs A and B");
    const auto& a = *ctx.in[0];
    const auto& b = *ctx.in[1];
    if (a.dtype != DataType::kFloat || b.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 MatMul is supported");
    if (a.dims.empty() || b.dims.empty())
      return InvalidArgument(node_.Describe(), ": MatMul inputs must have rank >= 1");
    std::vector<int64_t> ad = a.dims, bd = b.dims;
    if (ad.size() == 1) ad.insert(ad.begin(), 1);
    if (bd.size() == 1) bd.push_back(1);
    if (ad.back() != bd[bd.size() - 2])
      return InvalidArgument(node_.Describe(), ": inner dimensions differ: A ", Dims(a.dims),
                             ", B ", Dims(b.dims));
    ONNXQ_ASSIGN_OR_RETURN(
        auto batch, BroadcastShapes(std::vector<int64_t>(ad.begin(), ad.end() - 2),
                                    std::vector<int64_t>(bd.begin(), bd.end() - 2), node_));
    std::vector<int64_t> out = batch;
    if (a.dims.size() > 1) out.push_back(ad[ad.size() - 2]);
    if (b.dims.size() > 1) out.push_back(bd.back());
    ctx.out[0] = {DataType::kFloat, out, nullptr};
    if (const_b_ != nullptr && b.dims.size() == 2 && !packed_) {
      ONNXQ_ASSIGN_OR_RETURN(packed_, kernels::PackedGemmB::Create(false, b.dims[0], b.dims[1],
                                                                   const_b_->data<float>(),
                                                                   b.dims[1], isa_));
    }
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef &a = ctx.in[0], &b = ctx.in[1], &y = ctx.out[0];
    std::vector<int64_t> ad = a.dims, bd = b.dims;
    if (ad.size() == 1) ad.insert(ad.begin(), 1);
    if (bd.size() == 1) bd.push_back(1);
    const int64_t m = ad[ad.size() - 2], k = ad.back(), n = bd.back();
    const float* ap = a.ptr<float>();
    const float* bp = b.ptr<float>();
    float* yp = y.ptr<float>();
    if (bd.size() == 2) {
      // B shared by every batch: one GEMM over all rows of A.
      const int64_t rows = NumElements(ad) / k;
      if (packed_) {
        packed_->Run(false, rows, 1.f, ap, k, 0.f, yp, n, ctx.pool);
      } else {
        std::memset(yp, 0, y.nbytes());
        kernels::Sgemm(false, false, rows, n, k, 1.f, ap, k, bp, n, 0.f, yp, n, ctx.pool,
                       ctx.isa);
      }
      return Status::Ok();
    }
    std::vector<int64_t> ab(ad.begin(), ad.end() - 2), bb(bd.begin(), bd.end() - 2);
    ONNXQ_ASSIGN_OR_RETURN(auto batch, BroadcastShapes(ab, bb, node_));
    const size_t r = batch.size();
    while (ab.size() < r) ab.insert(ab.begin(), 1);
    while (bb.size() < r) bb.insert(bb.begin(), 1);
    const int64_t nb = NumElements(batch);
    std::memset(yp, 0, y.nbytes());
    for (int64_t t = 0; t < nb; ++t) {
      int64_t rem = t, ia = 0, ib = 0, sa = 1, sb = 1;
      for (size_t d = r; d-- > 0;) {
        int64_t idx = rem % batch[d];
        rem /= batch[d];
        ia += (ab[d] == 1 ? 0 : idx) * sa;
        ib += (bb[d] == 1 ? 0 : idx) * sb;
        sa *= ab[d];
        sb *= bb[d];
      }
      kernels::Sgemm(false, false, m, n, k, 1.f, ap + ia * m * k, k, bp + ib * k * n, n, 0.f,
                     yp + t * m * n, n, ctx.pool, ctx.isa);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  const Tensor* const_b_;
  kernels::Isa isa_;
  std::unique_ptr<kernels::PackedGemmB> packed_;
};

// ---------------------------------------------------------------- BatchNormalization

class BatchNormKernel : public OpKernel {
 public:
  BatchNormKernel(const Node& node, float eps) : node_(node), eps_(eps) {}
  Status Infer(InferContext& ctx) override {
    for (size_t i = 0; i < 5; ++i)
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": needs 5 inputs");
    const auto& x = *ctx.in[0];
    if (x.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 BatchNormalization is supported");
    if (x.dims.size() < 2) return InvalidArgument(node_.Describe(), ": X must have rank >= 2");
    for (size_t i = 1; i < 5; ++i) {
      if (ctx.in[i]->dtype != DataType::kFloat)
        return Unsupported(node_.Describe(), ": parameters must be float32");
      if (ctx.in[i]->dims != std::vector<int64_t>{x.dims[1]})
        return InvalidArgument(node_.Describe(), ": parameter ", i, " must be [", x.dims[1], "]");
    }
    ctx.out[0] = {DataType::kFloat, x.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const TensorRef& x = ctx.in[0];
    const int64_t n = x.dims[0], c = x.dims[1], inner = x.numel / std::max<int64_t>(n * c, 1);
    std::vector<float> mul(c), add(c);
    const float *s = ctx.in[1].ptr<float>(), *b = ctx.in[2].ptr<float>();
    const float *mean = ctx.in[3].ptr<float>(), *var = ctx.in[4].ptr<float>();
    for (int64_t i = 0; i < c; ++i) {
      mul[i] = s[i] / std::sqrt(var[i] + eps_);
      add[i] = b[i] - mean[i] * mul[i];
    }
    const float* xp = x.ptr<float>();
    float* yp = ctx.out[0].ptr<float>();
    ParallelFor(ctx.pool, n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
                [&](int64_t s0, int64_t e0) {
                  for (int64_t p = s0; p < e0; ++p) {
                    const float mu = mul[p % c], ad = add[p % c];
                    const float* xi = xp + p * inner;
                    float* yi = yp + p * inner;
                    for (int64_t j = 0; j < inner; ++j) yi[j] = xi[j] * mu + ad;
                  }
                });
    return Status::Ok();
  }

 private:
  const Node& node_;
  float eps_;
};

// ---------------------------------------------------------------- Layer / instance normalization

// Statistics in double, normalisation in float (stash_type 1, as ONNX Runtime computes it).
class LayerNormKernel : public OpKernel {
 public:
  LayerNormKernel(const Node& node, int64_t axis, float eps) : node_(node), axis_(axis), eps_(eps) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs X and Scale");
    const auto& x = *ctx.in[0];
    if (x.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 LayerNormalization is supported");
    ONNXQ_ASSIGN_OR_RETURN(axis_n_, NormalizeAxis(axis_, static_cast<int64_t>(x.dims.size()), node_));
    const std::vector<int64_t> norm(x.dims.begin() + axis_n_, x.dims.end());
    for (size_t i = 1; i < 3; ++i) {
      if (!ctx.has(i)) continue;
      if (ctx.in[i]->dtype != DataType::kFloat)
        return Unsupported(node_.Describe(), ": Scale and B must be float32");
      ONNXQ_ASSIGN_OR_RETURN(auto b, BroadcastShapes(norm, ctx.in[i]->dims, node_));
      if (b != norm)
        return InvalidArgument(node_.Describe(), ": ", i == 1 ? "Scale " : "B ", Dims(ctx.in[i]->dims),
                               " does not broadcast to the normalized shape ", Dims(norm));
    }
    ctx.out[0] = {DataType::kFloat, x.dims, nullptr};
    std::vector<int64_t> stat = x.dims;
    for (size_t i = static_cast<size_t>(axis_n_); i < stat.size(); ++i) stat[i] = 1;
    for (size_t o = 1; o < ctx.out.size(); ++o) ctx.out[o] = {DataType::kFloat, stat, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto& d = ctx.in[0].dims;
    int64_t rows = 1, len = 1;
    for (int64_t i = 0; i < static_cast<int64_t>(d.size()); ++i) (i < axis_n_ ? rows : len) *= d[static_cast<size_t>(i)];
    const std::vector<int64_t> norm(d.begin() + axis_n_, d.end());
    // Scale / B expanded to the full normalized shape once per run (usually they already are).
    std::vector<float> scale = Expanded(ctx.in[1], norm, len);
    std::vector<float> bias = ctx.in.size() > 2 && ctx.in[2].present() ? Expanded(ctx.in[2], norm, len)
                                                                         : std::vector<float>(static_cast<size_t>(len), 0.f);
    const float* x = ctx.in[0].ptr<float>();
    float* y = ctx.out[0].ptr<float>();
    float* mean_out = ctx.out.size() > 1 && ctx.out[1].present() ? ctx.out[1].ptr<float>() : nullptr;
    float* inv_out = ctx.out.size() > 2 && ctx.out[2].present() ? ctx.out[2].ptr<float>() : nullptr;
    ParallelFor(ctx.pool, rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(len, 1)),
                [&](int64_t s, int64_t e) {
                  for (int64_t r = s; r < e; ++r) {
                    const float* xr = x + r * len;
                    double sum = 0, sq = 0;
                    for (int64_t j = 0; j < len; ++j) sum += xr[j];
                    const double mean = sum / static_cast<double>(len);
                    for (int64_t j = 0; j < len; ++j) sq += (xr[j] - mean) * (xr[j] - mean);
                    const float m = static_cast<float>(mean);
                    const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(len) + eps_));
                    float* yr = y + r * len;
                    for (int64_t j = 0; j < len; ++j) yr[j] = (xr[j] - m) * inv * scale[j] + bias[j];
                    if (mean_out) mean_out[r] = m;
                    if (inv_out) inv_out[r] = inv;
                  }
                });
    return Status::Ok();
  }

 private:
  // Scale or B broadcast (unidirectionally) to the normalized shape.
  static std::vector<float> Expanded(const TensorRef& t, const std::vector<int64_t>& norm, int64_t len) {
    std::vector<float> out(static_cast<size_t>(len));
    const size_t r = norm.size();
    std::vector<int64_t> st(r, 0);
    int64_t k = 1;
    for (size_t i = t.dims.size(); i-- > 0;) {
      st[r - t.dims.size() + i] = t.dims[i] == 1 ? 0 : k;
      k *= t.dims[i];
    }
    for (int64_t j = 0; j < len; ++j) {
      int64_t rem = j, off = 0;
      for (size_t a = r; a-- > 0;) {
        off += (rem % norm[a]) * st[a];
        rem /= norm[a];
      }
      out[static_cast<size_t>(j)] = t.ptr<float>()[off];
    }
    return out;
  }
  const Node& node_;
  int64_t axis_;
  float eps_;
  int64_t axis_n_ = 0;
};

class InstanceNormKernel : public OpKernel {
 public:
  InstanceNormKernel(const Node& node, float eps) : node_(node), eps_(eps) {}
  Status Infer(InferContext& ctx) override {
    for (size_t i = 0; i < 3; ++i)
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": needs input, scale and B");
    const auto& x = *ctx.in[0];
    if (x.dtype != DataType::kFloat)
      return Unsupported(node_.Describe(), ": only float32 InstanceNormalization is supported");
    if (x.dims.size() < 3) return InvalidArgument(node_.Describe(), ": input must have rank >= 3");
    for (size_t i = 1; i < 3; ++i)
      if (ctx.in[i]->dtype != DataType::kFloat || ctx.in[i]->dims != std::vector<int64_t>{x.dims[1]})
        return InvalidArgument(node_.Describe(), ": ", i == 1 ? "scale" : "B", " must be float32 [",
                               x.dims[1], "]");
    ctx.out[0] = {DataType::kFloat, x.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto& d = ctx.in[0].dims;
    const int64_t c = d[1], planes = d[0] * c, len = planes > 0 ? ctx.in[0].numel / planes : 0;
    const float *x = ctx.in[0].ptr<float>(), *sc = ctx.in[1].ptr<float>(), *b = ctx.in[2].ptr<float>();
    float* y = ctx.out[0].ptr<float>();
    ParallelFor(ctx.pool, planes, 1, [&](int64_t s, int64_t e) {
      for (int64_t p = s; p < e; ++p) {
        const float* xp = x + p * len;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < len; ++j) sum += xp[j];
        const double mean = sum / static_cast<double>(len);
        for (int64_t j = 0; j < len; ++j) sq += (xp[j] - mean) * (xp[j] - mean);
        const float mul = static_cast<float>(sc[p % c] / std::sqrt(sq / static_cast<double>(len) + eps_));
        const float add = static_cast<float>(b[p % c] - mean * mul);
        float* yp = y + p * len;
        for (int64_t j = 0; j < len; ++j) yp[j] = xp[j] * mul + add;
      }
    });
    return Status::Ok();
  }

 private:
  const Node& node_;
  float eps_;
};

const Tensor* ConstInput(const OpInfo& info, size_t i) {
  ValueId v = info.node->input(i);
  if (v == kNoValue) return nullptr;
  return info.graph->value(v).initializer();
}

}  // namespace

void RegisterNnOps(std::vector<OpRegistration>& r) {
  r.push_back({"LayerNormalization", 17, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, info.node->attrs.GetInt("axis", -1));
                 ONNXQ_ASSIGN_OR_RETURN(float eps, info.node->attrs.GetFloat("epsilon", 1e-5f));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t stash, info.node->attrs.GetInt("stash_type", 1));
                 if (stash != 1)
                   return Unsupported(info.node->Describe(), ": stash_type ", stash,
                                      " (only 1, float32 statistics)");
                 return MakeKernel<LayerNormKernel>(*info.node, axis, eps);
               },
               "float32; Scale/B broadcast to the normalized shape; Mean and InvStdDev outputs"});
  r.push_back({"InstanceNormalization", 6, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(float eps, info.node->attrs.GetFloat("epsilon", 1e-5f));
                 return MakeKernel<InstanceNormKernel>(*info.node, eps);
               },
               "float32"});
  r.push_back({"Conv", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseWindowAttrs(*info.node));
                 return MakeKernel<ConvKernel>(*info.node, std::move(attrs), ConstInput(info, 1),
                                               ConstInput(info, 2), info.isa);
               },
               "float32, 1-D and 2-D (grouped, depthwise, dilated, any pads, auto_pad); weights "
               "from initializers are packed once"});
  r.push_back({"ConvTranspose", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParseWindowAttrs(*info.node));
                 ONNXQ_ASSIGN_OR_RETURN(auto opad, info.node->attrs.GetInts("output_padding", {}));
                 ONNXQ_ASSIGN_OR_RETURN(auto oshape, info.node->attrs.GetInts("output_shape", {}));
                 return MakeKernel<ConvTransposeKernel>(*info.node, std::move(attrs),
                                                        std::move(opad), std::move(oshape));
               },
               "float32, 1-D to 3-D, direct loops (not on the SIMD kernels)"});
  r.push_back({"Gemm", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t ta, at.GetInt("transA", 0));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t tb, at.GetInt("transB", 0));
                 ONNXQ_ASSIGN_OR_RETURN(float alpha, at.GetFloat("alpha", 1.f));
                 ONNXQ_ASSIGN_OR_RETURN(float beta, at.GetFloat("beta", 1.f));
                 return MakeKernel<GemmKernel>(*info.node, ta != 0, tb != 0, alpha, beta,
                                               ConstInput(info, 1), info.isa);
               },
               "float32; constant B is packed once"});
  r.push_back({"MatMul", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 return MakeKernel<MatMulKernel>(*info.node, ConstInput(info, 1), info.isa);
               },
               "float32, numpy batch broadcasting; constant 2-D B is packed once"});
  r.push_back({"BatchNormalization", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t training, at.GetInt("training_mode", 0));
                 if (training != 0 || info.node->num_outputs() > 1)
                   return Unsupported(info.node->Describe(),
                                      ": BatchNormalization in training mode is not supported "
                                      "(inference only)");
                 ONNXQ_ASSIGN_OR_RETURN(int64_t spatial, at.GetInt("spatial", 1));
                 if (spatial != 1)
                   return Unsupported(info.node->Describe(), ": spatial=0 is not supported");
                 ONNXQ_ASSIGN_OR_RETURN(float eps, at.GetFloat("epsilon", 1e-5f));
                 return MakeKernel<BatchNormKernel>(*info.node, eps);
               },
               "inference only, float32"});
}

}  // namespace onnxq::runtime
