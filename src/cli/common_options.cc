#include "cli/common_options.h"

#include <string>

namespace onnxq::cli {

void AddModelLimitOptions(ArgParser& p) {
  p.Option("max-tensor-elements", 0, "N", "refuse tensors with more elements", ArgKind::kInt)
      .Default(std::to_string(TensorLimits{}.max_elements));
  p.Option("max-model-bytes", 0, "BYTES", "refuse model files larger than this (e.g. 4G)",
           ArgKind::kBytes)
      .Default(std::to_string(ImportOptions{}.max_model_bytes));
}

StatusOr<ImportOptions> ImportOptionsFromArgs(const ArgParser& a) {
  ImportOptions in;
  in.tensor_limits.max_elements = a.GetInt("max-tensor-elements", in.tensor_limits.max_elements);
  in.max_model_bytes = a.GetInt("max-model-bytes", in.max_model_bytes);
  if (in.tensor_limits.max_elements < 1)
    return InvalidArgument("--max-tensor-elements must be positive, got ", in.tensor_limits.max_elements);
  if (in.max_model_bytes < 1)
    return InvalidArgument("--max-model-bytes must be positive, got ", in.max_model_bytes);
  return in;
}

}  // namespace onnxq::cli
