// The checks behind each libFuzzer target, shared with tests/cpp/fuzz_regressions_test.cc so that a
// saved finding replays exactly what the fuzzer ran. Each Check* returns "" when the code under test
// behaved (a clean error Status, or a success that satisfies the invariants) and otherwise a
// description of the broken invariant; crashes and sanitizer reports happen inside the call.
// Header-only (inline) so the test binary needs no build change; uses no protobuf headers (only
// src/onnx/ may): ONNX messages are written with the small wire-format writer below.
#pragma once

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "onnxq/base/file.h"
#include "onnxq/base/npy.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/ir/graph.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq::fuzz {

// ------------------------------------------------------------------ helpers

class ProtoWriter {
 public:
  ProtoWriter& Varint(int field, uint64_t v) {
    Raw(static_cast<uint64_t>(field) << 3 | 0);
    Raw(v);
    return *this;
  }
  ProtoWriter& Bytes(int field, const std::string& bytes) {
    Raw(static_cast<uint64_t>(field) << 3 | 2);
    Raw(bytes.size());
    out_ += bytes;
    return *this;
  }
  ProtoWriter& Message(int field, const ProtoWriter& m) { return Bytes(field, m.str()); }
  const std::string& str() const { return out_; }

 private:
  void Raw(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

inline bool WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

// A fresh folder under $TMPDIR (or /tmp); the caller removes it (RemoveTree).
inline std::string MakeTempDir(const char* tag) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/onnxq-fuzz-" + tag + "-XXXXXX";
  if (!::mkdtemp(templ.data())) return "";
  return templ;
}
inline void RemoveTree(const std::string& path) {
  std::error_code ec;
  if (!path.empty()) std::filesystem::remove_all(path, ec);
}

// Bytes every "inside" data file holds: byte i is i % 200 (never the secret 0xEE).
constexpr int kDataPattern = 200;
inline std::string InsideData() {
  std::string s;
  for (int i = 0; i < 4096; ++i) s.push_back(static_cast<char>(i % kDataPattern));
  return s;
}

inline bool StrictDecimal(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

// ------------------------------------------------------------------ onnx_import

// A folder with data files the fuzzed models' external data may name.
inline std::string MakeImportFolder() {
  std::string dir = MakeTempDir("import");
  if (dir.empty()) return dir;
  WriteBytes(dir + "/weights.bin", InsideData());
  WriteBytes(dir + "/model.onnx.data", InsideData());
  return dir;
}

// Import limits for fuzzing: the defaults except tensor sizes, so that a legitimate allocation the
// defaults allow (an initializer with 1 GiB of real raw_data) does not trip the 2 GiB RSS limit.
inline ImportOptions ImportFuzzOptions() {
  ImportOptions o;
  o.tensor_limits.max_bytes = int64_t{256} << 20;
  o.max_total_tensor_bytes = int64_t{512} << 20;
  return o;
}

// Minimal protobuf wire-format walk: calls fn(field, wire_type, value, bytes) for each field of the
// message in [p, end); returns false on malformed data.
template <typename Fn>
bool ForEachField(const uint8_t* p, const uint8_t* end, Fn fn) {
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
      uint8_t b = *p++;
      *v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (p < end) {
    uint64_t tag, v = 0;
    if (!varint(&tag)) return false;
    const int field = static_cast<int>(tag >> 3), wire = static_cast<int>(tag & 7);
    std::string_view bytes;
    if (wire == 0) {
      if (!varint(&v)) return false;
    } else if (wire == 1 || wire == 5) {
      const size_t w = wire == 1 ? 8 : 4;
      if (static_cast<size_t>(end - p) < w) return false;
      p += w;
    } else if (wire == 2) {
      if (!varint(&v) || v > static_cast<uint64_t>(end - p)) return false;
      bytes = std::string_view(reinterpret_cast<const char*>(p), v);
      p += v;
    } else {
      return false;
    }
    if (!fn(field, wire, v, bytes)) return false;
  }
  return true;
}

// True if a GraphProto (or, recursively, a subgraph in its attributes) has a node attribute whose
// `type` is missing or not a valid AttributeType.
inline bool GraphHasUntypedAttribute(std::string_view graph, int depth = 0) {
  if (depth > 16) return false;
  bool found = false;
  auto bytes_of = [](std::string_view b) {
    return std::pair(reinterpret_cast<const uint8_t*>(b.data()), reinterpret_cast<const uint8_t*>(b.data()) + b.size());
  };
  auto [g0, g1] = bytes_of(graph);
  ForEachField(g0, g1, [&](int field, int wire, uint64_t, std::string_view node) {
    if (field != 1 || wire != 2) return true;  // GraphProto.node
    auto [n0, n1] = bytes_of(node);
    ForEachField(n0, n1, [&](int nf, int nw, uint64_t, std::string_view attr) {
      if (nf != 5 || nw != 2) return true;  // NodeProto.attribute
      int64_t type = -1;
      auto [a0, a1] = bytes_of(attr);
      ForEachField(a0, a1, [&](int af, int aw, uint64_t v, std::string_view sub) {
        if (af == 20 && aw == 0) type = static_cast<int64_t>(v);
        if ((af == 6 || af == 11) && aw == 2 && GraphHasUntypedAttribute(sub, depth + 1)) found = true;
        return true;
      });
      if (type < 1 || type > 14) found = true;
      return true;
    });
    return true;
  });
  return found;
}

inline bool ModelHasUntypedAttribute(const uint8_t* data, size_t size) {
  bool found = false;
  ForEachField(data, data + size, [&](int field, int wire, uint64_t, std::string_view graph) {
    if (field == 7 && wire == 2 && GraphHasUntypedAttribute(graph)) found = true;
    return true;
  });
  return found;
}

// skip_round_trip: only Verify and SerializeModel (used for inputs that reach the known bug below).
inline std::string CheckImportedModel(const Model& model, const std::string& variant,
                                      bool skip_round_trip = false) {
  Status v = model.graph.Verify();
  if (!v.ok()) return variant + ": imported graph fails Verify: " + v.ToString();
  auto bytes = SerializeModel(model);
  if (!bytes.ok()) return variant + ": SerializeModel failed: " + bytes.status().ToString();
  if (skip_round_trip) return "";
  auto again = LoadModelFromBytes(bytes->data(), bytes->size(), "", "<re-import>", ImportFuzzOptions());
  if (!again.ok()) return variant + ": the exported model does not re-import: " + again.status().ToString();
  auto bytes2 = SerializeModel(*again);
  if (!bytes2.ok()) return variant + ": SerializeModel of the re-imported model failed: " + bytes2.status().ToString();
  if (*bytes2 != *bytes) {
    // For triage: ONNXQ_FUZZ_DUMP=<folder> keeps both serializations (first.onnx, second.onnx).
    if (const char* dump = std::getenv("ONNXQ_FUZZ_DUMP"); dump && *dump) {
      WriteBytes(std::string(dump) + "/first.onnx", *bytes);
      WriteBytes(std::string(dump) + "/second.onnx", *bytes2);
    }
    return variant + ": export -> import -> export is not byte-stable";
  }
  return "";
}

// LoadModelFromBytes with no folder and, when the input mentions external data, with `dir`.
inline std::string CheckOnnxImport(const uint8_t* data, size_t size, const std::string& dir,
                                   bool skip_known_bugs = false) {
  const ImportOptions options = ImportFuzzOptions();
  // Known bug (docs/fuzzing.md): a node attribute without a valid `type` is typed by the importer
  // but ONNX shape inference sees it untyped, so export -> import infers more than the first import
  // did (different bytes, or a sequence value refused only on re-import). skip_known_bugs skips the
  // round-trip checks for such inputs.
  const bool skip_round_trip = skip_known_bugs && ModelHasUntypedAttribute(data, size);
  auto model = LoadModelFromBytes(data, size, "", "<fuzz>", options);
  if (model.ok()) {
    std::string bad = CheckImportedModel(*model, "no folder", skip_round_trip);
    if (!bad.empty()) return bad;
  } else if (model.status().message().empty()) {
    return "error without a message";
  }
  static const char kLocation[] = "location";
  if (!dir.empty() && memmem(data, size, kLocation, sizeof(kLocation) - 1) != nullptr) {
    auto with_dir = LoadModelFromBytes(data, size, dir, "<fuzz>", options);
    if (with_dir.ok()) {
      std::string bad = CheckImportedModel(*with_dir, "with folder", skip_round_trip);
      if (!bad.empty()) return bad;
    }
    if (model.ok() && !with_dir.ok())
      return "imports without a folder but not with one: " + with_dir.status().ToString();
  }
  return "";
}

// ------------------------------------------------------------------ external_data

// root/model: weights.bin, sub/more.bin, empty.bin, dir/, link_in -> weights.bin, link_out ->
// ../outside/secret.bin, link_outdir -> ../outside, link_abs -> <abs>/outside/secret.bin,
// loop -> loop, [pipe: a FIFO]; root/outside/secret.bin and root/model_sibling.bin hold 0xEE.
struct ExternalDataFolder {
  std::string root, model_dir, model_real;
};

inline ExternalDataFolder MakeExternalDataFolder(bool with_fifo) {
  namespace fs = std::filesystem;
  ExternalDataFolder f;
  f.root = MakeTempDir("extdata");
  if (f.root.empty()) return f;
  f.model_dir = f.root + "/model";
  std::error_code ec;
  fs::create_directories(f.model_dir + "/sub", ec);
  fs::create_directories(f.model_dir + "/dir", ec);
  fs::create_directories(f.root + "/outside", ec);
  const std::string secret(4096, '\xEE');
  WriteBytes(f.model_dir + "/weights.bin", InsideData());
  WriteBytes(f.model_dir + "/sub/more.bin", InsideData());
  WriteBytes(f.model_dir + "/empty.bin", "");
  WriteBytes(f.root + "/outside/secret.bin", secret);
  WriteBytes(f.root + "/model_sibling.bin", secret);  // "model" must not prefix-match "model_sibling"
  fs::create_symlink("weights.bin", f.model_dir + "/link_in", ec);
  fs::create_symlink("../outside/secret.bin", f.model_dir + "/link_out", ec);
  fs::create_symlink("../outside", f.model_dir + "/link_outdir", ec);
  fs::create_symlink(f.root + "/outside/secret.bin", f.model_dir + "/link_abs", ec);
  fs::create_symlink("loop", f.model_dir + "/loop", ec);
  if (with_fifo) ::mkfifo((f.model_dir + "/pipe").c_str(), 0600);
  char real[PATH_MAX];
  if (::realpath(f.model_dir.c_str(), real)) f.model_real = real;
  return f;
}

// Input: fields split at '\n': mode, location, offset, length, dims ("2,3"; none: scalar),
// element type (decimal ONNX code, default 1).
inline std::vector<std::string> SplitExternalDataFields(const uint8_t* data, size_t size) {
  std::vector<std::string> f(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n' && f.size() < 6) f.emplace_back();
    else f.back().push_back(static_cast<char>(data[i]));
  }
  f.resize(6);
  return f;
}

// A one-node model: y = Identity(w), w an external initializer described by the fields.
inline std::string BuildExternalDataModel(const std::vector<std::string>& f) {
  int64_t elem_type = 1;
  StrictDecimal(f[5], &elem_type);
  ProtoWriter tensor;
  const std::string& dims = f[4];
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t end = dims.find(',', pos);
    if (end == std::string::npos) end = dims.size();
    tensor.Varint(1, static_cast<uint64_t>(std::strtoll(dims.substr(pos, end - pos).c_str(), nullptr, 10)));
    pos = end + 1;
  }
  tensor.Varint(2, static_cast<uint64_t>(elem_type));
  tensor.Bytes(8, "w");
  tensor.Message(13, ProtoWriter().Bytes(1, "location").Bytes(2, f[1]));
  if (!f[2].empty()) tensor.Message(13, ProtoWriter().Bytes(1, "offset").Bytes(2, f[2]));
  if (!f[3].empty()) tensor.Message(13, ProtoWriter().Bytes(1, "length").Bytes(2, f[3]));
  tensor.Varint(14, 1);  // data_location = EXTERNAL
  ProtoWriter node;
  node.Bytes(1, "w").Bytes(2, "y").Bytes(3, "id").Bytes(4, "Identity");
  ProtoWriter out_type;
  out_type.Message(1, ProtoWriter().Varint(1, static_cast<uint64_t>(elem_type)));
  ProtoWriter output;
  output.Bytes(1, "y").Message(2, out_type);
  ProtoWriter graph;
  graph.Message(1, node).Bytes(2, "g").Message(5, tensor).Message(12, output);
  ProtoWriter model;
  model.Varint(1, 8).Message(8, ProtoWriter().Bytes(1, "").Varint(2, 17)).Message(7, graph);
  return model.str();
}

inline std::string CheckResolvedPath(const ExternalDataFolder& folder, const std::string& location,
                                     const std::string& resolved) {
  const std::string prefix = folder.model_real + "/";
  if (resolved.compare(0, prefix.size(), prefix) != 0)
    return "'" + location + "' resolved to '" + resolved + "', outside " + folder.model_real;
  char real[PATH_MAX];
  if (!::realpath(resolved.c_str(), real) || resolved != real)
    return "'" + location + "' resolved to a non-canonical or missing path '" + resolved + "'";
  return "";
}

// True for inputs that reach bugs already reported (docs/fuzzing.md, "Known findings"): offset or
// length strings of 19+ characters (signed overflow in the importer's decimal parser) and tensors
// whose claimed size exceeds 1 GiB (allocated before the external file's length is checked). The
// fuzzer skips them when ONNXQ_FUZZ_SKIP_KNOWN=1 so a run can look for other bugs; the regression
// test never skips.
inline bool HitsKnownExternalDataBug(const std::vector<std::string>& f) {
  if (f[2].size() >= 19 || f[3].size() >= 19) return true;
  const std::string& dims = f[4];
  double bytes = 32;  // widest element in memory (a std::string per element of a string tensor)
  size_t pos = 0;
  while (pos < dims.size()) {
    size_t end = dims.find(',', pos);
    if (end == std::string::npos) end = dims.size();
    bytes *= static_cast<double>(std::strtoll(dims.substr(pos, end - pos).c_str(), nullptr, 10));
    pos = end + 1;
  }
  return bytes > double(int64_t{1} << 30);
}

// Mode "r": ResolvePathInside alone; otherwise import the model above. Default ImportOptions:
// refusing before allocating is part of what is tested.
inline std::string CheckExternalData(const ExternalDataFolder& folder, const uint8_t* data, size_t size,
                                     bool skip_known_bugs = false) {
  std::vector<std::string> f = SplitExternalDataFields(data, size);
  if (skip_known_bugs && HitsKnownExternalDataBug(f)) return "";
  if (f[0] == "r") {
    auto resolved = ResolvePathInside(folder.model_dir, f[1]);
    if (resolved.ok()) return CheckResolvedPath(folder, f[1], *resolved);
    return resolved.status().message().empty() ? "error without a message" : "";
  }
  const std::string bytes = BuildExternalDataModel(f);
  auto model = LoadModelFromBytes(bytes.data(), bytes.size(), folder.model_dir, "<fuzz>");
  if (!model.ok()) return model.status().message().empty() ? "error without a message" : "";
  Status v = model->graph.Verify();
  if (!v.ok()) return "imported graph fails Verify: " + v.ToString();
  auto resolved = ResolvePathInside(folder.model_dir, f[1]);
  if (!resolved.ok())
    return "import read '" + f[1] + "', which ResolvePathInside refuses: " + resolved.status().ToString();
  std::string bad = CheckResolvedPath(folder, f[1], *resolved);
  if (!bad.empty()) return bad;
  int64_t offset = 0;
  const bool offset_known = f[2].empty() || StrictDecimal(f[2], &offset);
  for (ValueId id : model->graph.initializer_order()) {
    const Tensor* t = model->graph.value(id).initializer();
    if (!t || !t->raw()) continue;
    const auto* p = reinterpret_cast<const uint8_t*>(t->raw());
    for (size_t i = 0; i < t->nbytes(); ++i) {
      if (p[i] == 0xEE) return "a tensor holds bytes from outside the model folder";
      if (offset_known && p[i] != static_cast<uint8_t>((offset + static_cast<int64_t>(i)) % kDataPattern))
        return "tensor byte " + std::to_string(i) + " is not the file's byte at offset " +
               std::to_string(offset + static_cast<int64_t>(i));
    }
  }
  auto serialized = SerializeModel(*model);
  if (!serialized.ok()) return "SerializeModel failed: " + serialized.status().ToString();
  return "";
}

// ------------------------------------------------------------------ npy

inline std::string CheckNpy(const uint8_t* data, size_t size) {
  auto t = ParseNpy(data, size, "<fuzz>");
  if (!t.ok()) return t.status().message().empty() ? "error without a message" : "";
  int64_t n = 1;
  for (int64_t d : t->dims()) {
    if (d < 0) return "negative dim accepted";
    n *= d;
  }
  if (n != t->numel()) return "numel does not match dims";
  if (t->nbytes() > size) return "tensor larger than the file it came from";
  auto bytes = SerializeNpy(*t);
  if (!bytes.ok()) return "SerializeNpy failed: " + bytes.status().ToString();
  auto again = ParseNpy(bytes->data(), bytes->size(), "<re-parse>");
  if (!again.ok()) return "SerializeNpy output does not parse: " + again.status().ToString();
  if (again->dtype() != t->dtype() || again->dims() != t->dims() || again->nbytes() != t->nbytes() ||
      (t->nbytes() > 0 && std::memcmp(again->raw(), t->raw(), t->nbytes()) != 0))
    return "npy round trip changed the tensor";
  return "";
}

// ------------------------------------------------------------------ image

// True if `p` is a JPEG that reaches one of the known memory-safety bugs of Debian's stb_image
// 2.27 (the fuzzer's image findings, tests/data/fuzz_regressions/image):
//  - a Huffman table (DHT) whose 16 code counts sum to more than 256: stb builds it without
//    checking and writes past stbi__huffman::size[257] (then past values[256]);
//  - a scan (SOS) that selects a Huffman table no DHT defined before it (a DC table for baseline
//    scans and first DC scans of progressive JPEGs, an AC table for baseline and progressive AC
//    scans): stb decodes with the uninitialized table and reads values[] out of bounds.
// Walks the markers the way stb_image does (any 0xFF fill before a marker; every table of every
// DHT segment, before and between scans; entropy-coded data skipped up to the next non-RST marker;
// bytes past the end read as 0 as stb's memory reader does). Refusing such inputs before calling
// stb_image closes these two holes; src/calib/image.cc needs the same check (or a fixed decoder).
inline bool JpegReachesKnownStbBug(const uint8_t* p, size_t n) {
  auto at = [&](size_t k) -> int { return k < n ? p[k] : 0; };
  size_t i = 0;
  while (i < n && p[i] == 0xFF) ++i;
  if (i == 0 || i >= n || p[i] != 0xD8) return false;
  ++i;
  bool defined[2][4] = {};  // [DC=0 / AC=1][table id]
  bool progressive = false;
  while (i + 1 < n) {
    if (p[i] != 0xFF) { ++i; continue; }
    const uint8_t m = p[i + 1];
    if (m == 0xFF) { ++i; continue; }                       // fill byte
    if (m == 0x00 || m == 0x01 || m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }
    const size_t len = (size_t(at(i + 2)) << 8) | size_t(at(i + 3));
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) {
      long left = static_cast<long>(len) - 2;
      size_t j = i + 4;
      while (left > 0 && j < n) {
        const int q = at(j);
        int sum = 0;
        for (size_t k = 1; k <= 16; ++k) sum += at(j + k);
        if (sum > 256) return true;
        if ((q >> 4) <= 1 && (q & 15) <= 3) defined[q >> 4][q & 15] = true;
        j += 17 + static_cast<size_t>(sum);
        left -= 17 + sum;
      }
    }
    if (m == 0xDA) {
      const int ns = at(i + 4);
      const size_t tail = i + 5 + 2 * static_cast<size_t>(ns);
      const int ss = at(tail), ah = at(tail + 2) >> 4;
      for (int c = 0; c < ns; ++c) {
        const int q = at(i + 5 + 2 * static_cast<size_t>(c) + 1);
        const int dc = q >> 4, ac = q & 15;
        const bool uses_dc = !progressive || (ss == 0 && ah == 0);
        const bool uses_ac = !progressive || ss > 0;
        if (uses_dc && dc <= 3 && !defined[0][dc]) return true;
        if (uses_ac && ac <= 3 && !defined[1][ac]) return true;
      }
    }
    i += 2 + len;
    if (m == 0xDA) {  // entropy-coded data up to the next marker that is not a restart
      while (i + 1 < n && !(p[i] == 0xFF && p[i + 1] != 0x00 && p[i + 1] != 0xFF &&
                            !(p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7)))
        ++i;
    }
  }
  return false;
}

