// Quantize(): the end-to-end post-training quantization pipeline (see quantize_model.h).
#include "onnxq/quant/quantize_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/calibrator.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/passes/pass.h"
#include "onnxq/quant/act_equalization.h"
#include "onnxq/quant/report.h"
#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class DatasetCalibrationSource : public CalibrationSource {
 public:
  DatasetCalibrationSource(const calib::Dataset& d, ThreadPool* pool) : d_(d), pool_(pool) {}
  int64_t size() const override { return d_.size(); }
  StatusOr<Tensor> Batch(int64_t begin, int64_t n) override { return d_.LoadBatch(begin, n, pool_); }
  std::vector<std::pair<std::string, std::string>> Fingerprints() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (int64_t i = 0; i < d_.size(); ++i) {
      std::string src = d_.source(i);
      auto h = Sha256File(src);
      out.emplace_back(src, h.ok() ? *h : std::string("unreadable"));
      if (d_.kind() == calib::Dataset::Kind::kNpyStack) break;  // one file
    }
    return out;
  }

 private:
  const calib::Dataset& d_;
  ThreadPool* pool_;
};

// Samples begin.. of `samples` stacked on a new batch dim; every one must match the first's
// shape and type and be finite. `what` names the input in errors ("" for a single one).
StatusOr<Tensor> StackSamples(const std::vector<const Tensor*>& samples, int64_t begin,
                              const std::string& what) {
  const Tensor& t0 = *samples.front();
  const std::string in = what.empty() ? "" : " input '" + what + "'";
  std::vector<int64_t> dims = t0.dims();
  dims.insert(dims.begin(), static_cast<int64_t>(samples.size()));
  ONNXQ_ASSIGN_OR_RETURN(Tensor out, Tensor::Create(t0.dtype(), dims));
  std::byte* dst = out.mutable_raw();
  for (size_t k = 0; k < samples.size(); ++k) {
    const Tensor& t = *samples[k];
    const int64_t idx = begin + static_cast<int64_t>(k);
    if (t.dims() != t0.dims() || t.dtype() != t0.dtype())
      return InvalidArgument("calibration sample ", idx, in, " has shape ", DimsToString(t.dims()), " ",
                             DataTypeName(t.dtype()), " but sample ", begin, " has ",
                             DimsToString(t0.dims()), " ", DataTypeName(t0.dtype()));
    int64_t bad;
    if (t.HasNonFinite(&bad))
      return InvalidArgument("calibration sample ", idx, in, " has a non-finite value at index ", bad);
    std::memcpy(dst, t.raw(), t.nbytes());
    dst += t.nbytes();
  }
  return out;
}

class TensorCalibrationSource : public CalibrationSource {
 public:
  explicit TensorCalibrationSource(std::vector<Tensor> s) : s_(std::move(s)) {}
  int64_t size() const override { return static_cast<int64_t>(s_.size()); }
  StatusOr<Tensor> Batch(int64_t begin, int64_t n) override {
    if (n < 1 || begin < 0 || begin + n > size()) return OutOfRange("calibration batch out of range");
    std::vector<const Tensor*> part;
    for (int64_t k = 0; k < n; ++k) part.push_back(&s_[static_cast<size_t>(begin + k)]);
    return StackSamples(part, begin, "");
  }
  std::vector<std::pair<std::string, std::string>> Fingerprints() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < s_.size(); ++i)
      out.emplace_back("<array " + std::to_string(i) + ">", Sha256Hex(s_[i].raw(), s_[i].nbytes()));
    return out;
  }

 private:
  std::vector<Tensor> s_;
};

class TensorMapCalibrationSource : public CalibrationSource {
 public:
  explicit TensorMapCalibrationSource(std::vector<std::map<std::string, Tensor>> s) : s_(std::move(s)) {}
  int64_t size() const override { return static_cast<int64_t>(s_.size()); }
  StatusOr<Tensor> Batch(int64_t begin, int64_t n) override {
    if (!s_.empty() && s_.front().size() == 1) {
      ONNXQ_ASSIGN_OR_RETURN(auto f, Feeds(begin, n, {s_.front().begin()->first}));
      return std::move(f.begin()->second);
    }
    return InvalidArgument("the calibration samples are maps of several inputs (no single tensor)");
  }
  StatusOr<std::map<std::string, Tensor>> Feeds(int64_t begin, int64_t n,
                                                const std::vector<std::string>& inputs) override {
    if (n < 1 || begin < 0 || begin + n > size()) return OutOfRange("calibration batch out of range");
    std::map<std::string, Tensor> out;
    for (const std::string& name : inputs) {
      std::vector<const Tensor*> part;
      for (int64_t k = 0; k < n; ++k) {
        const auto& sample = s_[static_cast<size_t>(begin + k)];
        auto it = sample.find(name);
        if (it == sample.end())
          return InvalidArgument("calibration sample ", begin + k, " has no array for the model input '",
                                 name, "'");
        part.push_back(&it->second);
      }
      ONNXQ_ASSIGN_OR_RETURN(Tensor t, StackSamples(part, begin, name));
      out.emplace(name, std::move(t));
    }
    for (int64_t k = 0; k < n; ++k)
      for (const auto& [name, t] : s_[static_cast<size_t>(begin + k)])
        if (std::find(inputs.begin(), inputs.end(), name) == inputs.end())
          return InvalidArgument("calibration sample ", begin + k, " has an array for '", name,
                                 "', which is not an input of the model");
    return out;
  }
  std::vector<std::pair<std::string, std::string>> Fingerprints() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < s_.size(); ++i)
      for (const auto& [name, t] : s_[i])
        out.emplace_back("<sample " + std::to_string(i) + " " + name + ">", Sha256Hex(t.raw(), t.nbytes()));
    return out;
  }

 private:
  std::vector<std::map<std::string, Tensor>> s_;
};

// The runtime inputs the calibration feeds fill (at least one).
StatusOr<std::vector<std::string>> InputNames(const Model& m) {
  std::vector<std::string> names;
  for (ValueId v : m.graph.RuntimeInputs()) names.push_back(m.graph.value(v).name());
  if (names.empty()) return InvalidArgument("the model has no runtime input to calibrate with");
  return names;
}

// Batch size for runs of `model`: `wanted`, unless the inputs fix the batch size, which every run
// must then use (the calibration set size must be a multiple of it).
StatusOr<int64_t> RunBatch(const Model& m, int64_t wanted, int64_t samples) {
  ONNXQ_ASSIGN_OR_RETURN(const int64_t b, FixedBatchSize(m));
  if (b < 1) return wanted;
  if (samples % b != 0)
    return InvalidArgument("the model's inputs have a fixed batch size of ", b, "; the calibration set's ", samples,
                           " samples are not a multiple of it");
  return b;
}

bool NeedsHistogram(const QuantizeConfig& c) { return c.calibrator != "minmax"; }

// Per-channel sums of a tensor laid out [N, C, ...] (or [N, C] / [.., C] for Gemm/MatMul outputs).
void AccumulateChannelSums(const Tensor& t, std::vector<double>& sums, int64_t* count) {
  const auto& d = t.dims();
  if (d.size() < 2) return;
  const bool nchw = d.size() > 2;
  const int64_t c = nchw ? d[1] : d.back();
  if (sums.empty()) sums.assign(static_cast<size_t>(c), 0.0);
  if (static_cast<int64_t>(sums.size()) != c) return;
  const float* x = t.data<float>();
  if (nchw) {
    int64_t inner = 1;
    for (size_t k = 2; k < d.size(); ++k) inner *= d[k];
    for (int64_t n = 0; n < d[0]; ++n)
      for (int64_t ch = 0; ch < c; ++ch) {
        const float* p = x + (n * c + ch) * inner;
        double s = 0;
        for (int64_t i = 0; i < inner; ++i) s += p[i];
        sums[static_cast<size_t>(ch)] += s;
      }
    *count += d[0] * inner;
  } else {
    int64_t rows = t.numel() / c;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t ch = 0; ch < c; ++ch) sums[static_cast<size_t>(ch)] += x[r * c + ch];
    *count += rows;
  }
}

