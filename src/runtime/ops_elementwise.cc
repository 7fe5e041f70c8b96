// Element-wise ops: broadcasting arithmetic (Add, Sub, Mul, Div, PRelu) and activations. Inner
// loops are plain contiguous loops over typed pointers (the compiler vectorises them); the work is
// split over the pool in large contiguous chunks, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

constexpr int64_t kGrain = 16384;

// ---------------------------------------------------------------- broadcasting binary ops

// A broadcast of two inputs to one output, reduced to as few dims as possible: adjacent dims are
// merged when both inputs broadcast (or not) the same way there.
struct BroadcastPlan {
  std::vector<int64_t> dims;        // coalesced output dims
  std::vector<int64_t> sa, sb;      // strides (0 where broadcast)
};

BroadcastPlan MakeBroadcastPlan(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                                const std::vector<int64_t>& out) {
  size_t r = out.size();
  std::vector<int64_t> dims;
  std::vector<bool> fa, fb;  // input is "full" (not broadcast) along the dim
  for (size_t i = 0; i < r; ++i) {
    if (out[i] == 1) continue;
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    bool ia = da == out[i], ib = db == out[i];
    if (!dims.empty() && fa.back() == ia && fb.back() == ib) {
      dims.back() *= out[i];
    } else {
      dims.push_back(out[i]);
      fa.push_back(ia);
      fb.push_back(ib);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    fa.push_back(true);
    fb.push_back(true);
  }
  BroadcastPlan p;
  p.dims = dims;
  p.sa.assign(dims.size(), 0);
  p.sb.assign(dims.size(), 0);
  int64_t ka = 1, kb = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    if (fa[i]) {
      p.sa[i] = ka;
      ka *= dims[i];
    }
    if (fb[i]) {
      p.sb[i] = kb;
      kb *= dims[i];
    }
  }
  return p;
}

template <typename T, typename U, typename V, typename F>
void BroadcastApply(const T* a, const U* b, V* y, const BroadcastPlan& p, ThreadPool* pool, F f) {
  size_t r = p.dims.size();
  int64_t inner = p.dims[r - 1];
  int64_t ia = p.sa[r - 1], ib = p.sb[r - 1];
  auto row = [&](const T* pa, const U* pb, V* py, int64_t n) {
    if (ia == 1 && ib == 1) {
      for (int64_t j = 0; j < n; ++j) py[j] = f(pa[j], pb[j]);
    } else if (ia == 1) {
      const U vb = *pb;
      for (int64_t j = 0; j < n; ++j) py[j] = f(pa[j], vb);
    } else if (ib == 1) {
      const T va = *pa;
      for (int64_t j = 0; j < n; ++j) py[j] = f(va, pb[j]);
    } else {
      const V v = f(*pa, *pb);
      for (int64_t j = 0; j < n; ++j) py[j] = v;
    }
  };
  if (r == 1) {
    ParallelFor(pool, inner, kGrain, [&](int64_t s, int64_t e) {
      row(a + s * ia, b + s * ib, y + s, e - s);
    });
    return;
  }
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < r; ++i) rows *= p.dims[i];
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  ParallelFor(pool, rows, grain, [&](int64_t s, int64_t e) {
    for (int64_t row_i = s; row_i < e; ++row_i) {
      int64_t rem = row_i, oa = 0, ob = 0;
      for (size_t d = r - 1; d-- > 0;) {
        int64_t idx = rem % p.dims[d];
        rem /= p.dims[d];
        oa += idx * p.sa[d];
        ob += idx * p.sb[d];
      }
      row(a + oa, b + ob, y + row_i * inner, inner);
    }
  });
}

enum class BinOp { kAdd, kSub, kMul, kDiv, kMin, kMax };

class BinaryKernel : public OpKernel {
 public:
  BinaryKernel(const Node& node, BinOp op) : node_(node), op_(op) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1))
      return InvalidArgument(node_.Describe(), ": needs two inputs");
    if (ctx.in[0]->dtype != ctx.in[1]->dtype)
      return InvalidArgument(node_.Describe(), ": input types differ (",
                             DataTypeName(ctx.in[0]->dtype), " vs ",
                             DataTypeName(ctx.in[1]->dtype), ")");
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    ctx.out[0].dtype = ctx.in[0]->dtype;
    ctx.out[0].dims = std::move(out);
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef &a = ctx.in[0], &b = ctx.in[1], &y = ctx.out[0];
    BroadcastPlan p = MakeBroadcastPlan(a.dims, b.dims, y.dims);
    ONNXQ_DISPATCH_NUMERIC(a.dtype, node_, T, Apply<T>(a, b, y, p, ctx.pool));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const TensorRef& a, const TensorRef& b, const TensorRef& y, const BroadcastPlan& p,
             ThreadPool* pool) const {
    const T* pa = a.ptr<T>();
    const T* pb = b.ptr<T>();
    T* py = y.ptr<T>();
    switch (op_) {
      case BinOp::kAdd:
        BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return static_cast<T>(x + z); });
        break;
      case BinOp::kSub:
        BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return static_cast<T>(x - z); });
        break;
      case BinOp::kMul:
        BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return static_cast<T>(x * z); });
        break;
      case BinOp::kDiv:
        if constexpr (std::is_integral_v<T>) {
          // Integer division by zero is undefined in ONNX; produce 0 rather than crash.
          BroadcastApply(pa, pb, py, p, pool,
                         [](T x, T z) { return z == 0 ? T(0) : static_cast<T>(x / z); });
        } else {
          BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return static_cast<T>(x / z); });
        }
        break;
      case BinOp::kMin:  // NaN in either operand propagates, as numpy.minimum
        BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return (x != x || x < z) ? x : z; });
        break;
      case BinOp::kMax:
        BroadcastApply(pa, pb, py, p, pool, [](T x, T z) { return (x != x || x > z) ? x : z; });
        break;
    }
  }

  const Node& node_;
  BinOp op_;
};

