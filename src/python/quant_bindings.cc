// onnxq.quantize: post-training static quantization (the pipeline is C++, src/quant/; this file only
// converts arguments and the result).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/evaluate.h"
#include "onnxq/quant/quantize_model.h"
#include "python/common.h"
#include "python/numpy_tensor.h"

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

// An array for the model input `val` in its declared type (float32 inputs accept any float array,
// e.g. float64, converted; int64 token ids stay int64).
Tensor InputArray(const Value& val, const py::handle& h, const std::string& what) {
  Tensor t = val.dtype == DataType::kFloat || val.dtype == DataType::kUndefined ? FloatArray(h) : ArrayToTensor(h, what);
  if (val.dtype != DataType::kUndefined && t.dtype() != val.dtype)
    Check(InvalidArgument(what, " is ", DataTypeName(t.dtype()), ", the model expects ", DataTypeName(val.dtype)));
  return t;
}

// An array with the input's declared rank carries a batch dim: one sample per row.
void SplitSamples(const Value& val, Tensor t, std::vector<Tensor>& parts) {
  const size_t rank = val.shape ? val.shape->rank() : 0;
  if (rank > 0 && t.rank() == rank) {
    const int64_t n = t.dims()[0];
    std::vector<int64_t> d(t.dims().begin() + 1, t.dims().end());
    const size_t each = t.nbytes() / static_cast<size_t>(std::max<int64_t>(n, 1));
    for (int64_t i = 0; i < n; ++i) parts.push_back(Unwrap(Tensor::FromBytes(t.dtype(), d, t.raw() + i * each, each)));
  } else {
    parts.push_back(std::move(t));
  }
}

// A one-input model: arrays (or dicts of one array), split into samples.
void AddSamples(const Model& m, const py::handle& item, std::vector<Tensor>& out) {
  py::handle h = item;
  py::object keep;
  if (py::isinstance<py::dict>(item)) {
    py::dict d = py::reinterpret_borrow<py::dict>(item);
    if (d.size() != 1) throw py::value_error("calibration dicts of a one-input model must hold one array");
    keep = py::reinterpret_borrow<py::object>(d.begin()->second);
    h = keep;
  }
  const auto ins = m.graph.RuntimeInputs();
  if (ins.empty()) Check(InvalidArgument("the model has no runtime input to calibrate with"));
  const Value& val = m.graph.value(ins[0]);
  SplitSamples(val, InputArray(val, h, "calibration input '" + val.name() + "'"), out);
}

// Models with several inputs: every sample is a dict {input name: array}, each array converted to
// its input's declared type and split along a leading batch dim when it has one.
void AddMapSamples(const Model& m, const py::handle& item, std::vector<std::map<std::string, Tensor>>& out) {
  const Graph& g = m.graph;
  const auto ins = g.RuntimeInputs();
  if (!py::isinstance<py::dict>(item)) {
    std::string names;
    for (ValueId v : ins) names += (names.empty() ? "'" : ", '") + g.value(v).name() + "'";
    throw py::value_error("the model has " + std::to_string(ins.size()) + " inputs (" + names +
                          "): each calibration sample must be a dict {input name: array}");
  }
  std::map<std::string, std::vector<Tensor>> split;
  int64_t count = -1;
  for (auto kv : py::reinterpret_borrow<py::dict>(item)) {
    const std::string name = py::str(kv.first);
    const ValueId v = g.FindValue(name);
    if (v == kNoValue || std::find(ins.begin(), ins.end(), v) == ins.end())
      throw py::value_error("calibration dict key '" + name + "' is not an input of the model");
    const Value& val = g.value(v);
    std::vector<Tensor>& parts = split[name];
    SplitSamples(val, InputArray(val, kv.second, "calibration input '" + name + "'"), parts);
    const int64_t got = static_cast<int64_t>(parts.size());
    if (count >= 0 && got != count)
      Check(InvalidArgument("calibration dict arrays hold different numbers of samples (", count, " vs ",
                            got, " for '", name, "')"));
    count = got;
  }
  for (int64_t i = 0; i < count; ++i) {
    std::map<std::string, Tensor> sample;
    for (auto& [name, parts] : split) sample.emplace(name, std::move(parts[static_cast<size_t>(i)]));
    out.push_back(std::move(sample));
  }
}