int64_t InitializerBytes(const Model& m) {
  int64_t total = 0;
  for (ValueId v : m.graph.initializer_order())
    if (m.graph.has_value(v) && m.graph.value(v).initializer())
      total += static_cast<int64_t>(m.graph.value(v).initializer()->nbytes());
  return total;
}

// Input channels that are identically zero: produced by a Conv channel whose weights are all zero
// and whose bias the following activation (Relu, Clip, Min with a constant) maps to exactly 0.
// The consuming convolution's weights on such a channel never contribute, so zeroing them is exact
// (padding adds zeros too). It matters for per-tensor weights: MobileNetV2's dead channels carry
// depthwise weights up to 56 while the live ones stay near 1, and one scale for all of them would
// crush the live channels. Returns the number of input channels zeroed.
int64_t ZeroDeadInputChannels(Model& model) {
  Graph& g = model.graph;
  int64_t zeroed = 0;
  for (NodeId bid : std::vector<NodeId>(g.order())) {
    const Node& b = g.node(bid);
    if (!b.Is("Conv") || b.input(1) == kNoValue || !g.value(b.input(1)).is_initializer()) continue;
    // Walk up through constant-parameter activations to the producing Conv.
    std::vector<const Node*> acts;
    ValueId v = b.input(0);
    const Node* p = g.Producer(v);
    while (p != nullptr && (p->Is("Relu") || p->Is("Clip") || p->Is("Min")) && acts.size() < 4) {
      acts.push_back(p);
      p = g.Producer(p->input(0));
    }
    if (p == nullptr || !p->Is("Conv") || !g.value(p->input(1)).is_initializer()) continue;
    const Tensor& w1 = *g.value(p->input(1)).initializer();
    if (w1.dtype() != DataType::kFloat || w1.rank() < 2) continue;
    const int64_t C = w1.dims()[0], per = w1.numel() / std::max<int64_t>(C, 1);
    const Tensor* b1 = p->input(2) != kNoValue ? g.value(p->input(2)).initializer() : nullptr;
    if (p->input(2) != kNoValue && (b1 == nullptr || b1->numel() != C)) continue;
    std::vector<int64_t> dead;
    for (int64_t c = 0; c < C; ++c) {
      bool zero_w = true;
      for (int64_t k = 0; k < per && zero_w; ++k) zero_w = w1.data<float>()[c * per + k] == 0.0f;
      if (!zero_w) continue;
      double x = b1 ? b1->GetAsDouble(c) : 0.0;
      bool known = true;
      for (auto it = acts.rbegin(); it != acts.rend() && known; ++it) {
        const Node* a = *it;
        if (a->Is("Relu")) {
          x = std::max(0.0, x);
        } else if (a->Is("Clip")) {
          for (int k = 1; k <= 2; ++k) {
            ValueId bv = a->input(static_cast<size_t>(k));
            if (bv == kNoValue) continue;
            const Tensor* t = g.value(bv).initializer();
            if (t == nullptr || t->numel() != 1) { known = false; break; }
            x = k == 1 ? std::max(x, t->GetAsDouble(0)) : std::min(x, t->GetAsDouble(0));
          }
        } else {  // Min(x, constant): per-channel [C,1,1] or scalar
          const Tensor* t = g.value(a->input(1)).initializer();
          if (t == nullptr || !(t->numel() == 1 || t->numel() == C)) { known = false; break; }
          x = std::min(x, t->GetAsDouble(t->numel() == 1 ? 0 : c));
        }
      }
      if (known && x == 0.0) dead.push_back(c);
    }
    if (dead.empty()) continue;
    auto group = b.attrs.GetInt("group", 1);
    if (!group.ok()) continue;
    const Tensor& w2 = *g.value(b.input(1)).initializer();
    if (w2.dtype() != DataType::kFloat || w2.rank() < 2) continue;
    const int64_t M = w2.dims()[0], Cg = w2.dims()[1], G = *group;
    if (G < 1 || Cg * G != C || M % G != 0) continue;
    int64_t K = 1;
    for (size_t k = 2; k < w2.rank(); ++k) K *= w2.dims()[k];
    Tensor nw = w2.Clone();
    float* d = nw.mutable_data<float>();
    for (int64_t c : dead) {
      const int64_t gi = c / Cg, ci = c % Cg;
      for (int64_t o = gi * (M / G); o < (gi + 1) * (M / G); ++o)
        for (int64_t k = 0; k < K; ++k) d[(o * Cg + ci) * K + k] = 0.0f;
    }
    // The weight may be shared: give this conv its own copy.
    ValueId nv = g.AddInitializer(g.value(b.input(1)).name() + "_live", std::move(nw));
    ValueId old = b.input(1);
    g.SetNodeInput(bid, 1, nv);
    if (g.value(old).uses().empty() && !g.IsGraphInput(old) && !g.IsGraphOutput(old)) {
      g.ClearInitializer(old);
      (void)g.RemoveValue(old);
    }
    zeroed += static_cast<int64_t>(dead.size());
  }
  return zeroed;
}

WeightOptions WeightOptionsOf(const QuantizeConfig& config) {
  WeightOptions wo;
  wo.bits = config.weight_bits;
  wo.per_channel = config.per_channel;
  wo.method = config.weight_scale == "mse" ? WeightScaleMethod::kMse : WeightScaleMethod::kMinMax;
  return wo;
}
HessianOptions HessianOptionsOf(const QuantizeConfig& config) {
  HessianOptions ho;
  ho.samples = config.rounding_samples;
  ho.batch_size = config.batch_size;
  ho.threads = config.threads;
  ho.quantized_inputs = config.gptq_quantized_inputs;
  return ho;
}
RoundingOptions RoundingOptionsOf(const QuantizeConfig& config) {
  RoundingOptions ro;
  ro.method = *ParseRounding(config.rounding);
  ro.gptq.damp = config.gptq_damp;
  ro.gptq.act_order = config.gptq_act_order;
  ro.adaround.iters = config.adaround_iters;
  ro.adaround.lambda = config.adaround_lambda;
  ro.adaround.lr = config.adaround_lr;
  ro.full_grid = config.weight_grid != "narrow";
  ro.oriented_grid = config.weight_grid == "oriented" || config.weight_grid == "auto";
  if (config.weight_grid == "auto") ro.oriented_max_bits = 2;
  ro.target_damp = config.rounding_target_damp;
  return ro;
}
// The rounding the sensitivity is measured with inside Quantize: AdaRound for every layer and
// candidate width would cost 7 final roundings (minutes on MobileNetV2), so GPTQ, which
// optimises the same objective, stands in for it.
RoundingMethod SensitivityRounding(RoundingMethod final_rounding) {
  return final_rounding == RoundingMethod::kAdaRound ? RoundingMethod::kGptq : final_rounding;
}
SensitivityOptions SensitivityOptionsOf(const QuantizeConfig& config) {
  SensitivityOptions so;
  so.bits = config.candidate_bits;
  so.samples = config.sensitivity_samples;
  so.metric = config.sensitivity_metric;
  so.threads = config.threads;
  return so;
}

}  // namespace

std::unique_ptr<CalibrationSource> DatasetSource(const calib::Dataset& dataset, ThreadPool* pool) {
  return std::make_unique<DatasetCalibrationSource>(dataset, pool);
}
std::unique_ptr<CalibrationSource> TensorSource(std::vector<Tensor> samples) {
  return std::make_unique<TensorCalibrationSource>(std::move(samples));
}
std::unique_ptr<CalibrationSource> TensorMapSource(std::vector<std::map<std::string, Tensor>> samples) {
  return std::make_unique<TensorMapCalibrationSource>(std::move(samples));
}

