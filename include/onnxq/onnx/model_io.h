// ONNX import and export. The only public door between ONNX protobuf files and onnxq's IR: nothing
// outside src/onnx/ sees protobuf types.
#pragma once

#include <cstdint>
#include <string>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

struct ImportOptions {
  TensorLimits tensor_limits;                        // per tensor (initializers, attributes)
  int64_t max_model_bytes = int64_t{4} << 30;        // the .onnx file itself
  int64_t max_total_tensor_bytes = int64_t{32} << 30;  // all tensors, external data included
  bool infer_shapes = true;                          // run ONNX shape inference after parsing
  bool allow_external_data = true;
};

struct ExportOptions {
  // When the tensors' total exceeds this many bytes, large initializers go to an external data
  // file next to the model (protobuf cannot serialize messages of 2 GiB or more).
  int64_t external_data_threshold = (int64_t{2} << 30) - (int64_t{64} << 20);
  // Write value_info for every value with a known type, not only the ones the source declared.
  bool write_inferred_value_info = false;
};

// Reads, validates and converts a model. Errors name the file and the node or tensor at fault.
StatusOr<Model> LoadModel(const std::string& path, const ImportOptions& options = {});
// From bytes in memory. `base_dir` resolves external data; empty refuses external data.
StatusOr<Model> LoadModelFromBytes(const void* data, size_t size, const std::string& base_dir,
                                   const std::string& display_name = "<memory>",
                                   const ImportOptions& options = {});
// Writes atomically (temporary file in the same folder, then rename): on error nothing is left at
// `path`, and an existing file there is untouched.
Status SaveModel(const Model& model, const std::string& path, const ExportOptions& options = {});
// Serialized ModelProto (no external data; fails over 2 GiB).
StatusOr<std::string> SerializeModel(const Model& model, const ExportOptions& options = {});

// A serialized TensorProto file (the ONNX backend tests' input_N.pb / output_N.pb). Sets *name to
// the tensor's name if name is not null.
StatusOr<Tensor> LoadTensorProtoFile(const std::string& path, std::string* name = nullptr,
                                     const TensorLimits& limits = {});
Status SaveTensorProtoFile(const Tensor& tensor, const std::string& name, const std::string& path);

}  // namespace onnxq
