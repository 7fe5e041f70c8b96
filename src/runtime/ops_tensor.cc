// Data-movement ops: Identity, Dropout (inference), Reshape, Flatten, Squeeze, Unsqueeze,
// Transpose, Concat, Gather, Slice, Pad, Constant, Shape, Cast. Shape-like inputs (Reshape's shape,
// Slice's starts, Pad's pads, axes) must be known when the plan is built: initializers, Constant
// nodes, shape arithmetic folded at plan time or small integer feeds (which key the plan cache).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

Status NeedValue(const InferContext& ctx, size_t i, const Node& node, const char* what) {
  if (!ctx.has(i)) return InvalidArgument(node.Describe(), ": missing input '", what, "'");
  if (ctx.value(i) == nullptr)
    return Unsupported(node.Describe(), ": input '", what,
                       "' must be known before the run (an initializer, a Constant, shape "
                       "arithmetic or a small integer input)");
  return Status::Ok();
}

std::vector<int64_t> RefInts(const TensorRef& t) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel));
  for (int64_t i = 0; i < t.numel; ++i)
    v[i] = t.dtype == DataType::kInt32 ? t.ptr<int32_t>()[i] : t.ptr<int64_t>()[i];
  return v;
}

// Copies the input bytes unchanged: Identity, Reshape, Flatten, Squeeze, Unsqueeze, Dropout.
class CopyKernel : public OpKernel {
 public:
  using ShapeFn = std::function<StatusOr<std::vector<int64_t>>(const InferContext&)>;
  CopyKernel(const Node& node, ShapeFn shape) : node_(node), shape_(std::move(shape)) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_ASSIGN_OR_RETURN(auto dims, shape_(ctx));
    if (NumElements(dims) != NumElements(ctx.in[0]->dims))
      return InvalidArgument(node_.Describe(), ": cannot reshape ", Dims(ctx.in[0]->dims), " to ",
                             Dims(dims));
    ctx.out[0] = {ctx.in[0]->dtype, dims, nullptr};
    // Dropout's optional mask: all true in inference.
    if (ctx.out.size() > 1) ctx.out[1] = {DataType::kBool, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    if (ctx.out[0].data != ctx.in[0].data && ctx.in[0].nbytes() > 0)
      std::memcpy(ctx.out[0].data, ctx.in[0].data, ctx.in[0].nbytes());
    if (ctx.out.size() > 1 && ctx.out[1].present())
      std::memset(ctx.out[1].data, 1, ctx.out[1].nbytes());
    return Status::Ok();
  }

 private:
  const Node& node_;
  ShapeFn shape_;
};

StatusOr<std::vector<int64_t>> ReshapeDims(const std::vector<int64_t>& in,
                                           const std::vector<int64_t>& shape, bool allowzero,
                                           const Node& node) {
  std::vector<int64_t> out(shape.size());
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t d = shape[i];
    if (d == 0 && !allowzero) {
      if (i >= in.size())
        return InvalidArgument(node.Describe(), ": shape ", Dims(shape), " copies dim ", i,
                               " of a rank-", in.size(), " input");
      d = in[i];
    }
    if (d == -1) {
      if (infer >= 0) return InvalidArgument(node.Describe(), ": shape has two -1 entries");
      infer = static_cast<int64_t>(i);
      continue;
    }
    if (d < 0) return InvalidArgument(node.Describe(), ": invalid shape entry ", d);
    out[i] = d;
    known *= d;
  }
  const int64_t total = NumElements(in);
  if (infer >= 0) {
    if (known == 0 || total % known != 0)
      return InvalidArgument(node.Describe(), ": cannot reshape ", Dims(in), " to ", Dims(shape));
    out[infer] = total / known;
  }
  return out;
}

// ---------------------------------------------------------------- Transpose

template <size_t kSize>
void TransposeCopy(const std::byte* src, std::byte* dst, const std::vector<int64_t>& in,
                   const std::vector<int64_t>& perm, ThreadPool* pool) {
  struct Elem {
    std::byte b[kSize];
  };
  const size_t r = in.size();
  std::vector<int64_t> in_stride(r, 1), out_dims(r), src_stride(r);
  for (size_t i = r; i-- > 1;) in_stride[i - 1] = in_stride[i] * in[i];
  for (size_t i = 0; i < r; ++i) {
    out_dims[i] = in[perm[i]];
    src_stride[i] = in_stride[perm[i]];
  }
  const Elem* s = reinterpret_cast<const Elem*>(src);
  Elem* d = reinterpret_cast<Elem*>(dst);
  const int64_t inner = r ? out_dims[r - 1] : 1, inner_stride = r ? src_stride[r - 1] : 1;
  const int64_t rows = inner > 0 ? NumElements(out_dims) / inner : 0;
  ParallelFor(pool, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
              [&](int64_t b, int64_t e) {
                for (int64_t row = b; row < e; ++row) {
                  int64_t rem = row, off = 0;
                  for (size_t a = r - 1; a-- > 0;) {
                    off += (rem % out_dims[a]) * src_stride[a];
                    rem /= out_dims[a];
                  }
                  Elem* o = d + row * inner;
                  for (int64_t j = 0; j < inner; ++j) o[j] = s[off + j * inner_stride];
                }
              });
}

class TransposeKernel : public OpKernel {
 public:
  TransposeKernel(const Node& node, std::vector<int64_t> perm) : node_(node), perm_(std::move(perm)) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    ONNXQ_ASSIGN_OR_RETURN(auto perm, Perm(x.dims.size()));
    std::vector<int64_t> out(x.dims.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = x.dims[perm[i]];
    ctx.out[0] = {x.dtype, out, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_ASSIGN_OR_RETURN(auto perm, Perm(ctx.in[0].rank()));
    const auto* src = static_cast<const std::byte*>(ctx.in[0].data);
    auto* dst = static_cast<std::byte*>(ctx.out[0].data);
    if (ctx.in[0].numel == 0) return Status::Ok();
    if (ctx.in[0].rank() == 0) {
      std::memcpy(dst, src, ctx.in[0].nbytes());
      return Status::Ok();
    }
    switch (ElementSize(ctx.in[0].dtype)) {
      case 1: TransposeCopy<1>(src, dst, ctx.in[0].dims, perm, ctx.pool); break;
      case 2: TransposeCopy<2>(src, dst, ctx.in[0].dims, perm, ctx.pool); break;
      case 4: TransposeCopy<4>(src, dst, ctx.in[0].dims, perm, ctx.pool); break;
      case 8: TransposeCopy<8>(src, dst, ctx.in[0].dims, perm, ctx.pool); break;
      case 16: TransposeCopy<16>(src, dst, ctx.in[0].dims, perm, ctx.pool); break;
      default:
        return Unsupported(node_.Describe(), ": element type ", DataTypeName(ctx.in[0].dtype));
    }
    return Status::Ok();
  }

 private:
  StatusOr<std::vector<int64_t>> Perm(size_t rank) const {
    std::vector<int64_t> perm = perm_;
    if (perm.empty()) {
      for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
    }
    if (perm.size() != rank)
      return InvalidArgument(node_.Describe(), ": perm has ", perm.size(), " entries for rank ",
                             rank);
    std::vector<bool> seen(rank, false);
    for (auto& p : perm) {
      if (p < 0) p += static_cast<int64_t>(rank);
      if (p < 0 || p >= static_cast<int64_t>(rank) || seen[p])
        return InvalidArgument(node_.Describe(), ": perm is not a permutation");
      seen[p] = true;
    }
    return perm;
  }
  const Node& node_;
  std::vector<int64_t> perm_;
};

// ---------------------------------------------------------------- Concat

class ConcatKernel : public OpKernel {
 public:
  ConcatKernel(const Node& node, int64_t axis) : node_(node), axis_(axis) {}
  Status Infer(InferContext& ctx) override {
    if (ctx.in.empty() || !ctx.has(0)) return InvalidArgument(node_.Describe(), ": no inputs");
    const auto& first = *ctx.in[0];
    const int64_t r = static_cast<int64_t>(first.dims.size());
    ONNXQ_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, r, node_));
    std::vector<int64_t> out = first.dims;
    out[axis] = 0;
    for (size_t i = 0; i < ctx.in.size(); ++i) {
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
      const auto& v = *ctx.in[i];
      if (v.dtype != first.dtype || static_cast<int64_t>(v.dims.size()) != r)
        return InvalidArgument(node_.Describe(), ": input ", i, " has type/rank differing from input 0");
      for (int64_t a = 0; a < r; ++a)
        if (a != axis && v.dims[a] != first.dims[a])
          return InvalidArgument(node_.Describe(), ": input ", i, " ", Dims(v.dims),
                                 " does not match ", Dims(first.dims), " off axis ", axis);
      out[axis] += v.dims[axis];
    }
    ctx.out[0] = {first.dtype, out, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto& od = ctx.out[0].dims;
    const int64_t axis = axis_ < 0 ? axis_ + static_cast<int64_t>(od.size()) : axis_;
    const size_t es = ElementSize(ctx.out[0].dtype);
    int64_t outer = 1, inner = 1;
    for (int64_t a = 0; a < static_cast<int64_t>(od.size()); ++a) {
      if (a < axis) outer *= od[a];
      if (a > axis) inner *= od[a];
    }
    const size_t out_row = static_cast<size_t>(od[axis] * inner) * es;
    auto* dst = static_cast<std::byte*>(ctx.out[0].data);
    size_t offset = 0;
    for (const auto& in : ctx.in) {
      const size_t row = static_cast<size_t>(in.dims[axis] * inner) * es;
      const auto* src = static_cast<const std::byte*>(in.data);
      if (row > 0)
        for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row + offset, src + o * row, row);
      offset += row;
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  int64_t axis_;
};

// ---------------------------------------------------------------- Gather

class GatherKernel : public OpKernel {
 public:
  GatherKernel(const Node& node, int64_t axis) : node_(node), axis_(axis) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs data and indices");
    const auto& d = *ctx.in[0];
    const auto& idx = *ctx.in[1];
    if (idx.dtype != DataType::kInt32 && idx.dtype != DataType::kInt64)
      return InvalidArgument(node_.Describe(), ": indices must be int32 or int64");
    ONNXQ_ASSIGN_OR_RETURN(int64_t axis,
                           NormalizeAxis(axis_, static_cast<int64_t>(d.dims.size()), node_));
    std::vector<int64_t> out(d.dims.begin(), d.dims.begin() + axis);
    out.insert(out.end(), idx.dims.begin(), idx.dims.end());
    out.insert(out.end(), d.dims.begin() + axis + 1, d.dims.end());
    ctx.out[0] = {d.dtype, out, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const TensorRef &d = ctx.in[0], &ix = ctx.in[1];
    const int64_t axis = axis_ < 0 ? axis_ + static_cast<int64_t>(d.rank()) : axis_;
    int64_t outer = 1, inner = 1;
    for (int64_t a = 0; a < static_cast<int64_t>(d.rank()); ++a) {
      if (a < axis) outer *= d.dims[a];
      if (a > axis) inner *= d.dims[a];
    }
    const int64_t n = d.dims[axis];
    const size_t es = ElementSize(d.dtype), block = static_cast<size_t>(inner) * es;
    std::vector<int64_t> indices = RefInts(ix);
    for (auto& i : indices) {
      if (i < -n || i >= n)
        return InvalidArgument(node_.Describe(), ": index ", i, " is out of range for axis size ", n);
      if (i < 0) i += n;
    }
    const auto* src = static_cast<const std::byte*>(d.data);
    auto* dst = static_cast<std::byte*>(ctx.out[0].data);
    const int64_t m = static_cast<int64_t>(indices.size());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        std::memcpy(dst + (o * m + j) * block, src + (o * n + indices[j]) * block, block);
    return Status::Ok();
  }