std::vector<int64_t> InputSampleShape(const Model& model, const std::string& input) {
  const ValueId v = model.graph.FindValue(input);
  if (v == kNoValue) return {};
  const Value& val = model.graph.value(v);
  if (!val.shape || val.shape->rank() < 1) return {};
  std::vector<int64_t> dims;
  for (size_t i = 1; i < val.shape->rank(); ++i) {
    if (!(*val.shape)[i].is_known()) return {};
    dims.push_back((*val.shape)[i].value);
  }
  return dims;
}

StatusOr<std::map<std::string, Tensor>> CalibrationSource::Feeds(int64_t begin, int64_t n,
                                                                 const std::vector<std::string>& inputs) {
  if (inputs.size() != 1) {
    std::string names;
    for (const auto& i : inputs) names += (names.empty() ? "'" : ", '") + i + "'";
    return InvalidArgument("the model has ", inputs.size(), " inputs (", names,
                           ") but the calibration data has one tensor per sample: give one "
                           "{input name: array} map per sample (CLI: --calib NAME=PATH for each input)");
  }
  ONNXQ_ASSIGN_OR_RETURN(Tensor t, Batch(begin, n));
  std::map<std::string, Tensor> out;
  out.emplace(inputs[0], std::move(t));
  return out;
}

StatusOr<Toggle> ParseToggle(const std::string& s, const std::string& what) {
  if (s == "auto") return Toggle::kAuto;
  if (s == "on" || s == "true" || s == "1") return Toggle::kOn;
  if (s == "off" || s == "false" || s == "0") return Toggle::kOff;
  return InvalidArgument(what, ": expected auto, on or off, got '", s, "'");
}

static const char* ToggleName(Toggle t) {
  return t == Toggle::kAuto ? "auto" : (t == Toggle::kOn ? "on" : "off");
}

Status QuantizeConfig::Validate() const {
  if (calibrator != "auto") {
    auto m = calib::ParseCalibrationMethod(calibrator);
    if (!m.ok())
      return InvalidArgument("unknown calibrator '", calibrator, "' (minmax|percentile|mse|kl|auto)");
  }
  if (weight_bits < 2 || weight_bits > 8)
    return InvalidArgument("weight bits must be in 2..8, got ", weight_bits);
  if (act_bits < 2 || act_bits > 8)
    return InvalidArgument("activation bits must be in 2..8, got ", act_bits);
  if (weight_scale != "minmax" && weight_scale != "mse")
    return InvalidArgument("weight scale method must be minmax or mse, got '", weight_scale, "'");
  if (!(percentile > 0 && percentile <= 100))
    return InvalidArgument("percentile ", percentile, " is not in (0, 100]");
  if (batch_size < 1) return InvalidArgument("batch size must be at least 1");
  if (bias_correction_samples < 1) return InvalidArgument("bias-correction samples must be at least 1");
  for (const auto& [k, b] : layer_weight_bits)
    if (b < 2 || b > 8) return InvalidArgument("layer '", k, "': weight bits must be in 2..8, got ", b);
  auto r = ParseRounding(rounding);
  if (!r.ok()) return r.status();
  if (rounding_samples < 1) return InvalidArgument("rounding samples must be at least 1");
  if (!(gptq_damp >= 0)) return InvalidArgument("GPTQ dampening must be >= 0");
  if (!(rounding_target_damp >= 0)) return InvalidArgument("rounding target dampening must be >= 0");
  if (rounding_objective != "asymmetric" && rounding_objective != "float")
    return InvalidArgument("rounding objective must be asymmetric or float, got '", rounding_objective, "'");
  if (rounding_objective == "asymmetric" && gptq_quantized_inputs)
    return InvalidArgument("gptq_quantized_inputs applies to the float rounding objective only");
  if (adaround_iters < 0 || !(adaround_lambda >= 0) || !(adaround_lr > 0))
    return InvalidArgument("AdaRound: iterations must be >= 0, lambda >= 0 and the learning rate > 0");
  if (weight_grid != "narrow" && weight_grid != "full" && weight_grid != "oriented" && weight_grid != "auto")
    return InvalidArgument("weight grid must be auto, narrow, full or oriented, got '", weight_grid, "'");
  int budgets = (weight_bits_avg != 0) + (weight_memory != 0) + (bops != 0);
  if (budgets > 1)
    return InvalidArgument("give one budget at most (weight bits average, weight memory or BOPs)");
  if (weight_bits_avg < 0 || weight_memory < 0 || bops < 0 || !std::isfinite(weight_bits_avg) ||
      !std::isfinite(weight_memory) || !std::isfinite(bops))
    return InvalidArgument("budgets must be positive and finite");
  if (weight_bits_avg != 0 && (weight_bits_avg < 2 || weight_bits_avg > 8))
    return InvalidArgument("average weight bits must be in [2, 8], got ", weight_bits_avg);
  if (candidate_bits.empty()) return InvalidArgument("no candidate weight bit widths");
  for (int b : candidate_bits)
    if (b < 2 || b > 8) return InvalidArgument("candidate weight bits must be in 2..8, got ", b);
  if (sensitivity_samples < 1) return InvalidArgument("sensitivity samples must be at least 1");
  if (allocation_refine < 0 || allocation_refine > 100)
    return InvalidArgument("allocation_refine must be in 0..100 rounds, got ", allocation_refine);
  if (sensitivity_metric != "auto" && sensitivity_metric != "kl" && sensitivity_metric != "mse")
    return InvalidArgument("sensitivity metric must be kl, mse or auto, got '", sensitivity_metric, "'");
  if (!(act_equalization_alpha >= 0 && act_equalization_alpha <= 4) || !(act_equalization_max_scale >= 1) ||
      !std::isfinite(act_equalization_max_scale) || act_equalization_samples < 1)
    return InvalidArgument("activation equalization: alpha must be in [0, 4], the scale cap >= 1 and finite, "
                           "the samples >= 1");
  if (act_equalization == Toggle::kOn && !stats_path.empty())
    return InvalidArgument("activation equalization needs calibration data; it cannot use given statistics "
                           "(they were collected on the model without it)");
  return Status::Ok();
}

StatusOr<Budget> QuantizeConfig::budget() const {
  Budget b;
  if (weight_bits_avg > 0) {
    b.kind = BudgetKind::kAverageBits;
    b.value = weight_bits_avg;
  } else if (weight_memory > 0) {
    b.kind = weight_memory <= 1 ? BudgetKind::kMemoryFraction : BudgetKind::kMemoryBytes;
    b.value = weight_memory;
  } else if (bops > 0) {
    b.kind = BudgetKind::kBops;
    b.value = bops;
  } else {
    return InvalidArgument("no budget set");
  }
  return b;
}

