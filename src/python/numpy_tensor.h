// numpy <-> onnxq Tensor, shared by every bindings file that takes or returns arrays.
#pragma once

#include <pybind11/numpy.h>

#include <string>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"
#include "python/common.h"

namespace onnxq::python {

// numpy dtype -> element type (Unsupported for object, complex, datetime, ... dtypes).
StatusOr<DataType> DataTypeFromNumpy(const py::dtype& dt);
// Element type -> numpy dtype (bfloat16 as its raw uint16 bits: numpy has no bfloat16).
StatusOr<py::dtype> NumpyDtype(DataType t);

// Copies any array-like into a C-contiguous tensor of the same element type; `what` names the
// argument in errors ("input 'x'").
Tensor ArrayToTensor(const py::handle& obj, const std::string& what = "array");
// Hands the tensor to numpy without copying: the array owns it. A tensor whose buffer is shared
// (e.g. an initializer returned as an output) is cloned first, so the array never aliases it.
py::array TensorToArray(Tensor t);

}  // namespace onnxq::python
