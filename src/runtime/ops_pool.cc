// Pooling and reductions: MaxPool, AveragePool, GlobalAveragePool, Softmax, ReduceMean. Every
// output element is computed by one thread in a fixed order, so results do not depend on the
// thread count.
#include <algorithm>
#include <initializer_list>
#include <cmath>
#include <limits>
#include <optional>

#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

struct PoolAttrs {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> kernel_shape, strides, dilations, pads;
  bool ceil_mode = false;
  bool count_include_pad = false;
  int64_t storage_order = 0;
};

struct PoolAxis {
  int64_t in = 1, k = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0, out = 1;
};

StatusOr<std::vector<PoolAxis>> PoolGeometry(const PoolAttrs& a,
                                             const std::vector<int64_t>& in_sp, const Node& node) {
  size_t r = in_sp.size();
  if (a.kernel_shape.size() != r)
    return InvalidArgument(node.Describe(), ": kernel_shape has ", a.kernel_shape.size(),
                           " entries for ", r, " spatial axes");
  if ((!a.strides.empty() && a.strides.size() != r) ||
      (!a.dilations.empty() && a.dilations.size() != r) ||
      (!a.pads.empty() && a.pads.size() != 2 * r))
    return InvalidArgument(node.Describe(), ": strides/dilations/pads do not match ", r,
                           " spatial axes");
  std::vector<PoolAxis> g(r);
  for (size_t i = 0; i < r; ++i) {
    PoolAxis& x = g[i];
    x.in = in_sp[i];
    x.k = a.kernel_shape[i];
    x.stride = a.strides.empty() ? 1 : a.strides[i];
    x.dilation = a.dilations.empty() ? 1 : a.dilations[i];
    if (x.k < 1 || x.stride < 1 || x.dilation < 1)
      return InvalidArgument(node.Describe(), ": kernel, strides and dilations must be >= 1");
    const int64_t eff = (x.k - 1) * x.dilation + 1;
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      x.out = (x.in + x.stride - 1) / x.stride;
      int64_t total = std::max<int64_t>(0, (x.out - 1) * x.stride + eff - x.in);
      x.pad_begin = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      x.pad_end = total - x.pad_begin;
      continue;
    }
    if (a.auto_pad == "NOTSET" && !a.pads.empty()) {
      x.pad_begin = a.pads[i];
      x.pad_end = a.pads[i + r];
    }
    int64_t span = x.in + x.pad_begin + x.pad_end - eff;
    if (span < 0)
      return InvalidArgument(node.Describe(), ": window ", eff, " exceeds the padded input");
    x.out = (a.ceil_mode ? (span + x.stride - 1) / x.stride : span / x.stride) + 1;
    // A last window that would start past the input and its begin padding is dropped (as in
    // ONNX Runtime and PyTorch).
    if (a.ceil_mode && (x.out - 1) * x.stride >= x.in + x.pad_begin) --x.out;
  }
  return g;
}

