// Shared helpers of the _onnxq module: the one place where a C++ Status becomes a Python exception,
// and the registry through which each bindings file adds its part of the module.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <vector>

#include "onnxq/base/status.h"

namespace onnxq::python {

namespace py = pybind11;

// Raises onnxq.OnnxqError (a subclass of the matching built-in: ValueError for invalid input,
// FileNotFoundError, NotImplementedError, OSError, KeyboardInterrupt for cancellation,
// RuntimeError otherwise) with the C++ message.
[[noreturn]] void RaiseStatus(const Status& status);

inline void Check(const Status& status) {
  if (!status.ok()) RaiseStatus(status);
}
template <typename T>
T Unwrap(StatusOr<T>&& s) {
  if (!s.ok()) RaiseStatus(s.status());
  return std::move(s).value();
}

using BindFn = void (*)(py::module_& m);
std::vector<std::pair<int, BindFn>>& Binders();
struct BindRegistrar {
  // Lower order binds first (types that others refer to use order 0).
  BindRegistrar(int order, BindFn fn) { Binders().emplace_back(order, fn); }
};

}  // namespace onnxq::python

#define ONNXQ_PYTHON_BINDINGS(ident, order) \
  static void ident(::pybind11::module_& m); \
  static ::onnxq::python::BindRegistrar ident##_registrar(order, &ident); \
  static void ident(::pybind11::module_& m)
