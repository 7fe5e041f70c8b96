// File helpers shared by the importer, exporter, data loaders and CLI.
#pragma once

#include <cstdint>
#include <string>

#include "onnxq/base/status.h"

namespace onnxq {

// Reads a whole file; refuses files larger than max_bytes before reading them.
StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes = int64_t{4} << 30);
// Writes through a temporary file in the same folder and renames it into place; on any error the
// temporary is removed and `path` is left as it was.
Status AtomicWriteFile(const std::string& path, const std::string& bytes);
// Resolves `relative` against `base_dir` and refuses absolute paths, ".." components, and
// symlinks whose target leaves base_dir. Returns the resolved path.
StatusOr<std::string> ResolvePathInside(const std::string& base_dir, const std::string& relative);

}  // namespace onnxq
