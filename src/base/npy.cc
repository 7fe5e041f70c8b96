// .npy reader/writer. The header is a Python dict literal; we parse only the subset numpy writes
// ({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }) and refuse everything else, so a
// malformed or hostile file fails with a message instead of being guessed at.
#include "onnxq/base/npy.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "onnxq/base/file.h"

namespace onnxq {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// numpy itself caps headers at a few KiB; anything larger is not a real file.
constexpr size_t kMaxHeaderLen = size_t{1} << 20;

struct NpyHeader {
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> dims;
  size_t data_offset = 0;
};

struct DtypeCode {
  const char* code;  // kind + size, as in numpy's descr after the byte-order char
  DataType dtype;
};
constexpr DtypeCode kDtypes[] = {
    {"f4", DataType::kFloat},  {"f8", DataType::kDouble}, {"f2", DataType::kFloat16},
    {"i1", DataType::kInt8},   {"u1", DataType::kUint8},  {"i2", DataType::kInt16},
    {"u2", DataType::kUint16}, {"i4", DataType::kInt32},  {"u4", DataType::kUint32},
    {"i8", DataType::kInt64},  {"u8", DataType::kUint64}, {"b1", DataType::kBool},
};

const char* DescrOf(DataType t) {
  switch (t) {
    case DataType::kFloat: return "<f4";
    case DataType::kDouble: return "<f8";
    case DataType::kFloat16: return "<f2";
    case DataType::kInt8: return "|i1";
    case DataType::kUint8: return "|u1";
    case DataType::kInt16: return "<i2";
    case DataType::kUint16: return "<u2";
    case DataType::kInt32: return "<i4";
    case DataType::kUint32: return "<u4";
    case DataType::kInt64: return "<i8";
    case DataType::kUint64: return "<u8";
    case DataType::kBool: return "|b1";
    default: return nullptr;
  }
}

// Minimal tokenizer over the header dict.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  Status Parse(NpyHeader* out) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Error("header does not start with '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      ONNXQ_RETURN_IF_ERROR(ParseString(&key));
      SkipSpace();
      if (!Consume(':')) return Error("expected ':' after key '" + key + "'");
      SkipSpace();
      if (key == "descr") {
        if (have_descr) return Error("duplicate key 'descr'");
        have_descr = true;
        if (Peek() == '[') return Unsupported(Prefix(), "structured dtypes are not supported");
        std::string descr;
        ONNXQ_RETURN_IF_ERROR(ParseString(&descr));
        ONNXQ_RETURN_IF_ERROR(ParseDescr(descr, &out->dtype));
      } else if (key == "fortran_order") {
        if (have_fortran) return Error("duplicate key 'fortran_order'");
        have_fortran = true;
        if (ConsumeWord("True")) {
          return Unsupported(Prefix(), "Fortran-order arrays are not supported (save with C order, "
                                       "e.g. np.ascontiguousarray)");
        }
        if (!ConsumeWord("False")) return Error("fortran_order must be True or False");
      } else if (key == "shape") {
        if (have_shape) return Error("duplicate key 'shape'");
        have_shape = true;
        ONNXQ_RETURN_IF_ERROR(ParseShape(&out->dims));
      } else {
        return Error("unexpected key '" + key + "'");
      }
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != s_.size()) return Error("trailing characters after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
      return Error("header lacks one of 'descr', 'fortran_order', 'shape'");
    return Status::Ok();
  }

 private:
  std::string Prefix() const { return name_ + ": "; }
  Status Error(const std::string& what) const {
    return InvalidArgument(name_, ": malformed .npy header: ", what);
  }
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }
  bool ConsumeWord(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  void SkipSpace() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  Status ParseString(std::string* out) {
    char q = Peek();
    if (q != '\'' && q != '"') return Error("expected a quoted string");
    ++pos_;
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') return Error("escapes in strings are not supported");
      ++pos_;
    }
    if (pos_ >= s_.size()) return Error("unterminated string");
    *out = std::string(s_.substr(start, pos_ - start));
    ++pos_;
    return Status::Ok();
  }
  Status ParseShape(std::vector<int64_t>* dims) {
    if (!Consume('(')) return Error("shape must be a tuple");
    dims->clear();
    while (true) {
      SkipSpace();
      if (Consume(')')) return Status::Ok();
      if (!std::isdigit(static_cast<unsigned char>(Peek())))
        return Error("shape entries must be non-negative integers");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(Peek()))) {
        int d = Peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - d) / 10)
          return OutOfRange(Prefix(), "shape entry does not fit in 64 bits");
        v = v * 10 + d;
        ++pos_;
      }
      Consume('L');  // Python 2 long suffix in very old files
      dims->push_back(v);
      if (dims->size() > 64) return OutOfRange(Prefix(), "more than 64 dimensions");
      SkipSpace();
      if (Consume(',')) continue;
      SkipSpace();
      if (Consume(')')) return Status::Ok();
      return Error("expected ',' or ')' in shape");
    }
  }
  Status ParseDescr(const std::string& descr, DataType* dtype) {
    if (descr.size() < 2) return Error("bad descr '" + descr + "'");
    char order = descr[0];
    std::string code = descr.substr(1);
    if (order != '<' && order != '>' && order != '|' && order != '=') {
      order = '=';
      code = descr;
    }
    if (code == "O" || code.rfind("O", 0) == 0)
      return Unsupported(Prefix(), "object arrays (dtype '", descr, "') are not supported");
    for (const auto& d : kDtypes) {
      if (code != d.code) continue;
      bool one_byte = ElementSize(d.dtype) == 1;
      // '=' (native) never appears in files numpy writes; we are little-endian, so it is '<'.
      if (order == '>' && !one_byte)
        return Unsupported(Prefix(), "big-endian arrays (dtype '", descr,
                           "') are not supported; convert with arr.astype(arr.dtype.newbyteorder('<'))");
      *dtype = d.dtype;
      return Status::Ok();
    }
    return Unsupported(Prefix(), "unsupported dtype '", descr,
                       "' (supported: f4 f8 f2 i1 u1 i2 u2 i4 u4 i8 u8 b1)");
  }

  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;
};

