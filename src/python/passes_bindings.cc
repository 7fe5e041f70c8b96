// onnxq.optimize and the pass registry. The passes themselves are C++ (src/passes/); this file
// only converts arguments and the report.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "onnxq/ir/graph.h"
#include "onnxq/passes/pass.h"
#include "onnxq/passes/weight_sqnr.h"
#include "python/common.h"

namespace onnxq::python {
namespace {

py::list ReportToPython(const passes::PassReport& report) {
  py::list out;
  for (const auto& p : report.passes) {
    py::dict d;
    d["name"] = p.name;
    d["changed"] = p.changed;
    d["millis"] = p.millis;
    d["nodes_before"] = p.nodes_before;
    d["nodes_after"] = p.nodes_after;
    d["counters"] = py::cast(p.counters);
    d["notes"] = py::cast(p.notes);
    out.append(std::move(d));
  }
  return out;
}

StatusOr<std::vector<std::string>> PipelineFrom(const py::object& passes) {
  if (py::isinstance<py::str>(passes)) return passes::ParsePipeline(passes.cast<std::string>());
  std::string joined;
  for (auto item : passes) {
    std::string name = py::str(item).cast<std::string>();
    if (name == "none") continue;
    joined += (joined.empty() ? "" : ",") + name;
  }
  return passes::ParsePipeline(joined);
}

py::object Optimize(const Model& model, const py::object& passes, const std::string& cle_clip,
                    std::optional<std::pair<float, float>> input_range,
                    std::optional<std::string> dump_dir, bool verify, bool return_report) {
  passes::OptimizeOptions opt;
  opt.passes = Unwrap(PipelineFrom(passes));
  if (cle_clip == "exact")
    opt.equalization.clip_policy = passes::ClipPolicy::kExact;
  else if (cle_clip == "per-channel-min")
    opt.equalization.clip_policy = passes::ClipPolicy::kPerChannelMin;
  else
    Check(InvalidArgument("cle_clip must be 'exact' or 'per-channel-min', got '", cle_clip, "'"));
  if (input_range) {
    if (!(input_range->first <= input_range->second))
      Check(InvalidArgument("input_range: low must not exceed high"));
    opt.equalization.input_min = input_range->first;
    opt.equalization.input_max = input_range->second;
  }
  if (dump_dir) opt.dump_dir = *dump_dir;
  opt.verify = verify;
  auto result = std::make_shared<Model>(model);
  StatusOr<passes::PassReport> report = [&] {
    py::gil_scoped_release nogil;
    return passes::Optimize(*result, opt);
  }();
  passes::PassReport r = Unwrap(std::move(report));
  if (return_report) return py::make_tuple(result, ReportToPython(r));
  return py::cast(result);
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindPasses, 10) {
  m.def("optimize", &Optimize, py::arg("model"), py::arg("passes") = "default", py::kw_only(),
        py::arg("cle_clip") = "exact", py::arg("input_range") = py::none(),
        py::arg("dump_dir") = py::none(), py::arg("verify") = true, py::arg("return_report") = false,
        "Runs graph-optimization passes on a copy of `model` and returns the optimized model "
        "(with return_report=True: (model, report), the report a list of per-pass dicts).\n"
        "passes: 'default', 'none', 'a,b,c' or a list of names (see onnxq.list_passes()).\n"
        "cle_clip: how cross-layer equalization ('cle') treats Clip(0, M): 'exact' scales only "
        "channels proven never to reach M; 'per-channel-min' scales all and rewrites the Clip as "
        "Relu -> Min(per-channel bound). input_range=(lo, hi): known range of the model input.\n"
        "dump_dir: write the model after every pass (NN-<pass>.onnx and .txt) for debugging.");
  m.def(
      "list_passes",
      [] {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& n : passes::RegisteredPasses()) out.emplace_back(n, passes::PassDescription(n));
        return out;
      },
      "[(name, description)] of every registered pass.");
  m.def("default_pipeline", [] { return passes::DefaultPipeline(); },
        "The pass names of the default pipeline, in order.");
  m.def(
      "weight_sqnr_db",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> w, int bits) {
        if (bits < 2 || bits > 16) Check(InvalidArgument("bits must be in [2, 16], got ", bits));
        return passes::SymmetricSqnrDb(std::span<const float>(w.data(), static_cast<size_t>(w.size())), bits);
      },
      py::arg("weights"), py::arg("bits") = 8,
      "SQNR in dB of symmetric per-tensor max-abs quantization of `weights` to `bits` bits.");
}

}  // namespace onnxq::python