// QuantizeConfig::progress from the optional Python callable(stage, done, total) of the "progress"
// config key. The C++ flow calls it with the GIL released: it takes the GIL, turns a pending Ctrl-C
// (PyErr_CheckSignals) or an exception of the callable into `false` (= cancel) and keeps that
// exception, which RaiseIfInterrupted re-raises once the flow has returned.
struct PyProgress {
  py::object fn;                               // None: only Ctrl-C is checked
  std::optional<py::error_already_set> error;  // the first exception, re-raised after the flow
};

std::function<bool(const std::string&, int64_t, int64_t)> ProgressFn(std::shared_ptr<PyProgress> p) {
  return [p](const std::string& stage, int64_t done, int64_t total) -> bool {
    py::gil_scoped_acquire gil;
    try {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (p->fn.is_none()) return true;
      py::object r = p->fn(stage, done, total);
      return r.is_none() || PyObject_IsTrue(r.ptr()) == 1;
    } catch (py::error_already_set& e) {
      if (!p->error) p->error.emplace(std::move(e));
      return false;
    }
  };
}

template <typename T>
void RaiseIfInterrupted(const StatusOr<T>& r, PyProgress& p) {
  if (!r.ok() && r.status().code() == StatusCode::kCancelled && p.error) {
    p.error->restore();
    p.error.reset();
    throw py::error_already_set();
  }
}

// A sensitivity dict (as onnxq.sensitivity returns it) back into the C++ struct.
std::shared_ptr<const quant::SensitivityResult> SensitivityFrom(const py::handle& v) {
  if (!py::isinstance<py::dict>(v)) throw py::type_error("config 'sensitivity' must be the dict onnxq.sensitivity returns");
  py::dict d = py::reinterpret_borrow<py::dict>(v);
  auto r = std::make_shared<quant::SensitivityResult>();
  r->metric = d.contains("metric") ? d["metric"].cast<std::string>() : "";
  r->rounding = d.contains("rounding") ? d["rounding"].cast<std::string>() : "";
  r->weight_scale = d.contains("weight_scale") ? d["weight_scale"].cast<std::string>() : "";
  r->weight_grid = d.contains("weight_grid") ? d["weight_grid"].cast<std::string>() : "";
  r->samples = d.contains("samples") ? d["samples"].cast<int64_t>() : 0;
  if (!d.contains("layers")) throw py::value_error("sensitivity dict has no 'layers'");
  for (auto item : d["layers"].cast<py::list>()) {
    py::dict l = item.cast<py::dict>();
    quant::LayerSensitivity ls;
    ls.node = l["node"].cast<std::string>();
    ls.op = l.contains("op") ? l["op"].cast<std::string>() : "";
    ls.weight = l.contains("weight") ? l["weight"].cast<std::string>() : "";
    ls.cost.params = l["params"].cast<int64_t>();
    ls.cost.channels = l.contains("channels") ? l["channels"].cast<int64_t>() : 0;
    ls.cost.macs = l.contains("macs") && !l["macs"].is_none() ? l["macs"].cast<int64_t>() : -1;
    for (auto kv : l["damage"].cast<py::dict>()) {
      int b = std::stoi(py::str(kv.first).cast<std::string>());
      ls.damage.emplace_back(b, kv.second.is_none() ? 0.0 : kv.second.cast<double>());
    }
    std::sort(ls.damage.begin(), ls.damage.end());
    r->layers.push_back(std::move(ls));
  }
  return r;
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
    else if (k == "act_equalization") {
      std::string s = py::isinstance<py::bool_>(v) ? (v.cast<bool>() ? "on" : "off") : v.cast<std::string>();
      c.act_equalization = Unwrap(quant::ParseToggle(s, k));
    } else if (k == "act_equalization_alpha") c.act_equalization_alpha = v.cast<double>();
    else if (k == "act_equalization_max_scale") c.act_equalization_max_scale = v.cast<double>();
    else if (k == "act_equalization_samples") c.act_equalization_samples = v.cast<int64_t>();
    else if (k == "batch_size") c.batch_size = v.cast<int64_t>();
    else if (k == "threads") c.threads = v.cast<int>();
    else if (k == "sqnr_samples") c.sqnr_samples = v.cast<int64_t>();
    else if (k == "stats") c.stats_path = v.cast<std::string>();
    else if (k == "layer_weight_bits") c.layer_weight_bits = v.cast<std::map<std::string, int>>();
    else if (k == "rounding") c.rounding = v.cast<std::string>();
    else if (k == "rounding_samples") c.rounding_samples = v.cast<int64_t>();
    else if (k == "gptq_damp") c.gptq_damp = v.cast<double>();
    else if (k == "gptq_act_order") c.gptq_act_order = v.cast<bool>();
    else if (k == "gptq_quantized_inputs") c.gptq_quantized_inputs = v.cast<bool>();
    else if (k == "rounding_objective") c.rounding_objective = v.cast<std::string>();
    else if (k == "rounding_target_damp") c.rounding_target_damp = v.cast<double>();
    else if (k == "adaround_iters") c.adaround_iters = v.cast<int64_t>();
    else if (k == "adaround_lambda") c.adaround_lambda = v.cast<double>();
    else if (k == "adaround_lr") c.adaround_lr = v.cast<double>();
    else if (k == "weight_grid") c.weight_grid = v.cast<std::string>();
    else if (k == "weight_bits_avg") c.weight_bits_avg = v.cast<double>();
    else if (k == "weight_memory") c.weight_memory = v.cast<double>();
    else if (k == "bops") c.bops = v.cast<double>();
    else if (k == "candidate_bits") c.candidate_bits = v.cast<std::vector<int>>();
    else if (k == "sensitivity_samples") c.sensitivity_samples = v.cast<int64_t>();
    else if (k == "sensitivity_metric") c.sensitivity_metric = v.cast<std::string>();
    else if (k == "allocation_refine") c.allocation_refine = v.cast<int>();
    else if (k == "sensitivity") { if (!v.is_none()) c.sensitivity = SensitivityFrom(v); }
    else if (k == "progress") continue;  // installed by ReadInputs
    else if (k == "preprocess") dopt->preprocess = Unwrap(calib::PreprocessPreset(v.cast<std::string>()));
    else if (k == "calib_count") dopt->count = v.cast<int64_t>();
    else if (k == "calib_skip") dopt->skip = v.cast<int64_t>();
    else if (k == "labels") dopt->labels = v.cast<std::string>();
    else throw py::type_error("unknown quantize config key '" + k + "'");
  }
  Check(c.Validate());
  return c;
}

