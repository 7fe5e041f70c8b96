#include <algorithm>

#include "python/common.h"

namespace onnxq::python {

namespace {
py::object g_error_types[8];
}

std::vector<std::pair<int, BindFn>>& Binders() {
  static std::vector<std::pair<int, BindFn>> binders;
  return binders;
}

void RaiseStatus(const Status& status) {
  int code = static_cast<int>(status.code());
  py::object type = (code >= 0 && code < 8) ? g_error_types[code] : py::object();
  if (!type) type = g_error_types[static_cast<int>(StatusCode::kInternal)];
  PyErr_SetString(type.ptr(), status.message().c_str());
  throw py::error_already_set();
}

}  // namespace onnxq::python

PYBIND11_MODULE(_onnxq, m) {
  using namespace onnxq::python;
  using onnxq::StatusCode;
  m.doc() = "onnxq core (private module; use the onnxq package)";

  // One exception hierarchy: onnxq.OnnxqError, with subclasses that also derive from the natural
  // built-in so that `except ValueError` works for bad input.
  py::object base = py::reinterpret_steal<py::object>(
      PyErr_NewException("onnxq._onnxq.OnnxqError", PyExc_RuntimeError, nullptr));
  m.attr("OnnxqError") = base;
  auto make = [&](const char* name, PyObject* builtin) {
    py::tuple bases = py::make_tuple(base, py::handle(builtin));
    py::object t = py::reinterpret_steal<py::object>(
        PyErr_NewException((std::string("onnxq._onnxq.") + name).c_str(), bases.ptr(), nullptr));
    m.attr(name) = t;
    return t;
  };
  g_error_types[int(StatusCode::kInvalidArgument)] = make("InvalidModelError", PyExc_ValueError);
  g_error_types[int(StatusCode::kNotFound)] = make("NotFoundError", PyExc_FileNotFoundError);
  g_error_types[int(StatusCode::kUnsupported)] = make("UnsupportedError", PyExc_NotImplementedError);
  g_error_types[int(StatusCode::kOutOfRange)] = make("LimitError", PyExc_ValueError);
  g_error_types[int(StatusCode::kIoError)] = make("IoError", PyExc_OSError);
  g_error_types[int(StatusCode::kCancelled)] = make("CancelledError", PyExc_KeyboardInterrupt);
  g_error_types[int(StatusCode::kInternal)] = base;
  g_error_types[int(StatusCode::kOk)] = base;

  auto binders = Binders();
  std::stable_sort(binders.begin(), binders.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, fn] : binders) fn(m);
}