StatusOr<PoolAttrs> ParsePoolAttrs(const Node& node) {
  PoolAttrs a;
  ONNXQ_ASSIGN_OR_RETURN(a.auto_pad, node.attrs.GetString("auto_pad", "NOTSET"));
  if (a.auto_pad.empty()) a.auto_pad = "NOTSET";
  if (a.auto_pad != "NOTSET" && a.auto_pad != "VALID" && a.auto_pad != "SAME_UPPER" &&
      a.auto_pad != "SAME_LOWER")
    return InvalidArgument(node.Describe(), ": unknown auto_pad '", a.auto_pad, "'");
  ONNXQ_ASSIGN_OR_RETURN(a.kernel_shape, node.attrs.GetInts("kernel_shape"));
  ONNXQ_ASSIGN_OR_RETURN(a.strides, node.attrs.GetInts("strides", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.dilations, node.attrs.GetInts("dilations", {}));
  ONNXQ_ASSIGN_OR_RETURN(a.pads, node.attrs.GetInts("pads", {}));
  ONNXQ_ASSIGN_OR_RETURN(int64_t ceil, node.attrs.GetInt("ceil_mode", 0));
  ONNXQ_ASSIGN_OR_RETURN(int64_t cip, node.attrs.GetInt("count_include_pad", 0));
  ONNXQ_ASSIGN_OR_RETURN(a.storage_order, node.attrs.GetInt("storage_order", 0));
  a.ceil_mode = ceil != 0;
  a.count_include_pad = cip != 0;
  for (int64_t p : a.pads)
    if (p < 0) return InvalidArgument(node.Describe(), ": pads must be >= 0");
  return a;
}

class PoolKernel : public OpKernel {
 public:
  PoolKernel(const Node& node, PoolAttrs attrs, bool is_max)
      : node_(node), attrs_(std::move(attrs)), is_max_(is_max) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    if (x.dims.size() < 3 || x.dims.size() > 5)
      return Unsupported(node_.Describe(), ": input ", Dims(x.dims),
                         " must have 1 to 3 spatial axes");
    if (is_max_) {
      ONNXQ_DISPATCH_NUMERIC(x.dtype, node_, T, (void)0);
    } else {
      ONNXQ_DISPATCH_FLOAT(x.dtype, node_, T, (void)0);
    }
    std::vector<int64_t> in_sp(x.dims.begin() + 2, x.dims.end());
    ONNXQ_ASSIGN_OR_RETURN(auto g, PoolGeometry(attrs_, in_sp, node_));
    std::vector<int64_t> out = {x.dims[0], x.dims[1]};
    for (const auto& a : g) out.push_back(a.out);
    ctx.out[0] = {x.dtype, out, nullptr};
    if (ctx.out.size() > 1) {
      if (!is_max_) return InvalidArgument(node_.Describe(), ": AveragePool has one output");
      if (attrs_.storage_order != 0 && in_sp.size() != 2)
        return Unsupported(node_.Describe(), ": storage_order=1 is supported for 2-D only");
      ctx.out[1] = {DataType::kInt64, out, nullptr};
    }
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    std::vector<int64_t> in_sp(ctx.in[0].dims.begin() + 2, ctx.in[0].dims.end());
    ONNXQ_ASSIGN_OR_RETURN(auto g, PoolGeometry(attrs_, in_sp, node_));
    while (g.size() < 3) g.insert(g.begin(), PoolAxis{});
    if (is_max_) {
      ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Pool<T>(ctx, g));
    } else {
      ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Pool<T>(ctx, g));
    }
    return Status::Ok();
  }

 private:
  template <typename T>
  void Pool(const RunContext& ctx, const std::vector<PoolAxis>& g) const {
    const TensorRef& x = ctx.in[0];
    const int64_t planes = x.dims[0] * x.dims[1];
    const int64_t in_sz = g[0].in * g[1].in * g[2].in;
    const int64_t out_sz = g[0].out * g[1].out * g[2].out;
    const T* xp = x.ptr<T>();
    T* yp = ctx.out[0].ptr<T>();
    int64_t* ip = ctx.out.size() > 1 && ctx.out[1].present() ? ctx.out[1].ptr<int64_t>() : nullptr;
    const bool col_major = attrs_.storage_order != 0;
    ParallelFor(ctx.pool, planes, 1, [&](int64_t s, int64_t e) {
      for (int64_t p = s; p < e; ++p) {
        const T* xi = xp + p * in_sz;
        T* yo = yp + p * out_sz;
        int64_t o = 0;
        for (int64_t od = 0; od < g[0].out; ++od)
          for (int64_t oh = 0; oh < g[1].out; ++oh)
            for (int64_t ow = 0; ow < g[2].out; ++ow, ++o) {
              const int64_t d0 = od * g[0].stride - g[0].pad_begin;
              const int64_t h0 = oh * g[1].stride - g[1].pad_begin;
              const int64_t w0 = ow * g[2].stride - g[2].pad_begin;
              T best = std::numeric_limits<T>::lowest();
              int64_t best_i = -1;
              double sum = 0;
              int64_t count = 0, padded = 0;
              for (int64_t kd = 0; kd < g[0].k; ++kd) {
                const int64_t d = d0 + kd * g[0].dilation;
                const bool din = d >= 0 && d < g[0].in;
                const bool dpad = d >= -g[0].pad_begin && d < g[0].in + g[0].pad_end;
                for (int64_t kh = 0; kh < g[1].k; ++kh) {
                  const int64_t h = h0 + kh * g[1].dilation;
                  const bool hin = h >= 0 && h < g[1].in;
                  const bool hpad = h >= -g[1].pad_begin && h < g[1].in + g[1].pad_end;
                  for (int64_t kw = 0; kw < g[2].k; ++kw) {
                    const int64_t w = w0 + kw * g[2].dilation;
                    const bool win = w >= 0 && w < g[2].in;
                    const bool wpad = w >= -g[2].pad_begin && w < g[2].in + g[2].pad_end;
                    if (dpad && hpad && wpad) ++padded;
                    if (!(din && hin && win)) continue;
                    const int64_t idx = (d * g[1].in + h) * g[2].in + w;
                    const T v = xi[idx];
                    if (is_max_) {
                      if (best_i < 0 || v > best) {
                        best = v;
                        best_i = col_major ? w * g[1].in + h : idx;
                      }
                    } else {
                      sum += static_cast<double>(v);
                      ++count;
                    }
                  }
                }
              }
              if (is_max_) {
                yo[o] = best;
                if (ip) ip[p * out_sz + o] = p * in_sz + std::max<int64_t>(best_i, 0);
              } else {
                const int64_t div = attrs_.count_include_pad ? padded : count;
                yo[o] = div > 0 ? static_cast<T>(sum / static_cast<double>(div)) : T(0);
              }
            }
      }
    });
  }

  const Node& node_;
  PoolAttrs attrs_;
  bool is_max_;
};

