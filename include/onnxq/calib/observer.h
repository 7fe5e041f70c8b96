// Streaming statistics of the tensors that get quantized.
//
// HistogramObserver keeps the exact min/max and a histogram on a power-of-two grid: bin j covers
// [(first + j) * 2^e, (first + j + 1) * 2^e). The grid always contains 0 (quantization ranges
// must) and e is the smallest exponent for which [min(0, min), max(0, max)] fits in num_bins bins.
// When data arrives outside the grid, e grows and pairs of bins merge (bin g at 2^e goes to bin
// floor(g / 2) at 2^(e+1)), which is exact: the state after any sequence of updates and merges is
// a function of the multiset of values seen only, so splitting the data into batches, shards or
// processes gives bit-identical histograms (for normal, non-denormal floats). Memory is
// O(num_bins), independent of the number of samples. Between 1/2 and all of the bins span the
// data range.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {
class ThreadPool;
}

namespace onnxq::calib {

class HistogramObserver {
 public:
  static constexpr int kDefaultBins = 4096;
  static constexpr int kMinBins = 16;
  static constexpr int kMaxBins = 1 << 20;
  // Bin-width exponent bounds: 2^-126 is the smallest normal float32; 2^-e must stay a normal
  // float32 for the exact scaling in Update.
  static constexpr int kMinExponent = -126;
  static constexpr int kMaxExponent = 126;

  // num_bins = 0 keeps only min/max/count (cheaper; enough for the min-max calibrator).
  explicit HistogramObserver(int num_bins = kDefaultBins);

  // Adds values. Fails (and changes nothing) if any value is NaN or infinite, naming the index.
  // With a pool (and at least 128 Ki values) both passes run in parallel; the result is identical.
  // Call it from outside the pool's own tasks (a nested call runs inline).
  Status Update(const float* x, int64_t n, ThreadPool* pool = nullptr);
  // float32, float16, bfloat16 or float64 tensors.
  Status Update(const Tensor& t, ThreadPool* pool = nullptr);
  // Adds another observer's state (same num_bins). Commutative and associative, exactly.
  Status Merge(const HistogramObserver& other);

  bool has_histogram() const { return num_bins_ > 0; }
  int num_bins() const { return num_bins_; }
  int64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // Exact extremes of the data (min() > max() while empty).
  float min() const { return min_; }
  float max() const { return max_; }
  int exponent() const { return exponent_; }
  int64_t first_index() const { return first_; }
  double bin_width() const;
  // Lower edge of bin j (j may equal num_bins for the upper edge of the last bin).
  double bin_edge(int64_t j) const;
  std::span<const uint64_t> counts() const { return counts_; }

  // Compact little-endian encoding (zero bins at both ends are trimmed). Deserialize validates
  // every field and names `source` in errors.
  std::string Serialize() const;
  static StatusOr<HistogramObserver> Deserialize(std::string_view bytes,
                                                 const std::string& source = "<memory>");
  bool operator==(const HistogramObserver& o) const;

 private:
  // Moves the histogram to exponent e (>= exponent_) and first index `first`.
  void Regrid(int e, int64_t first);
  // Smallest exponent >= exponent_ at which [lo, hi] (containing 0) fits in num_bins_ bins.
  int FitExponent(double lo, double hi) const;
  // Adds the bin counts of x (all inside the current grid) to out[0, num_bins).
  void AddIndices(const float* x, int64_t n, uint64_t* out) const;

  int num_bins_ = 0;
  int exponent_ = kMinExponent;
  int64_t first_ = 0;
  int64_t count_ = 0;
  float min_ = 0, max_ = 0;  // valid when count_ > 0
  std::vector<uint64_t> counts_;
};

// Exact min/max of each slice along `axis` of a float tensor (per-channel weight ranges). Fails on
// non-finite values or a bad axis.
struct ChannelRange {
  float min = 0, max = 0;
};
StatusOr<std::vector<ChannelRange>> PerChannelMinMax(const Tensor& t, int axis);

// Observer states of a whole model, keyed by tensor name, with a fingerprint of what produced
// them (model hash and calibration config, set by the caller) so that shards of different models
// or settings are never merged. Saved with Save/Load for `calibrate --shard/--stats` workflows.
class CalibrationStats {
 public:
  std::string fingerprint;
  std::map<std::string, HistogramObserver> tensors;

  // Same fingerprint and the same tensor names required; histograms merge exactly.
  Status Merge(const CalibrationStats& other);
  std::string Serialize() const;
  static StatusOr<CalibrationStats> Deserialize(std::string_view bytes, const std::string& source);
  Status Save(const std::string& path) const;  // atomic
  static StatusOr<CalibrationStats> Load(const std::string& path);
};

}  // namespace onnxq::calib