// Samples given as numpy data: arrays (one-input models), or {input name: array} dicts.
std::unique_ptr<quant::CalibrationSource> SamplesSource(const Model& model, const py::object& data, const char* what) {
  if (model.graph.RuntimeInputs().size() > 1) {
    std::vector<std::map<std::string, Tensor>> samples;
    if (py::isinstance<py::dict>(data)) {
      AddMapSamples(model, data, samples);
    } else {
      for (auto item : data) AddMapSamples(model, item, samples);
    }
    if (samples.empty()) Check(InvalidArgument("the ", what, " data is empty"));
    return quant::TensorMapSource(std::move(samples));
  }
  std::vector<Tensor> samples;
  if (py::isinstance<py::array>(data)) {
    AddSamples(model, data, samples);
  } else {
    for (auto item : data) AddSamples(model, item, samples);
  }
  if (samples.empty()) Check(InvalidArgument("the ", what, " data is empty"));
  return quant::TensorSource(std::move(samples));
}

// Model, config and calibration source from the Python arguments of quantize / sensitivity.
struct Inputs {
  std::shared_ptr<Model> model;
  std::string path;
  calib::DatasetOptions dopt;
  quant::QuantizeConfig c;
  std::unique_ptr<calib::Dataset> dataset;
  std::unique_ptr<quant::CalibrationSource> source;
  std::unique_ptr<ThreadPool> pool;
  std::shared_ptr<PyProgress> progress = std::make_shared<PyProgress>();
};