std::string QuantizeConfig::ToJson(bool with_execution) const {
  JsonWriter j;
  j.BeginObject();
  j.Field("calibrator", calibrator).Field("percentile", percentile);
  j.Field("weight_granularity", per_channel ? "per-channel" : "per-tensor");
  j.Field("weight_bits", weight_bits).Field("act_bits", act_bits);
  j.Field("weight_scale", weight_scale);
  j.Key("layer_weight_bits").BeginObject();
  for (const auto& [k, b] : layer_weight_bits) j.Field(k, b);
  j.EndObject();
  j.Field("rounding", rounding);
  if (rounding != "nearest") {
    j.Field("rounding_samples", rounding_samples).Field("rounding_objective", rounding_objective);
    j.Field("gptq_damp", gptq_damp).Field("rounding_target_damp", rounding_target_damp);
  }
  if (rounding == "gptq")
    j.Field("gptq_act_order", gptq_act_order).Field("gptq_quantized_inputs", gptq_quantized_inputs);
  if (rounding == "adaround")
    j.Field("adaround_iters", adaround_iters).Field("adaround_lambda", adaround_lambda).Field("adaround_lr", adaround_lr);
  j.Field("weight_grid", weight_grid);
  if (has_budget()) {
    if (weight_bits_avg > 0) j.Field("weight_bits_avg", weight_bits_avg);
    if (weight_memory > 0) j.Field("weight_memory", weight_memory);
    if (bops > 0) j.Field("bops", bops);
    j.Key("candidate_bits").BeginArray();
    for (int b : candidate_bits) j.Int(b);
    j.EndArray();
    j.Field("sensitivity_samples", sensitivity_samples).Field("sensitivity_metric", sensitivity_metric);
    j.Field("sensitivity_given", sensitivity != nullptr);
    j.Field("allocation_refine", static_cast<int64_t>(allocation_refine));
  }
  j.Field("activation_type", "uint8 asymmetric");
  j.Field("weight_type", weight_grid == "full"       ? "int8 symmetric (full grid below 8 bits)"
                        : weight_grid == "oriented" ? "int8 symmetric (full grid or its mirror per channel below 8 bits)"
                        : weight_grid == "auto"     ? "int8 symmetric (full grid below 8 bits, or its mirror per channel at 2 bits)"
                                                    : "int8 symmetric narrow-range");
  j.Key("exclude").BeginArray();
  for (const auto& e : exclude) j.String(e);
  j.EndArray();
  j.Field("cle", ToggleName(cle)).Field("bias_correction", ToggleName(bias_correction));
  j.Field("bias_correction_samples", bias_correction_samples);
  j.Field("act_equalization", ToggleName(act_equalization));
  if (ActEqualizationWanted())
    j.Field("act_equalization_alpha", act_equalization_alpha)
        .Field("act_equalization_max_scale", act_equalization_max_scale)
        .Field("act_equalization_samples", act_equalization_samples);
  j.Field("batch_size", batch_size);
  if (with_execution) j.Field("threads", threads);
  j.Field("sqnr_samples", sqnr_samples);
  j.Field("stats", stats_path);
  j.EndObject();
  return j.str();
}

StatusOr<PreparedModel> PrepareModel(const Model& model, const QuantizeConfig& config) {
  ONNXQ_RETURN_IF_ERROR(config.Validate());
  ONNXQ_RETURN_IF_ERROR(CheckFiniteWeights(model));
  PreparedModel p;
  p.optimized = model;
  p.cle_applied = config.cle == Toggle::kOn || (config.cle == Toggle::kAuto && !config.per_channel);
  passes::OptimizeOptions opt;
  if (p.cle_applied) {
    // Equalize after the default clean-up, then re-mark groups on the final node set.
    opt.passes.push_back("cle");
    opt.passes.push_back("mark-activation-groups");
    opt.equalization.clip_policy = passes::ClipPolicy::kPerChannelMin;
  }
  ONNXQ_ASSIGN_OR_RETURN(passes::PassReport report, passes::Optimize(p.optimized, opt));
  p.pass_report_json = report.ToJson();
  // Only for per-tensor weights: there it removes the outliers that set the one scale. With
  // per-channel scales, zeroing can lower an output channel's max-abs and move its grid, which on
  // MobileNetV2 (weights already on a per-channel int8 grid) measurably costs accuracy.
  if (!config.per_channel) p.dead_input_channels_zeroed = ZeroDeadInputChannels(p.optimized);
  PlanOptions po;
  po.exclude = config.exclude;
  ONNXQ_ASSIGN_OR_RETURN(p.plan, BuildQdqPlan(p.optimized, po));
  return p;
}

StatusOr<SensitivityResult> Sensitivity(const Model& model, CalibrationSource& calibration,
                                        const QuantizeConfig& config) {
  ONNXQ_ASSIGN_OR_RETURN(PreparedModel prep, PrepareModel(model, config));
  if (calibration.size() == 0) return InvalidArgument("sensitivity needs calibration data");
  const RoundingMethod rounding = *ParseRounding(config.rounding);
  if (rounding != RoundingMethod::kNearest && config.gptq_quantized_inputs)
    return Unsupported("sensitivity uses float layer inputs (gptq_quantized_inputs needs a full quantize run)");
  std::vector<LayerHessian> hessians;
  if (rounding != RoundingMethod::kNearest) {
    // Gram matrices from samples the damage is not measured on (see Quantize).
    HessianOptions ho = HessianOptionsOf(config);
    ho.samples = std::max<int64_t>(1, std::min(config.rounding_samples,
                                               calibration.size() - config.sensitivity_samples));
    ONNXQ_ASSIGN_OR_RETURN(hessians, CollectHessians(prep.optimized, prep.plan, calibration, ho));
  }
  return MeasureSensitivity(prep.optimized, prep.plan, calibration, WeightOptionsOf(config), rounding,
                            rounding != RoundingMethod::kNearest ? &hessians : nullptr,
                            RoundingOptionsOf(config), SensitivityOptionsOf(config));
}

std::string StatsFingerprint(const PreparedModel& prepared, const QuantizeConfig& config) {
  auto bytes = SerializeModel(prepared.optimized);
  std::string h = bytes.ok() ? Sha256Hex(bytes->data(), bytes->size()) : "unserializable";
  return "onnxq-stats-v1 model=" + h + " histogram=" + (NeedsHistogram(config) ? "1" : "0");
}

StatusOr<calib::CalibrationStats> CollectStatistics(const PreparedModel& prepared,
                                                    CalibrationSource& calibration,
                                                    const QuantizeConfig& config, int64_t begin,
                                                    int64_t count) {
  const QdqPlan& plan = prepared.plan;
  const Graph& g = prepared.optimized.graph;
  ONNXQ_ASSIGN_OR_RETURN(const std::vector<std::string> inputs, InputNames(prepared.optimized));
  const int bins = NeedsHistogram(config) ? calib::HistogramObserver::kDefaultBins : 0;
  std::vector<calib::HistogramObserver> obs(plan.groups.size(), calib::HistogramObserver(bins));
  std::map<ValueId, size_t> observed;
  std::vector<ValueId> hooked;
  std::map<std::string, size_t> input_groups;  // graph inputs are observed from the feeds
  for (size_t gi = 0; gi < plan.groups.size(); ++gi)
    for (ValueId v : plan.groups[gi].observed) {
      if (std::find(inputs.begin(), inputs.end(), g.value(v).name()) != inputs.end() && g.Producer(v) == nullptr) {
        input_groups[g.value(v).name()] = gi;
        continue;
      }
      observed[v] = gi;
      hooked.push_back(v);
    }
  SessionOptions so;
  so.num_threads = config.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(prepared.optimized, so));
  RunOptions ro;
  ro.hooked_values = hooked;
  ro.hook = [&](ValueId v, const std::string& name, Tensor& t) -> Status {
    auto it = observed.find(v);
    if (it == observed.end()) return Status::Ok();
    Status s = obs[it->second].Update(t);
    if (!s.ok()) return s.Prepend("observing '" + name + "'");
    return Status::Ok();
  };
  if (hooked.empty()) ro.hook = nullptr;
  const int64_t end = count < 0 ? calibration.size() : std::min(calibration.size(), begin + count);
  if (end <= begin) return InvalidArgument("the calibration set is empty");
  ONNXQ_ASSIGN_OR_RETURN(const int64_t bs, RunBatch(prepared.optimized, config.batch_size, end - begin));
  for (int64_t b = begin; b < end; b += bs) {
    int64_t n = std::min(bs, end - b);
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, n, inputs));
    for (const auto& [name, gi] : input_groups) {
      Status s = obs[gi].Update(feeds.at(name));
      if (!s.ok()) return s.Prepend("observing the model input '" + name + "'");
    }
    auto r = session->Run(feeds, ro);
    if (!r.ok()) {
      Status s = r.status();
      return s.Prepend("calibration batch at sample " + std::to_string(b));
    }
    if (config.progress && !config.progress("calibrate", b + n - begin, end - begin))
      return Cancelled("calibration cancelled");
  }
  calib::CalibrationStats stats;
  stats.fingerprint = StatsFingerprint(prepared, config);
  for (size_t gi = 0; gi < plan.groups.size(); ++gi)
    stats.tensors.emplace(g.value(plan.groups[gi].members.front()).name(), std::move(obs[gi]));
  return stats;
}

