// onnxq.quantize: post-training static quantization (the pipeline is C++, src/quant/; this file only
// converts arguments and the result).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>

#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/evaluate.h"
#include "onnxq/quant/quantize_model.h"
#include "python/common.h"

namespace onnxq::python {
namespace {

struct PyQuantizeResult {
  std::shared_ptr<Model> model;
  std::string report_json;
};

Tensor FloatArray(const py::handle& h) {
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(h);
  if (!a) throw py::type_error("calibration samples must be numpy arrays (or dicts of one array)");
  std::vector<int64_t> dims(a.shape(), a.shape() + a.ndim());
  return Unwrap(Tensor::FromBytes(DataType::kFloat, dims, a.data(), static_cast<size_t>(a.size()) * 4));
}

// Splits arrays that carry the model's batch dim into samples.
void AddSamples(const Model& m, const py::handle& item, std::vector<Tensor>& out) {
  py::handle h = item;
  py::object keep;
  if (py::isinstance<py::dict>(item)) {
    py::dict d = py::reinterpret_borrow<py::dict>(item);
    if (d.size() != 1) throw py::value_error("calibration dicts must map the one model input to an array");
    keep = py::reinterpret_borrow<py::object>(d.begin()->second);
    h = keep;
  }
  Tensor t = FloatArray(h);
  auto ins = m.graph.RuntimeInputs();
  size_t rank = ins.size() == 1 && m.graph.value(ins[0]).shape ? m.graph.value(ins[0]).shape->rank() : 0;
  if (rank > 0 && t.rank() == rank) {
    int64_t n = t.dims()[0];
    std::vector<int64_t> d(t.dims().begin() + 1, t.dims().end());
    size_t each = t.nbytes() / static_cast<size_t>(std::max<int64_t>(n, 1));
    for (int64_t i = 0; i < n; ++i)
      out.push_back(Unwrap(Tensor::FromBytes(DataType::kFloat, d, t.raw() + i * each, each)));
  } else {
    out.push_back(std::move(t));
  }
}

quant::QuantizeConfig ConfigFrom(const py::dict& cfg, calib::DatasetOptions* dopt) {
  quant::QuantizeConfig c;
  for (auto item : cfg) {
    std::string k = py::str(item.first);
    py::handle v = item.second;
    if (k == "calibrator") c.calibrator = v.cast<std::string>();
    else if (k == "percentile") c.percentile = v.cast<double>();
    else if (k == "weight_granularity") {
      std::string s = v.cast<std::string>();
      if (s != "per-channel" && s != "per-tensor")
        throw py::value_error("weight_granularity must be 'per-channel' or 'per-tensor'");
      c.per_channel = s == "per-channel";
    } else if (k == "weight_bits") c.weight_bits = v.cast<int>();
    else if (k == "act_bits") c.act_bits = v.cast<int>();
    else if (k == "weight_scale") c.weight_scale = v.cast<std::string>();
    else if (k == "exclude") c.exclude = v.cast<std::vector<std::string>>();
    else if (k == "cle" || k == "bias_correction") {
      std::string s = py::isinstance<py::bool_>(v) ? (v.cast<bool>() ? "on" : "off") : v.cast<std::string>();
      (k == "cle" ? c.cle : c.bias_correction) = Unwrap(quant::ParseToggle(s, k));
    } else if (k == "bias_correction_samples") c.bias_correction_samples = v.cast<int64_t>();
    else if (k == "batch_size") c.batch_size = v.cast<int64_t>();
    else if (k == "threads") c.threads = v.cast<int>();
    else if (k == "sqnr_samples") c.sqnr_samples = v.cast<int64_t>();
    else if (k == "stats") c.stats_path = v.cast<std::string>();
    else if (k == "preprocess") dopt->preprocess = Unwrap(calib::PreprocessPreset(v.cast<std::string>()));
    else if (k == "calib_count") dopt->count = v.cast<int64_t>();
    else if (k == "calib_skip") dopt->skip = v.cast<int64_t>();
    else if (k == "labels") dopt->labels = v.cast<std::string>();
    else throw py::type_error("unknown quantize config key '" + k + "'");
  }
  Check(c.Validate());
  return c;
}

PyQuantizeResult Quantize(const py::object& model_arg, const py::object& data, const py::object& config) {
  std::shared_ptr<Model> model;
  std::string path;
  if (py::isinstance<py::str>(model_arg)) {
    path = model_arg.cast<std::string>();
    model = std::make_shared<Model>(Unwrap(LoadModel(path)));
  } else {
    model = model_arg.cast<std::shared_ptr<Model>>();
  }
  calib::DatasetOptions dopt;
  py::dict cfg = config.is_none() ? py::dict() : config.cast<py::dict>();
  quant::QuantizeConfig c = ConfigFrom(cfg, &dopt);
  std::unique_ptr<calib::Dataset> dataset;
  std::unique_ptr<quant::CalibrationSource> source;
  auto pool = std::make_unique<ThreadPool>(c.threads);
  if (py::isinstance<py::str>(data)) {
    dataset = Unwrap(calib::Dataset::Open(data.cast<std::string>(), dopt));
    source = quant::DatasetSource(*dataset, pool.get());
  } else {
    std::vector<Tensor> samples;
    if (py::isinstance<py::array>(data)) {
      AddSamples(*model, data, samples);
    } else {
      for (auto item : data) AddSamples(*model, item, samples);
    }
    if (samples.empty()) Check(InvalidArgument("the calibration data is empty"));
    source = quant::TensorSource(std::move(samples));
  }
  StatusOr<quant::QuantizeResult> r = [&] {
    py::gil_scoped_release nogil;
    return quant::Quantize(*model, *source, c, path);
  }();
  quant::QuantizeResult res = Unwrap(std::move(r));
  PyQuantizeResult out;
  if (res.exported) out.model = std::make_shared<Model>(std::move(res.quantized));
  out.report_json = std::move(res.report_json);
  return out;
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindQuant, 30) {
  py::class_<PyQuantizeResult>(m, "QuantizeResult", "The QDQ model and the quantization report.")
      .def_readonly("model", &PyQuantizeResult::model, "the quantized QDQ model (save it with onnxq.save); None when act_bits < 8 (simulation only)")
      .def_readonly("report_json", &PyQuantizeResult::report_json)
      .def_property_readonly("report", [](const PyQuantizeResult& r) {
        return py::module_::import("json").attr("loads")(r.report_json);
      }, "the report as a dict (scales, zero points, SQNR per tensor, sizes, timings, hashes, config)");
  m.def("quantize", &Quantize, py::arg("model"), py::arg("calibration_data"), py::arg("config") = py::none(),
        "Post-training static quantization to a QDQ model.\n\n"
        "model: an onnxq.Model or a path. calibration_data: an image/.npy folder or .npy path\n"
        "(config keys preprocess, calib_count, calib_skip, labels apply), a numpy array, or an iterable\n"
        "of arrays (or {input: array} dicts); arrays with the model's batch dim are split into samples.\n"
        "config: dict with calibrator, percentile, weight_granularity, weight_bits, act_bits,\n"
        "weight_scale, exclude, cle, bias_correction, bias_correction_samples, batch_size, threads,\n"
        "sqnr_samples, stats.");
  m.def("softmax_kl", [](py::array_t<float, py::array::c_style | py::array::forcecast> p,
                         py::array_t<float, py::array::c_style | py::array::forcecast> q) {
          if (p.size() != q.size()) throw py::value_error("p and q differ in size");
          return quant::SoftmaxKl(std::span<const float>(p.data(), static_cast<size_t>(p.size())),
                                  std::span<const float>(q.data(), static_cast<size_t>(q.size())));
        }, py::arg("p_logits"), py::arg("q_logits"), "KL(softmax(p) || softmax(q)) in nats (double precision).");
}

}  // namespace onnxq::python
