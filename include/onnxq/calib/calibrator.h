// Activation calibrators: from an observer's min/max and histogram to a clipping range and the
// (scale, zero point) that ONNX QuantizeLinear takes. The math is described in docs/calibration.md.
#pragma once

#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/calib/observer.h"
#include "onnxq/quant/quant_params.h"

namespace onnxq::calib {

enum class CalibrationMethod {
  kMinMax,      // the observed range
  kPercentile,  // clip the tails beyond a percentile of the histogram
  kMse,         // the range minimising the expected squared quantization error (incl. clipping)
  kKl,          // TensorRT-style entropy calibration: minimise KL(P || Q) over thresholds
};

StatusOr<CalibrationMethod> ParseCalibrationMethod(const std::string& name);  // minmax|percentile|mse|kl
const char* CalibrationMethodName(CalibrationMethod m);

struct CalibratorOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  quant::QuantSpec spec{8, false, false, false};  // uint8 asymmetric: ONNX Runtime's activation default
  // Percentile: symmetric specs use this percentile of |x|; asymmetric ones take the range
  // [quantile(1 - p/100), quantile(p/100)] of x (then widened to contain 0).
  double percentile = 99.999;
  // MSE: a geometric grid of `mse_coarse` shrink ratios of the observed range in [mse_min_ratio, 1],
  // refined by `mse_fine` ratios around the best; asymmetric specs then re-search each side alone.
  int mse_coarse = 64;
  int mse_fine = 16;
  double mse_min_ratio = 1e-3;
  // KL: at most this many candidate thresholds (evenly strided over the histogram).
  int kl_max_candidates = 160;
};

struct CalibrationResult {
  double lo = 0, hi = 0;  // chosen clipping range (before ComputeQuantParams widens it to contain 0)
  quant::QuantParams params;
  // Expected squared quantization error per value under `params`, from the histogram (NaN for an
  // observer without a histogram).
  double expected_mse = 0;
};

// Fails on an empty observer, or a histogram-based method on an observer without a histogram.
StatusOr<CalibrationResult> Calibrate(const HistogramObserver& obs, const CalibratorOptions& options);

// Expected squared error per value of fake-quantizing data distributed as the histogram (uniform
// within each bin) with `params`: rounding error inside the range, clipping error outside.
double HistogramQuantError(const HistogramObserver& obs, const quant::QuantParams& params);

// Value below which a fraction q (0..1) of the histogram's mass lies (linear within a bin), and the
// same for |x|.
double HistogramQuantile(const HistogramObserver& obs, double q);
double HistogramAbsQuantile(const HistogramObserver& obs, double q);

}  // namespace onnxq::calib