// Min / Max: variadic with multidirectional broadcasting. The first pair is computed into the
// output, then each further input is folded in place (the output already has the full shape, so
// reading and writing the same element is safe).
class VariadicKernel : public OpKernel {
 public:
  VariadicKernel(const Node& node, BinOp op) : node_(node), op_(op), pair_(node, op) {}

  Status Infer(InferContext& ctx) override {
    if (ctx.num_inputs() == 0) return InvalidArgument(node_.Describe(), ": needs at least one input");
    std::vector<int64_t> dims;
    for (size_t i = 0; i < ctx.num_inputs(); ++i) {
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
      if (ctx.in[i]->dtype != ctx.in[0]->dtype)
        return InvalidArgument(node_.Describe(), ": input types differ (",
                               DataTypeName(ctx.in[0]->dtype), " vs ",
                               DataTypeName(ctx.in[i]->dtype), ")");
      if (i == 0) {
        dims = ctx.in[0]->dims;
      } else {
        ONNXQ_ASSIGN_OR_RETURN(dims, BroadcastShapes(dims, ctx.in[i]->dims, node_));
      }
    }
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    if (mean_) {
      ONNXQ_DISPATCH_FLOAT(ctx.in[0]->dtype, node_, T, (void)0);
    }
    ctx.out[0].dtype = ctx.in[0]->dtype;
    ctx.out[0].dims = std::move(dims);
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    const TensorRef& y = ctx.out[0];
    if (ctx.in.size() == 1) {  // broadcast copy of the single input (dims are equal)
      std::memcpy(y.data, ctx.in[0].data, y.nbytes());
    } else {
      RunContext step = ctx;
      step.in = {ctx.in[0], ctx.in[1]};
      ONNXQ_RETURN_IF_ERROR(pair_.Run(step));
      for (size_t i = 2; i < ctx.in.size(); ++i) {
        step.in = {y, ctx.in[i]};
        ONNXQ_RETURN_IF_ERROR(pair_.Run(step));
      }
    }
    if (mean_) {
      ONNXQ_DISPATCH_FLOAT(y.dtype, node_, T, {
        const T inv = T(1) / static_cast<T>(ctx.in.size());
        for (int64_t i = 0; i < y.numel; ++i) y.ptr<T>()[i] *= inv;
      });
    }
    return Status::Ok();
  }

  // Mean = Sum / number of inputs (float types only).
  void SetMean() { mean_ = true; }

 private:
  const Node& node_;
  BinOp op_;
  BinaryKernel pair_;
  bool mean_ = false;
};

// PRelu: slope broadcasts (unidirectionally) to X. Before opset 7 a 1-D slope of size C applied
// per channel (axis 1), which is what PyTorch exporters of that time emitted.
class PReluKernel : public OpKernel {
 public:
  PReluKernel(const Node& node, int64_t opset) : node_(node), opset_(opset) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs X and slope");
    const auto sd = SlopeDims(ctx.in[0]->dims, ctx.in[1]->dims);
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, sd, node_));
    if (out != ctx.in[0]->dims)
      return InvalidArgument(node_.Describe(), ": slope ", Dims(ctx.in[1]->dims),
                             " does not broadcast to X ", Dims(ctx.in[0]->dims));
    if (ctx.in[0]->dtype != ctx.in[1]->dtype)
      return InvalidArgument(node_.Describe(), ": X and slope types differ");
    ONNXQ_DISPATCH_FLOAT(ctx.in[0]->dtype, node_, T, (void)0);
    ctx.out[0] = {ctx.in[0]->dtype, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    BroadcastPlan p = MakeBroadcastPlan(ctx.in[0].dims, SlopeDims(ctx.in[0].dims, ctx.in[1].dims),
                                        ctx.out[0].dims);
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T,
                         BroadcastApply(ctx.in[0].ptr<T>(), ctx.in[1].ptr<T>(),
                                        ctx.out[0].ptr<T>(), p, ctx.pool,
                                        [](T x, T s) { return x < T(0) ? s * x : x; }));
    return Status::Ok();
  }

 private:
  std::vector<int64_t> SlopeDims(const std::vector<int64_t>& x, const std::vector<int64_t>& s) const {
    if (opset_ < 7 && s.size() == 1 && x.size() > 2 && s[0] == x[1] && s[0] != 1) {
      std::vector<int64_t> d(x.size() - 1, 1);
      d[0] = s[0];
      return d;
    }
    return s;
  }
  const Node& node_;
  int64_t opset_;
};