namespace {

Status ChooseGroupParams(const Model& m, ActivationGroup& grp, const calib::CalibrationStats& stats,
                         const QuantizeConfig& config);

// Chooses each group's params from its observer (groups in parallel: the MSE and KL searches
// dominate this stage).
Status ChooseActivationParams(const Model& m, QdqPlan& plan, const calib::CalibrationStats& stats,
                              const QuantizeConfig& config, ThreadPool* pool) {
  std::vector<Status> errors(plan.groups.size());
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      errors[static_cast<size_t>(i)] = ChooseGroupParams(m, plan.groups[static_cast<size_t>(i)], stats, config);
  };
  pool->ParallelFor(static_cast<int64_t>(plan.groups.size()), work);
  for (const Status& e : errors) ONNXQ_RETURN_IF_ERROR(e);
  return Status::Ok();
}

Status ChooseGroupParams(const Model& m, ActivationGroup& grp, const calib::CalibrationStats& stats,
                         const QuantizeConfig& config) {
  const Graph& g = m.graph;
  {
    const std::string key = g.value(grp.members.front()).name();
    auto it = stats.tensors.find(key);
    if (it == stats.tensors.end())
      return NotFound("calibration statistics have no entry for tensor '", key, "'");
    const calib::HistogramObserver& o = it->second;
    calib::CalibratorOptions co;
    co.spec = QuantSpec{config.act_bits, false, false, false};
    co.percentile = config.percentile;
    std::string method = config.calibrator;
    if (method == "auto") method = "mse";
    ONNXQ_ASSIGN_OR_RETURN(co.method, calib::ParseCalibrationMethod(method));
    if (!o.has_histogram() && co.method != calib::CalibrationMethod::kMinMax)
      return InvalidArgument("calibrator '", method, "' needs histograms; the statistics for '", key,
                             "' have none (collect them with a histogram calibrator)");
    auto r = calib::Calibrate(o, co);
    if (!r.ok()) {
      Status s = r.status();
      return s.Prepend("calibrating '" + key + "'");
    }
    grp.params = FitIntoBounds(r->params, grp.bound_lo, grp.bound_hi);
    grp.calibrator = method;
    grp.clip_lo = r->lo;
    grp.clip_hi = r->hi;
    grp.observed_min = o.min();
    grp.observed_max = o.max();
    grp.has_params = true;
  }
  return Status::Ok();
}

// Per-channel means of every weighted node's activation input over calibration samples [0, n) of
// the float model, as is (x) and fake-quantized with its planned params (fq).
struct InputMeansResult {
  std::vector<std::vector<double>> x, fq;
};
StatusOr<InputMeansResult> InputMeans(const Model& model, const QdqPlan& plan,
                                                      CalibrationSource& calibration,
                                                      const QuantizeConfig& config, int64_t n) {
  const Graph& g = model.graph;
  ONNXQ_ASSIGN_OR_RETURN(const std::vector<std::string> inputs, InputNames(model));
  std::map<ValueId, std::vector<size_t>> target;
  for (size_t i = 0; i < plan.weighted.size(); ++i) target[plan.weighted[i].input].push_back(i);
  std::vector<ValueId> hooked;
  for (const auto& [v, i] : target) hooked.push_back(v);
  SessionOptions so;
  so.num_threads = config.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(model, so));
  std::map<ValueId, std::vector<double>> sums, qsums;
  std::map<ValueId, int64_t> counts, qcounts;
  auto observe = [&](ValueId v, const Tensor& t) -> Status {
    AccumulateChannelSums(t, sums[v], &counts[v]);
    Tensor q = t.Clone();
    ONNXQ_RETURN_IF_ERROR(FakeQuantizeTensor(plan, v, q));
    AccumulateChannelSums(q, qsums[v], &qcounts[v]);
    return Status::Ok();
  };
  RunOptions ro;
  ro.hooked_values = hooked;
  ro.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
    if (target.count(v)) return observe(v, t);
    return Status::Ok();
  };
  n = std::min(n, calibration.size());
  if (RunBatch(model, 1, 1).ok() && *RunBatch(model, 1, 1) > 1) {
    const int64_t fixed = *RunBatch(model, 1, 1);
    n = std::max(fixed, n / fixed * fixed);
    n = std::min(n, calibration.size() / fixed * fixed);
  }
  ONNXQ_ASSIGN_OR_RETURN(const int64_t bs, RunBatch(model, config.batch_size, n));
  for (int64_t b = 0; b < n; b += bs) {
    int64_t m = std::min(bs, n - b);
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, m, inputs));
    for (const auto& [name, t] : feeds) {
      const ValueId in_id = g.FindValue(name);
      if (target.count(in_id)) ONNXQ_RETURN_IF_ERROR(observe(in_id, t));
    }
    ONNXQ_ASSIGN_OR_RETURN(auto out, session->Run(feeds, ro));
    (void)out;
    if (config.progress && !config.progress("bias correction", b + m, n))
      return Cancelled("bias correction cancelled");
  }
  InputMeansResult r;
  r.x.resize(plan.weighted.size());
  r.fq.resize(plan.weighted.size());
  for (auto& [v, s] : sums) {
    for (double& x : s) x /= static_cast<double>(std::max<int64_t>(counts[v], 1));
    std::vector<double>& q = qsums[v];
    for (double& x : q) x /= static_cast<double>(std::max<int64_t>(qcounts[v], 1));
    for (size_t i : target[v]) {
      r.x[i] = s;
      r.fq[i] = q;
    }
  }
  return r;
}

