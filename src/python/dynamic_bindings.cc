// onnxq.quantize_dynamic: dynamic-range quantization (the rewrite is C++, src/quant/quantize_dynamic.cc;
// this file only converts arguments and the result).
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_dynamic.h"
#include "python/common.h"

namespace onnxq::python {
namespace {

struct PyDynamicResult {
  std::shared_ptr<Model> model;
  int64_t quantized_nodes = 0;
  std::string report_json;
};

struct EvalSpec {
  std::string path;
  calib::DatasetOptions options;
};

quant::DynamicQuantizeOptions OptionsFrom(const py::dict& cfg, EvalSpec* eval) {
  quant::DynamicQuantizeOptions o;
  for (auto item : cfg) {
    std::string k = py::str(item.first);
    py::handle v = item.second;
    if (k == "mode") {
      if (v.cast<std::string>() != "dynamic")
        throw py::value_error("quantize_dynamic: config 'mode' must be 'dynamic'");
    } else if (k == "weight_granularity") {
      std::string s = v.cast<std::string>();
      if (s != "per-channel" && s != "per-tensor")
        throw py::value_error("weight_granularity must be 'per-channel' or 'per-tensor'");
      o.per_channel = s == "per-channel";
    } else if (k == "weight_bits") o.weight_bits = v.cast<int>();
    else if (k == "weight_scale") o.weight_scale = v.cast<std::string>();
    else if (k == "op_types") o.op_types = v.cast<std::vector<std::string>>();
    else if (k == "exclude") o.exclude = v.cast<std::vector<std::string>>();
    else if (k == "passes") o.passes = v.cast<std::string>();
    else if (k == "threads") o.threads = v.cast<int>();
    else if (k == "eval_data") eval->path = v.is_none() ? std::string() : v.cast<std::string>();
    else if (k == "eval_batch_size") o.eval_batch_size = v.cast<int64_t>();
    else if (k == "eval_skip") eval->options.skip = v.cast<int64_t>();
    else if (k == "eval_count") eval->options.count = v.cast<int64_t>();
    else if (k == "labels") eval->options.labels = v.cast<std::string>();
    else if (k == "preprocess") eval->options.preprocess = Unwrap(calib::PreprocessPreset(v.cast<std::string>()));
    else throw py::type_error("unknown quantize_dynamic config key '" + k + "'");
  }
  Check(o.Validate());
  return o;
}

PyDynamicResult QuantizeDynamic(const py::object& model_arg, const py::object& config) {
  std::shared_ptr<Model> model;
  std::string path;
  if (py::isinstance<py::str>(model_arg)) {
    path = model_arg.cast<std::string>();
    model = std::make_shared<Model>(Unwrap(LoadModel(path)));
  } else {
    model = model_arg.cast<std::shared_ptr<Model>>();
  }
  EvalSpec eval;
  py::dict cfg = config.is_none() ? py::dict() : config.cast<py::dict>();
  quant::DynamicQuantizeOptions o = OptionsFrom(cfg, &eval);
  std::unique_ptr<calib::Dataset> data;
  if (!eval.path.empty()) {
    data = Unwrap(calib::Dataset::Open(eval.path, eval.options));
    o.eval_data = data.get();
  }
  StatusOr<quant::DynamicQuantizeResult> r = [&] {
    py::gil_scoped_release nogil;
    return quant::QuantizeDynamic(*model, o, path);
  }();
  quant::DynamicQuantizeResult res = Unwrap(std::move(r));
  PyDynamicResult out;
  out.model = std::make_shared<Model>(std::move(res.quantized));
  out.quantized_nodes = res.quantized_nodes;
  out.report_json = std::move(res.report_json);
  return out;
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindDynamic, 31) {
  py::class_<PyDynamicResult>(m, "DynamicQuantizeResult",
                              "The dynamically quantized model and its report.")
      .def_readonly("model", &PyDynamicResult::model,
                    "the model with DynamicQuantizeLinear + ConvInteger / MatMulInteger (save it with onnxq.save)")
      .def_readonly("quantized_nodes", &PyDynamicResult::quantized_nodes,
                    "number of Conv / MatMul / Gemm nodes rewritten into integer ops")
      .def_readonly("report_json", &PyDynamicResult::report_json)
      .def_property_readonly("report", [](const PyDynamicResult& r) {
        return py::module_::import("json").attr("loads")(r.report_json);
      }, "the report as a dict (config, sizes, per-weight scales and SQNR, nodes left float, "
         "evaluation, timings)");
  m.def("quantize_dynamic", &QuantizeDynamic, py::arg("model"), py::arg("config") = py::none(),
        "Dynamic-range quantization: int8 weights, uint8 activations quantized at run time\n"
        "(DynamicQuantizeLinear -> ConvInteger / MatMulInteger, ONNX Runtime's pattern). No calibration\n"
        "data. model: an onnxq.Model or a path. config: dict with weight_granularity ('per-channel' |\n"
        "'per-tensor'), weight_bits, weight_scale ('minmax' | 'mse'), op_types, exclude, passes, threads;\n"
        "for an accuracy check against the float model: eval_data (image/.npy folder), preprocess,\n"
        "labels, eval_skip, eval_count, eval_batch_size (default 1).");
}

}  // namespace onnxq::python