// ---------------------------------------------------------------- unary float activations

enum class Act {
  kRelu, kLeakyRelu, kSigmoid, kHardSigmoid, kHardSwish, kTanh,
  // math
  kAbs, kNeg, kExp, kLog, kSqrt, kReciprocal, kFloor, kCeil, kRound, kSign, kErf, kSin, kCos,
  kSoftplus, kSoftsign, kElu, kSelu, kCelu, kThresholdedRelu, kMish, kGelu, kGeluTanh,
};

// log(1 + e^v) without overflow for large v.
template <typename T>
T SoftplusOf(T v) {
  return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
}

class UnaryKernel : public OpKernel {
 public:
  UnaryKernel(const Node& node, Act act, float alpha, float beta)
      : node_(node), act_(act), alpha_(alpha), beta_(beta) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    if (IntegerCapable() && IsInteger(ctx.in[0]->dtype)) {
      ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    } else {
      ONNXQ_DISPATCH_FLOAT(ctx.in[0]->dtype, node_, T, (void)0);
    }
    ctx.out[0] = {ctx.in[0]->dtype, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    if (IntegerCapable() && IsInteger(ctx.in[0].dtype)) {
      ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, ApplyInteger<T>(ctx));
      return Status::Ok();
    }
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  // Abs, Neg and Sign also run on integers (shape arithmetic uses them on int64).
  bool IntegerCapable() const { return act_ == Act::kAbs || act_ == Act::kNeg || act_ == Act::kSign; }

  template <typename T>
  void ApplyInteger(const RunContext& ctx) const {
    if constexpr (std::is_integral_v<T>) {
      const T* x = ctx.in[0].ptr<T>();
      T* y = ctx.out[0].ptr<T>();
      for (int64_t i = 0; i < ctx.out[0].numel; ++i) {
        const T v = x[i];
        if (act_ == Act::kSign) {
          y[i] = static_cast<T>(v > T(0) ? 1 : 0) - static_cast<T>(v < T(0) ? 1 : 0);
        } else if constexpr (std::is_signed_v<T>) {
          y[i] = act_ == Act::kNeg ? static_cast<T>(-v) : (v < 0 ? static_cast<T>(-v) : v);
        } else {  // unsigned: Abs is the identity, Neg wraps as numpy does
          y[i] = act_ == Act::kNeg ? static_cast<T>(T(0) - v) : v;
        }
      }
    } else {
      Apply<T>(ctx);
    }
  }

  template <typename T>
  void Apply(const RunContext& ctx) const {
    const T* x = ctx.in[0].ptr<T>();
    T* y = ctx.out[0].ptr<T>();
    const T alpha = static_cast<T>(alpha_), beta = static_cast<T>(beta_);
    auto loop = [&](auto f) {
      ParallelFor(ctx.pool, ctx.out[0].numel, kGrain, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) y[i] = f(x[i]);
      });
    };
    switch (act_) {
      case Act::kRelu:
        loop([](T v) { return v > T(0) ? v : T(0); });
        break;
      case Act::kLeakyRelu:
        loop([alpha](T v) { return v < T(0) ? alpha * v : v; });
        break;
      case Act::kSigmoid:
        // Split by sign so exp never overflows.
        loop([](T v) {
          if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
          T e = std::exp(v);
          return e / (T(1) + e);
        });
        break;
      case Act::kHardSigmoid:
        loop([alpha, beta](T v) { return std::min(T(1), std::max(T(0), alpha * v + beta)); });
        break;
      case Act::kHardSwish:
        loop([](T v) {
          return v * std::min(T(1), std::max(T(0), v * T(1.0 / 6.0) + T(0.5)));
        });
        break;
      case Act::kTanh:
        loop([](T v) { return std::tanh(v); });
        break;
      case Act::kAbs: loop([](T v) { return std::fabs(v); }); break;
      case Act::kNeg: loop([](T v) { return -v; }); break;
      case Act::kExp: loop([](T v) { return std::exp(v); }); break;
      case Act::kLog: loop([](T v) { return std::log(v); }); break;
      case Act::kSqrt: loop([](T v) { return std::sqrt(v); }); break;
      case Act::kReciprocal: loop([](T v) { return T(1) / v; }); break;
      case Act::kFloor: loop([](T v) { return std::floor(v); }); break;
      case Act::kCeil: loop([](T v) { return std::ceil(v); }); break;
      case Act::kRound: loop([](T v) { return std::nearbyint(v); }); break;  // half to even
      case Act::kSign: loop([](T v) { return v > T(0) ? T(1) : (v < T(0) ? T(-1) : v); }); break;
      case Act::kErf: loop([](T v) { return std::erf(v); }); break;
      case Act::kSin: loop([](T v) { return std::sin(v); }); break;
      case Act::kCos: loop([](T v) { return std::cos(v); }); break;
      case Act::kSoftplus: loop([](T v) { return SoftplusOf(v); }); break;
      case Act::kSoftsign: loop([](T v) { return v / (T(1) + std::fabs(v)); }); break;
      case Act::kElu:
        loop([alpha](T v) { return v < T(0) ? alpha * std::expm1(v) : v; });
        break;
      case Act::kSelu:  // alpha, gamma(beta_)
        loop([alpha, beta](T v) { return beta * (v <= T(0) ? alpha * std::expm1(v) : v); });
        break;
      case Act::kCelu:
        loop([alpha](T v) {
          return std::max(T(0), v) + std::min(T(0), alpha * std::expm1(v / alpha));
        });
        break;
      case Act::kThresholdedRelu: loop([alpha](T v) { return v > alpha ? v : T(0); }); break;
      case Act::kMish: loop([](T v) { return v * std::tanh(SoftplusOf(v)); }); break;
      case Act::kGelu:
        loop([](T v) { return T(0.5) * v * (T(1) + std::erf(v * T(0.70710678118654752440))); });
        break;
      case Act::kGeluTanh:
        loop([](T v) {
          const T k = T(0.79788456080286535588);  // sqrt(2 / pi)
          return T(0.5) * v * (T(1) + std::tanh(k * (v + T(0.044715) * v * v * v)));
        });
        break;
    }
  }

  const Node& node_;
  Act act_;
  float alpha_, beta_;
};

