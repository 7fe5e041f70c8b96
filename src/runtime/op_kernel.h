// Internal interface between the session (planning, memory, hooks) and the per-op implementations.
// An OpKernel is created once per node when the session is created: it parses the node's
// attributes into a typed struct (no attribute lookups at run time) and refuses what it does not
// implement. Infer computes output types and shapes for one plan (one set of input shapes); Run
// computes outputs into buffers the memory plan already sized.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq::runtime {

// A tensor during a run: element type, dims and a buffer the kernel does not own (arena, feed,
// initializer or a plan-time constant).
struct TensorRef {
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> dims;
  int64_t numel = 0;
  void* data = nullptr;

  bool present() const { return dtype != DataType::kUndefined; }
  size_t rank() const { return dims.size(); }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
  size_t nbytes() const { return static_cast<size_t>(numel) * ElementSize(dtype); }
};

// What planning knows about a value: type, shape, and its contents when they are known before
// the run (initializers, Constant nodes, small integer feeds, folded shape arithmetic).
struct ValueInfo {
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> dims;
  const Tensor* value = nullptr;
  bool present() const { return dtype != DataType::kUndefined; }
};

struct InferContext {
  const Node* node = nullptr;
  std::vector<const ValueInfo*> in;  // null for an omitted optional input
  std::vector<ValueInfo> out;        // kernels set dtype and dims of every produced output
  kernels::Isa isa = kernels::Isa::kReference;
  bool fused = false;  // this plan applies the node's fused activation (Conv)

  size_t num_inputs() const { return in.size(); }
  bool has(size_t i) const { return i < in.size() && in[i] != nullptr && in[i]->present(); }
  const Tensor* value(size_t i) const { return has(i) ? in[i]->value : nullptr; }
};

struct RunContext {
  std::vector<TensorRef> in;   // dtype kUndefined for omitted inputs
  std::vector<TensorRef> out;  // dims already set by planning; data points at the plan's buffer
  ThreadPool* pool = nullptr;  // may be null (plan-time folding): run inline
  kernels::Isa isa = kernels::Isa::kReference;
  bool fused = false;          // Conv: apply the fused activation chosen at plan time
};

class OpKernel {
 public:
  virtual ~OpKernel() = default;
  virtual Status Infer(InferContext& ctx) = 0;
  virtual Status Run(const RunContext& ctx) const = 0;
  // Conv-like kernels that can apply a clamp (Relu, Clip) in their epilogue.
  virtual bool SupportsFusedActivation() const { return false; }
  virtual void SetFusedActivation(kernels::Activation) {}
};

struct OpInfo {
  const Node* node = nullptr;
  int64_t opset = 0;
  const Graph* graph = nullptr;
  kernels::Isa isa = kernels::Isa::kReference;
};

using KernelFactory = std::function<StatusOr<std::unique_ptr<OpKernel>>(const OpInfo&)>;

struct OpRegistration {
  std::string op_type;
  int64_t min_opset = 1;
  int64_t max_opset = 23;
  KernelFactory factory;
  std::string limits;  // one line for the docs / error messages
};

// Every op family adds its ops here (called once, from the registry).
void RegisterElementwiseOps(std::vector<OpRegistration>& r);
void RegisterNnOps(std::vector<OpRegistration>& r);
void RegisterPoolOps(std::vector<OpRegistration>& r);
void RegisterTensorOps(std::vector<OpRegistration>& r);
void RegisterResizeOps(std::vector<OpRegistration>& r);
void RegisterQuantOps(std::vector<OpRegistration>& r);
void RegisterIntegerOps(std::vector<OpRegistration>& r);  // ops_integer.cc (int8 engineer)

const std::vector<OpRegistration>& Registry();
// The registration matching the node's op type, domain and opset, or an Unsupported error
// "unsupported operator X (opset N) at node Y".
StatusOr<const OpRegistration*> FindOp(const Node& node, int64_t opset);

// True if input `index` of the node determines output shapes (Reshape's shape, Slice's starts,
// Resize's scales, ...): a feed consumed there keys the plan by its contents.
bool IsShapeInput(const Node& node, size_t index);

// The clamp a Relu or Clip node (with constant float bounds) applies, for fusing into Conv.
std::optional<kernels::Activation> FusableActivation(const Node& node, int64_t opset,
                                                     const Graph& graph);

// ---------------------------------------------------------------- helpers for op implementations

template <typename K, typename... A>
StatusOr<std::unique_ptr<OpKernel>> MakeKernel(A&&... a) {
  return std::unique_ptr<OpKernel>(new K(std::forward<A>(a)...));
}

// Runs fn(begin, end) over [0, n) on the pool (inline when pool is null or the work is small).
void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn);