 private:
  const Node& node_;
  int64_t axis_;
};

// ---------------------------------------------------------------- Slice

struct SliceAxis {
  int64_t start = 0, step = 1, size = 0;
};

StatusOr<std::vector<SliceAxis>> SliceGeometry(const std::vector<int64_t>& dims,
                                               const std::vector<int64_t>& starts,
                                               const std::vector<int64_t>& ends,
                                               const std::vector<int64_t>& axes_in,
                                               const std::vector<int64_t>& steps_in,
                                               const Node& node) {
  const int64_t r = static_cast<int64_t>(dims.size());
  std::vector<SliceAxis> g(dims.size());
  for (int64_t a = 0; a < r; ++a) g[a] = {0, 1, dims[a]};
  if (starts.size() != ends.size())
    return InvalidArgument(node.Describe(), ": starts and ends differ in length");
  std::vector<int64_t> axes = axes_in;
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (axes.size() != starts.size() || (!steps_in.empty() && steps_in.size() != starts.size()))
    return InvalidArgument(node.Describe(), ": axes/steps do not match starts");
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < axes.size(); ++i) {
    ONNXQ_ASSIGN_OR_RETURN(int64_t a, NormalizeAxis(axes[i], r, node, "axes"));
    if (seen[a]) return InvalidArgument(node.Describe(), ": axis ", a, " repeats");
    seen[a] = true;
    const int64_t d = dims[a];
    const int64_t step = steps_in.empty() ? 1 : steps_in[i];
    if (step == 0) return InvalidArgument(node.Describe(), ": step 0");
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += d;
    if (e < 0) e += d;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
      g[a] = {s, step, e > s ? (e - s + step - 1) / step : 0};
    } else {
      s = std::clamp<int64_t>(s, 0, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
      g[a] = {s, step, s > e ? (s - e + (-step) - 1) / (-step) : 0};
    }
    // Very large |starts|/|ends| (INT64_MIN/MAX) are clamped above before any arithmetic.
  }
  return g;
}

