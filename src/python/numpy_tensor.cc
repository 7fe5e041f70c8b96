#include "python/numpy_tensor.h"

#include <utility>
#include <vector>

namespace onnxq::python {

// dtype fields are read through Python attributes and sizes come from onnxq's element size:
// pybind11 2.10's direct struct access (dtype::itemsize, array::nbytes, default strides) predates
// numpy 2's PyArray_Descr layout.
StatusOr<DataType> DataTypeFromNumpy(const py::dtype& dt) {
  const std::string kinds = py::getattr(dt, "kind").cast<std::string>();
  const char kind = kinds.empty() ? '?' : kinds[0];
  const size_t size = py::getattr(dt, "itemsize").cast<size_t>();
  if (kind == 'f' && size == 4) return DataType::kFloat;
  if (kind == 'f' && size == 8) return DataType::kDouble;
  if (kind == 'f' && size == 2) return DataType::kFloat16;
  if (kind == 'b' && size == 1) return DataType::kBool;
  if (kind == 'i' || kind == 'u') {
    const bool s = kind == 'i';
    switch (size) {
      case 1: return s ? DataType::kInt8 : DataType::kUint8;
      case 2: return s ? DataType::kInt16 : DataType::kUint16;
      case 4: return s ? DataType::kInt32 : DataType::kUint32;
      case 8: return s ? DataType::kInt64 : DataType::kUint64;
    }
  }
  return Unsupported("numpy dtype '", std::string(py::str(py::handle(dt))), "' has no onnxq equivalent");
}

StatusOr<py::dtype> NumpyDtype(DataType t) {
  switch (t) {
    case DataType::kFloat: return py::dtype("float32");
    case DataType::kDouble: return py::dtype("float64");
    case DataType::kFloat16: return py::dtype("float16");
    case DataType::kBFloat16: return py::dtype("uint16");
    case DataType::kBool: return py::dtype("bool");
    case DataType::kInt8: return py::dtype("int8");
    case DataType::kUint8: return py::dtype("uint8");
    case DataType::kInt16: return py::dtype("int16");
    case DataType::kUint16: return py::dtype("uint16");
    case DataType::kInt32: return py::dtype("int32");
    case DataType::kUint32: return py::dtype("uint32");
    case DataType::kInt64: return py::dtype("int64");
    case DataType::kUint64: return py::dtype("uint64");
    default: return Unsupported("tensors of type ", DataTypeName(t), " cannot become numpy arrays");
  }
}

Tensor ArrayToTensor(const py::handle& obj, const std::string& what) {
  py::array arr = py::array::ensure(obj, py::array::c_style);
  if (!arr) {
    PyErr_Clear();
    throw py::type_error(what + " is not convertible to a numpy array");
  }
  const DataType dt = Unwrap(DataTypeFromNumpy(arr.dtype()));
  std::vector<int64_t> dims(arr.shape(), arr.shape() + arr.ndim());
  size_t bytes = 0;
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  if (!StorageBytes(dt, n, &bytes)) Check(InvalidArgument(what, " is too large"));
  return Unwrap(Tensor::FromBytes(dt, dims, arr.data(), bytes));
}

py::array TensorToArray(Tensor t) {
  py::dtype dt = Unwrap(NumpyDtype(t.dtype()));
  auto* owner = new Tensor(std::move(t));
  py::capsule free_when_done(owner, [](void* p) { delete static_cast<Tensor*>(p); });
  std::vector<py::ssize_t> shape(owner->dims().begin(), owner->dims().end());
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = static_cast<py::ssize_t>(ElementSize(owner->dtype()));
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  void* data = owner->numel() > 0 ? static_cast<void*>(owner->mutable_raw()) : nullptr;
  return py::array(dt, shape, strides, data, free_when_done);
}

}  // namespace onnxq::python