std::unique_ptr<Inputs> ReadInputs(const py::object& model_arg, const py::object& data, const py::object& config) {
  auto in = std::make_unique<Inputs>();
  std::shared_ptr<Model>& model = in->model;
  if (py::isinstance<py::str>(model_arg)) {
    in->path = model_arg.cast<std::string>();
    model = std::make_shared<Model>(Unwrap(LoadModel(in->path)));
  } else {
    model = model_arg.cast<std::shared_ptr<Model>>();
  }
  py::dict cfg = config.is_none() ? py::dict() : config.cast<py::dict>();
  in->c = ConfigFrom(cfg, &in->dopt);
  in->progress->fn = cfg.contains("progress") ? py::reinterpret_borrow<py::object>(cfg["progress"]) : py::none();
  in->c.progress = ProgressFn(in->progress);  // always: Ctrl-C cancels even without a callable
  in->pool = std::make_unique<ThreadPool>(in->c.threads);
  if (py::isinstance<py::str>(data)) {
    const auto runtime_inputs = model->graph.RuntimeInputs();
    if (runtime_inputs.size() == 1)
      in->dopt.sample_shape = quant::InputSampleShape(*model, model->graph.value(runtime_inputs[0]).name());
    in->dataset = Unwrap(calib::Dataset::Open(data.cast<std::string>(), in->dopt));
    in->source = quant::DatasetSource(*in->dataset, in->pool.get());
  } else {
    in->source = SamplesSource(*model, data, "calibration");
  }
  return in;
}

py::object Sensitivity(const py::object& model_arg, const py::object& data, const py::object& config) {
  auto in = ReadInputs(model_arg, data, config);
  StatusOr<quant::SensitivityResult> r = [&] {
    py::gil_scoped_release nogil;
    return quant::Sensitivity(*in->model, *in->source, in->c);
  }();
  RaiseIfInterrupted(r, *in->progress);
  quant::SensitivityResult res = Unwrap(std::move(r));
  return py::module_::import("json").attr("loads")(res.ToJson());
}

py::dict AllocateBits(const py::object& model_arg, const py::object& sensitivity, const py::object& config) {
  std::shared_ptr<Model> model = py::isinstance<py::str>(model_arg)
      ? std::make_shared<Model>(Unwrap(LoadModel(model_arg.cast<std::string>())))
      : model_arg.cast<std::shared_ptr<Model>>();
  calib::DatasetOptions dopt;
  py::dict cfg = config.is_none() ? py::dict() : config.cast<py::dict>();
  quant::QuantizeConfig c = ConfigFrom(cfg, &dopt);
  auto sens = SensitivityFrom(sensitivity);
  quant::PreparedModel prep = Unwrap(quant::PrepareModel(*model, c));
  quant::Budget budget = Unwrap(c.budget());
  std::vector<int> bits = Unwrap(quant::AllocateBits(prep.optimized, prep.plan, *sens, budget, c.act_bits, c.candidate_bits));
  py::dict out;
  for (size_t i = 0; i < bits.size(); ++i)
    out[py::str(quant::LayerKey(prep.optimized.graph, prep.plan.weighted[i]))] = bits[i];
  return out;
}

// One quantize call per budget (the sensitivity measured once and reused), each evaluated with
// onnxq's executor on the QDQ model against the float model: the size-vs-accuracy front as data.
py::list ParetoFront(const py::object& model_arg, const py::object& data, const std::string& eval_data,
                     const std::vector<double>& budgets, const py::object& config, int64_t eval_skip,
                     int64_t eval_count) {
  auto in = ReadInputs(model_arg, data, config);
  quant::QuantizeConfig& c = in->c;
  if (!c.has_budget()) Check(InvalidArgument("pareto_front: set the budget kind in the config "
                                             "(weight_bits_avg, weight_memory or bops; its value is replaced)"));
  calib::DatasetOptions eopt = in->dopt;
  eopt.skip = eval_skip;
  eopt.count = eval_count;
  std::unique_ptr<calib::Dataset> eval = Unwrap(calib::Dataset::Open(eval_data, eopt));
  py::list out;
  for (double b : budgets) {
    quant::QuantizeConfig cb = c;
    if (c.weight_bits_avg > 0) cb.weight_bits_avg = b;
    else if (c.weight_memory > 0) cb.weight_memory = b;
    else cb.bops = b;
    StatusOr<quant::QuantizeResult> r = [&] {
      py::gil_scoped_release nogil;
      if (!cb.sensitivity) {
        auto s = quant::Sensitivity(*in->model, *in->source, cb);
        if (!s.ok()) return StatusOr<quant::QuantizeResult>(s.status());
        c.sensitivity = std::make_shared<quant::SensitivityResult>(std::move(s).value());
        cb.sensitivity = c.sensitivity;
      }
      return quant::Quantize(*in->model, *in->source, cb, in->path);
    }();
    quant::QuantizeResult res = Unwrap(std::move(r));
    if (!res.exported) Check(InvalidArgument("pareto_front needs an exported model (8-bit activations)"));
    quant::EvalOptions eo;
    eo.threads = c.threads;
    StatusOr<quant::EvalResult> ev = [&] {
      py::gil_scoped_release nogil;
      return quant::Evaluate(res.quantized, *eval, in->model.get(), eo);
    }();
    quant::EvalResult e = Unwrap(std::move(ev));
    py::dict rep = py::module_::import("json").attr("loads")(res.report_json);
    py::dict row;
    row["budget"] = b;
    row["average_weight_bits"] = rep["sizes"]["average_weight_bits"];
    row["packed_weight_bytes"] = rep["sizes"]["packed_weight_bytes"];
    row["packed_weight_fraction"] = rep["sizes"]["packed_weight_fraction"];
    py::dict bits;
    for (auto w : rep["weights"]) bits[w["node"]] = w["bits"];
    row["layer_bits"] = bits;
    row["predicted_damage_sum"] = rep["mixed_precision"]["predicted_damage_sum"];
    if (e.has_labels) {
      row["top1"] = e.top1;
      row["reference_top1"] = e.reference_top1;
    } else {
      row["top1"] = py::none();
      row["reference_top1"] = py::none();
    }
    row["top1_agreement"] = e.top1_agreement;
    row["mean_kl"] = e.mean_kl;
    row["eval_samples"] = e.count;
    out.append(row);
  }
  return out;
}