// Clip: bounds from attributes (opset < 11) or optional inputs (opset >= 11), any numeric type.
class ClipKernel : public OpKernel {
 public:
  ClipKernel(const Node& node, std::optional<float> min_attr, std::optional<float> max_attr)
      : node_(node), min_attr_(min_attr), max_attr_(max_attr) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    for (size_t i = 1; i < 3; ++i) {
      if (!ctx.has(i)) continue;
      if (ctx.in[i]->dtype != ctx.in[0]->dtype)
        return InvalidArgument(node_.Describe(), ": bound ", i, " has type ",
                               DataTypeName(ctx.in[i]->dtype), ", input has ",
                               DataTypeName(ctx.in[0]->dtype));
      if (NumElements(ctx.in[i]->dims) != 1)
        return InvalidArgument(node_.Describe(), ": bound ", i, " must be a scalar");
    }
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    ctx.out[0] = {ctx.in[0]->dtype, ctx.in[0]->dims, nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx) const {
    T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
    if constexpr (std::is_floating_point_v<T>) {
      if (min_attr_) lo = static_cast<T>(*min_attr_);
      if (max_attr_) hi = static_cast<T>(*max_attr_);
    }
    if (ctx.in.size() > 1 && ctx.in[1].present()) lo = *ctx.in[1].ptr<T>();
    if (ctx.in.size() > 2 && ctx.in[2].present()) hi = *ctx.in[2].ptr<T>();
    const T* x = ctx.in[0].ptr<T>();
    T* y = ctx.out[0].ptr<T>();
    ParallelFor(ctx.pool, ctx.out[0].numel, kGrain, [&](int64_t s, int64_t e) {
      // min(max(x, lo), hi): when lo > hi every output is hi, as ONNX specifies.
      for (int64_t i = s; i < e; ++i) y[i] = std::min(std::max(x[i], lo), hi);
    });
  }

  const Node& node_;
  std::optional<float> min_attr_, max_attr_;
};

// ---------------------------------------------------------------- Pow, comparisons, logic, Where

// Pow: float base; exponent of the same float type or int32/int64 (opset >= 12 allows the mix).
class PowKernel : public OpKernel {
 public:
  explicit PowKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs X and Y");
    ONNXQ_DISPATCH_FLOAT(ctx.in[0]->dtype, node_, T, (void)0);
    const DataType e = ctx.in[1]->dtype;
    if (e != ctx.in[0]->dtype && e != DataType::kInt32 && e != DataType::kInt64)
      return Unsupported(node_.Describe(), ": exponent of type ", DataTypeName(e), " with base ",
                         DataTypeName(ctx.in[0]->dtype), " is not supported");
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    ctx.out[0] = {ctx.in[0]->dtype, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    BroadcastPlan p = MakeBroadcastPlan(ctx.in[0].dims, ctx.in[1].dims, ctx.out[0].dims);
    ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Apply<T>(ctx, p));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx, const BroadcastPlan& p) const {
    const T* x = ctx.in[0].ptr<T>();
    T* y = ctx.out[0].ptr<T>();
    auto pw = [](T b, auto e) {
      // Squares are by far the most common exponent (LayerNorm's variance): exact and fast.
      const T te = static_cast<T>(e);
      return te == T(2) ? b * b : static_cast<T>(std::pow(b, te));
    };
    switch (ctx.in[1].dtype) {
      case DataType::kInt32: BroadcastApply(x, ctx.in[1].ptr<int32_t>(), y, p, ctx.pool, pw); break;
      case DataType::kInt64: BroadcastApply(x, ctx.in[1].ptr<int64_t>(), y, p, ctx.pool, pw); break;
      default: BroadcastApply(x, ctx.in[1].ptr<T>(), y, p, ctx.pool, pw); break;
    }
  }
  const Node& node_;
};

