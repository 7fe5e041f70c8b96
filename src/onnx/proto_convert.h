// Internal to src/onnx/: conversions between ONNX protobuf messages and onnxq's IR pieces.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/ir/types.h"

namespace onnxq::onnx_io {

// Tensors (initializers, Constant values) of at most this many elements keep their data in the
// proto given to shape inference (shapes, axes, Resize scales); larger ones are given without.
inline constexpr int64_t kMaxInferenceDataElements = 4096;

// Budget and context for turning TensorProtos from an untrusted file into Tensors.
struct TensorReadContext {
  TensorLimits limits;
  // Running total of tensor bytes accepted so far, against max_total_bytes.
  int64_t max_total_bytes = int64_t{32} << 30;
  int64_t total_bytes = 0;
  // Folder that external data locations are relative to; empty refuses external data.
  std::string base_dir;
  bool allow_external_data = true;
};

// Converts a TensorProto. `what` names it in errors ("initializer 'w'", "attribute 'value' of
// node Constant 'c'"). Checks dims, limits and data size before allocating anything.
StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& what,
                                 TensorReadContext& ctx);

// Writes name, dims, data_type and the data (raw_data; string_data for strings).
void TensorToProto(const Tensor& t, const std::string& name, onnx::TensorProto* proto);

// Type of a value from a TypeProto. Fails for non-tensor types (sequence, map, optional, sparse).
// `what` names the value in errors.
Status TypeFromProto(const onnx::TypeProto& type, const std::string& what, DataType* dtype,
                     std::optional<Shape>* shape);
void TypeToProto(DataType dtype, const std::optional<Shape>& shape, onnx::TypeProto* type);

}  // namespace onnxq::onnx_io
