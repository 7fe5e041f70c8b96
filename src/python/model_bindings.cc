// onnxq.Model and its read-only views. Model is held by std::shared_ptr so that later bindings
// (Session, quantization results) can keep a model alive without copying it.
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/ir/graph.h"
#include "onnxq/ir/summary.h"
#include "onnxq/runtime/session.h"
#include "onnxq/ir/types.h"
#include "onnxq/onnx/model_io.h"
#include "python/common.h"

namespace onnxq::python {
namespace {

// Name, element type and shape of a graph input or output, as Python sees it.
struct TensorInfo {
  std::string name;
  std::string dtype;  // numpy spelling: "float32", "int64", ...
  py::object shape;   // tuple of int (known), str (symbolic) or None (unknown); None if rank unknown
};

py::object ShapeToPython(const std::optional<Shape>& shape) {
  if (!shape) return py::none();
  py::tuple dims(shape->rank());
  for (size_t i = 0; i < shape->rank(); ++i) {
    const Dim& d = (*shape)[i];
    if (d.is_known())
      dims[i] = py::int_(d.value);
    else if (d.is_symbolic())
      dims[i] = py::str(d.param);
    else
      dims[i] = py::none();
  }
  return dims;
}

std::vector<TensorInfo> Describe(const Graph& g, const std::vector<ValueId>& ids) {
  std::vector<TensorInfo> out;
  out.reserve(ids.size());
  for (ValueId id : ids) {
    const Value& v = g.value(id);
    out.push_back({v.name(), DataTypeName(v.dtype), ShapeToPython(v.shape)});
  }
  return out;
}

std::string Repr(const Model& m) {
  std::string s = "<onnxq.Model";
  if (!m.source_path.empty()) s += " '" + m.source_path + "'";
  s += " opset " + std::to_string(m.OpsetVersion("")) + ", " +
       std::to_string(m.graph.num_nodes()) + " nodes>";
  return s;
}

// Import and export run without the GIL (they touch no Python object); the Status becomes an
// exception afterwards, with the GIL held again.
std::shared_ptr<Model> Load(const std::filesystem::path& path, bool infer_shapes,
                            bool allow_external_data) {
  ImportOptions options;
  options.infer_shapes = infer_shapes;
  options.allow_external_data = allow_external_data;
  StatusOr<Model> model = [&] {
    py::gil_scoped_release nogil;
    return LoadModel(path.string(), options);
  }();
  return std::make_shared<Model>(Unwrap(std::move(model)));
}

std::shared_ptr<Model> LoadBytes(const py::bytes& data, const std::optional<std::filesystem::path>& base_dir,
                                 bool infer_shapes) {
  ImportOptions options;
  options.infer_shapes = infer_shapes;
  options.allow_external_data = base_dir.has_value();
  std::string_view bytes = data;  // valid while `data` lives, which outlasts the call
  StatusOr<Model> model = [&] {
    py::gil_scoped_release nogil;
    return LoadModelFromBytes(bytes.data(), bytes.size(), base_dir ? base_dir->string() : "",
                              "<bytes>", options);
  }();
  return std::make_shared<Model>(Unwrap(std::move(model)));
}

void Save(const Model& model, const std::filesystem::path& path) {
  Status status;
  {
    py::gil_scoped_release nogil;
    status = SaveModel(model, path.string());
  }
  Check(status);
}

py::bytes ToBytes(const Model& model) {
  StatusOr<std::string> bytes = [&] {
    py::gil_scoped_release nogil;
    return SerializeModel(model);
  }();
  return py::bytes(Unwrap(std::move(bytes)));
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindModel, 0) {
#ifdef ONNXQ_VERSION  // CMake's PROJECT_VERSION
  m.attr("__version__") = ONNXQ_VERSION;
#endif
  py::class_<TensorInfo>(m, "TensorInfo", "Name, element type and shape of a graph input or output.")
      .def_readonly("name", &TensorInfo::name)
      .def_readonly("dtype", &TensorInfo::dtype, "Element type in numpy spelling ('float32', ...).")
      .def_readonly("shape", &TensorInfo::shape,
                    "Tuple of dims: int (known), str (symbolic, e.g. 'N') or None (unknown); "
                    "None when the rank is unknown.")
      .def("__eq__",
           [](const TensorInfo& a, const TensorInfo& b) {
             return a.name == b.name && a.dtype == b.dtype && a.shape.equal(b.shape);
           })
      .def("__repr__", [](const TensorInfo& t) {
        return "TensorInfo(name=" + py::repr(py::str(t.name)).cast<std::string>() +
               ", dtype='" + t.dtype + "', shape=" + py::repr(t.shape).cast<std::string>() + ")";
      });

  py::class_<Model, std::shared_ptr<Model>>(
      m, "Model", "An ONNX model in onnxq's graph IR (load it with onnxq.load).")
      .def_property_readonly(
          "inputs", [](const Model& self) { return Describe(self.graph, self.graph.RuntimeInputs()); },
          "Graph inputs a caller feeds (initializers excluded).")
      .def_property_readonly(
          "outputs", [](const Model& self) { return Describe(self.graph, self.graph.outputs()); })
      .def_property_readonly(
          "opset", [](const Model& self) { return self.OpsetVersion(""); },
          "Version of the default ONNX domain imported by the model (-1 if none).")
      .def_property_readonly(
          "opset_imports",
          [](const Model& self) {
            py::dict d;
            for (const auto& o : self.opset_imports) d[py::str(o.domain)] = o.version;
            return d;
          },
          "All opset imports: {domain: version}, '' being the default ONNX domain.")
      .def_property_readonly(
          "num_nodes", [](const Model& self) { return self.graph.num_nodes(); },
          "Number of nodes in the main graph.")
      .def_property_readonly(
          "metadata",
          [](const Model& self) {
            py::dict d;
            for (const auto& [k, v] : self.metadata_props) d[py::str(k)] = v;
            return d;
          },
          "metadata_props as a new dict (edit with set_metadata).")
      .def(
          "set_metadata",
          [](Model& self, const std::string& key, const std::string& value) {
            self.SetMetadata(key, value);
          },
          py::arg("key"), py::arg("value"), "Adds or replaces one metadata_props entry.")
      .def_readonly("ir_version", &Model::ir_version)
      .def_readonly("producer_name", &Model::producer_name)
      .def_readonly("producer_version", &Model::producer_version)
      .def_readonly("doc_string", &Model::doc_string)
      .def_readonly("source_path", &Model::source_path,
                    "The file the model was loaded from ('' if none).")
      .def("copy", [](const Model& self) { return std::make_shared<Model>(self); },
           "An independent copy (tensor storage is shared copy-on-write).")
      .def("__copy__", [](const Model& self) { return std::make_shared<Model>(self); })
      .def("__deepcopy__",
           [](const Model& self, py::dict) { return std::make_shared<Model>(self); })
      .def(
          "inspect",
          [](const Model& self) {
            // The very JSON `onnxq inspect --json` prints, so both always agree.
            std::string json = InspectJson(self);
            return py::module_::import("json").attr("loads")(json).cast<py::dict>();
          },
          "The summary `onnxq inspect --json` prints, as a dict: op_counts, parameter_count, "
          "bytes_by_dtype, params_by_dtype, inputs, outputs, opsets, metadata, unsupported_ops "
          "(operators onnxq's executor cannot run), ...")
      .def(
          "summary", [](const Model& self) { return InspectText(self); },
          "The human-readable summary `onnxq inspect` prints.")
      .def("save", &Save, py::arg("path"),
           "Writes the model as ONNX, atomically: on error nothing is left at `path`.")
      .def("to_bytes", &ToBytes, "The serialized ModelProto (fails for models of 2 GiB or more).")
      .def("__repr__", &Repr);

  m.def("load", &Load, py::arg("path"), py::kw_only(), py::arg("infer_shapes") = true,
        py::arg("allow_external_data") = true,
        "Reads and validates an ONNX model file (external data is resolved next to it).");
  m.def("load_bytes", &LoadBytes, py::arg("data"), py::kw_only(), py::arg("base_dir") = py::none(),
        py::arg("infer_shapes") = true,
        "Reads a serialized ModelProto; external data is refused unless base_dir is given.");
  m.def("save", &Save, py::arg("model"), py::arg("path"),
        "Writes the model as ONNX, atomically: on error nothing is left at `path`.");
}

}  // namespace onnxq::python