inline int64_t NumElements(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}
// dims = [outer..., mid, inner...] around a normalised `axis` (axis < 0: everything is outer, mid
// and inner are 1), so element (o, m, i) is at (o * mid + m) * inner + i.
inline void AxisSplit(const std::vector<int64_t>& dims, int64_t axis, int64_t* outer, int64_t* mid,
                      int64_t* inner) {
  *outer = 1;
  *mid = 1;
  *inner = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(dims.size()); ++i) {
    if (axis < 0 || i < axis) {
      *outer *= dims[static_cast<size_t>(i)];
    } else if (i == axis) {
      *mid = dims[static_cast<size_t>(i)];
    } else {
      *inner *= dims[static_cast<size_t>(i)];
    }
  }
}
// Normalises a possibly negative axis against rank; error names the node.
StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const Node& node,
                                const char* what = "axis");
// Reads an integer tensor (int32/int64) as int64 values.
StatusOr<std::vector<int64_t>> ReadInts(const Tensor& t, const Node& node, const char* what);
// Reads a float-compatible scalar/vector tensor as floats.
std::vector<float> ReadFloats(const Tensor& t);
// Multidirectional (numpy) broadcast of two shapes.
StatusOr<std::vector<int64_t>> BroadcastShapes(const std::vector<int64_t>& a,
                                               const std::vector<int64_t>& b, const Node& node);
std::string Dims(const std::vector<int64_t>& d);

template <typename T>
constexpr DataType DataTypeOf();
template <> constexpr DataType DataTypeOf<float>() { return DataType::kFloat; }
template <> constexpr DataType DataTypeOf<double>() { return DataType::kDouble; }
template <> constexpr DataType DataTypeOf<int8_t>() { return DataType::kInt8; }
template <> constexpr DataType DataTypeOf<uint8_t>() { return DataType::kUint8; }
template <> constexpr DataType DataTypeOf<int16_t>() { return DataType::kInt16; }
template <> constexpr DataType DataTypeOf<uint16_t>() { return DataType::kUint16; }
template <> constexpr DataType DataTypeOf<int32_t>() { return DataType::kInt32; }
template <> constexpr DataType DataTypeOf<uint32_t>() { return DataType::kUint32; }
template <> constexpr DataType DataTypeOf<int64_t>() { return DataType::kInt64; }
template <> constexpr DataType DataTypeOf<uint64_t>() { return DataType::kUint64; }

}  // namespace onnxq::runtime

// Instantiates `body` with T bound to the C++ type of a real-valued numeric dtype (float, double
// and the integer types); other dtypes make the enclosing function return Unsupported.
#define ONNXQ_RT_CASE(DT, CT, T, ...) \
  case ::onnxq::DataType::DT: {       \
    using T = CT;                     \
    (void)sizeof(T);                  \
    __VA_ARGS__;                      \
    break;                            \
  }
#define ONNXQ_DISPATCH_NUMERIC(dtype, node, T, ...)                                           \
  switch (dtype) {                                                                            \
    ONNXQ_RT_CASE(kFloat, float, T, __VA_ARGS__)                                              \
    ONNXQ_RT_CASE(kDouble, double, T, __VA_ARGS__)                                            \
    ONNXQ_RT_CASE(kInt8, int8_t, T, __VA_ARGS__)                                              \
    ONNXQ_RT_CASE(kUint8, uint8_t, T, __VA_ARGS__)                                            \
    ONNXQ_RT_CASE(kInt16, int16_t, T, __VA_ARGS__)                                            \
    ONNXQ_RT_CASE(kUint16, uint16_t, T, __VA_ARGS__)                                          \
    ONNXQ_RT_CASE(kInt32, int32_t, T, __VA_ARGS__)                                            \
    ONNXQ_RT_CASE(kUint32, uint32_t, T, __VA_ARGS__)                                          \
    ONNXQ_RT_CASE(kInt64, int64_t, T, __VA_ARGS__)                                            \
    ONNXQ_RT_CASE(kUint64, uint64_t, T, __VA_ARGS__)                                          \
    default:                                                                                  \
      return ::onnxq::Unsupported((node).Describe(), ": element type ", DataTypeName(dtype),  \
                                  " is not supported by this operator");                      \
  }
#define ONNXQ_DISPATCH_FLOAT(dtype, node, T, ...)                                             \
  switch (dtype) {                                                                            \
    ONNXQ_RT_CASE(kFloat, float, T, __VA_ARGS__)                                              \
    ONNXQ_RT_CASE(kDouble, double, T, __VA_ARGS__)                                            \
    default:                                                                                  \
      return ::onnxq::Unsupported((node).Describe(), ": element type ", DataTypeName(dtype),  \
                                  " is not supported by this operator (float32/float64 only)"); \
  }