// Mod: fmod = 0 (integers only) takes the divisor's sign, as Python's %; fmod = 1 is C's fmod.
// A zero divisor gives 0 for integers (undefined in ONNX) rather than a crash.
class ModKernel : public OpKernel {
 public:
  ModKernel(const Node& node, bool fmod) : node_(node), fmod_(fmod) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs two inputs");
    if (ctx.in[0]->dtype != ctx.in[1]->dtype)
      return InvalidArgument(node_.Describe(), ": input types differ");
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    if (!fmod_ && IsFloatingPoint(ctx.in[0]->dtype))
      return InvalidArgument(node_.Describe(), ": floating-point Mod needs fmod = 1");
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    ctx.out[0] = {ctx.in[0]->dtype, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    BroadcastPlan p = MakeBroadcastPlan(ctx.in[0].dims, ctx.in[1].dims, ctx.out[0].dims);
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx, p));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx, const BroadcastPlan& p) const {
    const T* a = ctx.in[0].ptr<T>();
    const T* b = ctx.in[1].ptr<T>();
    T* y = ctx.out[0].ptr<T>();
    if constexpr (std::is_floating_point_v<T>) {
      BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return std::fmod(u, v); });
    } else {
      const bool c_style = fmod_;
      BroadcastApply(a, b, y, p, ctx.pool, [c_style](T u, T v) {
        if (v == 0) return T(0);
        if constexpr (std::is_signed_v<T>) {
          if (v == T(-1)) return T(0);  // INT_MIN % -1 overflows
        }
        T r = static_cast<T>(u % v);
        if constexpr (std::is_signed_v<T>) {
          if (!c_style && r != 0 && ((r < 0) != (v < 0))) r = static_cast<T>(r + v);
        }
        return r;
      });
    }
  }
  const Node& node_;
  bool fmod_;
};

enum class CmpOp { kEqual, kLess, kGreater, kLessOrEqual, kGreaterOrEqual };

class CompareKernel : public OpKernel {
 public:
  CompareKernel(const Node& node, CmpOp op) : node_(node), op_(op) {}
  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0) || !ctx.has(1)) return InvalidArgument(node_.Describe(), ": needs two inputs");
    if (ctx.in[0]->dtype != ctx.in[1]->dtype)
      return InvalidArgument(node_.Describe(), ": input types differ (",
                             DataTypeName(ctx.in[0]->dtype), " vs ",
                             DataTypeName(ctx.in[1]->dtype), ")");
    if (!(op_ == CmpOp::kEqual && ctx.in[0]->dtype == DataType::kBool)) {
      ONNXQ_DISPATCH_NUMERIC(ctx.in[0]->dtype, node_, T, (void)0);
    }
    ONNXQ_ASSIGN_OR_RETURN(auto out, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    ctx.out[0] = {DataType::kBool, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    BroadcastPlan p = MakeBroadcastPlan(ctx.in[0].dims, ctx.in[1].dims, ctx.out[0].dims);
    if (ctx.in[0].dtype == DataType::kBool) {
      Apply<bool>(ctx, p);
      return Status::Ok();
    }
    ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx, p));
    return Status::Ok();
  }

 private:
  template <typename T>
  void Apply(const RunContext& ctx, const BroadcastPlan& p) const {
    const T* a = ctx.in[0].ptr<T>();
    const T* b = ctx.in[1].ptr<T>();
    bool* y = ctx.out[0].ptr<bool>();
    switch (op_) {
      case CmpOp::kEqual: BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return u == v; }); break;
      case CmpOp::kLess: BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return u < v; }); break;
      case CmpOp::kGreater: BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return u > v; }); break;
      case CmpOp::kLessOrEqual:
        BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return u <= v; });
        break;
      case CmpOp::kGreaterOrEqual:
        BroadcastApply(a, b, y, p, ctx.pool, [](T u, T v) { return u >= v; });
        break;
    }
  }
  const Node& node_;
  CmpOp op_;
};

enum class LogicOp { kAnd, kOr, kXor, kNot };