// Parses magic, version and header from the first bytes of a file. `prefix` must hold at least
// the preamble; *needed is set when more bytes are needed to see the whole header.
Status ParsePreamble(const unsigned char* p, size_t size, const std::string& name, NpyHeader* out,
                     size_t* header_end) {
  if (size < kMagicLen + 4 || std::memcmp(p, kMagic, kMagicLen) != 0)
    return InvalidArgument(name, ": not a .npy file (bad magic)");
  int major = p[6], minor = p[7];
  size_t header_len = 0, pre = 0;
  if (major == 1) {
    header_len = size_t{p[8]} | (size_t{p[9]} << 8);
    pre = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return InvalidArgument(name, ": truncated .npy preamble");
    header_len = size_t{p[8]} | (size_t{p[9]} << 8) | (size_t{p[10]} << 16) | (size_t{p[11]} << 24);
    pre = 12;
  } else {
    return Unsupported(name, ": .npy format version ", major, ".", minor, " is not supported");
  }
  if (minor != 0) return Unsupported(name, ": .npy format version ", major, ".", minor, " is not supported");
  if (header_len > kMaxHeaderLen) return InvalidArgument(name, ": .npy header of ", header_len, " bytes is absurd");
  *header_end = pre + header_len;
  (void)out;
  return Status::Ok();
}

Status ParseHeaderText(const unsigned char* p, size_t header_end, size_t pre, const std::string& name,
                       NpyHeader* out) {
  std::string_view text(reinterpret_cast<const char*>(p) + pre, header_end - pre);
  for (char c : text) {
    // v1/v2 are latin-1 and numpy writes pure ASCII; v3 allows utf-8 only for field names,
    // which we do not support anyway.
    if (static_cast<unsigned char>(c) >= 0x80) return InvalidArgument(name, ": non-ASCII .npy header");
  }
  HeaderParser parser(text, name);
  ONNXQ_RETURN_IF_ERROR(parser.Parse(out));
  out->data_offset = header_end;
  return Status::Ok();
}