std::shared_ptr<Model> ModelArg(const py::object& m) {
  if (py::isinstance<py::str>(m)) return std::make_shared<Model>(Unwrap(LoadModel(m.cast<std::string>())));
  return m.cast<std::shared_ptr<Model>>();
}

// Runs an evaluation without the GIL (Ctrl-C cancels it) and returns `onnxq eval --json` as a dict.
py::object RunEvaluation(int64_t batch_size, int threads,
                         const std::function<StatusOr<quant::EvalResult>(const quant::EvalOptions&)>& run) {
  quant::EvalOptions eo;
  eo.threads = threads;
  eo.batch_size = batch_size;
  auto progress = std::make_shared<PyProgress>();
  progress->fn = py::none();
  auto fn = ProgressFn(progress);
  eo.progress = [fn](int64_t done, int64_t total) { return fn("eval", done, total); };
  StatusOr<quant::EvalResult> r = [&] {
    py::gil_scoped_release nogil;
    return run(eo);
  }();
  RaiseIfInterrupted(r, *progress);
  return py::module_::import("json").attr("loads")(Unwrap(std::move(r)).ToJson());
}

py::object Evaluate(const py::object& model_arg, const std::shared_ptr<calib::Dataset>& data,
                    const py::object& reference_arg, int64_t batch_size, int threads) {
  std::shared_ptr<Model> model = ModelArg(model_arg);
  std::shared_ptr<Model> ref = reference_arg.is_none() ? nullptr : ModelArg(reference_arg);
  return RunEvaluation(batch_size, threads,
                       [&](const quant::EvalOptions& eo) { return quant::Evaluate(*model, *data, ref.get(), eo); });
}

// Evaluate on numpy samples (arrays or {input name: array} dicts) with optional labels.
py::object EvaluateSamples(const py::object& model_arg, const py::object& data, const py::object& labels_arg,
                           const py::object& reference_arg, int64_t batch_size, int threads) {
  std::shared_ptr<Model> model = ModelArg(model_arg);
  std::shared_ptr<Model> ref = reference_arg.is_none() ? nullptr : ModelArg(reference_arg);
  std::unique_ptr<quant::CalibrationSource> source = SamplesSource(*model, data, "evaluation");
  std::vector<int64_t> labels;
  if (!labels_arg.is_none()) labels = labels_arg.cast<std::vector<int64_t>>();
  return RunEvaluation(batch_size, threads, [&](const quant::EvalOptions& eo) {
    return quant::Evaluate(*model, *source, labels, ref.get(), eo);
  });
}

