#include "onnx/proto_convert.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "onnxq/base/file.h"

namespace onnxq::onnx_io {
namespace {

using onnx::TensorProto;

// Strict non-negative decimal (external data offsets and lengths).
bool ParseNonNegative(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const int d = c - '0';
    if (v > (std::numeric_limits<int64_t>::max() - d) / 10) return false;  // would overflow
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// Reads [offset, offset + size) of an already opened file into dst.
Status PRead(int fd, void* dst, size_t size, int64_t offset, const std::string& path) {
  char* p = static_cast<char*>(dst);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("cannot read '", path, "': ", std::strerror(errno));
    }
    if (n == 0) return IoError("'", path, "' ended early (was it truncated while reading?)");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Resolves, opens and checks the external data of a tensor of `expect` bytes, and only then
// allocates it (a few bytes of model must not make onnxq allocate what its dims claim).
StatusOr<Tensor> LoadExternal(const TensorProto& proto, const std::string& what,
                              TensorReadContext& ctx, DataType dtype,
                              const std::vector<int64_t>& dims, size_t expect) {
  if (!ctx.allow_external_data)
    return InvalidArgument(what, " uses external data, which these import options refuse");
  if (ctx.base_dir.empty())
    return InvalidArgument(what, " uses external data, but the model was loaded from memory "
                           "without a folder to resolve it against");
  std::string location;
  int64_t offset = 0, length = -1;
  bool has_location = false;
  for (const auto& kv : proto.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
      has_location = true;
    } else if (kv.key() == "offset") {
      if (!ParseNonNegative(kv.value(), &offset))
        return InvalidArgument(what, " has an invalid external data offset '", kv.value(), "'");
    } else if (kv.key() == "length") {
      if (!ParseNonNegative(kv.value(), &length))
        return InvalidArgument(what, " has an invalid external data length '", kv.value(), "'");
    }
  }
  if (!has_location || location.empty())
    return InvalidArgument(what, " uses external data but gives no location");
  auto resolved = ResolvePathInside(ctx.base_dir, location);
  if (!resolved.ok())
    return Status(resolved.status().code(),
                  what + ": external data location: " + resolved.status().message());
  const std::string& path = *resolved;
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it is refused below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IoError(what, ": cannot open external data '", location, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(what, ": external data '", location, "' is not a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const int64_t file_size = st.st_size;
  if (length < 0) length = file_size >= offset ? file_size - offset : -1;
  Status s;
  if (offset > file_size)
    s = OutOfRange(what, ": external data offset ", offset, " is beyond the end of '", location,
                   "' (", file_size, " bytes)");
  else if (length > file_size - offset)
    s = OutOfRange(what, ": external data length ", length, " at offset ", offset,
                   " goes beyond the end of '", location, "' (", file_size, " bytes)");
  else if (static_cast<uint64_t>(length) != expect)
    s = InvalidArgument(what, ": external data length ", length, " does not match shape ",
                        DimsToString(dims), " of ", DataTypeName(dtype), " (", expect, " bytes)");
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  auto created = Tensor::Create(dtype, dims, ctx.limits);
  if (!created.ok()) {
    ::close(fd);
    return Status(created.status().code(), what + ": " + created.status().message());
  }
  Tensor t = std::move(created).value();
  if (expect > 0) s = PRead(fd, t.mutable_raw(), expect, offset, path);
  ::close(fd);
  if (!s.ok()) return s;
  return t;
}

template <typename Src, typename Dst>
void CopyConvert(const Src& src, Dst* dst) {
  for (int i = 0; i < src.size(); ++i) dst[i] = static_cast<Dst>(src.Get(i));
}

// int32_data holding 8- or 16-bit values: refuse values that do not fit rather than wrap them.
template <typename Dst>
Status CopyNarrow(const google::protobuf::RepeatedField<int32_t>& src, Dst* dst,
                  const std::string& what) {
  for (int i = 0; i < src.size(); ++i) {
    int32_t v = src.Get(i);
    if (v < std::numeric_limits<Dst>::min() || v > std::numeric_limits<Dst>::max())
      return InvalidArgument(what, ": int32_data value ", v, " at index ", i,
                             " does not fit the element type");
    dst[i] = static_cast<Dst>(v);
  }
  return Status::Ok();
}

const char* TypedFieldName(const TensorProto& p) {
  if (p.float_data_size()) return "float_data";
  if (p.int32_data_size()) return "int32_data";
  if (p.int64_data_size()) return "int64_data";
  if (p.double_data_size()) return "double_data";
  if (p.uint64_data_size()) return "uint64_data";
  if (p.string_data_size()) return "string_data";
  return nullptr;
}

}  // namespace

StatusOr<Tensor> TensorFromProto(const TensorProto& proto, const std::string& what,
                                 TensorReadContext& ctx) {
  const int32_t dt = proto.data_type();
  if (dt == 0) return InvalidArgument(what, " has no data type");
  if (!IsValidDataType(dt)) return InvalidArgument(what, " has unknown data type ", dt);
  const DataType dtype = static_cast<DataType>(dt);
  std::vector<int64_t> dims(proto.dims().begin(), proto.dims().end());
  for (int64_t d : dims)
    if (d < 0) return InvalidArgument(what, " has negative dimension ", d, " in shape ", DimsToString(dims));
  auto count = CheckedElementCount(dims);
  if (!count.ok()) return Status(count.status().code(), what + ": " + count.status().message());
  const int64_t n = *count;
  if (n > ctx.limits.max_elements)
    return OutOfRange(what, " has shape ", DimsToString(dims), " (", n,
                      " elements), more than the limit of ", ctx.limits.max_elements,
                      " elements (--max-tensor-elements)");
  if (proto.has_segment()) return Unsupported(what, " is segmented, which onnxq does not support");

  const bool external = proto.data_location() == TensorProto::EXTERNAL;
  const bool has_raw = proto.has_raw_data();
  const char* typed = TypedFieldName(proto);
  if (external && (has_raw || typed))
    return InvalidArgument(what, " has external data and also inline data");

  if (dtype == DataType::kString) {
    if (external || has_raw)
      return InvalidArgument(what, " is a string tensor; its data must be in string_data");
    if (proto.string_data_size() != n)
      return InvalidArgument(what, " has ", proto.string_data_size(), " strings but shape ",
                             DimsToString(dims), " needs ", n);
    int64_t bytes = 0;
    for (const auto& s : proto.string_data()) bytes += static_cast<int64_t>(s.size());
    if (bytes > ctx.limits.max_bytes)
      return OutOfRange(what, " holds ", bytes, " bytes of strings, more than the limit of ",
                        ctx.limits.max_bytes);
    if (ctx.total_bytes + bytes > ctx.max_total_bytes)
      return OutOfRange(what, ": the model's tensors exceed the total limit of ",
                        ctx.max_total_bytes, " bytes");
    ctx.total_bytes += bytes;
    std::vector<std::string> strings(proto.string_data().begin(), proto.string_data().end());
    auto t = Tensor::FromStrings(std::move(dims), std::move(strings));
    if (!t.ok()) return Status(t.status().code(), what + ": " + t.status().message());
    return t;
  }

  size_t nbytes = 0;
  if (!StorageBytes(dtype, n, &nbytes))
    return Unsupported(what, " has element type ", DataTypeName(dtype), ", which onnxq cannot size");
  if (static_cast<uint64_t>(nbytes) > static_cast<uint64_t>(ctx.limits.max_bytes))
    return OutOfRange(what, " needs ", nbytes, " bytes, more than the per-tensor limit of ",
                      ctx.limits.max_bytes);
  if (ctx.total_bytes + static_cast<int64_t>(nbytes) > ctx.max_total_bytes)
    return OutOfRange(what, ": the model's tensors exceed the total limit of ", ctx.max_total_bytes,
                      " bytes");

  // Validate the inline data size before allocating: a 10-byte file must not make us allocate
  // what its dims claim.
  if (has_raw) {
    if (typed) return InvalidArgument(what, " has both raw_data and ", typed);
    if (proto.raw_data().size() != nbytes)
      return InvalidArgument(what, " has ", proto.raw_data().size(), " bytes of raw_data but shape ",
                             DimsToString(dims), " of ", DataTypeName(dtype), " needs ", nbytes);
  } else if (!external) {
    int64_t have = 0;
    const char* expected_field = nullptr;
    int64_t per_element = 1;
    switch (dtype) {
      case DataType::kFloat: expected_field = "float_data"; have = proto.float_data_size(); break;
      case DataType::kComplex64:
        expected_field = "float_data"; have = proto.float_data_size(); per_element = 2; break;
      case DataType::kDouble: expected_field = "double_data"; have = proto.double_data_size(); break;
      case DataType::kComplex128:
        expected_field = "double_data"; have = proto.double_data_size(); per_element = 2; break;
      case DataType::kInt64: expected_field = "int64_data"; have = proto.int64_data_size(); break;
      case DataType::kUint32:
      case DataType::kUint64: expected_field = "uint64_data"; have = proto.uint64_data_size(); break;
      case DataType::kInt32:
      case DataType::kInt16:
      case DataType::kInt8:
      case DataType::kUint16:
      case DataType::kUint8:
      case DataType::kBool:
      case DataType::kFloat16:
      case DataType::kBFloat16:
      case DataType::kFloat8E4M3FN:
      case DataType::kFloat8E4M3FNUZ:
      case DataType::kFloat8E5M2:
      case DataType::kFloat8E5M2FNUZ:
        expected_field = "int32_data"; have = proto.int32_data_size(); break;
      default:
        if (n == 0 && !typed) break;
        return Unsupported(what, " of type ", DataTypeName(dtype),
                           " must store its data in raw_data");
    }
    if (typed && expected_field && std::strcmp(typed, expected_field) != 0)
      return InvalidArgument(what, " of type ", DataTypeName(dtype), " stores its data in ", typed,
                             " instead of ", expected_field);
    if (have != n * per_element) {
      if (have == 0)
        return InvalidArgument(what, " has shape ", DimsToString(dims), " (", n,
                               " elements) but no data");
      return InvalidArgument(what, " has ", have, " values in ", expected_field, " but shape ",
                             DimsToString(dims), " needs ", n * per_element);
    }
  }

  if (external) {
    ONNXQ_ASSIGN_OR_RETURN(Tensor ext, LoadExternal(proto, what, ctx, dtype, dims, nbytes));
    ctx.total_bytes += static_cast<int64_t>(nbytes);
    return ext;
  }
  auto created = Tensor::Create(dtype, dims, ctx.limits);
  if (!created.ok()) return Status(created.status().code(), what + ": " + created.status().message());
  Tensor t = std::move(created).value();
  ctx.total_bytes += static_cast<int64_t>(nbytes);
  if (nbytes == 0) return t;
  if (has_raw) {
    std::memcpy(t.mutable_raw(), proto.raw_data().data(), nbytes);
    return t;
  }
  std::byte* raw = t.mutable_raw();
  switch (dtype) {
    case DataType::kFloat:
    case DataType::kComplex64:
      std::memcpy(raw, proto.float_data().data(), nbytes);
      break;
    case DataType::kDouble:
    case DataType::kComplex128:
      std::memcpy(raw, proto.double_data().data(), nbytes);
      break;
    case DataType::kInt64: std::memcpy(raw, proto.int64_data().data(), nbytes); break;
    case DataType::kUint64: std::memcpy(raw, proto.uint64_data().data(), nbytes); break;
    case DataType::kUint32:
      for (int i = 0; i < proto.uint64_data_size(); ++i) {
        uint64_t v = proto.uint64_data(i);
        if (v > std::numeric_limits<uint32_t>::max())
          return InvalidArgument(what, ": uint64_data value ", v, " at index ", i,
                                 " does not fit uint32");
        reinterpret_cast<uint32_t*>(raw)[i] = static_cast<uint32_t>(v);
      }
      break;
    case DataType::kInt32: std::memcpy(raw, proto.int32_data().data(), nbytes); break;
    case DataType::kInt16:
      ONNXQ_RETURN_IF_ERROR(CopyNarrow(proto.int32_data(), reinterpret_cast<int16_t*>(raw), what));
      break;
    case DataType::kUint16:
      ONNXQ_RETURN_IF_ERROR(CopyNarrow(proto.int32_data(), reinterpret_cast<uint16_t*>(raw), what));
      break;
    case DataType::kInt8:
      ONNXQ_RETURN_IF_ERROR(CopyNarrow(proto.int32_data(), reinterpret_cast<int8_t*>(raw), what));
      break;
    case DataType::kUint8:
      ONNXQ_RETURN_IF_ERROR(CopyNarrow(proto.int32_data(), reinterpret_cast<uint8_t*>(raw), what));
      break;
    case DataType::kBool:
      for (int i = 0; i < proto.int32_data_size(); ++i)
        reinterpret_cast<uint8_t*>(raw)[i] = proto.int32_data(i) != 0;
      break;
    case DataType::kFloat16:
    case DataType::kBFloat16:
      // The 16 bits of the value, stored in the low half of each int32.
      CopyConvert(proto.int32_data(), reinterpret_cast<uint16_t*>(raw));
      break;
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
      CopyConvert(proto.int32_data(), reinterpret_cast<uint8_t*>(raw));
      break;
    default:
      return Internal(what, ": no typed-field reader for ", DataTypeName(dtype));
  }
  return t;
}

void TensorToProto(const Tensor& t, const std::string& name, TensorProto* proto) {
  proto->Clear();
  if (!name.empty()) proto->set_name(name);
  for (int64_t d : t.dims()) proto->add_dims(d);
  proto->set_data_type(static_cast<int32_t>(t.dtype()));
  if (t.dtype() == DataType::kString) {
    for (const auto& s : t.strings()) proto->add_string_data(s);
    return;
  }
  proto->set_raw_data(t.raw() ? std::string(reinterpret_cast<const char*>(t.raw()), t.nbytes())
                              : std::string());
}

Status TypeFromProto(const onnx::TypeProto& type, const std::string& what, DataType* dtype,
                     std::optional<Shape>* shape) {
  switch (type.value_case()) {
    case onnx::TypeProto::kTensorType: break;
    case onnx::TypeProto::VALUE_NOT_SET:
      *dtype = DataType::kUndefined;
      shape->reset();
      return Status::Ok();
    case onnx::TypeProto::kSequenceType:
      return Unsupported(what, " has a sequence type; onnxq supports tensor values only");
    case onnx::TypeProto::kMapType:
      return Unsupported(what, " has a map type; onnxq supports tensor values only");
    case onnx::TypeProto::kOptionalType:
      return Unsupported(what, " has an optional type; onnxq supports tensor values only");
    case onnx::TypeProto::kSparseTensorType:
      return Unsupported(what, " is a sparse tensor; onnxq supports dense tensors only");
    default:
      return Unsupported(what, " has a type that onnxq does not know");
  }
  const auto& tt = type.tensor_type();
  int32_t et = tt.elem_type();
  if (!IsValidDataType(et)) return InvalidArgument(what, " has unknown element type ", et);
  *dtype = static_cast<DataType>(et);
  if (!tt.has_shape()) {
    shape->reset();
    return Status::Ok();
  }
  std::vector<Dim> dims;
  dims.reserve(tt.shape().dim_size());
  for (const auto& d : tt.shape().dim()) {
    if (d.has_dim_value()) {
      if (d.dim_value() < 0)
        return InvalidArgument(what, " has negative dimension ", d.dim_value());
      dims.push_back(Dim::Known(d.dim_value()));
    } else if (d.has_dim_param()) {
      dims.push_back(Dim::Symbolic(d.dim_param()));
    } else {
      dims.push_back(Dim::Unknown());
    }
  }
  *shape = Shape(std::move(dims));
  return Status::Ok();
}

void TypeToProto(DataType dtype, const std::optional<Shape>& shape, onnx::TypeProto* type) {
  auto* tt = type->mutable_tensor_type();
  tt->set_elem_type(static_cast<int32_t>(dtype));
  if (!shape) return;
  auto* sp = tt->mutable_shape();
  for (const Dim& d : shape->dims()) {
    auto* dim = sp->add_dim();
    if (d.is_known())
      dim->set_dim_value(d.value);
    else if (d.is_symbolic())
      dim->set_dim_param(d.param);
  }
}

}  // namespace onnxq::onnx_io