StatusOr<NpyHeader> ParseAll(const unsigned char* p, size_t size, const std::string& name) {
  NpyHeader h;
  size_t header_end = 0;
  ONNXQ_RETURN_IF_ERROR(ParsePreamble(p, size, name, &h, &header_end));
  if (header_end > size) return InvalidArgument(name, ": truncated .npy header");
  size_t pre = p[6] == 1 ? 10 : 12;
  ONNXQ_RETURN_IF_ERROR(ParseHeaderText(p, header_end, pre, name, &h));
  return h;
}

// Validates dims against limits and the bytes actually present, before any allocation.
Status CheckSizes(const NpyHeader& h, uint64_t available, const std::string& name,
                  const TensorLimits& limits, size_t* nbytes) {
  auto n = CheckedElementCount(h.dims);
  if (!n.ok()) return OutOfRange(name, ": shape ", DimsToString(h.dims), ": ", n.status().message());
  if (*n > limits.max_elements)
    return OutOfRange(name, ": shape ", DimsToString(h.dims), " has ", *n,
                      " elements, more than the limit of ", limits.max_elements);
  if (!StorageBytes(h.dtype, *n, nbytes))
    return OutOfRange(name, ": shape ", DimsToString(h.dims), " overflows");
  if (static_cast<uint64_t>(*nbytes) > static_cast<uint64_t>(limits.max_bytes))
    return OutOfRange(name, ": shape ", DimsToString(h.dims), " needs ", *nbytes,
                      " bytes, more than the limit of ", limits.max_bytes);
  if (available < *nbytes)
    return InvalidArgument(name, ": truncated .npy data: shape ", DimsToString(h.dims), " of ",
                           DataTypeName(h.dtype), " needs ", *nbytes, " bytes, file has ", available);
  if (available > *nbytes)
    return InvalidArgument(name, ": .npy file has ", available - *nbytes,
                           " unexpected bytes after the data (shape ", DimsToString(h.dims), " of ",
                           DataTypeName(h.dtype), ")");
  return Status::Ok();
}

Status NormalizeBool(Tensor* t, const std::string& name) {
  if (t->dtype() != DataType::kBool) return Status::Ok();
  const uint8_t* b = t->data<uint8_t>();
  for (int64_t i = 0; i < t->numel(); ++i)
    if (b[i] > 1) return InvalidArgument(name, ": bool array holds byte value ", int(b[i]), " at index ", i);
  return Status::Ok();
}

std::string ErrnoText() { return std::strerror(errno); }

}  // namespace

StatusOr<Tensor> ParseNpy(const void* data, size_t size, const std::string& display_name,
                          const TensorLimits& limits) {
  const auto* p = static_cast<const unsigned char*>(data);
  ONNXQ_ASSIGN_OR_RETURN(NpyHeader h, ParseAll(p, size, display_name));
  size_t nbytes = 0;
  ONNXQ_RETURN_IF_ERROR(CheckSizes(h, size - h.data_offset, display_name, limits, &nbytes));
  auto t = Tensor::FromBytes(h.dtype, h.dims, p + h.data_offset, nbytes, limits);
  if (!t.ok()) return Status(t.status()).Prepend(display_name);
  ONNXQ_RETURN_IF_ERROR(NormalizeBool(&*t, display_name));
  return t;
}

