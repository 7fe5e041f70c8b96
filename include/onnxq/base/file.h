// File helpers shared by the importer, exporter, data loaders and CLI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "onnxq/base/status.h"

namespace onnxq {

// Reads a whole file; refuses files larger than max_bytes before reading them, and anything that is
// not a regular file (a FIFO or device would block or never end).
StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes = int64_t{4} << 30);
// Writes through a temporary file in the same folder and renames it into place; on any error the
// temporary is removed and `path` is left as it was.
Status AtomicWriteFile(const std::string& path, const std::string& bytes);
// Resolves `relative` against `base_dir` and refuses absolute paths, ".." components, and
// symlinks whose target leaves base_dir. Returns the resolved path.
StatusOr<std::string> ResolvePathInside(const std::string& base_dir, const std::string& relative);

// Folder part of a path ("a/b/m.onnx" -> "a/b", "m.onnx" -> "."), and the last component.
std::string DirName(const std::string& path);
std::string BaseName(const std::string& path);
bool PathExists(const std::string& path);

// A file written in pieces that appears at its path only on Commit(): the bytes go to a temporary
// file in the same folder, which Commit() fsyncs and renames into place (then fsyncs the folder).
// Destroying an uncommitted AtomicFile removes the temporary, so a failed write leaves `path` as
// it was. Used directly when the content is too large to build in memory first (external data).
class AtomicFile {
 public:
  static StatusOr<AtomicFile> Create(const std::string& path);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Write(const void* data, size_t size);
  // Bytes written so far.
  uint64_t size() const { return written_; }
  Status Commit();
  // Removes the temporary now (also done by the destructor).
  void Abandon();
  const std::string& path() const { return path_; }

 private:
  AtomicFile() = default;
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

}  // namespace onnxq