class SliceKernel : public OpKernel {
 public:
  SliceKernel(const Node& node, bool from_attrs, std::vector<int64_t> starts,
              std::vector<int64_t> ends, std::vector<int64_t> axes)
      : node_(node), from_attrs_(from_attrs), starts_(std::move(starts)), ends_(std::move(ends)),
        axes_(std::move(axes)) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    std::vector<int64_t> starts = starts_, ends = ends_, axes = axes_, steps;
    if (!from_attrs_) {
      ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "starts"));
      ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 2, node_, "ends"));
      ONNXQ_ASSIGN_OR_RETURN(starts, ReadInts(*ctx.value(1), node_, "starts"));
      ONNXQ_ASSIGN_OR_RETURN(ends, ReadInts(*ctx.value(2), node_, "ends"));
      if (ctx.has(3)) {
        ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 3, node_, "axes"));
        ONNXQ_ASSIGN_OR_RETURN(axes, ReadInts(*ctx.value(3), node_, "axes"));
      }
      if (ctx.has(4)) {
        ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 4, node_, "steps"));
        ONNXQ_ASSIGN_OR_RETURN(steps, ReadInts(*ctx.value(4), node_, "steps"));
      }
    }
    ONNXQ_ASSIGN_OR_RETURN(auto g, SliceGeometry(ctx.in[0]->dims, starts, ends, axes, steps, node_));
    std::vector<int64_t> out;
    for (const auto& a : g) out.push_back(a.size);
    ctx.out[0] = {ctx.in[0]->dtype, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    std::vector<int64_t> starts = starts_, ends = ends_, axes = axes_, steps;
    if (!from_attrs_) {
      starts = RefInts(ctx.in[1]);
      ends = RefInts(ctx.in[2]);
      if (ctx.in.size() > 3 && ctx.in[3].present()) axes = RefInts(ctx.in[3]);
      if (ctx.in.size() > 4 && ctx.in[4].present()) steps = RefInts(ctx.in[4]);
    }
    const TensorRef& x = ctx.in[0];
    ONNXQ_ASSIGN_OR_RETURN(auto g, SliceGeometry(x.dims, starts, ends, axes, steps, node_));
    if (ctx.out[0].numel == 0) return Status::Ok();
    const size_t r = x.rank(), es = ElementSize(x.dtype);
    if (r == 0) {
      std::memcpy(ctx.out[0].data, x.data, es);
      return Status::Ok();
    }
    std::vector<int64_t> stride(r, 1);
    for (size_t i = r; i-- > 1;) stride[i - 1] = stride[i] * x.dims[i];
    const auto* src = static_cast<const std::byte*>(x.data);
    auto* dst = static_cast<std::byte*>(ctx.out[0].data);
    const int64_t inner = g[r - 1].size, rows = ctx.out[0].numel / inner;
    const int64_t istep = g[r - 1].step;
    for (int64_t row = 0; row < rows; ++row) {
      int64_t rem = row, off = g[r - 1].start;
      for (size_t a = r - 1; a-- > 0;) {
        const int64_t i = rem % g[a].size;
        rem /= g[a].size;
        off += (g[a].start + i * g[a].step) * stride[a];
      }
      std::byte* o = dst + row * inner * es;
      if (istep == 1) {
        std::memcpy(o, src + off * es, inner * es);
      } else {
        for (int64_t j = 0; j < inner; ++j) std::memcpy(o + j * es, src + (off + j * istep) * es, es);
      }
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool from_attrs_;
  std::vector<int64_t> starts_, ends_, axes_;
};

// ---------------------------------------------------------------- Pad

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

class PadKernel : public OpKernel {
 public:
  PadKernel(const Node& node, PadMode mode, bool from_attrs, std::vector<int64_t> pads, float value)
      : node_(node), mode_(mode), from_attrs_(from_attrs), pads_attr_(std::move(pads)), value_(value) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    std::vector<int64_t> pads = pads_attr_, axes;
    if (!from_attrs_) {
      ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "pads"));
      ONNXQ_ASSIGN_OR_RETURN(pads, ReadInts(*ctx.value(1), node_, "pads"));
      if (ctx.has(3)) {
        ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 3, node_, "axes"));
        ONNXQ_ASSIGN_OR_RETURN(axes, ReadInts(*ctx.value(3), node_, "axes"));
      }
      if (ctx.has(2) && (ctx.in[2]->dtype != x.dtype || NumElements(ctx.in[2]->dims) != 1))
        return InvalidArgument(node_.Describe(), ": constant_value must be a scalar of the input type");
    }
    ONNXQ_DISPATCH_NUMERIC(x.dtype, node_, T, (void)0);
    ONNXQ_ASSIGN_OR_RETURN(auto full, FullPads(x.dims, pads, axes));
    const size_t r = x.dims.size();
    std::vector<int64_t> out(r);
    for (size_t a = 0; a < r; ++a) {
      out[a] = x.dims[a] + full[a] + full[a + r];
      if (out[a] < 0) return InvalidArgument(node_.Describe(), ": pads make axis ", a, " negative");
      if (out[a] > 0 && x.dims[a] == 0 && mode_ != PadMode::kConstant)
        return InvalidArgument(node_.Describe(), ": cannot ", "edge/reflect-pad an empty axis");
    }
    ctx.out[0] = {x.dtype, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    std::vector<int64_t> pads = pads_attr_, axes;
    if (!from_attrs_) {
      pads = RefInts(ctx.in[1]);
      if (ctx.in.size() > 3 && ctx.in[3].present()) axes = RefInts(ctx.in[3]);
    }
    ONNXQ_ASSIGN_OR_RETURN(auto full, FullPads(ctx.in[0].dims, pads, axes));
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx, full));
    return Status::Ok();
  }

 private:
  StatusOr<std::vector<int64_t>> FullPads(const std::vector<int64_t>& dims,
                                          const std::vector<int64_t>& pads,
                                          const std::vector<int64_t>& axes_in) const {
    const size_t r = dims.size();
    std::vector<int64_t> axes = axes_in;
    if (axes.empty())
      for (size_t i = 0; i < r; ++i) axes.push_back(static_cast<int64_t>(i));
    if (pads.size() != 2 * axes.size())
      return InvalidArgument(node_.Describe(), ": pads has ", pads.size(), " entries for ",
                             axes.size(), " axes");
    std::vector<int64_t> full(2 * r, 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      ONNXQ_ASSIGN_OR_RETURN(int64_t a, NormalizeAxis(axes[i], static_cast<int64_t>(r), node_, "axes"));
      full[a] = pads[i];
      full[a + r] = pads[i + axes.size()];
    }
    return full;
  }

  template <typename T>
  void Apply(const RunContext& ctx, const std::vector<int64_t>& full) const {
    const TensorRef& x = ctx.in[0];
    const TensorRef& y = ctx.out[0];
    const size_t r = x.rank();
    T cval = static_cast<T>(value_);
    if (ctx.in.size() > 2 && ctx.in[2].present()) cval = *ctx.in[2].ptr<T>();
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
    if (r == 0) {
      yp[0] = xp[0];
      return;
    }
    // Per axis: output index -> source index (-1: the constant).
    std::vector<std::vector<int64_t>> map(r);
    std::vector<int64_t> stride(r, 1);
    for (size_t i = r; i-- > 1;) stride[i - 1] = stride[i] * x.dims[i];
    for (size_t a = 0; a < r; ++a) {
      const int64_t n = x.dims[a];
      map[a].resize(static_cast<size_t>(y.dims[a]));
      for (int64_t o = 0; o < y.dims[a]; ++o) {
        int64_t i = o - full[a];
        if (i < 0 || i >= n) {
          switch (mode_) {
            case PadMode::kConstant: i = -1; break;
            case PadMode::kEdge: i = std::clamp<int64_t>(i, 0, n - 1); break;
            case PadMode::kWrap: i = ((i % n) + n) % n; break;
            case PadMode::kReflect:
              if (n == 1) {
                i = 0;
              } else {
                const int64_t period = 2 * (n - 1);
                i = ((i % period) + period) % period;
                if (i >= n) i = period - i;
              }
              break;
          }
        }
        map[a][o] = i < 0 ? -1 : i * stride[a];
      }
    }
    const int64_t inner = y.dims[r - 1];
    if (inner == 0) return;
    const int64_t rows = y.numel / inner;
    for (int64_t row = 0; row < rows; ++row) {
      int64_t rem = row, off = 0;
      bool constant = false;
      for (size_t a = r - 1; a-- > 0;) {
        const int64_t m = map[a][rem % y.dims[a]];
        rem /= y.dims[a];
        if (m < 0) constant = true;
        off += m;
      }
      T* o = yp + row * inner;
      if (constant) {
        std::fill(o, o + inner, cval);
        continue;
      }
      const auto& last = map[r - 1];
      for (int64_t j = 0; j < inner; ++j) o[j] = last[j] < 0 ? cval : xp[off + last[j]];
    }
  }

  const Node& node_;
  PadMode mode_;
  bool from_attrs_;
  std::vector<int64_t> pads_attr_;
  float value_;
};

// ---------------------------------------------------------------- Constant and Shape

class ConstantKernel : public OpKernel {
 public:
  ConstantKernel(const Node& node, Tensor value) : node_(node), value_(std::move(value)) {}
  Status Infer(InferContext& ctx) override {
    ctx.out[0] = {value_.dtype(), value_.dims(), &value_};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    if (value_.nbytes() > 0) std::memcpy(ctx.out[0].data, value_.raw(), value_.nbytes());
    return Status::Ok();
  }

 private:
  const Node& node_;
  Tensor value_;
};

class ShapeKernel : public OpKernel {
 public:
  ShapeKernel(const Node& node, int64_t start, std::optional<int64_t> end)
      : node_(node), start_(start), end_(end) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    auto [s, e] = Range(static_cast<int64_t>(ctx.in[0]->dims.size()));
    ctx.out[0] = {DataType::kInt64, {std::max<int64_t>(0, e - s)}, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    auto [s, e] = Range(static_cast<int64_t>(ctx.in[0].rank()));
    int64_t* y = ctx.out[0].ptr<int64_t>();
    for (int64_t i = s; i < e; ++i) y[i - s] = ctx.in[0].dims[i];
    return Status::Ok();
  }

 private:
  std::pair<int64_t, int64_t> Range(int64_t r) const {
    int64_t s = start_ < 0 ? start_ + r : start_;
    int64_t e = end_ ? (*end_ < 0 ? *end_ + r : *end_) : r;
    return {std::clamp<int64_t>(s, 0, r), std::clamp<int64_t>(e, 0, r)};
  }
  const Node& node_;
  int64_t start_;
  std::optional<int64_t> end_;
};

// ---------------------------------------------------------------- Cast

struct Half {
  uint16_t v;
};
struct BFloat {
  uint16_t v;
};

template <typename D, typename S>
D ConvertOne(S s) {
  if constexpr (std::is_same_v<S, Half>) {
    return ConvertOne<D>(HalfToFloat(s.v));
  } else if constexpr (std::is_same_v<S, BFloat>) {
    return ConvertOne<D>(BFloat16ToFloat(s.v));
  } else if constexpr (std::is_same_v<D, Half>) {
    return Half{FloatToHalf(static_cast<float>(s))};
  } else if constexpr (std::is_same_v<D, BFloat>) {
    return BFloat{FloatToBFloat16(static_cast<float>(s))};
  } else if constexpr (std::is_same_v<D, bool>) {
    return s != S(0);
  } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    // Out-of-range and NaN are undefined in ONNX; saturate instead of invoking UB.
    if (!(s == s)) return D(0);
    if (s <= static_cast<S>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
    if (s >= static_cast<S>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(s);
  } else {
    return static_cast<D>(s);
  }
}

#define ONNXQ_CAST_TYPES(X, T, ...)                 \
  switch (X) {                                      \
    ONNXQ_RT_CASE(kFloat, float, T, __VA_ARGS__)    \
    ONNXQ_RT_CASE(kDouble, double, T, __VA_ARGS__)  \
    ONNXQ_RT_CASE(kFloat16, Half, T, __VA_ARGS__)   \
    ONNXQ_RT_CASE(kBFloat16, BFloat, T, __VA_ARGS__) \
    ONNXQ_RT_CASE(kInt8, int8_t, T, __VA_ARGS__)    \
    ONNXQ_RT_CASE(kUint8, uint8_t, T, __VA_ARGS__)  \
    ONNXQ_RT_CASE(kInt16, int16_t, T, __VA_ARGS__)  \
    ONNXQ_RT_CASE(kUint16, uint16_t, T, __VA_ARGS__) \
    ONNXQ_RT_CASE(kInt32, int32_t, T, __VA_ARGS__)  \
    ONNXQ_RT_CASE(kUint32, uint32_t, T, __VA_ARGS__) \
    ONNXQ_RT_CASE(kInt64, int64_t, T, __VA_ARGS__)  \
    ONNXQ_RT_CASE(kUint64, uint64_t, T, __VA_ARGS__) \
    ONNXQ_RT_CASE(kBool, bool, T, __VA_ARGS__)      \
    default:                                        \
      return Unsupported(node_.Describe(), ": Cast of ", DataTypeName(X), " is not supported"); \
  }

class CastKernel : public OpKernel {
 public:
  CastKernel(const Node& node, DataType to) : node_(node), to_(to) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_CAST_TYPES(ctx.in[0]->dtype, S, (void)0);
    ONNXQ_CAST_TYPES(to_, D, (void)0);
    ctx.out[0] = {to_, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const int64_t n = ctx.in[0].numel;
    ONNXQ_CAST_TYPES(ctx.in[0].dtype, S, {
      const S* x = ctx.in[0].ptr<S>();
      ONNXQ_CAST_TYPES(to_, D, {
        D* y = ctx.out[0].ptr<D>();
        for (int64_t i = 0; i < n; ++i) y[i] = ConvertOne<D>(x[i]);
      });
    });
    return Status::Ok();
  }

 private:
  const Node& node_;
  DataType to_;
};

// ---------------------------------------------------------------- factories

StatusOr<std::vector<int64_t>> AxesFromAttrOrInput(const InferContext& ctx, bool from_attr,
                                                   const std::vector<int64_t>& attr, size_t input,
                                                   const Node& node) {
  if (from_attr) return attr;
  if (!ctx.has(input)) return std::vector<int64_t>{};
  ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, input, node, "axes"));
  return ReadInts(*ctx.value(input), node, "axes");
}

