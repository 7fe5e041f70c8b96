// Graph-optimization passes and the pass manager. A pass rewrites a Model in place through the
// Graph mutators and says whether it changed anything; the manager runs a named pipeline, verifies
// the graph after every pass, times passes and can dump the model after each one for debugging.
// Optimize() is the library entry point (the CLI `onnxq optimize`, Python `onnxq.optimize` and the
// quantizer's first step all call it).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"

namespace onnxq::passes {

// How cross-layer equalization treats a Clip(0, M) (ReLU6) between two convolutions. Scaling
// channel i of the first conv by 1/s_i turns the bound M into M/s_i for that channel, which a
// scalar Clip cannot express.
enum class ClipPolicy {
  // Scale a channel only when a sound interval bound proves its pre-activation never reaches M
  // (then Clip is inactive before and after, for any input); other channels keep s_i = 1 and
  // are listed in the report. Keeps every Clip as it is.
  kExact,
  // Scale every channel and, where the bounds now differ per channel, rewrite Clip(0, M) into
  // Relu -> Min(c) with c_i = M / s_i (a per-channel constant): exact for all inputs, but the
  // activation is then two ops (both marked as one quantization group).
  kPerChannelMin,
};

struct EqualizationOptions {
  ClipPolicy clip_policy = ClipPolicy::kExact;
  int max_iterations = 20;          // sweeps over all pairs
  double convergence = 1e-4;        // stop when every |s_i - 1| is below this in a sweep
  bool absorb_high_bias = true;     // only where an interval bound proves it exact
  // Known range of the graph's runtime inputs (e.g. -1..1 for an image model); lets the interval
  // bounds start finite at the first layer. Empty (lo > hi) means unknown.
  float input_min = 1.f, input_max = -1.f;
};

// One pass's outcome inside a report.
struct PassResult {
  std::string name;
  bool changed = false;
  double millis = 0.0;
  int64_t nodes_before = 0, nodes_after = 0;
  std::map<std::string, int64_t> counters;  // "folded" -> 53, "skipped.clip_bound" -> 12, ...
  std::vector<std::string> notes;           // human-readable: what was done or refused, and why
};

struct PassReport {
  std::vector<PassResult> passes;
  bool changed() const;
  std::string ToText(bool verbose = false) const;
  std::string ToJson() const;
};

// Shared state of one pipeline run. Passes add notes and counters for their own PassResult.
class PassContext {
 public:
  PassResult* result = nullptr;  // set by the manager before each pass
  EqualizationOptions equalization;

  void Note(std::string text) {
    if (result) result->notes.push_back(std::move(text));
  }
  void Count(const std::string& key, int64_t n = 1) {
    if (result) result->counters[key] += n;
  }
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  virtual const char* description() const = 0;
  // Returns whether the model changed. On error the model may be partly rewritten: the manager
  // works on a copy and only commits it when the whole pipeline succeeded.
  virtual StatusOr<bool> Run(Model& model, PassContext& ctx) = 0;
};

// ---- registry
std::vector<std::string> RegisteredPasses();
std::string PassDescription(const std::string& name);  // "" if unknown
StatusOr<std::unique_ptr<Pass>> CreatePass(const std::string& name);

// The pipeline that makes a float model quantization-ready (also quantization's first step).
const std::vector<std::string>& DefaultPipeline();
// "default" | "none" | "a,b,c" (entries may include "default", e.g. "default,cle"). Unknown names
// are an error that lists the known ones.
StatusOr<std::vector<std::string>> ParsePipeline(const std::string& spec);

struct OptimizeOptions {
  std::vector<std::string> passes = DefaultPipeline();
  bool verify = true;         // Graph::Verify plus shape/initializer consistency after each pass
  std::string dump_dir;       // if set: <dir>/00-input.onnx, 01-<pass>.onnx, ... after each pass
  EqualizationOptions equalization;
};

// Runs the pipeline on `model`. On error the model is left exactly as it was.
StatusOr<PassReport> Optimize(Model& model, const OptimizeOptions& options = {});

// The verifier run after every pass: Graph::Verify, plus initializers matching their values'
// declared dtype/shape, and Conv/Gemm weight and bias shapes agreeing where they are known.
Status VerifyModel(const Model& model);

}  // namespace onnxq::passes
