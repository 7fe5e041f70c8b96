// Classification accuracy of a model on a labelled image set, and agreement with a reference
// (float) model: top-1 agreement and mean KL(reference || model) of the softmax outputs. Used by
// `onnxq eval` and the quantization benchmark.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/ir/graph.h"

namespace onnxq::quant {

class CalibrationSource;

struct EvalOptions {
  int threads = 0;
  int64_t batch_size = 8;
  // Called after each batch (done, total); return false to cancel.
  std::function<bool(int64_t done, int64_t total)> progress;
};

struct EvalResult {
  int64_t count = 0;
  bool has_labels = false;
  double top1 = 0, top5 = 0;                // fractions of `count` (labels only)
  bool has_reference = false;
  double reference_top1 = 0, reference_top5 = 0;
  double top1_agreement = 0;                // fraction of samples with the same argmax
  double mean_kl = 0;                       // mean KL(softmax(reference) || softmax(model)), nats
  std::vector<int64_t> predictions;         // argmax per sample
  std::string ToJson() const;
};

// KL(softmax(p_logits) || softmax(q_logits)) in nats, computed in double.
double SoftmaxKl(std::span<const float> p_logits, std::span<const float> q_logits);

// Runs `model` (first output = scores [N, classes]) over the samples of `data`, every runtime
// input fed; `labels` (one per sample, or empty) give top-1/top-5; with `reference` (same inputs)
// also runs it and compares.
StatusOr<EvalResult> Evaluate(const Model& model, CalibrationSource& data, const std::vector<int64_t>& labels,
                              const Model* reference, const EvalOptions& options = {});
// A one-input model on a dataset (its labels.tsv, if any, gives the labels).
StatusOr<EvalResult> Evaluate(const Model& model, const calib::Dataset& data,
                              const Model* reference, const EvalOptions& options = {});

}  // namespace onnxq::quant