StatusOr<std::unique_ptr<OpKernel>> MakeReshape(const OpInfo& info) {
  const Node& node = *info.node;
  if (info.opset < 5) {
    ONNXQ_ASSIGN_OR_RETURN(auto shape, node.attrs.GetInts("shape"));
    return MakeKernel<CopyKernel>(node, [shape, &node](const InferContext& ctx) {
      return ReshapeDims(ctx.in[0]->dims, shape, false, node);
    });
  }
  ONNXQ_ASSIGN_OR_RETURN(int64_t allowzero, node.attrs.GetInt("allowzero", 0));
  return MakeKernel<CopyKernel>(node, [allowzero, &node](const InferContext& ctx)
                                          -> StatusOr<std::vector<int64_t>> {
    ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node, "shape"));
    ONNXQ_ASSIGN_OR_RETURN(auto shape, ReadInts(*ctx.value(1), node, "shape"));
    return ReshapeDims(ctx.in[0]->dims, shape, allowzero != 0, node);
  });
}

StatusOr<std::unique_ptr<OpKernel>> MakeFlatten(const OpInfo& info) {
  const Node& node = *info.node;
  ONNXQ_ASSIGN_OR_RETURN(int64_t axis, node.attrs.GetInt("axis", 1));
  return MakeKernel<CopyKernel>(node, [axis, &node](const InferContext& ctx)
                                          -> StatusOr<std::vector<int64_t>> {
    const auto& d = ctx.in[0]->dims;
    const int64_t r = static_cast<int64_t>(d.size());
    int64_t a = axis < 0 ? axis + r : axis;
    if (a < 0 || a > r) return InvalidArgument(node.Describe(), ": axis ", axis, " out of range");
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < r; ++i) (i < a ? outer : inner) *= d[i];
    return std::vector<int64_t>{outer, inner};
  });
}

StatusOr<std::unique_ptr<OpKernel>> MakeSqueeze(const OpInfo& info, bool unsqueeze) {
  const Node& node = *info.node;
  const bool from_attr = info.opset < 13;
  std::vector<int64_t> attr;
  if (from_attr) {
    if (unsqueeze) {
      ONNXQ_ASSIGN_OR_RETURN(attr, node.attrs.GetInts("axes"));
    } else {
      ONNXQ_ASSIGN_OR_RETURN(attr, node.attrs.GetInts("axes", {}));
    }
  }
  return MakeKernel<CopyKernel>(node, [=, &node](const InferContext& ctx)
                                          -> StatusOr<std::vector<int64_t>> {
    ONNXQ_ASSIGN_OR_RETURN(auto axes, AxesFromAttrOrInput(ctx, from_attr, attr, 1, node));
    const auto& d = ctx.in[0]->dims;
    if (unsqueeze) {
      const int64_t r = static_cast<int64_t>(d.size() + axes.size());
      std::vector<bool> ins(static_cast<size_t>(r), false);
      for (int64_t a : axes) {
        ONNXQ_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(a, r, node, "axes"));
        if (ins[n]) return InvalidArgument(node.Describe(), ": axis ", a, " repeats");
        ins[n] = true;
      }
      std::vector<int64_t> out;
      size_t j = 0;
      for (int64_t i = 0; i < r; ++i) out.push_back(ins[i] ? 1 : d[j++]);
      return out;
    }
    std::vector<bool> drop(d.size(), false);
    if (axes.empty()) {
      for (size_t i = 0; i < d.size(); ++i) drop[i] = d[i] == 1;
    }
    for (int64_t a : axes) {
      ONNXQ_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(a, static_cast<int64_t>(d.size()), node, "axes"));
      if (d[n] != 1)
        return InvalidArgument(node.Describe(), ": cannot squeeze axis ", a, " of size ", d[n]);
      drop[n] = true;
    }
    std::vector<int64_t> out;
    for (size_t i = 0; i < d.size(); ++i)
      if (!drop[i]) out.push_back(d[i]);
    return out;
  });
}

StatusOr<std::unique_ptr<OpKernel>> MakeDropout(const OpInfo& info) {
  const Node& node = *info.node;
  return MakeKernel<CopyKernel>(node, [&node](const InferContext& ctx)
                                          -> StatusOr<std::vector<int64_t>> {
    // Inference semantics; training mode is only deterministic (and accepted) with ratio 0.
    if (ctx.has(2)) {
      if (!ctx.value(2))
        return Unsupported(node.Describe(), ": training_mode must be a constant");
      if (ctx.value(2)->numel() != 1 || ctx.value(2)->GetAsDouble(0) != 0) {
        double ratio = 0.5;
        if (ctx.has(1)) {
          if (!ctx.value(1)) return Unsupported(node.Describe(), ": ratio must be a constant");
          ratio = ctx.value(1)->GetAsDouble(0);
        }
        if (ratio != 0)
          return Unsupported(node.Describe(),
                             ": Dropout in training mode (random) is not supported");
      }
    }
    return ctx.in[0]->dims;
  });
}

StatusOr<Tensor> ConstantValue(const Node& node) {
  const auto& at = node.attrs;
  if (at.Has("value")) return at.GetTensor("value");
  if (at.Has("value_float")) {
    ONNXQ_ASSIGN_OR_RETURN(float f, at.GetFloat("value_float"));
    return Tensor::Float({}, std::span<const float>(&f, 1));
  }
  if (at.Has("value_floats")) {
    ONNXQ_ASSIGN_OR_RETURN(auto f, at.GetFloats("value_floats"));
    return Tensor::Float({static_cast<int64_t>(f.size())}, f);
  }
  if (at.Has("value_int")) {
    ONNXQ_ASSIGN_OR_RETURN(int64_t i, at.GetInt("value_int"));
    return Tensor::Int64({}, std::span<const int64_t>(&i, 1));
  }
  if (at.Has("value_ints")) {
    ONNXQ_ASSIGN_OR_RETURN(auto i, at.GetInts("value_ints"));
    return Tensor::Int64({static_cast<int64_t>(i.size())}, i);
  }
  return Unsupported(node.Describe(),
                     ": Constant without a numeric value (string or sparse) is not supported");
}

// ---------------------------------------------------------------- Expand, Tile, Split, ...

// Copies `src` (dims `in`, right-aligned) broadcast to `out`, element by element as bytes.
void BroadcastCopy(const char* src, const std::vector<int64_t>& in, char* dst,
                   const std::vector<int64_t>& out, size_t es) {
  const size_t r = out.size();
  std::vector<int64_t> st(r, 0);
  int64_t k = 1;
  for (size_t i = in.size(); i-- > 0;) {
    st[r - in.size() + i] = in[i] == 1 ? 0 : k;
    k *= in[i];
  }
  const int64_t n = NumElements(out);
  if (n == 0) return;
  const int64_t inner = r ? out[r - 1] : 1, inner_st = r ? st[r - 1] : 0;
  std::vector<int64_t> idx(r, 0);
  for (int64_t row = 0; row < n / inner; ++row) {
    int64_t rem = row, off = 0;
    for (size_t a = r - 1; r > 0 && a-- > 0;) {
      off += (rem % out[a]) * st[a];
      rem /= out[a];
    }
    char* o = dst + static_cast<size_t>(row * inner) * es;
    if (inner_st == 1) {
      std::memcpy(o, src + static_cast<size_t>(off) * es, static_cast<size_t>(inner) * es);
    } else {
      for (int64_t j = 0; j < inner; ++j)
        std::memcpy(o + static_cast<size_t>(j) * es, src + static_cast<size_t>(off) * es, es);
    }
  }
}

Status NeedCopyableType(DataType t, const Node& node) {
  if (t == DataType::kString || ElementSize(t) == 0 || t == DataType::kInt4 || t == DataType::kUint4)
    return Unsupported(node.Describe(), ": element type ", DataTypeName(t), " is not supported");
  return Status::Ok();
}

