// Reading and writing numpy .npy files (format versions 1.0-3.0, little-endian, C order).
#pragma once

#include <string>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

// Refuses Fortran order, big-endian or object dtypes, truncated data and absurd shapes (limits
// checked before allocating) with an error naming the file.
StatusOr<Tensor> ReadNpy(const std::string& path, const TensorLimits& limits = {});
StatusOr<Tensor> ParseNpy(const void* data, size_t size, const std::string& display_name = "<memory>",
                          const TensorLimits& limits = {});
// Writes atomically.
Status WriteNpy(const std::string& path, const Tensor& tensor);
StatusOr<std::string> SerializeNpy(const Tensor& tensor);

}  // namespace onnxq