class GlobalAveragePoolKernel : public OpKernel {
 public:
  explicit GlobalAveragePoolKernel(const Node& node, bool is_max = false)
      : node_(node), is_max_(is_max) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    if (x.dims.size() < 3) return InvalidArgument(node_.Describe(), ": input must have rank >= 3");
    ONNXQ_DISPATCH_FLOAT(x.dtype, node_, T, (void)0);
    std::vector<int64_t> out = x.dims;
    for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
    ctx.out[0] = {x.dtype, out, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx) const {
    const TensorRef& x = ctx.in[0];
    const int64_t planes = x.dims[0] * x.dims[1];
    const int64_t inner = planes > 0 ? x.numel / planes : 0;
    const T* xp = x.ptr<T>();
    T* yp = ctx.out[0].ptr<T>();
    ParallelFor(ctx.pool, planes, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)),
                [&](int64_t s, int64_t e) {
                  for (int64_t p = s; p < e; ++p) {
                    const T* xi = xp + p * inner;
                    if (is_max_) {
                      T m = -std::numeric_limits<T>::infinity();
                      for (int64_t j = 0; j < inner; ++j) m = (xi[j] > m || xi[j] != xi[j]) ? xi[j] : m;
                      yp[p] = m;
                      continue;
                    }
                    T acc = 0;
                    for (int64_t j = 0; j < inner; ++j) acc += xi[j];
                    yp[p] = acc / static_cast<T>(inner);
                  }
                });
  }
  const Node& node_;
  bool is_max_;
};

// ArgMax / ArgMin: int64 indices of the first (or, with select_last_index, last) extreme value.
class ArgKernel : public OpKernel {
 public:
  ArgKernel(const Node& node, bool is_max, int64_t axis, bool keepdims, bool last)
      : node_(node), is_max_(is_max), axis_(axis), keepdims_(keepdims), last_(last) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    ONNXQ_DISPATCH_NUMERIC(x.dtype, node_, T, (void)0);
    ONNXQ_ASSIGN_OR_RETURN(axis_n_, NormalizeAxis(axis_, static_cast<int64_t>(x.dims.size()), node_));
    if (x.dims[static_cast<size_t>(axis_n_)] == 0)
      return InvalidArgument(node_.Describe(), ": reduced axis is empty");
    std::vector<int64_t> out;
    for (size_t i = 0; i < x.dims.size(); ++i) {
      if (static_cast<int64_t>(i) != axis_n_) {
        out.push_back(x.dims[i]);
      } else if (keepdims_) {
        out.push_back(1);
      }
    }
    ctx.out[0] = {DataType::kInt64, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx) const {
    int64_t outer, mid, inner;
    AxisSplit(ctx.in[0].dims, axis_n_, &outer, &mid, &inner);
    const T* x = ctx.in[0].ptr<T>();
    int64_t* y = ctx.out[0].ptr<int64_t>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t in = 0; in < inner; ++in) {
        const T* xi = x + o * mid * inner + in;
        int64_t best = 0;
        for (int64_t j = 1; j < mid; ++j) {
          const T v = xi[j * inner], b = xi[best * inner];
          const bool better = is_max_ ? (last_ ? v >= b : v > b) : (last_ ? v <= b : v < b);
          if (better) best = j;
        }
        y[o * inner + in] = best;
      }
  }
  const Node& node_;
  bool is_max_;
  int64_t axis_;
  bool keepdims_, last_;
  int64_t axis_n_ = 0;
};

