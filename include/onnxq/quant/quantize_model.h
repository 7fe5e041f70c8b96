// Post-training static quantization, end to end: optimize the float model (default pass pipeline,
// plus cross-layer equalization when it helps), plan Q/DQ placement, calibrate activation ranges on
// a streamed calibration set, quantize weights and biases, optionally correct biases empirically,
// and export a QDQ ONNX model with a report. The CLI `onnxq quantize`, Python `onnxq.quantize`
// and the benchmark all call Quantize().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/calib/observer.h"
#include "onnxq/ir/graph.h"
#include "onnxq/quant/bit_allocation.h"
#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/rounding.h"
#include "onnxq/quant/sensitivity.h"

namespace onnxq::quant {

// Samples for calibration: a Dataset (image folder, .npy files), tensors in memory (each one
// sample, without the batch dim; all the same shape), or, for models with several inputs, one
// tensor per input and sample.
class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  virtual int64_t size() const = 0;
  // Samples [begin, begin + n) stacked on a new leading batch dim (one-tensor-per-sample sources).
  virtual StatusOr<Tensor> Batch(int64_t begin, int64_t n) = 0;
  // The feeds of samples [begin, begin + n) for a model whose runtime inputs are `inputs`, each
  // stacked on a new leading batch dim. The default serves a single-input model from Batch() and
  // refuses several inputs, naming them.
  virtual StatusOr<std::map<std::string, Tensor>> Feeds(int64_t begin, int64_t n,
                                                        const std::vector<std::string>& inputs);
  // Identifies the data for the report: file names + content hashes where there are files.
  virtual std::vector<std::pair<std::string, std::string>> Fingerprints() const = 0;
};
std::unique_ptr<CalibrationSource> DatasetSource(const calib::Dataset& dataset, ThreadPool* pool);
// One dataset per model input (the CLI's `--calib NAME=PATH`): sample i is sample i of every
// dataset, which must all have the same size and distinct names. The datasets must outlive it.
StatusOr<std::unique_ptr<CalibrationSource>> DatasetMapSource(
    std::vector<std::pair<std::string, const calib::Dataset*>> datasets, ThreadPool* pool);
std::unique_ptr<CalibrationSource> TensorSource(std::vector<Tensor> samples);
// One map {input name: tensor without the batch dim} per sample, for models with several inputs
// (any element types, e.g. int64 token ids).
std::unique_ptr<CalibrationSource> TensorMapSource(std::vector<std::map<std::string, Tensor>> samples);
// The shape of one sample of a model input: its declared shape without the batch dimension, when
// every one of those dims is a number (else empty: the data decides). A `.npy` folder uses it, so a
// file holding the full input shape of a batch-1 model ([1, C, L]) is read as one sample.
std::vector<int64_t> InputSampleShape(const Model& model, const std::string& input);

enum class Toggle { kAuto, kOn, kOff };
StatusOr<Toggle> ParseToggle(const std::string& s, const std::string& what);  // auto|on|off