// Bias correction (Nagel et al. 2019, sec. 4.2, with the input means measured on calibration
// data): the quantized layer computes W_q fq(x) instead of W x, which shifts its expected output by
// W_q E[fq(x)] - W E[x] per output channel (weight rounding, and the mean error of the input's
// rounding and clipping); adding W E[x] - W_q E[fq(x)] to the bias removes the shift. Only each
// layer's own error is corrected (correcting measured output differences of all layers at once
// would count upstream errors twice). Exact for unpadded convolutions; padded borders see zeros, so
// there it is the interior's correction.
Status CorrectBiases(Model& model, QdqPlan& plan, CalibrationSource& calibration,
                     const QuantizeConfig& config, int64_t* corrected) {
  ONNXQ_ASSIGN_OR_RETURN(auto means, InputMeans(model, plan, calibration, config,
                                                config.bias_correction_samples));
  Graph& g = model.graph;
  *corrected = 0;
  for (size_t i = 0; i < plan.weighted.size(); ++i) {
    WeightedNode& w = plan.weighted[i];
    const Node& n = g.node(w.node);
    if (n.Is("MatMul") || means.x[i].empty()) continue;  // MatMul has no bias slot
    const Tensor& wt = *g.value(w.weight).initializer();
    const auto& d = wt.dims();
    const std::vector<float> scales = w.qweight.scales();
    auto deq = [&](int64_t flat, int64_t ch) {
      float s = scales.size() == 1 ? scales[0] : scales[static_cast<size_t>(ch)];
      return static_cast<double>(w.qweight.q.data<int8_t>()[flat]) * s;
    };
    const float* wf = wt.data<float>();
    std::vector<double> delta;
    const std::vector<double>& mu = means.x[i];
    const std::vector<double>& mq = means.fq[i];
    if (n.Is("Conv")) {
      ONNXQ_ASSIGN_OR_RETURN(int64_t group, n.attrs.GetInt("group", 1));
      const int64_t M = d[0], Cg = d[1];
      int64_t K = 1;
      for (size_t k = 2; k < d.size(); ++k) K *= d[k];
      if (group < 1 || M % group != 0 || static_cast<int64_t>(mu.size()) != Cg * group) continue;
      delta.assign(static_cast<size_t>(M), 0.0);
      for (int64_t o = 0; o < M; ++o) {
        const int64_t gi = o / (M / group);
        double acc = 0;
        for (int64_t c = 0; c < Cg; ++c) {
          double m = mu[static_cast<size_t>(gi * Cg + c)], q = mq[static_cast<size_t>(gi * Cg + c)];
          for (int64_t k = 0; k < K; ++k) {
            int64_t idx = (o * Cg + c) * K + k;
            acc += wf[idx] * m - deq(idx, o) * q;
          }
        }
        delta[static_cast<size_t>(o)] = acc;
      }
    } else {  // Gemm: W [K, N] (axis 1) or [N, K] (axis 0, transB)
      const int64_t rows = d[0], cols = d[1];
      const bool trans = w.axis == 0;
      const int64_t N = trans ? rows : cols, K = trans ? cols : rows;
      if (static_cast<int64_t>(mu.size()) != K) continue;
      delta.assign(static_cast<size_t>(N), 0.0);
      for (int64_t o = 0; o < N; ++o)
        for (int64_t k = 0; k < K; ++k) {
          int64_t idx = trans ? o * K + k : k * N + o;
          delta[static_cast<size_t>(o)] +=
              wf[idx] * mu[static_cast<size_t>(k)] - deq(idx, o) * mq[static_cast<size_t>(k)];
        }
    }
    if (w.bias == kNoValue) {
      ValueId b = g.AddInitializer(g.value(w.weight).name() + "_bias",
                                   Tensor::Float({static_cast<int64_t>(delta.size())}));
      if (n.num_inputs() >= 3)
        g.SetNodeInput(w.node, 2, b);
      else
        g.AddNodeInput(w.node, b);
      w.bias = b;
    }
    Tensor nb = g.value(w.bias).initializer()->Clone();
    if (nb.numel() != static_cast<int64_t>(delta.size())) continue;
    for (int64_t c = 0; c < nb.numel(); ++c)
      nb.mutable_data<float>()[c] += static_cast<float>(delta[static_cast<size_t>(c)]);
    // The bias may be shared with another node: write a private copy and drop the old one if unused.
    ValueId old = w.bias;
    ValueId nbv = g.AddInitializer(g.value(w.bias).name() + "_corrected", std::move(nb));
    g.SetNodeInput(w.node, 2, nbv);
    w.bias = nbv;
    if (g.value(old).uses().empty() && !g.IsGraphInput(old) && !g.IsGraphOutput(old)) {
      g.ClearInitializer(old);
      ONNXQ_RETURN_IF_ERROR(g.RemoveValue(old));
    }
    ++*corrected;
  }
  return QuantizeBiases(model, plan);
}

struct SqnrAcc {
  double sig = 0, err = 0;
};

// End-to-end SQNR of each simulated activation (float model vs simulation on the same samples).
StatusOr<std::map<ValueId, double>> ActivationSqnr(const Model& model, const QdqPlan& plan,
                                                   CalibrationSource& calibration,
                                                   const QuantizeConfig& config) {
  std::map<ValueId, double> out;
  int64_t n = std::min(config.sqnr_samples, calibration.size());
  if (n <= 0) return out;
  ONNXQ_ASSIGN_OR_RETURN(const int64_t fixed, RunBatch(model, 1, calibration.size()));
  const int64_t step = fixed;  // one sample at a time unless the model fixes its batch
  n = std::max(step, n / step * step);
  ONNXQ_ASSIGN_OR_RETURN(const std::vector<std::string> inputs, InputNames(model));
  std::vector<ValueId> vals = SimulatedValues(plan);
  std::set<ValueId> vs(vals.begin(), vals.end());
  SessionOptions so;
  so.num_threads = config.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto fs, Session::Create(model, so));
  ONNXQ_ASSIGN_OR_RETURN(Model sm, BuildSimulationModel(model, plan));
  ONNXQ_ASSIGN_OR_RETURN(auto ss, Session::Create(sm, so));
  std::map<ValueId, SqnrAcc> acc;
  const Graph& g = model.graph;
  for (int64_t b = 0; b < n; b += step) {  // one sample at a time keeps the float copies small
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, step, inputs));
    const std::map<std::string, Tensor> unquantized = feeds;
    std::map<ValueId, Tensor> ref;
    RunOptions fo;
    fo.hooked_values = vals;
    fo.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
      ref[v] = t.Clone();
      return Status::Ok();
    };
    ONNXQ_RETURN_IF_ERROR(fs->Run(feeds, fo).status());
    ONNXQ_RETURN_IF_ERROR(FakeQuantizeFeeds(plan, g, feeds));
    for (const auto& [name, q] : feeds) {
      const ValueId in_id = g.FindValue(name);
      if (!vs.count(in_id) || q.dtype() != DataType::kFloat) continue;
      const Tensor& x0 = unquantized.at(name);
      auto& a = acc[in_id];
      for (int64_t i = 0; i < q.numel(); ++i) {
        double x = x0.data<float>()[i], y = q.data<float>()[i];
        a.sig += x * x;
        a.err += (x - y) * (x - y);
      }
    }
    RunOptions qo;
    qo.hooked_values = vals;
    qo.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
      ONNXQ_RETURN_IF_ERROR(FakeQuantizeTensor(plan, v, t));
      auto it = ref.find(v);
      if (it == ref.end() || it->second.numel() != t.numel()) return Status::Ok();
      auto& a = acc[v];
      const float* x = it->second.data<float>();
      const float* y = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        double d = double(x[i]) - y[i];
        a.sig += double(x[i]) * x[i];
        a.err += d * d;
      }
      return Status::Ok();
    };
    ONNXQ_RETURN_IF_ERROR(ss->Run(feeds, qo).status());
  }
  for (const auto& [v, a] : acc)
    out[v] = a.err == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(a.sig / a.err);
  return out;
}

}  // namespace