class SoftmaxKernel : public OpKernel {
 public:
  SoftmaxKernel(const Node& node, int64_t axis, bool coerce_2d, bool log = false)
      : node_(node), axis_(axis), coerce_2d_(coerce_2d), log_(log) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    ONNXQ_DISPATCH_FLOAT(x.dtype, node_, T, (void)0);
    ONNXQ_RETURN_IF_ERROR(
        NormalizeAxis(axis_, std::max<int64_t>(1, static_cast<int64_t>(x.dims.size())), node_)
            .status());
    ctx.out[0] = {x.dtype, x.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, return Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  template <typename T>
  Status Apply(const RunContext& ctx) const {
    const auto& d = ctx.in[0].dims;
    if (d.empty()) {
      ctx.out[0].ptr<T>()[0] = T(1);
      return Status::Ok();
    }
    ONNXQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, static_cast<int64_t>(d.size()), node_));
    int64_t outer = 1, mid = 1, inner = 1;
    for (int64_t i = 0; i < static_cast<int64_t>(d.size()); ++i) {
      if (i < axis) {
        outer *= d[i];
      } else if (coerce_2d_ || i == axis) {
        mid *= d[i];
      } else {
        inner *= d[i];
      }
    }
    const T* xp = ctx.in[0].ptr<T>();
    T* yp = ctx.out[0].ptr<T>();
    ParallelFor(ctx.pool, outer * inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(mid, 1)),
                [&](int64_t s, int64_t e) {
                  for (int64_t t = s; t < e; ++t) {
                    const int64_t o = t / inner, in = t % inner;
                    const T* xi = xp + o * mid * inner + in;
                    T* yi = yp + o * mid * inner + in;
                    T mx = -std::numeric_limits<T>::infinity();
                    for (int64_t j = 0; j < mid; ++j) mx = std::max(mx, xi[j * inner]);
                    T sum = 0;
                    for (int64_t j = 0; j < mid; ++j) {
                      T ev = std::exp(xi[j * inner] - mx);
                      yi[j * inner] = ev;
                      sum += ev;
                    }
                    if (log_) {  // x - max - log(sum exp(x - max)), no log of a rounded ratio
                      const T ls = std::log(sum);
                      for (int64_t j = 0; j < mid; ++j) yi[j * inner] = xi[j * inner] - mx - ls;
                    } else {
                      const T inv = T(1) / sum;
                      for (int64_t j = 0; j < mid; ++j) yi[j * inner] *= inv;
                    }
                  }
                });
    return Status::Ok();
  }

  const Node& node_;
  int64_t axis_;
  bool coerce_2d_;
  bool log_;
};

enum class Reduce { kMean, kSum, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

// The Reduce* family: accumulates in double, one output element per kept index.
class ReduceKernel : public OpKernel {
 public:
  ReduceKernel(const Node& node, Reduce op, std::optional<std::vector<int64_t>> axes_attr,
               bool keepdims, bool noop_with_empty_axes)
      : node_(node), op_(op), axes_attr_(std::move(axes_attr)), keepdims_(keepdims),
        noop_(noop_with_empty_axes) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    ONNXQ_DISPATCH_FLOAT(x.dtype, node_, T, (void)0);
    std::vector<int64_t> axes;
    if (axes_attr_) {
      axes = *axes_attr_;
    } else if (ctx.has(1)) {
      if (!ctx.value(1))
        return Unsupported(node_.Describe(), ": axes must be known before the run (a constant)");
      ONNXQ_ASSIGN_OR_RETURN(axes, ReadInts(*ctx.value(1), node_, "axes"));
    }
    ONNXQ_ASSIGN_OR_RETURN(auto red, ReducedAxes(axes, x.dims.size()));
    std::vector<int64_t> out;
    for (size_t i = 0; i < x.dims.size(); ++i) {
      if (!red[i]) {
        out.push_back(x.dims[i]);
      } else if (keepdims_) {
        out.push_back(1);
      }
    }
    ctx.out[0] = {x.dtype, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    std::vector<int64_t> axes;
    if (axes_attr_) {
      axes = *axes_attr_;
    } else if (ctx.in.size() > 1 && ctx.in[1].present()) {
      const TensorRef& a = ctx.in[1];
      for (int64_t i = 0; i < a.numel; ++i)
        axes.push_back(a.dtype == DataType::kInt32 ? a.ptr<int32_t>()[i] : a.ptr<int64_t>()[i]);
    }
    ONNXQ_ASSIGN_OR_RETURN(auto red, ReducedAxes(axes, ctx.in[0].dims.size()));
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Apply<T>(ctx, red));
    return Status::Ok();
  }