PyQuantizeResult Quantize(const py::object& model_arg, const py::object& data, const py::object& config) {
  auto in = ReadInputs(model_arg, data, config);
  std::shared_ptr<Model> model = in->model;
  std::string path = in->path;
  quant::QuantizeConfig& c = in->c;
  std::unique_ptr<quant::CalibrationSource>& source = in->source;
  StatusOr<quant::QuantizeResult> r = [&] {
    py::gil_scoped_release nogil;
    return quant::Quantize(*model, *source, c, path);
  }();
  RaiseIfInterrupted(r, *in->progress);
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
        "weight_scale, exclude, cle, bias_correction, bias_correction_samples, act_equalization,\n"
        "act_equalization_alpha, act_equalization_max_scale, act_equalization_samples,\n"
        "batch_size, threads,\n"
        "sqnr_samples, stats; mixed precision: layer_weight_bits ({node: bits}), rounding\n"
        "(nearest|adaround|gptq), rounding_samples, rounding_objective (asymmetric|float), rounding_target_damp,\n"
        "gptq_damp, "
        "gptq_act_order, gptq_quantized_inputs, adaround_iters, adaround_lambda, adaround_lr,\n"
        "weight_grid (auto|full|oriented|narrow), one budget\n"
        "of weight_bits_avg / weight_memory (<= 1: fraction of float32, else bytes) / bops, candidate_bits,\n"
        "sensitivity_samples, sensitivity_metric, sensitivity (a dict from onnxq.sensitivity, reused),\n"
        "allocation_refine (rounds of whole-model refinement of the allocation by width swaps, 0 = off).");
  m.def("sensitivity", &Sensitivity, py::arg("model"), py::arg("calibration_data"), py::arg("config") = py::none(),
        "Per-layer damage (KL or relative MSE of the output vs float, on the last sensitivity_samples\n"
        "calibration samples) with only that layer's weights quantized, for each of candidate_bits.\n"
        "Same arguments and config keys as quantize. Returns a dict: metric, rounding, samples, seconds,\n"
        "layers: [{node, op, weight, params, channels, macs, damage: {bits: value}}].");
  m.def("pareto_front", &ParetoFront, py::arg("model"), py::arg("calibration_data"), py::arg("eval_data"),
        py::arg("budgets"), py::arg("config"), py::arg("eval_skip") = 0, py::arg("eval_count") = -1,
        "Mixed-precision size vs measured accuracy: for each budget value (of the config's budget kind:\n"
        "weight_bits_avg, weight_memory or bops) quantize (sensitivity measured once, unless given) and\n"
        "evaluate the QDQ model with onnxq's executor on eval_data (a folder or .npy; the config's\n"
        "preprocess/labels apply; eval_skip/eval_count select the samples) against the float model.\n"
        "Returns a list of dicts: budget, average_weight_bits, packed_weight_bytes, packed_weight_fraction,\n"
        "layer_bits, predicted_damage_sum, top1, reference_top1 (fractions; None without labels),\n"
        "top1_agreement, mean_kl, eval_samples.");
  m.def("allocate_bits", &AllocateBits, py::arg("model"), py::arg("sensitivity"), py::arg("config"),
        "Per-layer weight bits {node: bits} minimising the summed sensitivity under the config's budget\n"
        "(weight_bits_avg, weight_memory or bops); exact multiple-choice knapsack, no measurement.");
  m.def("evaluate", &Evaluate, py::arg("model"), py::arg("data"), py::kw_only(),
        py::arg("reference") = py::none(), py::arg("batch_size") = 8, py::arg("threads") = 0,
        "Top-1/top-5 of a classifier on an onnxq.calib.Dataset (onnxq's executor); with reference, also\n"
        "top1_agreement and mean_kl. Returns the dict of `onnxq eval --json`.");
  m.def("evaluate_samples", &EvaluateSamples, py::arg("model"), py::arg("data"), py::kw_only(),
        py::arg("labels") = py::none(), py::arg("reference") = py::none(), py::arg("batch_size") = 8,
        py::arg("threads") = 0,
        "evaluate() on numpy samples: arrays, or {input name: array} dicts for a model with several\n"
        "inputs; labels (one per sample) optional. Returns the dict of `onnxq eval --json`.");
  m.def("softmax_kl", [](py::array_t<float, py::array::c_style | py::array::forcecast> p,
                         py::array_t<float, py::array::c_style | py::array::forcecast> q) {
          if (p.size() != q.size()) throw py::value_error("p and q differ in size");
          return quant::SoftmaxKl(std::span<const float>(p.data(), static_cast<size_t>(p.size())),
                                  std::span<const float>(q.data(), static_cast<size_t>(q.size())));
        }, py::arg("p_logits"), py::arg("q_logits"), "KL(softmax(p) || softmax(q)) in nats (double precision).");
}

}  // namespace onnxq::python