StatusOr<Tensor> ReadNpy(const std::string& path, const TensorLimits& limits) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno == ENOENT) return NotFound(path, ": no such file");
    return IoError(path, ": cannot open: ", ErrnoText());
  }
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  struct stat st{};
  if (fstat(fileno(f), &st) != 0) return IoError(path, ": cannot stat: ", ErrnoText());
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path, ": not a regular file");
  uint64_t file_size = static_cast<uint64_t>(st.st_size);

  // Read the preamble, then exactly the header, then the data straight into the tensor.
  unsigned char pre[12] = {};
  size_t got = std::fread(pre, 1, sizeof(pre), f);
  NpyHeader h;
  size_t header_end = 0;
  ONNXQ_RETURN_IF_ERROR(ParsePreamble(pre, got, path, &h, &header_end));
  if (header_end > file_size) return InvalidArgument(path, ": truncated .npy header");
  std::vector<unsigned char> head(header_end);
  std::memcpy(head.data(), pre, std::min(got, header_end));
  if (header_end > got) {
    size_t rest = header_end - got;
    if (std::fread(head.data() + got, 1, rest, f) != rest)
      return InvalidArgument(path, ": truncated .npy header");
  } else if (std::fseek(f, static_cast<long>(header_end), SEEK_SET) != 0) {
    return IoError(path, ": seek failed: ", ErrnoText());
  }
  size_t pre_len = head[6] == 1 ? 10 : 12;
  ONNXQ_RETURN_IF_ERROR(ParseHeaderText(head.data(), header_end, pre_len, path, &h));
  size_t nbytes = 0;
  ONNXQ_RETURN_IF_ERROR(CheckSizes(h, file_size - header_end, path, limits, &nbytes));
  auto t = Tensor::Create(h.dtype, h.dims, limits);
  if (!t.ok()) return Status(t.status()).Prepend(path);
  if (nbytes && std::fread(t->mutable_raw(), 1, nbytes, f) != nbytes)
    return IoError(path, ": short read of .npy data (file changed while reading?)");
  ONNXQ_RETURN_IF_ERROR(NormalizeBool(&*t, path));
  return t;
}

namespace {
// Preamble + padded header dict, byte-identical to numpy's np.save for the same array.
StatusOr<std::string> NpyHeaderBytes(const Tensor& tensor) {
  const char* descr = DescrOf(tensor.dtype());
  if (!descr)
    return Unsupported("cannot write a tensor of element type ", DataTypeName(tensor.dtype()),
                       " to .npy (supported: float32/64/16, (u)int8/16/32/64, bool)");
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < tensor.dims().size(); ++i) {
    if (i) dict += ", ";
    dict += std::to_string(tensor.dims()[i]);
  }
  if (tensor.dims().size() == 1) dict += ",";
  dict += "), }";
  int major = 1;
  size_t pre = 10;
  if (dict.size() + 1 + pre > 65535) {
    major = 2;
    pre = 12;
  }
  size_t total = pre + dict.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  std::string header = dict + std::string(padded - total, ' ') + "\n";
  size_t hlen = header.size();
  std::string out;
  out.append(kMagic, kMagicLen);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  out.push_back(static_cast<char>(hlen & 0xff));
  out.push_back(static_cast<char>((hlen >> 8) & 0xff));
  if (major == 2) {
    out.push_back(static_cast<char>((hlen >> 16) & 0xff));
    out.push_back(static_cast<char>((hlen >> 24) & 0xff));
  }
  return out + header;
}
}  // namespace

StatusOr<std::string> SerializeNpy(const Tensor& tensor) {
  ONNXQ_ASSIGN_OR_RETURN(std::string out, NpyHeaderBytes(tensor));
  if (tensor.nbytes()) out.append(reinterpret_cast<const char*>(tensor.raw()), tensor.nbytes());
  return out;
}

Status WriteNpy(const std::string& path, const Tensor& tensor) {
  ONNXQ_ASSIGN_OR_RETURN(std::string header, NpyHeaderBytes(tensor));
  ONNXQ_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  ONNXQ_RETURN_IF_ERROR(file.Write(header.data(), header.size()));
  if (tensor.nbytes()) ONNXQ_RETURN_IF_ERROR(file.Write(tensor.raw(), tensor.nbytes()));
  return file.Commit();
}

}  // namespace onnxq