 private:
  StatusOr<std::vector<bool>> ReducedAxes(const std::vector<int64_t>& axes, size_t rank) const {
    std::vector<bool> red(rank, axes.empty() && !noop_);
    for (int64_t a : axes) {
      ONNXQ_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(a, static_cast<int64_t>(rank), node_, "axes"));
      red[n] = true;
    }
    return red;
  }

  // Identity of the accumulation (also the result of reducing an empty set, except Mean: NaN).
  double Init() const {
    switch (op_) {
      case Reduce::kMax: return -std::numeric_limits<double>::infinity();
      case Reduce::kMin: return std::numeric_limits<double>::infinity();
      case Reduce::kProd: return 1.0;
      default: return 0.0;
    }
  }
  double Step(double acc, double v) const {
    switch (op_) {
      case Reduce::kMax: return (v > acc || v != v) ? v : acc;
      case Reduce::kMin: return (v < acc || v != v) ? v : acc;
      case Reduce::kProd: return acc * v;
      case Reduce::kL1: return acc + std::fabs(v);
      case Reduce::kL2:
      case Reduce::kSumSquare: return acc + v * v;
      default: return acc + v;
    }
  }

  template <typename T>
  void Apply(const RunContext& ctx, const std::vector<bool>& red) const {
    const auto& d = ctx.in[0].dims;
    const size_t r = d.size();
    // Output strides (0 along reduced axes) for each input axis.
    std::vector<int64_t> ostride(r, 0);
    int64_t k = 1, count = 1;
    for (size_t i = r; i-- > 0;) {
      if (red[i]) {
        count *= d[i];
      } else {
        ostride[i] = k;
        k *= d[i];
      }
    }
    const int64_t out_n = ctx.out[0].numel;
    const T* xp = ctx.in[0].ptr<T>();
    // LogSumExp: exp relative to the per-output maximum, so large inputs do not overflow.
    std::vector<double> shift;
    if (op_ == Reduce::kLogSumExp) {
      ReduceKernel max_pass(node_, Reduce::kMax, std::nullopt, true, false);
      shift = max_pass.Accumulate(xp, d, ostride, out_n);
      for (double& m : shift)
        if (!std::isfinite(m)) m = 0.0;
    }
    std::vector<double> acc = Accumulate(xp, d, ostride, out_n, shift.empty() ? nullptr : &shift);
    T* yp = ctx.out[0].ptr<T>();
    for (int64_t j = 0; j < out_n; ++j) {
      const double a = acc[static_cast<size_t>(j)];
      double v = a;
      switch (op_) {
        case Reduce::kMean: v = count > 0 ? a / static_cast<double>(count)
                                          : std::numeric_limits<double>::quiet_NaN(); break;
        case Reduce::kL2: v = std::sqrt(a); break;
        case Reduce::kLogSum: v = std::log(a); break;
        case Reduce::kLogSumExp: v = std::log(a) + shift[static_cast<size_t>(j)]; break;
        default: break;
      }
      yp[j] = static_cast<T>(v);
    }
  }

  template <typename T>
  std::vector<double> Accumulate(const T* xp, const std::vector<int64_t>& d,
                                 const std::vector<int64_t>& ostride, int64_t out_n,
                                 const std::vector<double>* shift = nullptr) const {
    const size_t r = d.size();
    std::vector<double> acc(static_cast<size_t>(out_n), Init());
    int64_t n = 1;
    for (int64_t v : d) n *= v;
    std::vector<int64_t> idx(r, 0);
    int64_t o = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(xp[i]);
      if (shift) {
        acc[static_cast<size_t>(o)] += std::exp(v - (*shift)[static_cast<size_t>(o)]);
      } else {
        acc[static_cast<size_t>(o)] = Step(acc[static_cast<size_t>(o)], v);
      }
      for (size_t a = r; a-- > 0;) {
        if (++idx[a] < d[a]) {
          o += ostride[a];
          break;
        }
        o -= ostride[a] * (d[a] - 1);
        idx[a] = 0;
      }
    }
    return acc;
  }

  const Node& node_;
  Reduce op_;
  std::optional<std::vector<int64_t>> axes_attr_;
  bool keepdims_, noop_;
};

}  // namespace

