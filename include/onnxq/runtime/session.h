// The float executor: runs an onnxq Model on the CPU. Shapes are propagated when a session is
// created for concrete input shapes, a memory plan reuses buffers by liveness, kernels (with their
// ISA) are chosen once per node, and hooks let calibration observe or replace any tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq {

struct SessionOptions {
  int num_threads = 0;                 // <= 0: all cores
  std::optional<kernels::Isa> isa;     // nullopt: kernels::ActiveIsa()
  // QDQ models (with DequantizeLinear nodes): lower the quantized patterns (DQ -> Conv / MatMul /
  // Add / pools -> Q) to integer kernels with ONNX Runtime's requantization, so the session
  // computes what ONNX Runtime computes for the file (docs/int8.md). false: run every Q/DQ node
  // in float as ONNX defines it (the fake-quant reference). No effect on models without QDQ.
  bool integer_qdq = true;
  // With integer_qdq: run chains of quantized convolutions channels-last (NHWC), as ONNX Runtime
  // does (faster; inside a chain hooks and extra_outputs see the values as "<name>_nhwc",
  // [N, H, W, C]). false keeps every quantized value NCHW under its own name.
  bool int8_channels_last = true;
};

// Called after a node has produced `value` (and before anything consumes it). The hook may read
// the tensor (calibration observers) or overwrite it in place (fake quantization). Returning a
// non-OK status aborts the run with that status.
using TensorHook = std::function<Status(ValueId id, const std::string& name, Tensor& value)>;

struct RunOptions {
  TensorHook hook;
  // Values the hook sees; empty means every value a node produces. Listed values are also kept
  // alive until the hook has run (the memory plan does not reuse them early).
  std::vector<ValueId> hooked_values;
  // Extra values to return besides the graph outputs (by name), e.g. for per-layer comparisons.
  std::vector<std::string> extra_outputs;
  // Time every executed step (steady_clock around each kernel; no hooks, no extra buffers kept,
  // so the plan and the kernels are those of a plain run). Results in RunStats::profile.
  bool profile = false;
  // > 0: split the feeds along their first (batch) dimension into runs of this many samples
  // (every feed's first dimension must be the same multiple of it) and join every output along its
  // first dimension. For models that fix their batch size (FixedBatchSize, runtime/batch.h). The
  // hook sees each run's tensors separately; last_stats() describes the last run.
  int64_t batch_chunk = 0;
  // With batch_chunk: feeds given whole to every run (e.g. a weight fed as an input).
  std::vector<std::string> unbatched_inputs;
};

// One executed step of a profiled run: a node of Session::model() (after QDQ lowering; a fused
// activation is timed with its Conv).
struct StepTime {
  std::string node;     // node name (or "#id")
  std::string op_type;  // domain-qualified for non-default domains
  std::string output;   // name of the first output
  std::vector<int64_t> output_dims;
  double micros = 0;
};

struct RunStats {
  int64_t peak_bytes = 0;  // peak of intermediate buffers during the last run
  int64_t steps = 0;       // kernels the last run executed (fused and folded nodes excluded)
  int64_t fused = 0;       // activations fused into the preceding Conv in the last run's plan
  int64_t folded = 0;      // nodes evaluated at plan time (integer shape arithmetic)
  std::vector<StepTime> profile;  // the last run's steps in order, when RunOptions::profile
};

class Session {
 public:
  ~Session();
  // Checks every op is supported (error: "unsupported operator X (opset N) at node Y") before
  // anything runs. The session keeps its own copy of the model (initializers are shared, not
  // copied: tensors are copy-on-write).
  static StatusOr<std::unique_ptr<Session>> Create(const Model& model,
                                                   const SessionOptions& options = {});

  // Feeds by graph input name; returns graph outputs (and extra_outputs) by name. The first run
  // with a new input signature (dtypes, shapes, contents of small integer / shape-like feeds,
  // hook configuration) builds and caches a plan; later runs reuse it. Runs of one session are
  // serialised.
  StatusOr<std::map<std::string, Tensor>> Run(const std::map<std::string, Tensor>& feeds,
                                              const RunOptions& options = {});

  // The model the session runs: the input model, or its integer lowering (integer_qdq).
  const Model& model() const;
  // Quantized groups the QDQ lowering replaced by integer nodes (0: none / not a QDQ model).
  int64_t lowered_qdq_groups() const;
  const RunStats& last_stats() const;
  int num_threads() const;
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;

 private:
  Session();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// OK if every node's (op type, domain, opset) is one the executor implements; otherwise
// Unsupported naming the first offending node and every other unsupported operator type.
Status CheckSupported(const Model& model);
struct UnsupportedOp {
  std::string op;           // "Hardmax", or "com.microsoft.Foo" for other domains
  int64_t nodes = 0;        // how many nodes use it
  std::string first_error;  // "unsupported operator Hardmax (opset 13) at node 'h1'"
};
// The operator types the executor cannot run, in graph order of first use.
std::vector<UnsupportedOp> UnsupportedOps(const Model& model);
// What `onnxq inspect` prints (and Python's Model.summary() / inspect() return): the IR summary
// (ir/summary.h) plus whether the executor can run the model ("unsupported_ops" in JSON).
std::string InspectText(const Model& model);
std::string InspectJson(const Model& model);
// The ops the executor implements, for docs and error messages.
std::vector<std::string> SupportedOps();

}  // namespace onnxq