class ExpandKernel : public OpKernel {
 public:
  explicit ExpandKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "shape"));
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(ctx.in[0]->dtype, node_));
    ONNXQ_ASSIGN_OR_RETURN(auto shape, ReadInts(*ctx.value(1), node_, "shape"));
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, shape, node_));
    ctx.out[0] = {ctx.in[0]->dtype, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    BroadcastCopy(ctx.in[0].ptr<char>(), ctx.in[0].dims, ctx.out[0].ptr<char>(), ctx.out[0].dims,
                  ElementSize(ctx.out[0].dtype));
    return Status::Ok();
  }

 private:
  const Node& node_;
};

class TileKernel : public OpKernel {
 public:
  explicit TileKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "repeats"));
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(ctx.in[0]->dtype, node_));
    ONNXQ_ASSIGN_OR_RETURN(auto rep, ReadInts(*ctx.value(1), node_, "repeats"));
    const auto& d = ctx.in[0]->dims;
    if (rep.size() != d.size())
      return InvalidArgument(node_.Describe(), ": repeats has ", rep.size(), " entries for a rank-",
                             d.size(), " input");
    std::vector<int64_t> out(d.size());
    for (size_t i = 0; i < d.size(); ++i) {
      if (rep[i] < 0) return InvalidArgument(node_.Describe(), ": negative repeat ", rep[i]);
      out[i] = d[i] * rep[i];
    }
    ctx.out[0] = {ctx.in[0]->dtype, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto& in = ctx.in[0].dims;
    const auto& out = ctx.out[0].dims;
    const size_t es = ElementSize(ctx.out[0].dtype), r = out.size();
    const char* src = ctx.in[0].ptr<char>();
    char* dst = ctx.out[0].ptr<char>();
    std::vector<int64_t> ist(r, 1);
    for (size_t i = r; i-- > 1;) ist[i - 1] = ist[i] * in[i];
    for (int64_t o = 0; o < ctx.out[0].numel; ++o) {
      int64_t rem = o, off = 0;
      for (size_t a = r; a-- > 0;) {
        off += ((rem % out[a]) % in[a]) * ist[a];
        rem /= out[a];
      }
      std::memcpy(dst + static_cast<size_t>(o) * es, src + static_cast<size_t>(off) * es, es);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
};

class SplitKernel : public OpKernel {
 public:
  SplitKernel(const Node& node, int64_t axis, std::optional<std::vector<int64_t>> split_attr,
              int64_t num_outputs)
      : node_(node), axis_(axis), split_attr_(std::move(split_attr)), num_outputs_(num_outputs) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(ctx.in[0]->dtype, node_));
    const auto& d = ctx.in[0]->dims;
    ONNXQ_ASSIGN_OR_RETURN(axis_n_, NormalizeAxis(axis_, static_cast<int64_t>(d.size()), node_));
    const int64_t total = d[static_cast<size_t>(axis_n_)];
    const int64_t n = static_cast<int64_t>(ctx.out.size());
    std::vector<int64_t> sizes;
    if (split_attr_) {
      sizes = *split_attr_;
    } else if (ctx.has(1)) {
      ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "split"));
      ONNXQ_ASSIGN_OR_RETURN(sizes, ReadInts(*ctx.value(1), node_, "split"));
    }
    if (sizes.empty()) {
      // Equal parts; with num_outputs (opset 18) the last part may be smaller.
      const int64_t parts = num_outputs_ > 0 ? num_outputs_ : n;
      if (num_outputs_ <= 0 && total % parts != 0)
        return InvalidArgument(node_.Describe(), ": axis of size ", total, " does not split into ",
                               parts, " equal parts");
      const int64_t each = (total + parts - 1) / parts;
      for (int64_t i = 0; i < parts; ++i) sizes.push_back(std::min(each, total - i * each));
    }
    if (static_cast<int64_t>(sizes.size()) != n)
      return InvalidArgument(node_.Describe(), ": ", sizes.size(), " split sizes for ", n, " outputs");
    int64_t sum = 0;
    for (int64_t v : sizes) {
      if (v < 0) return InvalidArgument(node_.Describe(), ": negative split size ", v);
      sum += v;
    }
    if (sum != total)
      return InvalidArgument(node_.Describe(), ": split sizes sum to ", sum, ", axis has ", total);
    for (int64_t i = 0; i < n; ++i) {
      auto od = d;
      od[static_cast<size_t>(axis_n_)] = sizes[static_cast<size_t>(i)];
      ctx.out[static_cast<size_t>(i)] = {ctx.in[0]->dtype, std::move(od), nullptr};
    }
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const size_t es = ElementSize(ctx.in[0].dtype);
    int64_t outer, total, inner;
    AxisSplit(ctx.in[0].dims, axis_n_, &outer, &total, &inner);
    const char* src = ctx.in[0].ptr<char>();
    int64_t start = 0;
    for (const TensorRef& o : ctx.out) {
      const int64_t len = o.dims[static_cast<size_t>(axis_n_)];
      if (o.present() && o.numel > 0) {
        const size_t chunk = static_cast<size_t>(len * inner) * es;
        for (int64_t b = 0; b < outer; ++b)
          std::memcpy(o.ptr<char>() + static_cast<size_t>(b) * chunk,
                      src + (static_cast<size_t>(b * total + start) * static_cast<size_t>(inner)) * es,
                      chunk);
      }
      start += len;
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  int64_t axis_;
  std::optional<std::vector<int64_t>> split_attr_;
  int64_t num_outputs_;
  int64_t axis_n_ = 0;
};

class ConstantOfShapeKernel : public OpKernel {
 public:
  ConstantOfShapeKernel(const Node& node, Tensor value) : node_(node), value_(std::move(value)) {}
  Status Infer(InferContext& ctx) override {
    ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 0, node_, "input"));
    ONNXQ_ASSIGN_OR_RETURN(auto shape, ReadInts(*ctx.value(0), node_, "input"));
    for (int64_t v : shape)
      if (v < 0) return InvalidArgument(node_.Describe(), ": negative dimension ", v);
    ctx.out[0] = {value_.dtype(), std::move(shape), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const size_t es = ElementSize(value_.dtype());
    for (int64_t i = 0; i < ctx.out[0].numel; ++i)
      std::memcpy(ctx.out[0].ptr<char>() + static_cast<size_t>(i) * es, value_.raw(), es);
    return Status::Ok();
  }

 private:
  const Node& node_;
  Tensor value_;
};

class RangeKernel : public OpKernel {
 public:
  explicit RangeKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    for (size_t i = 0; i < 3; ++i) {
      ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, i, node_, i == 0 ? "start" : (i == 1 ? "limit" : "delta")));
      if (ctx.in[i]->dtype != ctx.in[0]->dtype)
        return InvalidArgument(node_.Describe(), ": start, limit and delta types differ");
      if (ctx.value(i)->numel() != 1)
        return InvalidArgument(node_.Describe(), ": start, limit and delta must be scalars");
    }
    const DataType t = ctx.in[0]->dtype;
    if (t != DataType::kFloat && t != DataType::kDouble && t != DataType::kInt32 &&
        t != DataType::kInt64 && t != DataType::kInt16)
      return Unsupported(node_.Describe(), ": element type ", DataTypeName(t), " is not supported");
    const double start = ctx.value(0)->GetAsDouble(0), limit = ctx.value(1)->GetAsDouble(0),
                 delta = ctx.value(2)->GetAsDouble(0);
    if (delta == 0) return InvalidArgument(node_.Describe(), ": delta is 0");
    const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((limit - start) / delta)));
    ctx.out[0] = {t, {n}, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, {
      const T start = *ctx.in[0].ptr<T>(), delta = *ctx.in[2].ptr<T>();
      T* y = ctx.out[0].ptr<T>();
      // Repeated addition, as the ONNX reference and ONNX Runtime compute it.
      T v = start;
      for (int64_t i = 0; i < ctx.out[0].numel; ++i) {
        y[i] = v;
        v = static_cast<T>(v + delta);
      }
    });
    return Status::Ok();
  }

 private:
  const Node& node_;
};

// ScatterND: a copy of data with slices replaced (or combined, reduction 16+) at the index tuples.
enum class ScatterReduce { kNone, kAdd, kMul, kMax, kMin };

