// The default pipeline over every model of the ONNX backend test data (Debian's libonnx-testdata):
// it must never fail on a model the importer accepts, and wherever it changes the graph, the
// optimized model must still reproduce the stored expected outputs on onnxq's executor whenever
// the original does (models the executor does not support are counted, not failed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "onnxq/onnx/model_io.h"
#include "onnxq/passes/pass.h"
#include "onnxq/runtime/session.h"

namespace onnxq::passes {
namespace {

namespace fs = std::filesystem;

std::string DataRoot() {
  if (const char* e = std::getenv("ONNXQ_BACKEND_DATA")) return e;
  return "/usr/share/libonnx-testdata/data";
}

bool Close(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype() || got.dims() != want.dims()) return false;
  bool fp = IsFloatingPoint(want.dtype());
  for (int64_t i = 0; i < want.numel(); ++i) {
    double a = got.GetAsDouble(i), b = want.GetAsDouble(i);
    if (std::isnan(a) && std::isnan(b)) continue;
    if (fp ? !(a == b || std::fabs(a - b) <= 1e-5 + 1e-4 * std::fabs(b)) : a != b) return false;
  }
  return true;
}

enum class Check { kPass, kFail, kUnsupported };

// Runs test_data_set_0 of `dir` through `model` and compares with the expected outputs.
Check Matches(const Model& model, const fs::path& dir) {
  auto session = Session::Create(model);
  if (!session.ok()) return Check::kUnsupported;
  fs::path set = dir / "test_data_set_0";
  if (!fs::is_directory(set)) return Check::kUnsupported;
  const Graph& g = model.graph;
  std::vector<ValueId> inputs = g.RuntimeInputs();
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0;; ++i) {
    fs::path f = set / ("input_" + std::to_string(i) + ".pb");
    if (!fs::exists(f)) break;
    std::string name;
    auto t = LoadTensorProtoFile(f.string(), &name);
    if (!t.ok()) return Check::kUnsupported;
    if (name.empty() || g.FindValue(name) == kNoValue) {
      if (i >= inputs.size()) return Check::kUnsupported;
      name = g.value(inputs[i]).name();
    }
    feeds[name] = std::move(*t);
  }
  auto out = (*session)->Run(feeds);
  if (!out.ok()) return out.status().code() == StatusCode::kUnsupported ? Check::kUnsupported : Check::kFail;
  for (size_t i = 0; i < g.outputs().size(); ++i) {
    fs::path f = set / ("output_" + std::to_string(i) + ".pb");
    auto want = LoadTensorProtoFile(f.string());
    if (!want.ok()) return Check::kUnsupported;
    auto it = out->find(g.value(g.outputs()[i]).name());
    if (it == out->end() || !Close(it->second, *want)) return Check::kFail;
  }
  return Check::kPass;
}

TEST(PassesBackend, DefaultPipelineKeepsBackendModelsCorrect) {
  fs::path root = DataRoot();
  if (!fs::is_directory(root / "node")) GTEST_SKIP() << "ONNX backend test data not found at " << root;
  int loaded = 0, changed = 0, verified = 0, unsupported = 0, original_fails = 0;
  std::vector<std::string> failures;
  for (const char* kind : {"node", "simple", "pytorch-converted", "pytorch-operator"}) {
    if (!fs::is_directory(root / kind)) continue;
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(root / kind))
      if (fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const fs::path& dir : dirs) {
      auto model = LoadModel((dir / "model.onnx").string());
      if (!model.ok()) continue;
      ++loaded;
      Model optimized = *model;
      auto report = Optimize(optimized);
      if (!report.ok()) {
        failures.push_back(dir.filename().string() + ": " + report.status().ToString());
        continue;
      }
      bool graph_changed = false;
      for (const auto& p : report->passes) graph_changed |= p.changed && p.name != "mark-activation-groups";
      if (!graph_changed) continue;
      ++changed;
      Check after = Matches(optimized, dir);
      if (after == Check::kPass) {
        ++verified;
        continue;
      }
      Check before = Matches(*model, dir);
      if (before == Check::kUnsupported) {
        ++unsupported;
      } else if (before == Check::kFail) {
        ++original_fails;  // an executor limitation, not the passes'
      } else {
        failures.push_back(dir.filename().string() + ": outputs differ after optimization (" +
                           (after == Check::kUnsupported ? "optimized model no longer runs" : "mismatch") + ")");
      }
    }
  }
  std::printf("[passes backend] %d models loaded, %d changed by the default pipeline: %d verified "
              "against expected outputs, %d not runnable on the executor, %d wrong already before\n",
              loaded, changed, verified, unsupported, original_fails);
  EXPECT_GT(loaded, 500);
  EXPECT_GT(verified, 0);  // grows with the executor's op coverage (4 when written)
  for (const auto& f : failures) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace onnxq::passes