struct QuantizeConfig {
  // minmax | percentile | mse | kl | auto. "auto" (the default) picks, per tensor, MSE for tensors
  // that feed a later layer and min-max where the error must not be clipped (see docs).
  std::string calibrator = "auto";
  double percentile = 99.999;
  bool per_channel = true;
  int weight_bits = 8;
  int act_bits = 8;
  std::string weight_scale = "minmax";  // minmax | mse
  // Per-layer weight bits (node name, or "#<weight name>" for unnamed nodes -> 2..8), overriding
  // weight_bits; a budget's allocation overrides both.
  std::map<std::string, int> layer_weight_bits;
  // Weight rounding: nearest | gptq | adaround (rounding.h), on Gram matrices of the layer inputs
  // from the first rounding_samples calibration samples (for the sensitivity: at most the
  // samples before its own last sensitivity_samples).
  std::string rounding = "nearest";
  int64_t rounding_samples = 100;
  // Objective of gptq/adaround: "asymmetric" (||Q X_q - W X||^2 with X_q the inputs of the model
  // quantized so far, layers in topological order) or "float" (||(Q - W) X||^2 on float inputs).
  std::string rounding_objective = "float";
  double gptq_damp = 0.01;
  double rounding_target_damp = 0.1;  // ridge of the asymmetric target (x mean diag H)
  bool gptq_act_order = true;
  bool gptq_quantized_inputs = false;  // "float" objective: Hessians from fake-quantized layer inputs
  int64_t adaround_iters = 1000;
  double adaround_lambda = 1.0;
  double adaround_lr = 0.01;
  // Sub-8-bit weight grid: "narrow" ([-7, 7] at 4 bits), "full" ([-8, 7]), "oriented" (per
  // output channel [-8, 7] or its mirror [-7, 8], whichever fits the channel's weights better) or
  // "auto" (the default: full, oriented at 2 bits, [-2, 1] or [-1, 2]; measured better, see
  // docs/mixed-precision.md); 8 bits stay narrow.
  std::string weight_grid = "auto";
  // Mixed precision: at most one budget (0 = unset). weight_memory <= 1 is a fraction of the
  // float32 weight bytes, > 1 bytes (packed weights + one float32 scale per channel).
  double weight_bits_avg = 0;
  double weight_memory = 0;
  double bops = 0;
  // Sensitivity for the allocation: measured on the last sensitivity_samples calibration
  // samples for each candidate bit width, unless `sensitivity` is given (e.g. cached).
  std::vector<int> candidate_bits = {2, 3, 4, 5, 6, 7, 8};
  int64_t sensitivity_samples = 64;
  std::string sensitivity_metric = "auto";
  std::shared_ptr<const SensitivityResult> sensitivity;
  // Rounds of whole-model refinement of the allocation (sensitivity.h RefineAllocation: each
  // layer re-measured with the others at their allocated widths, then width swaps within the
  // budget, each kept only if the measured loss on the sensitivity samples goes down); 0 = the
  // knapsack's answer as is (the default: no gain measured on MobileNetV2, docs/mixed-precision.md).
  int allocation_refine = 0;
  std::vector<std::string> exclude;   // node names or op types
  // Cross-layer equalization: auto = on for per-tensor weights (where it is needed), off for
  // per-channel (where it cannot help: each channel already has its own scale).
  Toggle cle = Toggle::kAuto;
  // Empirical bias correction: auto = on for per-tensor or sub-8-bit weights (where it measured a
  // large gain), off for 8-bit per-channel weights (no measurable gain).
  Toggle bias_correction = Toggle::kAuto;
  int64_t bias_correction_samples = 32;  // calibration samples used by bias correction
  // Activation-channel equalization of linear tensors (act_equalization.h), before calibration:
  // auto = off (it measured worse on MobileNetV2 for both weight granularities, see
  // docs/quantization.md). Needs calibration data (not run when stats_path is given).
  Toggle act_equalization = Toggle::kAuto;
  double act_equalization_alpha = 1.0;
  double act_equalization_max_scale = 16.0;
  int64_t act_equalization_samples = 16;
  bool ActEqualizationWanted() const {
    return act_equalization == Toggle::kOn;
  }
  int64_t batch_size = 8;
  int threads = 0;  // <= 0: all cores
  // Per-tensor SQNR in the report, measured on this many calibration samples (0: skip).
  int64_t sqnr_samples = 2;
  // Observer statistics from `onnxq calibrate` (merged shards): used instead of running the
  // calibration pass (the calibration source is then only used by bias correction, if on).
  std::string stats_path;
  // Called after every calibration batch (done, total); return false to cancel.
  std::function<bool(const std::string& stage, int64_t done, int64_t total)> progress;

  Status Validate() const;
  bool has_budget() const { return weight_bits_avg > 0 || weight_memory > 0 || bops > 0; }
  StatusOr<Budget> budget() const;
  // The full config. with_execution=false leaves out settings that cannot change the result
  // (threads), so that the exported model is byte-identical whatever the thread count.
  std::string ToJson(bool with_execution = true) const;
};

struct QuantizeResult {
  bool exported = true;  // false for act_bits < 8 (simulation only: use optimized + plan)
  Model quantized;    // the QDQ model (empty when !exported)
  Model optimized;    // the float model the plan is on (after passes and bias correction)
  QdqPlan plan;
  std::string report_json;
};

// `model_path` (optional) is hashed into the report.
StatusOr<QuantizeResult> Quantize(const Model& model, CalibrationSource& calibration,
                                  const QuantizeConfig& config, const std::string& model_path = "");

// Sensitivity of every quantizable layer to its weight bit width (sensitivity.h), with the
// config's candidate bits, scale method and rounding.
StatusOr<SensitivityResult> Sensitivity(const Model& model, CalibrationSource& calibration,
                                        const QuantizeConfig& config);

// The float model prepared for quantization (passes; CLE per config) and its plan; exposed for the
// calibrate command so that its statistics match Quantize's tensors.
struct PreparedModel {
  Model optimized;
  QdqPlan plan;
  std::string pass_report_json;
  bool cle_applied = false;
  int64_t dead_input_channels_zeroed = 0;  // exact clean-up before planning (see quantize_model.cc)
};
StatusOr<PreparedModel> PrepareModel(const Model& model, const QuantizeConfig& config);

// Streams the calibration set through the float model and fills one observer per activation group,
// keyed by the group's first member's name. `extra_means` (optional) gets per-channel means of
// these values (for bias correction).
StatusOr<calib::CalibrationStats> CollectStatistics(const PreparedModel& prepared,
                                                    CalibrationSource& calibration,
                                                    const QuantizeConfig& config,
                                                    int64_t begin = 0, int64_t count = -1);
// Fingerprint stored with statistics: model content hash + the settings that change what is observed.
std::string StatsFingerprint(const PreparedModel& prepared, const QuantizeConfig& config);

// SHA-256 hex of bytes / of a file.
std::string Sha256Hex(const void* data, size_t size);
StatusOr<std::string> Sha256File(const std::string& path);
// {"path": ..., "sha256": ...} of the input model for a report ("sha256" omitted without a path,
// "unreadable" if the file cannot be read any more).
class JsonWriter;
void WriteModelFingerprint(JsonWriter& j, const std::string& model_path);

}  // namespace onnxq::quant
