// onnxq.Session: the float executor from Python. Inputs are numpy arrays (copied once into the
// session's tensors); outputs are returned without a copy (each array owns its tensor).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <string>

#include "onnxq/kernels/cpu.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/session.h"
#include "python/common.h"
#include "python/numpy_tensor.h"

namespace onnxq::python {
namespace {

std::shared_ptr<Session> MakeSession(const py::object& model_or_path, const py::object& threads,
                                     const py::object& isa, bool integer, bool channels_last) {
  SessionOptions opts;
  opts.integer_qdq = integer;
  opts.int8_channels_last = channels_last;
  if (!threads.is_none()) opts.num_threads = threads.cast<int>();
  if (!isa.is_none()) opts.isa = Unwrap(kernels::ParseIsa(isa.cast<std::string>()));
  StatusOr<std::unique_ptr<Session>> s = Internal("unset");
  if (py::isinstance<Model>(model_or_path)) {
    const Model& m = model_or_path.cast<const Model&>();
    py::gil_scoped_release release;
    s = Session::Create(m, opts);
  } else {
    py::object os = py::module_::import("os");
    std::string path = py::str(os.attr("fspath")(model_or_path));
    py::gil_scoped_release release;
    auto m = LoadModel(path);
    s = m.ok() ? Session::Create(*m, opts) : StatusOr<std::unique_ptr<Session>>(m.status());
  }
  return std::shared_ptr<Session>(Unwrap(std::move(s)));
}

py::dict Run(Session& self, const py::dict& feeds, const py::object& extra_outputs, bool profile) {
  std::map<std::string, Tensor> in;
  for (auto item : feeds) {
    std::string name = py::str(item.first);
    in[name] = ArrayToTensor(item.second, "input '" + name + "'");
  }
  RunOptions ro;
  if (!extra_outputs.is_none()) ro.extra_outputs = extra_outputs.cast<std::vector<std::string>>();
  ro.profile = profile;
  StatusOr<std::map<std::string, Tensor>> out = Internal("unset");
  {
    py::gil_scoped_release release;
    out = self.Run(in, ro);
  }
  auto result = Unwrap(std::move(out));
  py::dict d;
  // Graph outputs first, in model order, then extra outputs.
  for (const auto& name : self.output_names()) {
    auto it = result.find(name);
    if (it != result.end()) d[py::str(name)] = TensorToArray(std::move(it->second));
    result.erase(name);
  }
  for (auto& [name, t] : result) d[py::str(name)] = TensorToArray(std::move(t));
  return d;
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindSession, 10) {
  py::class_<Session, std::shared_ptr<Session>>(
      m, "Session",
      "Runs a float ONNX model on the CPU (onnxq's executor).\n\n"
      "Session(model_or_path, threads=None, isa=None): model_or_path is an onnxq.Model or a path;\n"
      "threads=None uses every core; isa forces 'reference', 'avx2' or 'avx512' kernels.\n"
      "integer=True runs a QDQ model's quantized patterns on integer kernels, as ONNX Runtime\n"
      "does (False: Q/DQ nodes computed in float, the fake-quant reference); channels_last=True\n"
      "runs quantized convolution chains NHWC as ONNX Runtime does (hooks see '<name>_nhwc'\n"
      "values there; False keeps every quantized value NCHW under its own name).\n"
      "Every operator is checked when the session is created.")
      .def(py::init(&MakeSession), py::arg("model_or_path"), py::arg("threads") = py::none(),
           py::arg("isa") = py::none(), py::arg("integer") = true, py::arg("channels_last") = true)
      .def("run", &Run, py::arg("feeds"), py::arg("extra_outputs") = py::none(),
           py::arg("profile") = false,
           "run({input name: ndarray}) -> {output name: ndarray}. extra_outputs names further "
           "values to return; profile=True times every executed node (see last_profile).")
      .def_property_readonly("input_names", &Session::input_names)
      .def_property_readonly("output_names", &Session::output_names)
      .def_property_readonly("num_threads", &Session::num_threads)
      .def_property_readonly("lowered_qdq_groups", &Session::lowered_qdq_groups,
                             "Quantized groups lowered to integer kernels (0 for float models).")
      .def_property_readonly("peak_bytes",
                             [](const Session& s) { return s.last_stats().peak_bytes; },
                             "Bytes of intermediate buffers the last run's memory plan used.")
      .def_property_readonly(
          "last_stats",
          [](const Session& s) {
            const RunStats& st = s.last_stats();
            py::dict d;
            d["peak_bytes"] = st.peak_bytes;
            d["steps"] = st.steps;
            d["fused"] = st.fused;
            d["folded"] = st.folded;
            return d;
          },
          "Statistics of the last run: peak_bytes, steps, fused, folded.")
      .def_property_readonly(
          "last_profile",
          [](const Session& s) {
            py::list l;
            for (const StepTime& t : s.last_stats().profile) {
              py::dict d;
              d["node"] = t.node;
              d["op"] = t.op_type;
              d["output"] = t.output;
              d["shape"] = t.output_dims;
              d["us"] = t.micros;
              l.append(d);
            }
            return l;
          },
          "Per executed node of the last run(profile=True): node, op, output, shape, us "
          "(empty otherwise).");
  m.def("supported_ops", &SupportedOps, "Operators the executor implements.");
}

}  // namespace onnxq::python