class ScatterNDKernel : public OpKernel {
 public:
  ScatterNDKernel(const Node& node, ScatterReduce reduce) : node_(node), reduce_(reduce) {}
  Status Infer(InferContext& ctx) override {
    for (size_t i = 0; i < 3; ++i)
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": needs data, indices and updates");
    const auto &data = *ctx.in[0], &idx = *ctx.in[1], &upd = *ctx.in[2];
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(data.dtype, node_));
    if (idx.dtype != DataType::kInt64)
      return InvalidArgument(node_.Describe(), ": indices must be int64");
    if (upd.dtype != data.dtype) return InvalidArgument(node_.Describe(), ": updates type differs from data");
    if (reduce_ != ScatterReduce::kNone) {
      ONNXQ_DISPATCH_NUMERIC(data.dtype, node_, T, (void)0);
    }
    if (idx.dims.empty()) return InvalidArgument(node_.Describe(), ": indices must have rank >= 1");
    const int64_t k = idx.dims.back();
    if (k < 1 || k > static_cast<int64_t>(data.dims.size()))
      return InvalidArgument(node_.Describe(), ": index tuples of length ", k, " for rank-",
                             data.dims.size(), " data");
    std::vector<int64_t> want(idx.dims.begin(), idx.dims.end() - 1);
    want.insert(want.end(), data.dims.begin() + k, data.dims.end());
    if (upd.dims != want)
      return InvalidArgument(node_.Describe(), ": updates ", Dims(upd.dims), " should be ", Dims(want));
    ctx.out[0] = {data.dtype, data.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    if (reduce_ == ScatterReduce::kNone) return Apply<char>(ctx);
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, return Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  // T = char: plain byte copies (reduction none, any type).
  template <typename T>
  Status Apply(const RunContext& ctx) const {
    const auto& dd = ctx.in[0].dims;
    const size_t es = ElementSize(ctx.in[0].dtype);
    if (ctx.out[0].data != ctx.in[0].data) std::memcpy(ctx.out[0].data, ctx.in[0].data, ctx.in[0].nbytes());
    const int64_t k = ctx.in[1].dims.back();
    const int64_t tuples = k > 0 ? ctx.in[1].numel / k : 0;
    int64_t slice = 1;
    for (size_t i = static_cast<size_t>(k); i < dd.size(); ++i) slice *= dd[i];
    std::vector<int64_t> stride(dd.size(), 1);
    for (size_t i = dd.size(); i-- > 1;) stride[i - 1] = stride[i] * dd[i];
    const int64_t* ix = ctx.in[1].ptr<int64_t>();
    char* out = ctx.out[0].ptr<char>();
    const char* upd = ctx.in[2].ptr<char>();
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (int64_t j = 0; j < k; ++j) {
        int64_t v = ix[t * k + j];
        const int64_t dim = dd[static_cast<size_t>(j)];
        if (v < 0) v += dim;
        if (v < 0 || v >= dim)
          return InvalidArgument(node_.Describe(), ": index ", ix[t * k + j], " out of range for dim ",
                                 j, " of size ", dim);
        off += v * stride[static_cast<size_t>(j)];
      }
      if constexpr (std::is_same_v<T, char>) {
        std::memcpy(out + static_cast<size_t>(off) * es, upd + static_cast<size_t>(t * slice) * es,
                    static_cast<size_t>(slice) * es);
      } else {
        T* o = reinterpret_cast<T*>(out) + off;
        const T* u = reinterpret_cast<const T*>(upd) + t * slice;
        for (int64_t e = 0; e < slice; ++e) {
          switch (reduce_) {
            case ScatterReduce::kAdd: o[e] = static_cast<T>(o[e] + u[e]); break;
            case ScatterReduce::kMul: o[e] = static_cast<T>(o[e] * u[e]); break;
            case ScatterReduce::kMax: o[e] = std::max(o[e], u[e]); break;
            case ScatterReduce::kMin: o[e] = std::min(o[e], u[e]); break;
            default: o[e] = u[e]; break;
          }
        }
      }
    }
    return Status::Ok();
  }
  const Node& node_;
  ScatterReduce reduce_;
};

// GatherElements: out[i][j][k] = data[index[i][j][k]][j][k] along axis (indices' shape).
class GatherElementsKernel : public OpKernel {
 public:
  GatherElementsKernel(const Node& node, int64_t axis) : node_(node), axis_(axis) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs data and indices");
    const auto &d = *ctx.in[0], &ix = *ctx.in[1];
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(d.dtype, node_));
    if (ix.dtype != DataType::kInt32 && ix.dtype != DataType::kInt64)
      return InvalidArgument(node_.Describe(), ": indices must be int32 or int64");
    if (ix.dims.size() != d.dims.size())
      return InvalidArgument(node_.Describe(), ": indices rank ", ix.dims.size(), " != data rank ", d.dims.size());
    ONNXQ_ASSIGN_OR_RETURN(axis_n_, NormalizeAxis(axis_, static_cast<int64_t>(d.dims.size()), node_));
    for (size_t i = 0; i < d.dims.size(); ++i)
      if (static_cast<int64_t>(i) != axis_n_ && ix.dims[i] > d.dims[i])
        return InvalidArgument(node_.Describe(), ": indices ", Dims(ix.dims), " exceed data ", Dims(d.dims));
    ctx.out[0] = {d.dtype, ix.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto &dd = ctx.in[0].dims, &id = ctx.in[1].dims;
    const size_t r = dd.size(), es = ElementSize(ctx.in[0].dtype);
    std::vector<int64_t> dstride(r, 1);
    for (size_t i = r; i-- > 1;) dstride[i - 1] = dstride[i] * dd[i];
    const std::vector<int64_t> idx = RefInts(ctx.in[1]);
    const int64_t n = dd[static_cast<size_t>(axis_n_)];
    const char* src = ctx.in[0].ptr<char>();
    char* dst = ctx.out[0].ptr<char>();
    for (int64_t o = 0; o < ctx.out[0].numel; ++o) {
      int64_t rem = o, off = 0;
      for (size_t a = r; a-- > 0;) {
        const int64_t c = rem % id[a];
        rem /= id[a];
        if (static_cast<int64_t>(a) == axis_n_) {
          int64_t v = idx[static_cast<size_t>(o)];
          if (v < -n || v >= n)
            return InvalidArgument(node_.Describe(), ": index ", v, " out of range for axis size ", n);
          off += (v < 0 ? v + n : v) * dstride[a];
        } else {
          off += c * dstride[a];
        }
      }
      std::memcpy(dst + static_cast<size_t>(o) * es, src + static_cast<size_t>(off) * es, es);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  int64_t axis_;
  int64_t axis_n_ = 0;
};

// GatherND (batch_dims): slices of data addressed by the last dim of indices.
class GatherNDKernel : public OpKernel {
 public:
  GatherNDKernel(const Node& node, int64_t batch_dims) : node_(node), b_(batch_dims) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs data and indices");
    const auto &d = *ctx.in[0], &ix = *ctx.in[1];
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(d.dtype, node_));
    if (ix.dtype != DataType::kInt64) return InvalidArgument(node_.Describe(), ": indices must be int64");
    if (ix.dims.empty()) return InvalidArgument(node_.Describe(), ": indices must have rank >= 1");
    const int64_t k = ix.dims.back(), r = static_cast<int64_t>(d.dims.size());
    if (b_ < 0 || b_ >= std::min<int64_t>(r, static_cast<int64_t>(ix.dims.size())) || k < 1 || b_ + k > r)
      return InvalidArgument(node_.Describe(), ": batch_dims ", b_, " and index length ", k,
                             " do not fit data of rank ", r);
    for (int64_t i = 0; i < b_; ++i)
      if (d.dims[static_cast<size_t>(i)] != ix.dims[static_cast<size_t>(i)])
        return InvalidArgument(node_.Describe(), ": batch dims of data and indices differ");
    std::vector<int64_t> out(ix.dims.begin(), ix.dims.end() - 1);
    out.insert(out.end(), d.dims.begin() + b_ + k, d.dims.end());
    ctx.out[0] = {d.dtype, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto &dd = ctx.in[0].dims, &id = ctx.in[1].dims;
    const size_t es = ElementSize(ctx.in[0].dtype);
    const int64_t k = id.back();
    int64_t batch = 1, slice = 1;
    for (int64_t i = 0; i < b_; ++i) batch *= dd[static_cast<size_t>(i)];
    for (size_t i = static_cast<size_t>(b_ + k); i < dd.size(); ++i) slice *= dd[i];
    int64_t data_batch = 1;
    for (size_t i = static_cast<size_t>(b_); i < dd.size(); ++i) data_batch *= dd[i];
    const int64_t tuples = ctx.in[1].numel / k, per_batch = batch > 0 ? tuples / batch : 0;
    std::vector<int64_t> stride(dd.size(), 1);
    for (size_t i = dd.size(); i-- > 1;) stride[i - 1] = stride[i] * dd[i];
    const int64_t* ix = ctx.in[1].ptr<int64_t>();
    const char* src = ctx.in[0].ptr<char>();
    char* dst = ctx.out[0].ptr<char>();
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = (per_batch > 0 ? t / per_batch : 0) * data_batch;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t dim = dd[static_cast<size_t>(b_ + j)];
        int64_t v = ix[t * k + j];
        if (v < -dim || v >= dim)
          return InvalidArgument(node_.Describe(), ": index ", v, " out of range for dim ", b_ + j,
                                 " of size ", dim);
        off += (v < 0 ? v + dim : v) * stride[static_cast<size_t>(b_ + j)];
      }
      std::memcpy(dst + static_cast<size_t>(t * slice) * es, src + static_cast<size_t>(off) * es,
                  static_cast<size_t>(slice) * es);
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  int64_t b_;
};

