// Dynamic-range quantization: int8 weights stored in the model, activations quantized at run time.
// No calibration data is needed. The graph pattern is the one ONNX Runtime's quantize_dynamic
// writes (its "IntegerOps" mode), so ONNX Runtime runs the file with its integer kernels:
//
//   x ─► DynamicQuantizeLinear ─► x_q (uint8), x_scale, x_zp        (one per quantized input)
//   ConvInteger(x_q, W_q, x_zp, W_zp) ─► Cast(float) ─► Mul(·, Mul(x_scale, W_scale)) [─► Add(bias)]
//   MatMulInteger(x_q, W_q, x_zp, W_zp) ─► Cast(float) ─► Mul(·, Mul(x_scale, W_scale)) [─► Add(C)]
//
// Everything else stays float. See docs/dynamic.md for what is emitted and measured.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/ir/graph.h"
#include "onnxq/quant/evaluate.h"

namespace onnxq::quant {

struct DynamicQuantizeOptions {
  // Per output channel (Conv: axis 0; MatMul/Gemm: the N column) or one scale per weight.
  // Weights are signed symmetric narrow range ([-127, 127] at 8 bits), so every weight zero point
  // is 0: ConvInteger gets a scalar zero point (ONNX Runtime's CPU ConvInteger refuses per-channel
  // zero points) and per-channel scales enter through the float Mul; MatMulInteger gets a
  // per-column zero point vector, as ONNX Runtime's own per-channel dynamic quantization writes.
  bool per_channel = true;
  int weight_bits = 8;                  // 2..8, stored in int8
  std::string weight_scale = "minmax";  // minmax | mse
  // Op types to quantize (subset of Conv, MatMul, Gemm). ONNX Runtime's quantize_dynamic leaves
  // Gemm float; onnxq writes it as MatMulInteger (transA = 0, constant B).
  std::vector<std::string> op_types = {"Conv", "MatMul", "Gemm"};
  std::vector<std::string> exclude;     // node names or op types kept float
  // Pass pipeline before quantization ("default", "none" or a list; see passes::ParsePipeline).
  std::string passes = "default";
  int threads = 0;                      // <= 0: all cores
  // Evaluation on labelled data (optional, not owned): top-1/top-5 of the quantized model run by
  // onnxq's executor, agreement and KL against the float model (the input model, unoptimized).
  const calib::Dataset* eval_data = nullptr;
  // Batch for evaluation. DynamicQuantizeLinear takes one range over the whole input tensor, so a
  // batch of N images shares one activation scale per layer: 1 measures the per-image deployment.
  int64_t eval_batch_size = 1;
  // Called after each evaluation batch (done, total); return false to cancel.
  std::function<bool(int64_t done, int64_t total)> eval_progress;

  Status Validate() const;
  // The settings that determine the output (not threads / evaluation), stored in the model metadata.
  std::string ToJson(bool with_execution = true) const;
};

struct DynamicQuantizeResult {
  Model quantized;   // ConvInteger / MatMulInteger model (opset >= 11)
  Model optimized;   // the float model after passes, that `quantized` was made from
  int64_t quantized_nodes = 0;
  std::optional<EvalResult> evaluation;  // when options.eval_data is set
  std::string report_json;
};

// `model_path` (optional) is hashed into the report. Fails with a message naming the node on
// weights with NaN/Inf; nodes it cannot quantize (non-constant weights, non-2-D convolutions,
// Gemm with transA, non-float inputs) stay float and are listed in the report's notes.
StatusOr<DynamicQuantizeResult> QuantizeDynamic(const Model& float_model,
                                                const DynamicQuantizeOptions& options,
                                                const std::string& model_path = "");

}  // namespace onnxq::quant
