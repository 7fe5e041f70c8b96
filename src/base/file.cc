#include "onnxq/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace onnxq {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// Permission bits for a new file: those of the file being replaced, else 0666 minus the umask
// (mkstemp creates 0600, which would surprise users who share the output).
mode_t NewFileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return st.st_mode & 07777;
  mode_t mask = 022;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Umask:", 0) == 0) {
      mask = static_cast<mode_t>(std::strtol(line.c_str() + 6, nullptr, 8));
      break;
    }
  }
  return 0666 & ~mask;
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Ok();  // best effort: some file systems refuse opening folders
  ::fsync(fd);
  ::close(fd);
  return Status::Ok();
}

}  // namespace

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it is refused below as
  // not a regular file (regular files ignore the flag; it is cleared anyway before reading).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return NotFound("'", path, "' does not exist");
    return IoError("cannot open '", path, "': ", ErrnoText(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return IoError("cannot stat '", path, "': ", ErrnoText(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument("'", path, "' is not a regular file");
  }
  if (const int flags = ::fcntl(fd, F_GETFL); flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  if (st.st_size > max_bytes) {
    ::close(fd);
    return OutOfRange("'", path, "' has ", static_cast<int64_t>(st.st_size),
                      " bytes, more than the limit of ", max_bytes);
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return IoError("cannot read '", path, "': ", ErrnoText(err));
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(done);
  return bytes;
}

// ---------------------------------------------------------------- AtomicFile

StatusOr<AtomicFile> AtomicFile::Create(const std::string& path) {
  if (path.empty()) return InvalidArgument("empty output path");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return InvalidArgument("output path '", path, "' is a directory");
  std::string dir = DirName(path);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return NotFound("output folder '", dir, "' of '", path, "' does not exist");
  AtomicFile f;
  f.path_ = path;
  std::string templ = (dir == "/" ? std::string() : dir) + "/." + BaseName(path) + ".tmp.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  mode_t mode = NewFileMode(path);
  int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return IoError("cannot create a temporary file in '", dir, "': ", ErrnoText(errno));
  f.fd_ = fd;
  f.temp_path_ = buf.data();
  ::fchmod(fd, mode);
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : path_(std::move(o.path_)), temp_path_(std::move(o.temp_path_)), fd_(o.fd_),
      written_(o.written_) {
  o.fd_ = -1;
  o.temp_path_.clear();
}

AtomicFile& AtomicFile::operator=(AtomicFile&& o) noexcept {
  if (this != &o) {
    Abandon();
    path_ = std::move(o.path_);
    temp_path_ = std::move(o.temp_path_);
    fd_ = o.fd_;
    written_ = o.written_;
    o.fd_ = -1;
    o.temp_path_.clear();
  }
  return *this;
}

AtomicFile::~AtomicFile() { Abandon(); }

void AtomicFile::Abandon() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  temp_path_.clear();
}

Status AtomicFile::Write(const void* data, size_t size) {
  if (fd_ < 0) return Internal("write to a closed AtomicFile for '", path_, "'");
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd_, p + done, std::min<size_t>(size - done, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      Abandon();
      return IoError("cannot write '", path_, "': ", ErrnoText(err));
    }
    done += static_cast<size_t>(n);
  }
  written_ += size;
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (fd_ < 0) return Internal("commit of a closed AtomicFile for '", path_, "'");
  if (::fsync(fd_) != 0) {
    int err = errno;
    Abandon();
    return IoError("cannot flush '", path_, "': ", ErrnoText(err));
  }
  if (::close(fd_) != 0) {
    int err = errno;
    fd_ = -1;
    Abandon();
    return IoError("cannot close '", path_, "': ", ErrnoText(err));
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    Abandon();
    return IoError("cannot rename the temporary file to '", path_, "': ", ErrnoText(err));
  }
  temp_path_.clear();
  return SyncDir(DirName(path_));
}

Status AtomicWriteFile(const std::string& path, const std::string& bytes) {
  ONNXQ_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path));
  ONNXQ_RETURN_IF_ERROR(f.Write(bytes.data(), bytes.size()));
  return f.Commit();
}

// ---------------------------------------------------------------- path resolution

StatusOr<std::string> ResolvePathInside(const std::string& base_dir, const std::string& relative) {
  if (relative.empty()) return InvalidArgument("empty path");
  if (relative.find('\0') != std::string::npos)
    return InvalidArgument("path '", relative, "' contains a NUL byte");
  if (relative[0] == '/' || relative[0] == '\\' ||
      (relative.size() >= 2 && relative[1] == ':'))  // C:\... written on Windows
    return InvalidArgument("path '", relative, "' is absolute; only paths relative to '",
                           base_dir, "' are allowed");
  // Backslashes count as separators too: a Windows-written "..\\x" must not slip through.
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find_first_of("/\\", start);
    if (end == std::string::npos) end = relative.size();
    if (relative.compare(start, end - start, "..") == 0)
      return InvalidArgument("path '", relative, "' contains a '..' component");
    start = end + 1;
  }
  char base_real[PATH_MAX];
  if (!::realpath(base_dir.empty() ? "." : base_dir.c_str(), base_real))
    return NotFound("folder '", base_dir, "' does not exist");
  std::string joined = std::string(base_real) + "/" + relative;
  char target_real[PATH_MAX];
  if (!::realpath(joined.c_str(), target_real)) {
    int err = errno;
    if (err == ENOENT) return NotFound("'", relative, "' does not exist in '", base_dir, "'");
    return IoError("cannot resolve '", relative, "' in '", base_dir, "': ", ErrnoText(err));
  }
  std::string base(base_real), target(target_real);
  std::string prefix = base == "/" ? base : base + "/";
  if (target.compare(0, prefix.size(), prefix) != 0)
    return InvalidArgument("path '", relative, "' resolves to '", target,
                           "', outside the model folder '", base, "' (a symlink escape)");
  return target;
}

}  // namespace onnxq
