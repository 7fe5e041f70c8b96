// Building a session's inputs outside Python: .npy files named on a command line, random tensors
// for benchmarks, and safe file names for writing outputs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/graph.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

// "NAME=path.npy" specs (as given to --input) -> tensors by input name. Errors name the spec.
StatusOr<std::map<std::string, Tensor>> LoadNpyFeeds(const std::vector<std::string>& specs);

// Random feeds for every runtime input of `model` not already in `given`: float inputs uniform in
// [-1, 1), integer and bool inputs zero. Symbolic or unknown dims take `batch` when they are the
// first dim; any other unknown dim is an error asking for --input.
StatusOr<std::map<std::string, Tensor>> RandomFeeds(const Model& model, int64_t batch,
                                                    uint32_t seed,
                                                    std::map<std::string, Tensor> given = {});

// Output file names: every character outside [A-Za-z0-9._-] becomes '_', names that would be
// empty, "." or ".." or start with '.' get a '_' prefix, and clashes get "_1", "_2", ...
// Returns one file stem per name, in order; none contains a path separator.
std::vector<std::string> SafeFileStems(const std::vector<std::string>& names);

}  // namespace onnxq