// The input is the image file; its size picks one of four preprocessing setups.
// skip_known_bugs: skip JPEGs that reach the known stb_image bugs (above).
inline std::string CheckImage(const uint8_t* data, size_t size, bool skip_known_bugs = false) {
  using calib::ImageLayout;
  if (skip_known_bugs && JpegReachesKnownStbBug(data, size)) return "";
  auto img = calib::DecodeImage(data, size, "<fuzz>");
  if (!img.ok()) return img.status().message().empty() ? "error without a message" : "";
  if (img->width <= 0 || img->height <= 0 || int64_t{img->width} * img->height > (int64_t{1} << 26) ||
      img->rgb.size() != static_cast<size_t>(img->width) * img->height * 3)
    return "decoded image has an inconsistent size";
  calib::PreprocessOptions o;
  switch (size % 4) {
    case 0: o.resize_shorter = 40; o.crop_height = 32; o.crop_width = 24; break;
    case 1: o.resize_shorter = 0; o.crop_height = 2; o.crop_width = 3; break;
    case 2: o.resize_shorter = 0; o.crop_height = 0; o.crop_width = 0; break;
    default:
      o.resize_shorter = 7; o.crop_height = 0; o.crop_width = 0;
      o.layout = ImageLayout::kNHWC; o.bgr = true;
      o.mean = {0.5f, 0.4f, 0.3f}; o.std = {0.2f, 0.3f, 0.4f};
      break;
  }
  // Whole-image float conversion of a huge image only costs time, not coverage.
  if (o.resize_shorter == 0 && o.crop_height == 0 && int64_t{img->width} * img->height > (1 << 22)) return "";
  auto t = calib::PreprocessImage(*img, o, "<fuzz>");
  if (!t.ok()) return t.status().message().empty() ? "preprocessing error without a message" : "";
  const auto& d = t->dims();
  if (d.size() != 3) return "preprocessed tensor is not rank 3";
  const bool nchw = o.layout == ImageLayout::kNCHW;
  if (d[nchw ? 0 : 2] != 3) return "preprocessed tensor does not have 3 channels";
  const int64_t h = nchw ? d[1] : d[0];
  const int64_t w = nchw ? d[2] : d[1];
  if (o.crop_height > 0 && (h != o.crop_height || w != o.crop_width)) return "preprocessed tensor is not the crop size";
  if (o.resize_shorter > 0 && o.crop_height == 0 && std::min(h, w) != o.resize_shorter)
    return "shorter side is not the resize size";
  if (o.resize_shorter == 0 && o.crop_height == 0 && (h != img->height || w != img->width))
    return "preprocessing without resize or crop changed the size";
  if (t->HasNonFinite()) return "preprocessed tensor holds a non-finite value";
  return "";
}

}  // namespace onnxq::fuzz