StatusOr<QuantizeResult> Quantize(const Model& model, CalibrationSource& calibration,
                                  const QuantizeConfig& config, const std::string& model_path) {
  const auto t_start = Clock::now();
  std::vector<std::pair<std::string, double>> timings;
  auto t0 = Clock::now();
  ONNXQ_ASSIGN_OR_RETURN(PreparedModel prep, PrepareModel(model, config));
  timings.emplace_back("optimize_and_plan", MsSince(t0));
  if (calibration.size() == 0 && config.stats_path.empty())
    return InvalidArgument("the calibration set is empty");

  // Activation-channel equalization (act_equalization.h): a float rewrite from its own per-channel
  // statistics, so it runs before the calibration. Weights change in place; the plan's ids hold.
  std::string act_eq_json = "null";
  if (config.ActEqualizationWanted() && config.stats_path.empty()) {
    t0 = Clock::now();
    ActEqualizationOptions ao;
    ao.alpha = config.act_equalization_alpha;
    ao.max_scale = config.act_equalization_max_scale;
    ao.samples = config.act_equalization_samples;
    ao.batch_size = config.batch_size;
    ao.threads = config.threads;
    ONNXQ_ASSIGN_OR_RETURN(ActEqualizationResult aeq, EqualizeActivations(prep.optimized, calibration, ao));
    act_eq_json = aeq.ToJson(prep.optimized.graph);
    timings.emplace_back("act_equalization", MsSince(t0));
  }

  t0 = Clock::now();
  calib::CalibrationStats stats;
  if (!config.stats_path.empty()) {
    ONNXQ_ASSIGN_OR_RETURN(stats, calib::CalibrationStats::Load(config.stats_path));
    std::string want = StatsFingerprint(prep, config);
    if (stats.fingerprint != want)
      return InvalidArgument("statistics '", config.stats_path,
                             "' were collected for another model or settings (fingerprint '",
                             stats.fingerprint, "', expected '", want, "')");
  } else {
    ONNXQ_ASSIGN_OR_RETURN(stats, CollectStatistics(prep, calibration, config));
  }
  timings.emplace_back("calibrate", MsSince(t0));

  t0 = Clock::now();
  QdqPlan& plan = prep.plan;
  ThreadPool pool(config.threads);
  ONNXQ_RETURN_IF_ERROR(ChooseActivationParams(prep.optimized, plan, stats, config, &pool));
  timings.emplace_back("choose_ranges", MsSince(t0));

  WeightOptions wo = WeightOptionsOf(config);
  const RoundingMethod rounding = *ParseRounding(config.rounding);
  const bool rerounds = rounding != RoundingMethod::kNearest;
  const bool asymmetric = rerounds && config.rounding_objective == "asymmetric";
  const Graph& pg = prep.optimized.graph;
  if ((rerounds || (config.has_budget() && !config.sensitivity)) && calibration.size() == 0)
    return InvalidArgument("GPTQ/AdaRound rounding and bit allocation need calibration data");
  // Float-input Gram matrices: the float objective's rounding, and the sensitivity (each layer
  // measured alone in the float model).
  // The sensitivity's Gram matrices come from samples it does not measure on (the first
  // calibration samples, at most size - sensitivity_samples of them): rounding fitted to the
  // samples the damage is measured on looks better than it is. The final rounding uses the first
  // rounding_samples, which may overlap.
  const bool measure_sensitivity = config.has_budget() && !config.sensitivity;
  const bool refine = config.has_budget() && config.allocation_refine > 0;
  HessianOptions final_ho = HessianOptionsOf(config), sens_ho = final_ho;
  sens_ho.samples = std::max<int64_t>(
      1, std::min(config.rounding_samples, calibration.size() - config.sensitivity_samples));
  std::vector<LayerHessian> hessians, sens_hessians;
  if (rerounds && (measure_sensitivity || refine)) {
    t0 = Clock::now();
    ONNXQ_ASSIGN_OR_RETURN(sens_hessians, CollectHessians(prep.optimized, plan, calibration, sens_ho));
    timings.emplace_back("hessians_sensitivity", MsSince(t0));
  }
  if (rerounds && !asymmetric) {
    if ((measure_sensitivity || refine) && sens_ho.samples == final_ho.samples) {
      hessians = sens_hessians;
    } else {
      t0 = Clock::now();
      ONNXQ_ASSIGN_OR_RETURN(hessians, CollectHessians(prep.optimized, plan, calibration, final_ho));
      timings.emplace_back("hessians", MsSince(t0));
    }
  }
  // Per-layer bits: the base width, user overrides, then the allocation (if a budget is set).
  std::vector<int> bits(plan.weighted.size(), config.weight_bits);
  {
    std::set<std::string> used;
    for (size_t i = 0; i < plan.weighted.size(); ++i) {
      auto it = config.layer_weight_bits.find(LayerKey(pg, plan.weighted[i]));
      if (it != config.layer_weight_bits.end()) {
        bits[i] = it->second;
        used.insert(it->first);
      }
    }
    for (const auto& [k, b] : config.layer_weight_bits)
      if (!used.count(k)) return NotFound("layer_weight_bits: no quantized layer is named '", k, "'");
  }
  std::shared_ptr<const SensitivityResult> sens = config.sensitivity;
  std::string budget_text, refine_json;
  if (config.has_budget() && sens) {
    // A given (cached) sensitivity is used as is; say so when it was measured with other settings
    // than this run quantizes with (files from before weight_grid existed used the narrow grid).
    const std::string want_rounding = RoundingName(SensitivityRounding(rounding));
    const std::string want_grid = config.weight_grid;
    const std::string have_grid = sens->weight_grid.empty() ? "narrow" : sens->weight_grid;
    std::string diff;
    if (sens->rounding != want_rounding) diff += " rounding " + sens->rounding + " (now " + want_rounding + ")";
    if (sens->weight_scale != config.weight_scale)
      diff += " weight_scale " + sens->weight_scale + " (now " + config.weight_scale + ")";
    if (have_grid != want_grid) diff += " weight_grid " + have_grid + " (now " + want_grid + ")";
    if (!diff.empty())
      plan.notes.push_back("the given sensitivity was measured with other settings:" + diff +
                           "; the bit allocation may not be the best for this run");
  }
  if (config.has_budget()) {
    if (!sens) {
      t0 = Clock::now();
      ONNXQ_ASSIGN_OR_RETURN(SensitivityResult sr,
                             MeasureSensitivity(prep.optimized, plan, calibration, wo, SensitivityRounding(rounding),
                                                rerounds ? &sens_hessians : nullptr,
                                                RoundingOptionsOf(config), SensitivityOptionsOf(config)));
      sens = std::make_shared<SensitivityResult>(std::move(sr));
      timings.emplace_back("sensitivity", MsSince(t0));
    }
    t0 = Clock::now();
    ONNXQ_ASSIGN_OR_RETURN(Budget budget, config.budget());
    budget_text = budget.ToString();
    ONNXQ_ASSIGN_OR_RETURN(bits, AllocateBits(prep.optimized, plan, *sens, budget, config.act_bits,
                                                          config.candidate_bits));
    timings.emplace_back("allocate_bits", MsSince(t0));
    if (refine) {
      t0 = Clock::now();
      AllocationRefineOptions aro;
      aro.rounds = config.allocation_refine;
      ONNXQ_ASSIGN_OR_RETURN(AllocationRefineResult rr,
                             RefineAllocation(prep.optimized, plan, calibration, wo, SensitivityRounding(rounding),
                                              rerounds ? &sens_hessians : nullptr, RoundingOptionsOf(config),
                                              SensitivityOptionsOf(config), budget, config.act_bits, bits,
                                              config.candidate_bits, aro));
      bits = rr.bits;
      refine_json = rr.ToJson();
      timings.emplace_back("refine_allocation", MsSince(t0));
    }
  }
  t0 = Clock::now();
  std::vector<double> rounding_loss;
  if (asymmetric) {
    ONNXQ_ASSIGN_OR_RETURN(std::vector<LayerHessian> seq,
                           QuantizeWeightsSequential(prep.optimized, plan, bits, wo, calibration,
                                                     HessianOptionsOf(config), RoundingOptionsOf(config), &pool));
    for (size_t i = 0; i < plan.weighted.size(); ++i)
      rounding_loss.push_back(RoundingLoss(prep.optimized, plan.weighted[i], seq[i], config.rounding_target_damp));
  } else {
    ONNXQ_RETURN_IF_ERROR(QuantizeWeightsMixed(prep.optimized, plan, bits, wo, rerounds ? &hessians : nullptr,
                                               RoundingOptionsOf(config), &pool));
    if (rerounds)
      for (size_t i = 0; i < plan.weighted.size(); ++i)
        rounding_loss.push_back(RoundingLoss(prep.optimized, plan.weighted[i], hessians[i], config.gptq_damp));
  }
  ONNXQ_RETURN_IF_ERROR(QuantizeBiases(prep.optimized, plan));
  timings.emplace_back(rerounds ? std::string("quantize_weights_") + RoundingName(rounding) : "quantize_weights",
                       MsSince(t0));
  const int min_bits = bits.empty() ? 8 : *std::min_element(bits.begin(), bits.end());

  // auto: on where weights carry real rounding error (per-tensor or below 8 bits); with 8-bit
  // per-channel weights it measured no gain on MobileNetV2 (docs/quantization.md) and costs a pass.
  const bool bc_wanted = config.bias_correction == Toggle::kOn ||
                         (config.bias_correction == Toggle::kAuto && (!config.per_channel || min_bits < 8));
  const bool bc = bc_wanted && calibration.size() > 0;
  int64_t corrected = 0;
  if (bc) {
    t0 = Clock::now();
    ONNXQ_RETURN_IF_ERROR(CorrectBiases(prep.optimized, plan, calibration, config, &corrected));
    timings.emplace_back("bias_correction", MsSince(t0));
  }

  std::map<ValueId, double> sqnr;
  if (config.sqnr_samples > 0 && calibration.size() > 0) {
    t0 = Clock::now();
    ONNXQ_ASSIGN_OR_RETURN(sqnr, ActivationSqnr(prep.optimized, plan, calibration, config));
    timings.emplace_back("sqnr", MsSince(t0));
  }

  t0 = Clock::now();
  ExportQdqOptions eo;
  eo.metadata.emplace_back("onnxq.quantize_config", config.ToJson(/*with_execution=*/false));
  // The true bit width of every weight (the int8 containers do not say it).
  {
    JsonWriter bj;
    bj.BeginObject();
    for (size_t i = 0; i < plan.weighted.size(); ++i) bj.Field(LayerKey(pg, plan.weighted[i]), bits[i]);
    bj.EndObject();
    eo.metadata.emplace_back("onnxq.weight_bits", bj.str());
  }
  // Activations below 8 bits have no faithful QDQ spelling (QuantizeLinear saturates to the full
  // 8-bit range): such runs are simulation-only and return no QDQ model.
  const bool exported = config.act_bits == 8;
  Model qdq;
  if (exported) {
    ONNXQ_ASSIGN_OR_RETURN(qdq, ExportQdqModel(prep.optimized, plan, eo));
  }
  timings.emplace_back("export", MsSince(t0));

  // ---- report
  const Graph& g = prep.optimized.graph;
  JsonWriter j;
  j.BeginObject();
  j.Field("tool", "onnxq quantize");
  j.Key("config").Raw(config.ToJson());
  j.Key("inputs").BeginObject();
  j.Key("model");
  WriteModelFingerprint(j, model_path);
  if (config.stats_path.empty()) {
    j.Key("calibration").BeginArray();
    for (const auto& [name, hash] : calibration.Fingerprints())
      j.BeginObject().Field("file", name).Field("sha256", hash).EndObject();
    j.EndArray();
  } else {
    auto h = Sha256File(config.stats_path);
    j.Key("stats").BeginObject().Field("path", config.stats_path)
        .Field("sha256", h.ok() ? *h : std::string("unreadable")).EndObject();
  }
  j.EndObject();
  j.Field("calibration_samples", calibration.size());
  j.Field("cle_applied", prep.cle_applied);
  j.Field("dead_input_channels_zeroed", prep.dead_input_channels_zeroed);
  j.Field("bias_correction_applied", bc);
  j.Field("bias_corrected_layers", corrected);
  j.Key("act_equalization").Raw(act_eq_json);
  j.Key("passes").Raw(prep.pass_report_json.empty() ? "null" : prep.pass_report_json);
  j.Key("sizes").BeginObject();
  j.Field("float_initializer_bytes", InitializerBytes(model));
  if (exported) j.Field("quantized_initializer_bytes", InitializerBytes(qdq));
  j.Field("exported", exported);
  {
    // Packed: every weight at its bit width plus one float32 scale per channel (what a sub-byte
    // storage format would need); int32 biases are counted apart.
    const std::vector<LayerCost> costs = LayerCosts(prep.optimized, plan);
    double packed = 0, params = 0, wbits = 0;
    int64_t bias_bytes = 0;
    for (size_t i = 0; i < costs.size(); ++i) {
      packed += static_cast<double>(costs[i].params) * bits[i] / 8.0 +
                4.0 * static_cast<double>(plan.weighted[i].qweight.params.size());
      params += static_cast<double>(costs[i].params);
      wbits += static_cast<double>(costs[i].params) * bits[i];
      if (plan.weighted[i].has_qbias) bias_bytes += static_cast<int64_t>(plan.weighted[i].qbias.q.nbytes());
    }
    j.Field("quantized_weight_params", static_cast<int64_t>(params));
    j.Field("float_weight_bytes", static_cast<int64_t>(params * 4));
    j.Field("packed_weight_bytes", static_cast<int64_t>(std::ceil(packed)));
    j.Field("packed_weight_fraction", params > 0 ? packed / (4 * params) : 0.0);
    j.Field("average_weight_bits", params > 0 ? wbits / params : 0.0);
    j.Field("int32_bias_bytes", bias_bytes);
  }
  j.EndObject();
  j.Key("mixed_precision").BeginObject();
  j.Field("rounding", RoundingName(rounding));
  j.Field("budget", budget_text);
  if (sens) {
    double total = 0;
    std::map<std::string, const LayerSensitivity*> by_key;
    for (const auto& l : sens->layers) by_key[l.node] = &l;
    for (size_t i = 0; i < plan.weighted.size(); ++i) {
      auto it = by_key.find(LayerKey(pg, plan.weighted[i]));
      if (it == by_key.end()) continue;
      for (const auto& [b, d] : it->second->damage)
        if (b == bits[i]) total += d;
    }
    j.Field("predicted_damage_sum", total);
    if (!refine_json.empty()) j.Key("refine").Raw(refine_json);
    j.Key("sensitivity").Raw(sens->ToJson());
  }
  j.EndObject();
  j.Key("activations").BeginArray();
  for (const auto& grp : plan.groups) {
    for (ValueId v : grp.members) {
      j.BeginObject();
      j.Field("tensor", g.value(v).name());
      j.Field("scale", static_cast<double>(grp.params.scale));
      j.Field("zero_point", grp.params.zero_point);
      j.Field("bits", config.act_bits);
      j.Field("type", "uint8");
      j.Field("calibrator", grp.calibrator);
      j.Field("observed_min", grp.observed_min).Field("observed_max", grp.observed_max);
      j.Field("range_min", grp.params.range_min()).Field("range_max", grp.params.range_max());
      j.Field("shared_with", g.value(grp.members.front()).name());
      auto it = sqnr.find(v);
      j.Key("sqnr_db");
      if (it != sqnr.end()) j.Number(it->second); else j.Null();
      j.EndObject();
    }
  }
  j.EndArray();
  j.Key("weights").BeginArray();
  for (const auto& w : plan.weighted) {
    j.BeginObject();
    j.Field("node", g.node(w.node).name);
    j.Field("tensor", g.value(w.weight).name());
    j.Field("bits", bits[static_cast<size_t>(&w - plan.weighted.data())]);
    j.Field("axis", w.qweight.axis);
    j.Field("sqnr_db", w.qweight.sqnr_db);
    {
      // Relative output error of the layer on its rounding objective (GPTQ/AdaRound only).
      const size_t wi = static_cast<size_t>(&w - plan.weighted.data());
      if (wi < rounding_loss.size() && rounding_loss[wi] >= 0) j.Field("rounding_loss", rounding_loss[wi]);
    }
    j.Key("scale").BeginArray();
    for (float s : w.qweight.scales()) j.Number(s);
    j.EndArray();
    j.Field("zero_point", 0);
    if (w.has_qbias) {
      j.Key("bias").BeginObject().Field("tensor", g.value(w.bias).name()).Field("bits", 32)
          .Field("saturated", w.qbias.saturated).EndObject();
    }
    j.EndObject();
  }
  j.EndArray();
  j.Key("notes").BeginArray();
  for (const auto& n : plan.notes) j.String(n);
  j.EndArray();
  timings.emplace_back("total", MsSince(t_start));
  j.Key("timings_ms").BeginObject();
  for (const auto& [k, v] : timings) j.Field(k, v);
  j.EndObject();
  j.EndObject();

  QuantizeResult result;
  result.exported = exported;
  result.quantized = std::move(qdq);
  result.optimized = std::move(prep.optimized);
  result.plan = std::move(prep.plan);
  result.report_json = j.str();
  return result;
}

}  // namespace onnxq::quant