void RegisterPoolOps(std::vector<OpRegistration>& r) {
  auto pool = [](bool is_max) {
    return [is_max](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
      ONNXQ_ASSIGN_OR_RETURN(auto attrs, ParsePoolAttrs(*info.node));
      if (!is_max && info.opset < 19 && !attrs.dilations.empty())
        for (int64_t d : attrs.dilations)
          if (d != 1)
            return InvalidArgument(info.node->Describe(), ": AveragePool dilations need opset 19");
      return MakeKernel<PoolKernel>(*info.node, std::move(attrs), is_max);
    };
  };
  r.push_back({"MaxPool", 1, 23, pool(true),
               "1-D to 3-D, dilations, ceil_mode, auto_pad, Indices output (storage_order 1: 2-D)"});
  r.push_back({"AveragePool", 1, 23, pool(false),
               "float, 1-D to 3-D, count_include_pad, ceil_mode, auto_pad"});
  r.push_back({"GlobalAveragePool", 1, 23,
               [](const OpInfo& info) { return MakeKernel<GlobalAveragePoolKernel>(*info.node); },
               "float32/float64"});
  r.push_back({"GlobalMaxPool", 1, 23,
               [](const OpInfo& info) { return MakeKernel<GlobalAveragePoolKernel>(*info.node, true); },
               "float32/float64; NaN propagates"});
  for (bool is_max : {true, false}) {
    r.push_back({is_max ? "ArgMax" : "ArgMin", 1, 23,
                 [is_max](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                   const auto& at = info.node->attrs;
                   ONNXQ_ASSIGN_OR_RETURN(int64_t axis, at.GetInt("axis", 0));
                   ONNXQ_ASSIGN_OR_RETURN(int64_t keep, at.GetInt("keepdims", 1));
                   ONNXQ_ASSIGN_OR_RETURN(int64_t last, at.GetInt("select_last_index", 0));
                   return MakeKernel<ArgKernel>(*info.node, is_max, axis, keep != 0, last != 0);
                 },
                 "numeric types; int64 output; select_last_index"});
  }
  r.push_back({"LogSoftmax", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 bool coerce = info.opset < 13;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis,
                                        info.node->attrs.GetInt("axis", coerce ? 1 : -1));
                 return MakeKernel<SoftmaxKernel>(*info.node, axis, coerce, true);
               },
               "float32/float64; opset < 13 coerces to 2-D"});
  r.push_back({"Softmax", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 bool coerce = info.opset < 13;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis,
                                        info.node->attrs.GetInt("axis", coerce ? 1 : -1));
                 return MakeKernel<SoftmaxKernel>(*info.node, axis, coerce);
               },
               "float32/float64; opset < 13 coerces to 2-D"});
  struct ReduceOp {
    const char* name;
    Reduce op;
    int64_t axes_input_since;  // opset from which axes is an input instead of an attribute
  };
  for (const ReduceOp& ro : std::initializer_list<ReduceOp>{
           {"ReduceMean", Reduce::kMean, 18}, {"ReduceSum", Reduce::kSum, 13},
           {"ReduceMax", Reduce::kMax, 18}, {"ReduceMin", Reduce::kMin, 18},
           {"ReduceProd", Reduce::kProd, 18}, {"ReduceL1", Reduce::kL1, 18},
           {"ReduceL2", Reduce::kL2, 18}, {"ReduceLogSum", Reduce::kLogSum, 18},
           {"ReduceLogSumExp", Reduce::kLogSumExp, 18},
           {"ReduceSumSquare", Reduce::kSumSquare, 18}}) {
    r.push_back({ro.name, 1, 23,
                 [ro](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                   const auto& at = info.node->attrs;
                   ONNXQ_ASSIGN_OR_RETURN(int64_t keep, at.GetInt("keepdims", 1));
                   ONNXQ_ASSIGN_OR_RETURN(int64_t noop, at.GetInt("noop_with_empty_axes", 0));
                   std::optional<std::vector<int64_t>> axes;
                   if (info.opset < ro.axes_input_since) {
                     ONNXQ_ASSIGN_OR_RETURN(auto a, at.GetInts("axes", {}));
                     axes = a;
                   }
                   return MakeKernel<ReduceKernel>(*info.node, ro.op, axes, keep != 0, noop != 0);
                 },
                 "float32/float64; axes must be constant (attribute or constant input); "
                 "accumulates in float64"});
  }
}

}  // namespace onnxq::runtime