// Trilu: keeps the upper (or lower) triangle of the last two dims from diagonal k.
class TriluKernel : public OpKernel {
 public:
  TriluKernel(const Node& node, bool upper) : node_(node), upper_(upper) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(ctx.in[0]->dtype, node_));
    if (ctx.in[0]->dims.size() < 2) return InvalidArgument(node_.Describe(), ": input rank must be >= 2");
    if (ctx.has(1) && ctx.in[1]->dtype != DataType::kInt64)
      return InvalidArgument(node_.Describe(), ": k must be an int64 scalar");
    ctx.out[0] = {ctx.in[0]->dtype, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const int64_t k = ctx.in.size() > 1 && ctx.in[1].present() ? *ctx.in[1].ptr<int64_t>() : 0;
    const auto& d = ctx.in[0].dims;
    const int64_t rows = d[d.size() - 2], cols = d.back(), mats = rows * cols > 0 ? ctx.in[0].numel / (rows * cols) : 0;
    const size_t es = ElementSize(ctx.in[0].dtype);
    const char* src = ctx.in[0].ptr<char>();
    char* dst = ctx.out[0].ptr<char>();
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const size_t at = static_cast<size_t>((m * rows + i) * cols + j) * es;
          const bool keep = upper_ ? j - i >= k : j - i <= k;
          if (keep) {
            std::memcpy(dst + at, src + at, es);
          } else {
            std::memset(dst + at, 0, es);
          }
        }
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool upper_;
};

// CumSum along a run-time axis (exclusive / reverse attributes).
class CumSumKernel : public OpKernel {
 public:
  CumSumKernel(const Node& node, bool exclusive, bool reverse)
      : node_(node), exclusive_(exclusive), reverse_(reverse) {}
  Status Infer(InferContext& ctx) override {
    ONNXQ_RETURN_IF_ERROR(NeedValue(ctx, 1, node_, "axis"));
    const auto& x = *ctx.in[0];
    if (x.dtype != DataType::kFloat && x.dtype != DataType::kDouble && x.dtype != DataType::kInt32 &&
        x.dtype != DataType::kInt64)
      return Unsupported(node_.Describe(), ": element type ", DataTypeName(x.dtype), " is not supported");
    ONNXQ_ASSIGN_OR_RETURN(auto a, ReadInts(*ctx.value(1), node_, "axis"));
    if (a.size() != 1) return InvalidArgument(node_.Describe(), ": axis must be a scalar");
    ONNXQ_ASSIGN_OR_RETURN(axis_n_, NormalizeAxis(a[0], static_cast<int64_t>(x.dims.size()), node_));
    ctx.out[0] = {x.dtype, x.dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx) const {
    int64_t outer, n, inner;
    AxisSplit(ctx.in[0].dims, axis_n_, &outer, &n, &inner);
    const T* x = ctx.in[0].ptr<T>();
    T* y = ctx.out[0].ptr<T>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t in = 0; in < inner; ++in) {
        T acc = 0;
        for (int64_t s = 0; s < n; ++s) {
          const int64_t j = reverse_ ? n - 1 - s : s;
          const int64_t at = (o * n + j) * inner + in;
          if (exclusive_) {
            y[at] = acc;
            acc = static_cast<T>(acc + x[at]);
          } else {
            acc = static_cast<T>(acc + x[at]);
            y[at] = acc;
          }
        }
      }
  }
  const Node& node_;
  bool exclusive_, reverse_;
  int64_t axis_n_ = 0;
};

// IsNaN / IsInf (detect_positive / detect_negative): bool masks of float tensors.
class FloatClassKernel : public OpKernel {
 public:
  FloatClassKernel(const Node& node, bool nan, bool pos, bool neg)
      : node_(node), nan_(nan), pos_(pos), neg_(neg) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_DISPATCH_FLOAT(ctx.in[0]->dtype, node_, T, (void)0);
    ctx.out[0] = {DataType::kBool, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, {
      const T* x = ctx.in[0].ptr<T>();
      bool* y = ctx.out[0].ptr<bool>();
      for (int64_t i = 0; i < ctx.out[0].numel; ++i)
        y[i] = nan_ ? std::isnan(x[i]) : ((pos_ && x[i] == std::numeric_limits<T>::infinity()) ||
                                          (neg_ && x[i] == -std::numeric_limits<T>::infinity()));
    });
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool nan_, pos_, neg_;
};

class SizeKernel : public OpKernel {
 public:
  explicit SizeKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const int64_t n = NumElements(ctx.in[0]->dims);
    ONNXQ_ASSIGN_OR_RETURN(value_, Tensor::FromBytes(DataType::kInt64, {}, &n, sizeof n));
    ctx.out[0] = {DataType::kInt64, {}, &value_};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    std::memcpy(ctx.out[0].data, value_.raw(), sizeof(int64_t));
    return Status::Ok();
  }

 private:
  const Node& node_;
  Tensor value_;
};

// DepthToSpace (DCR / CRD) and SpaceToDepth on NCHW tensors.
class SpaceDepthKernel : public OpKernel {
 public:
  SpaceDepthKernel(const Node& node, bool to_space, int64_t block, bool crd)
      : node_(node), to_space_(to_space), b_(block), crd_(crd) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    ONNXQ_RETURN_IF_ERROR(NeedCopyableType(ctx.in[0]->dtype, node_));
    const auto& d = ctx.in[0]->dims;
    if (d.size() != 4) return InvalidArgument(node_.Describe(), ": input must be 4-D, got ", Dims(d));
    if (b_ < 1) return InvalidArgument(node_.Describe(), ": blocksize ", b_, " must be >= 1");
    std::vector<int64_t> o = d;
    if (to_space_) {
      if (d[1] % (b_ * b_) != 0)
        return InvalidArgument(node_.Describe(), ": channels ", d[1], " not divisible by blocksize^2");
      o = {d[0], d[1] / (b_ * b_), d[2] * b_, d[3] * b_};
    } else {
      if (d[2] % b_ != 0 || d[3] % b_ != 0)
        return InvalidArgument(node_.Describe(), ": spatial dims ", Dims(d), " not divisible by blocksize");
      o = {d[0], d[1] * b_ * b_, d[2] / b_, d[3] / b_};
    }
    ctx.out[0] = {ctx.in[0]->dtype, std::move(o), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const size_t es = ElementSize(ctx.out[0].dtype);
    // Work in the "space" layout [N, C, H*b, W*b]; the depth tensor is [N, C*b*b, H, W].
    const auto& sd = to_space_ ? ctx.out[0].dims : ctx.in[0].dims;
    const int64_t n = sd[0], c = sd[1], hs = sd[2], ws = sd[3], h = hs / b_, w = ws / b_;
    const char* src = ctx.in[0].ptr<char>();
    char* dst = ctx.out[0].ptr<char>();
    for (int64_t in = 0; in < n; ++in)
      for (int64_t ic = 0; ic < c; ++ic)
        for (int64_t y = 0; y < hs; ++y)
          for (int64_t x = 0; x < ws; ++x) {
            const int64_t by = y % b_, bx = x % b_;
            const int64_t dc = crd_ ? (ic * b_ + by) * b_ + bx : (by * b_ + bx) * c + ic;
            const int64_t space = ((in * c + ic) * hs + y) * ws + x;
            const int64_t depth = ((in * c * b_ * b_ + dc) * h + y / b_) * w + x / b_;
            const int64_t from = to_space_ ? depth : space, to = to_space_ ? space : depth;
            std::memcpy(dst + static_cast<size_t>(to) * es, src + static_cast<size_t>(from) * es, es);
          }
    return Status::Ok();
  }

 private:
  const Node& node_;
  bool to_space_;
  int64_t b_;
  bool crd_;
};

}  // namespace

