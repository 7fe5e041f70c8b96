// ONNX import and export. The only public door between ONNX protobuf files and onnxq's IR: nothing
// outside src/onnx/ sees protobuf types.
#pragma once

#include <cstdint>
#include <string>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

// Newest ai.onnx opset and IR version whose meaning onnxq knows (those of the onnx 1.23 Python
// package the tests use). Newer ones are refused: their operators' semantics are unknown.
inline constexpr int64_t kMaxKnownOnnxOpset = 28;
inline constexpr int64_t kMaxKnownIrVersion = 14;

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
  // When external data is used, only initializers of at least this many bytes go there (small
  // ones such as shapes stay inline, where shape inference can read them).
  int64_t external_data_min_tensor_bytes = 1024;
  // Offsets of tensors in the external data file are multiples of this (page alignment lets
  // runtimes map the file instead of copying it).
  int64_t external_data_alignment = 4096;
};

// Reads, validates and converts a model. Errors name the file and the node or tensor at fault.
StatusOr<Model> LoadModel(const std::string& path, const ImportOptions& options = {});
// From bytes in memory. `base_dir` resolves external data; empty refuses external data.
StatusOr<Model> LoadModelFromBytes(const void* data, size_t size, const std::string& base_dir,
                                   const std::string& display_name = "<memory>",
                                   const ImportOptions& options = {});
// NaN and Inf are valid ONNX, so import accepts them; stages that need finite weights (calibration,
// quantization) call this. The error names the file, the tensor and the first bad element.
Status CheckFiniteWeights(const Model& model);

// Writes atomically (temporary file in the same folder, then rename): on error nothing is left at
// `path`, and an existing file there is untouched.
// When the tensors exceed ExportOptions::external_data_threshold, large initializers go to
// "<file name>.data" next to `path` (also written atomically), with location/offset/length set.
Status SaveModel(const Model& model, const std::string& path, const ExportOptions& options = {});
// Serialized ModelProto (no external data; fails over 2 GiB).
StatusOr<std::string> SerializeModel(const Model& model, const ExportOptions& options = {});

// A serialized TensorProto file (the ONNX backend tests' input_N.pb / output_N.pb). Sets *name to
// the tensor's name if name is not null.
StatusOr<Tensor> LoadTensorProtoFile(const std::string& path, std::string* name = nullptr,
                                     const TensorLimits& limits = {});
Status SaveTensorProtoFile(const Tensor& tensor, const std::string& name, const std::string& path);

}  // namespace onnxq
