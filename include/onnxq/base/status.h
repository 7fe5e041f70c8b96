// Status / StatusOr: the error currency of onnxq. Every fallible public function returns one of
// these; the Python bindings turn a non-OK Status into an exception in exactly one place.
#pragma once

#include <cassert>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace onnxq {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input from the user: malformed model, wrong shapes, bad flags
  kNotFound,         // a file, tensor or node that does not exist
  kUnsupported,      // well-formed input that onnxq does not handle (yet)
  kOutOfRange,       // limits exceeded: sizes, element counts, offsets
  kIoError,          // the OS refused a read or write
  kCancelled,        // the user interrupted (Ctrl-C, callback returned false)
  kInternal,         // a bug in onnxq
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid argument: <message>"
  std::string ToString() const;

  // Adds context in front of the message: "while importing model.onnx: <message>".
  Status& Prepend(const std::string& context) {
    if (!ok()) message_ = context + ": " + message_;
    return *this;
  }
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

namespace internal {
template <typename... Args>
std::string StrCat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace internal

template <typename... Args>
Status InvalidArgument(Args&&... args) {
  return Status(StatusCode::kInvalidArgument, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status NotFound(Args&&... args) {
  return Status(StatusCode::kNotFound, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status Unsupported(Args&&... args) {
  return Status(StatusCode::kUnsupported, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status OutOfRange(Args&&... args) {
  return Status(StatusCode::kOutOfRange, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status IoError(Args&&... args) {
  return Status(StatusCode::kIoError, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status Cancelled(Args&&... args) {
  return Status(StatusCode::kCancelled, internal::StrCat(std::forward<Args>(args)...));
}
template <typename... Args>
Status Internal(Args&&... args) {
  return Status(StatusCode::kInternal, internal::StrCat(std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : status_(status) {  // NOLINT: implicit by design
    assert(!status.ok() && "StatusOr constructed from an OK status without a value");
    if (status_.ok()) status_ = Internal("StatusOr constructed from OK status without a value");
  }
  StatusOr(Status&& status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok() && "StatusOr constructed from an OK status without a value");
    if (status_.ok()) status_ = Internal("StatusOr constructed from OK status without a value");
  }
  StatusOr(const T& value) : value_(value) {}        // NOLINT
  StatusOr(T&& value) : value_(std::move(value)) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace onnxq

#define ONNXQ_CONCAT_IMPL(a, b) a##b
#define ONNXQ_CONCAT(a, b) ONNXQ_CONCAT_IMPL(a, b)

// Returns the status from the enclosing function if it is not OK.
#define ONNXQ_RETURN_IF_ERROR(expr)                   \
  do {                                                \
    ::onnxq::Status _onnxq_status = (expr);           \
    if (!_onnxq_status.ok()) return _onnxq_status;    \
  } while (0)

// ONNXQ_ASSIGN_OR_RETURN(auto x, MaybeX()); declares x from the value or returns the error.
#define ONNXQ_ASSIGN_OR_RETURN(lhs, expr) \
  ONNXQ_ASSIGN_OR_RETURN_IMPL(ONNXQ_CONCAT(_onnxq_statusor_, __LINE__), lhs, expr)
#define ONNXQ_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