void RegisterTensorOps(std::vector<OpRegistration>& r) {
  auto identity = [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
    return MakeKernel<CopyKernel>(*info.node, [](const InferContext& ctx)
                                                  -> StatusOr<std::vector<int64_t>> {
      return ctx.in[0]->dims;
    });
  };
  r.push_back({"Identity", 1, 23, identity, "tensors of any non-string type"});
  r.push_back({"Dropout", 1, 23, MakeDropout,
               "inference (identity, mask all true); training mode only with ratio 0"});
  r.push_back({"Reshape", 1, 23, MakeReshape, "shape must be known when planning; allowzero"});
  r.push_back({"Flatten", 1, 23, MakeFlatten, ""});
  r.push_back({"Squeeze", 1, 23, [](const OpInfo& i) { return MakeSqueeze(i, false); },
               "axes must be known when planning"});
  r.push_back({"Unsqueeze", 1, 23, [](const OpInfo& i) { return MakeSqueeze(i, true); },
               "axes must be known when planning"});
  r.push_back({"Transpose", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(auto perm, info.node->attrs.GetInts("perm", {}));
                 return MakeKernel<TransposeKernel>(*info.node, std::move(perm));
               },
               ""});
  r.push_back({"Concat", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, info.opset < 4
                                                          ? info.node->attrs.GetInt("axis", 1)
                                                          : info.node->attrs.GetInt("axis"));
                 return MakeKernel<ConcatKernel>(*info.node, axis);
               },
               ""});
  r.push_back({"Gather", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, info.node->attrs.GetInt("axis", 0));
                 return MakeKernel<GatherKernel>(*info.node, axis);
               },
               "int32/int64 indices, negative indices"});
  r.push_back({"Slice", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 if (info.opset < 10) {
                   ONNXQ_ASSIGN_OR_RETURN(auto starts, at.GetInts("starts"));
                   ONNXQ_ASSIGN_OR_RETURN(auto ends, at.GetInts("ends"));
                   ONNXQ_ASSIGN_OR_RETURN(auto axes, at.GetInts("axes", {}));
                   return MakeKernel<SliceKernel>(*info.node, true, starts, ends, axes);
                 }
                 return MakeKernel<SliceKernel>(*info.node, false, std::vector<int64_t>{},
                                                std::vector<int64_t>{}, std::vector<int64_t>{});
               },
               "starts/ends/axes/steps must be known when planning; negative steps"});
  r.push_back({"Pad", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(std::string m, at.GetString("mode", "constant"));
                 PadMode mode;
                 if (m == "constant") {
                   mode = PadMode::kConstant;
                 } else if (m == "reflect") {
                   mode = PadMode::kReflect;
                 } else if (m == "edge") {
                   mode = PadMode::kEdge;
                 } else if (m == "wrap" && info.opset >= 19) {
                   mode = PadMode::kWrap;
                 } else {
                   return Unsupported(info.node->Describe(), ": Pad mode '", m, "'");
                 }
                 if (info.opset < 11) {
                   ONNXQ_ASSIGN_OR_RETURN(auto pads, at.GetInts(info.opset < 2 ? "paddings" : "pads"));
                   ONNXQ_ASSIGN_OR_RETURN(float v, at.GetFloat("value", 0.f));
                   return MakeKernel<PadKernel>(*info.node, mode, true, pads, v);
                 }
                 return MakeKernel<PadKernel>(*info.node, mode, false, std::vector<int64_t>{}, 0.f);
               },
               "constant, reflect, edge, wrap (opset 19); pads must be known when planning"});
  r.push_back({"Constant", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(Tensor t, ConstantValue(*info.node));
                 if (t.dtype() == DataType::kString)
                   return Unsupported(info.node->Describe(), ": string constants are not supported");
                 return MakeKernel<ConstantKernel>(*info.node, std::move(t));
               },
               "numeric values (value, value_float(s), value_int(s)); no strings or sparse"});
  r.push_back({"Shape", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t start, info.node->attrs.GetInt("start", 0));
                 std::optional<int64_t> end;
                 if (info.node->attrs.Has("end")) {
                   ONNXQ_ASSIGN_OR_RETURN(int64_t e, info.node->attrs.GetInt("end"));
                   end = e;
                 }
                 return MakeKernel<ShapeKernel>(*info.node, start, end);
               },
               "start/end (opset 15)"});
  r.push_back({"Cast", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t to, info.node->attrs.GetInt("to"));
                 if (to == static_cast<int64_t>(DataType::kString))
                   return Unsupported(info.node->Describe(), ": Cast to string is not supported");
                 if (!IsValidDataType(static_cast<int32_t>(to)))
                   return InvalidArgument(info.node->Describe(), ": Cast to unknown type ", to);
                 return MakeKernel<CastKernel>(*info.node, static_cast<DataType>(to));
               },
               "numeric types, bool, float16, bfloat16; no strings or float8/4-bit"});
  r.push_back({"Expand", 8, 23, [](const OpInfo& info) { return MakeKernel<ExpandKernel>(*info.node); },
               "shape must be known when planning"});
  r.push_back({"Tile", 6, 23, [](const OpInfo& info) { return MakeKernel<TileKernel>(*info.node); },
               "repeats must be known when planning"});
  r.push_back({"Split", 2, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 const auto& at = info.node->attrs;
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, at.GetInt("axis", 0));
                 std::optional<std::vector<int64_t>> split;
                 if (info.opset < 13 && at.Has("split")) {
                   ONNXQ_ASSIGN_OR_RETURN(auto v, at.GetInts("split"));
                   split = v;
                 }
                 ONNXQ_ASSIGN_OR_RETURN(int64_t num, at.GetInt("num_outputs", 0));
                 return MakeKernel<SplitKernel>(*info.node, axis, split, num);
               },
               "split sizes (attribute, or input known when planning), equal parts, num_outputs (18)"});
  r.push_back({"ConstantOfShape", 9, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 Tensor v;
                 if (info.node->attrs.Has("value")) {
                   ONNXQ_ASSIGN_OR_RETURN(v, info.node->attrs.GetTensor("value"));
                   if (v.numel() != 1)
                     return InvalidArgument(info.node->Describe(), ": value must have one element");
                   if (v.dtype() == DataType::kString || ElementSize(v.dtype()) == 0)
                     return Unsupported(info.node->Describe(), ": value of type ",
                                        DataTypeName(v.dtype()), " is not supported");
                 } else {
                   const float zero = 0.f;
                   ONNXQ_ASSIGN_OR_RETURN(v, Tensor::FromBytes(DataType::kFloat, {1}, &zero, sizeof zero));
                 }
                 return MakeKernel<ConstantOfShapeKernel>(*info.node, std::move(v));
               },
               "shape must be known when planning"});
  r.push_back({"Range", 11, 23, [](const OpInfo& info) { return MakeKernel<RangeKernel>(*info.node); },
               "float32/float64/int16/int32/int64; start, limit and delta known when planning"});
  r.push_back({"ScatterND", 11, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 StatusOr<std::string> red = info.node->attrs.GetString("reduction", "none");
                 if (!red.ok()) return red.status();
                 ScatterReduce r = ScatterReduce::kNone;
                 if (*red == "add") {
                   r = ScatterReduce::kAdd;
                 } else if (*red == "mul") {
                   r = ScatterReduce::kMul;
                 } else if (*red == "max") {
                   r = ScatterReduce::kMax;
                 } else if (*red == "min") {
                   r = ScatterReduce::kMin;
                 } else if (*red != "none") {
                   return InvalidArgument(info.node->Describe(), ": unknown reduction '", *red, "'");
                 }
                 return MakeKernel<ScatterNDKernel>(*info.node, r);
               },
               "any fixed-size type (reductions: numeric); int64 indices, negative indices; "
               "duplicate indices apply in order"});
  r.push_back({"GatherElements", 11, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t axis, info.node->attrs.GetInt("axis", 0));
                 return MakeKernel<GatherElementsKernel>(*info.node, axis);
               },
               "any fixed-size type; int32/int64 (negative) indices"});
  r.push_back({"GatherND", 11, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t b, info.node->attrs.GetInt("batch_dims", 0));
                 return MakeKernel<GatherNDKernel>(*info.node, b);
               },
               "any fixed-size type; int64 (negative) indices; batch_dims (12+)"});
  r.push_back({"Trilu", 14, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t upper, info.node->attrs.GetInt("upper", 1));
                 return MakeKernel<TriluKernel>(*info.node, upper != 0);
               },
               "any fixed-size type"});
  r.push_back({"CumSum", 11, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t ex, info.node->attrs.GetInt("exclusive", 0));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t rev, info.node->attrs.GetInt("reverse", 0));
                 return MakeKernel<CumSumKernel>(*info.node, ex != 0, rev != 0);
               },
               "float32/float64/int32/int64; axis known when planning"});
  r.push_back({"IsNaN", 9, 23,
               [](const OpInfo& info) { return MakeKernel<FloatClassKernel>(*info.node, true, false, false); },
               "float32/float64"});
  r.push_back({"IsInf", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t pos, info.node->attrs.GetInt("detect_positive", 1));
                 ONNXQ_ASSIGN_OR_RETURN(int64_t neg, info.node->attrs.GetInt("detect_negative", 1));
                 return MakeKernel<FloatClassKernel>(*info.node, false, pos != 0, neg != 0);
               },
               "float32/float64"});
  r.push_back({"Size", 1, 23, [](const OpInfo& info) { return MakeKernel<SizeKernel>(*info.node); }, ""});
  r.push_back({"DepthToSpace", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t b, info.node->attrs.GetInt("blocksize"));
                 StatusOr<std::string> mode = info.node->attrs.GetString("mode", "DCR");
                 if (!mode.ok()) return mode.status();
                 if (*mode != "DCR" && *mode != "CRD")
                   return InvalidArgument(info.node->Describe(), ": mode must be DCR or CRD, got '",
                                          *mode, "'");
                 return MakeKernel<SpaceDepthKernel>(*info.node, true, b, *mode == "CRD");
               },
               "4-D, DCR and CRD"});
  r.push_back({"SpaceToDepth", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t b, info.node->attrs.GetInt("blocksize"));
                 return MakeKernel<SpaceDepthKernel>(*info.node, false, b, false);
               },
               "4-D"});
}

}  // namespace onnxq::runtime