class LogicKernel : public OpKernel {
 public:
  LogicKernel(const Node& node, LogicOp op) : node_(node), op_(op) {}
  Status Infer(InferContext& ctx) override {
    const size_t n = op_ == LogicOp::kNot ? 1 : 2;
    for (size_t i = 0; i < n; ++i) {
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
      if (ctx.in[i]->dtype != DataType::kBool)
        return InvalidArgument(node_.Describe(), ": input ", i, " must be bool, got ",
                               DataTypeName(ctx.in[i]->dtype));
    }
    std::vector<int64_t> out = ctx.in[0]->dims;
    if (n == 2) {
      ONNXQ_ASSIGN_OR_RETURN(out, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    }
    ctx.out[0] = {DataType::kBool, std::move(out), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const bool* a = ctx.in[0].ptr<bool>();
    bool* y = ctx.out[0].ptr<bool>();
    if (op_ == LogicOp::kNot) {
      for (int64_t i = 0; i < ctx.out[0].numel; ++i) y[i] = !a[i];
      return Status::Ok();
    }
    BroadcastPlan p = MakeBroadcastPlan(ctx.in[0].dims, ctx.in[1].dims, ctx.out[0].dims);
    const bool* b = ctx.in[1].ptr<bool>();
    switch (op_) {
      case LogicOp::kAnd: BroadcastApply(a, b, y, p, ctx.pool, [](bool u, bool v) { return u && v; }); break;
      case LogicOp::kOr: BroadcastApply(a, b, y, p, ctx.pool, [](bool u, bool v) { return u || v; }); break;
      default: BroadcastApply(a, b, y, p, ctx.pool, [](bool u, bool v) { return u != v; }); break;
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
  LogicOp op_;
};

// Element strides of `in` broadcast to `out` (0 along broadcast dims), aligned to out's rank.
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  std::vector<int64_t> st(out.size(), 0);
  int64_t k = 1;
  for (size_t i = in.size(); i-- > 0;) {
    const size_t o = out.size() - in.size() + i;
    st[o] = in[i] == 1 ? 0 : k;
    k *= in[i];
  }
  return st;
}

// Where(condition, X, Y): three-way broadcast; any element type (copied as bytes).
class WhereKernel : public OpKernel {
 public:
  explicit WhereKernel(const Node& node) : node_(node) {}
  Status Infer(InferContext& ctx) override {
    for (size_t i = 0; i < 3; ++i)
      if (!ctx.has(i)) return InvalidArgument(node_.Describe(), ": input ", i, " is missing");
    if (ctx.in[0]->dtype != DataType::kBool)
      return InvalidArgument(node_.Describe(), ": condition must be bool, got ",
                             DataTypeName(ctx.in[0]->dtype));
    if (ctx.in[1]->dtype != ctx.in[2]->dtype)
      return InvalidArgument(node_.Describe(), ": X and Y types differ (",
                             DataTypeName(ctx.in[1]->dtype), " vs ", DataTypeName(ctx.in[2]->dtype), ")");
    if (ElementSize(ctx.in[1]->dtype) == 0 || ctx.in[1]->dtype == DataType::kString)
      return Unsupported(node_.Describe(), ": element type ", DataTypeName(ctx.in[1]->dtype),
                         " is not supported");
    ONNXQ_ASSIGN_OR_RETURN(auto d, BroadcastShapes(ctx.in[0]->dims, ctx.in[1]->dims, node_));
    ONNXQ_ASSIGN_OR_RETURN(d, BroadcastShapes(d, ctx.in[2]->dims, node_));
    ctx.out[0] = {ctx.in[1]->dtype, std::move(d), nullptr};
    return Status::Ok();
  }
  Status Run(const RunContext& ctx) const override {
    const auto& od = ctx.out[0].dims;
    const auto sc = BroadcastStrides(ctx.in[0].dims, od), sx = BroadcastStrides(ctx.in[1].dims, od),
               sy = BroadcastStrides(ctx.in[2].dims, od);
    const size_t es = ElementSize(ctx.out[0].dtype);
    const bool* c = ctx.in[0].ptr<bool>();
    const char* x = ctx.in[1].ptr<char>();
    const char* y = ctx.in[2].ptr<char>();
    char* out = ctx.out[0].ptr<char>();
    const size_t r = od.size();
    std::vector<int64_t> idx(r, 0);
    int64_t oc = 0, ox = 0, oy = 0;
    for (int64_t i = 0; i < ctx.out[0].numel; ++i) {
      std::memcpy(out + static_cast<size_t>(i) * es,
                  c[oc] ? x + static_cast<size_t>(ox) * es : y + static_cast<size_t>(oy) * es, es);
      for (size_t d = r; d-- > 0;) {  // odometer step
        if (++idx[d] < od[d]) {
          oc += sc[d];
          ox += sx[d];
          oy += sy[d];
          break;
        }
        oc -= sc[d] * (od[d] - 1);
        ox -= sx[d] * (od[d] - 1);
        oy -= sy[d] * (od[d] - 1);
        idx[d] = 0;
      }
    }
    return Status::Ok();
  }

 private:
  const Node& node_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeGelu(const OpInfo& info) {
  StatusOr<std::string> approx = info.node->attrs.GetString("approximate", "none");
  if (!approx.ok()) return approx.status();
  if (*approx != "none" && *approx != "tanh")
    return InvalidArgument(info.node->Describe(), ": approximate must be 'none' or 'tanh', got '",
                           *approx, "'");
  return MakeKernel<UnaryKernel>(*info.node, *approx == "tanh" ? Act::kGeluTanh : Act::kGelu, 0.f, 0.f);
}

KernelFactory UnaryFactory(Act act, float default_alpha, float default_beta) {
  return [=](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
    ONNXQ_ASSIGN_OR_RETURN(float alpha, info.node->attrs.GetFloat("alpha", default_alpha));
    ONNXQ_ASSIGN_OR_RETURN(float beta, info.node->attrs.GetFloat("beta", default_beta));
    return MakeKernel<UnaryKernel>(*info.node, act, alpha, beta);
  };
}

KernelFactory BinaryFactory(BinOp op) {
  return [=](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
    // Opset < 7 broadcast only with broadcast=1 and axis; ONNX's own converters rewrite those, and
    // numpy-style broadcasting covers the trailing-aligned case. Refuse explicit axis.
    if (info.opset < 7 && info.node->attrs.Has("axis"))
      return Unsupported(info.node->Describe(), ": legacy broadcast with 'axis' (opset ",
                         info.opset, ") is not supported");
    return MakeKernel<BinaryKernel>(*info.node, op);
  };
}

}  // namespace

std::optional<kernels::Activation> FusableActivation(const Node& node, int64_t opset,
                                                     const Graph& graph) {
  if (node.Is("Relu")) return kernels::Activation{0.f, std::numeric_limits<float>::infinity()};
  if (!node.Is("Clip")) return std::nullopt;
  kernels::Activation act;
  if (opset < 11) {
    auto lo = node.attrs.GetFloat("min", std::numeric_limits<float>::lowest());
    auto hi = node.attrs.GetFloat("max", std::numeric_limits<float>::max());
    if (!lo.ok() || !hi.ok()) return std::nullopt;
    act.min = *lo;
    act.max = *hi;
    return act;
  }
  for (size_t i = 1; i < 3; ++i) {
    ValueId v = node.input(i);
    if (v == kNoValue) continue;
    const Tensor* t = graph.value(v).initializer();
    if (t == nullptr || t->dtype() != DataType::kFloat || t->numel() != 1) return std::nullopt;
    (i == 1 ? act.min : act.max) = t->data<float>()[0];
  }
  if (act.min > act.max) return std::nullopt;
  return act;
}

void RegisterElementwiseOps(std::vector<OpRegistration>& r) {
  r.push_back({"Add", 1, 23, BinaryFactory(BinOp::kAdd), "numpy broadcasting, numeric types"});
  r.push_back({"Sub", 1, 23, BinaryFactory(BinOp::kSub), "numpy broadcasting, numeric types"});
  r.push_back({"Mul", 1, 23, BinaryFactory(BinOp::kMul), "numpy broadcasting, numeric types"});
  r.push_back({"Div", 1, 23, BinaryFactory(BinOp::kDiv),
               "numpy broadcasting, numeric types (integer x/0 gives 0)"});
  for (const auto& entry : {std::pair{"Min", BinOp::kMin}, std::pair{"Max", BinOp::kMax}}) {
    const BinOp op = entry.second;  // a plain local: clang 14 cannot capture structured bindings
    r.push_back({entry.first, 6, 23,
                 [op](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                   return MakeKernel<VariadicKernel>(*info.node, op);
                 },
                 "variadic, numpy broadcasting, numeric types; NaN propagates"});
  }
  r.push_back({"Sum", 6, 23,
               [](const OpInfo& info) { return MakeKernel<VariadicKernel>(*info.node, BinOp::kAdd); },
               "variadic, numeric types, numpy broadcasting (8+)"});
  r.push_back({"Mean", 6, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 auto k = std::make_unique<VariadicKernel>(*info.node, BinOp::kAdd);
                 k->SetMean();
                 return std::unique_ptr<OpKernel>(std::move(k));
               },
               "variadic, float32/float64, numpy broadcasting (8+)"});
  r.push_back({"PRelu", 1, 23,
               [](const OpInfo& info) { return MakeKernel<PReluKernel>(*info.node, info.opset); },
               "float32/float64; slope broadcasts to X"});
  r.push_back({"Relu", 1, 23, UnaryFactory(Act::kRelu, 0.f, 0.f), "float32/float64"});
  r.push_back({"LeakyRelu", 1, 23, UnaryFactory(Act::kLeakyRelu, 0.01f, 0.f), "float32/float64"});
  r.push_back({"Sigmoid", 1, 23, UnaryFactory(Act::kSigmoid, 0.f, 0.f), "float32/float64"});
  r.push_back({"HardSigmoid", 1, 23, UnaryFactory(Act::kHardSigmoid, 0.2f, 0.5f),
               "float32/float64"});
  r.push_back({"HardSwish", 14, 23, UnaryFactory(Act::kHardSwish, 0.f, 0.f), "float32/float64"});
  r.push_back({"Tanh", 1, 23, UnaryFactory(Act::kTanh, 0.f, 0.f), "float32/float64"});
  struct Math {
    const char* op;
    int64_t since;
    Act act;
    float alpha, beta;
  };
  for (const Math& m : std::initializer_list<Math>{
           {"Abs", 1, Act::kAbs, 0.f, 0.f}, {"Neg", 1, Act::kNeg, 0.f, 0.f},
           {"Exp", 1, Act::kExp, 0.f, 0.f}, {"Log", 1, Act::kLog, 0.f, 0.f},
           {"Sqrt", 1, Act::kSqrt, 0.f, 0.f}, {"Reciprocal", 1, Act::kReciprocal, 0.f, 0.f},
           {"Floor", 1, Act::kFloor, 0.f, 0.f}, {"Ceil", 1, Act::kCeil, 0.f, 0.f},
           {"Round", 11, Act::kRound, 0.f, 0.f}, {"Sign", 9, Act::kSign, 0.f, 0.f},
           {"Erf", 9, Act::kErf, 0.f, 0.f}, {"Sin", 7, Act::kSin, 0.f, 0.f},
           {"Cos", 7, Act::kCos, 0.f, 0.f}, {"Softplus", 1, Act::kSoftplus, 0.f, 0.f},
           {"Softsign", 1, Act::kSoftsign, 0.f, 0.f}, {"Elu", 1, Act::kElu, 1.f, 0.f},
           {"Selu", 1, Act::kSelu, 1.67326319217681884765625f, 1.05070102214813232421875f},
           {"Celu", 12, Act::kCelu, 1.f, 0.f},
           {"ThresholdedRelu", 10, Act::kThresholdedRelu, 1.f, 0.f},
           {"Mish", 18, Act::kMish, 0.f, 0.f}}) {
    // Selu's gamma is read as "beta" by UnaryFactory's second attribute: map it explicitly.
    if (m.act == Act::kSelu) {
      r.push_back({m.op, m.since, 23,
                   [m](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                     ONNXQ_ASSIGN_OR_RETURN(float alpha, info.node->attrs.GetFloat("alpha", m.alpha));
                     ONNXQ_ASSIGN_OR_RETURN(float gamma, info.node->attrs.GetFloat("gamma", m.beta));
                     return MakeKernel<UnaryKernel>(*info.node, m.act, alpha, gamma);
                   },
                   "float32/float64"});
      continue;
    }
    r.push_back({m.op, m.since, 23, UnaryFactory(m.act, m.alpha, m.beta), "float32/float64"});
  }
  r.push_back({"Gelu", 20, 23, MakeGelu, "float32/float64; approximate none or tanh"});
  r.push_back({"Mod", 10, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 ONNXQ_ASSIGN_OR_RETURN(int64_t fmod, info.node->attrs.GetInt("fmod", 0));
                 return MakeKernel<ModKernel>(*info.node, fmod != 0);
               },
               "numeric; fmod 0 (integers, divisor's sign) or 1 (C fmod); numpy broadcasting"});
  r.push_back({"Pow", 1, 23, [](const OpInfo& info) { return MakeKernel<PowKernel>(*info.node); },
               "float32/float64 base; exponent of the same type or int32/int64; numpy broadcasting"});
  for (const auto& entry : {std::pair{"Equal", CmpOp::kEqual}, std::pair{"Less", CmpOp::kLess},
                            std::pair{"Greater", CmpOp::kGreater},
                            std::pair{"LessOrEqual", CmpOp::kLessOrEqual},
                            std::pair{"GreaterOrEqual", CmpOp::kGreaterOrEqual}}) {
    const CmpOp op = entry.second;
    r.push_back({entry.first, 1, 23,
                 [op](const OpInfo& info) { return MakeKernel<CompareKernel>(*info.node, op); },
                 "numeric types (Equal: also bool); numpy broadcasting; bool output"});
  }
  for (const auto& entry : {std::pair{"And", LogicOp::kAnd}, std::pair{"Or", LogicOp::kOr},
                            std::pair{"Xor", LogicOp::kXor}, std::pair{"Not", LogicOp::kNot}}) {
    const LogicOp op = entry.second;
    r.push_back({entry.first, 7, 23,
                 [op](const OpInfo& info) { return MakeKernel<LogicKernel>(*info.node, op); },
                 "bool; numpy broadcasting"});
  }
  r.push_back({"Where", 9, 23, [](const OpInfo& info) { return MakeKernel<WhereKernel>(*info.node); },
               "any fixed-size element type; three-way numpy broadcasting"});
  r.push_back({"Clip", 1, 23,
               [](const OpInfo& info) -> StatusOr<std::unique_ptr<OpKernel>> {
                 std::optional<float> lo, hi;
                 if (info.opset < 11) {
                   ONNXQ_ASSIGN_OR_RETURN(float a, info.node->attrs.GetFloat(
                                                       "min", std::numeric_limits<float>::lowest()));
                   ONNXQ_ASSIGN_OR_RETURN(float b, info.node->attrs.GetFloat(
                                                       "max", std::numeric_limits<float>::max()));
                   lo = a;
                   hi = b;
                 }
                 return MakeKernel<ClipKernel>(*info.node, lo, hi);
               },
               "numeric types; bounds from attributes (opset < 11) or scalar inputs"});
}

}  // namespace onnxq::runtime
