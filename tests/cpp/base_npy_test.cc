#include "onnxq/base/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace onnxq {
namespace {

// Builds a .npy file by hand (independent of SerializeNpy) with the given version and dict text.
std::string MakeNpy(const std::string& dict, const std::string& data, int major = 1) {
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  size_t pre = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((pre + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  size_t n = header.size();
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  if (major != 1) {
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    out.push_back(static_cast<char>((n >> 24) & 0xff));
  }
  return out + header + data;
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

TEST(BaseNpy, ParsesHandCraftedFloatV1) {
  float v[6] = {1, 2, 3, 4, 5, -6.5f};
  std::string file = MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", Bytes(v, 24));
  auto t = ParseNpy(file.data(), file.size(), "x.npy");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->dtype(), DataType::kFloat);
  EXPECT_EQ(t->dims(), (std::vector<int64_t>{2, 3}));
  EXPECT_FLOAT_EQ(t->data<float>()[5], -6.5f);
}

TEST(BaseNpy, ParsesV2V3KeyOrderAndScalar) {
  int16_t v[3] = {-1, 300, 7};
  for (int major : {2, 3}) {
    std::string file = MakeNpy("{'shape': (3,), 'fortran_order': False, 'descr': '<i2'}", Bytes(v, 6), major);
    auto t = ParseNpy(file.data(), file.size(), "y.npy");
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->dtype(), DataType::kInt16);
    EXPECT_EQ(t->dims(), (std::vector<int64_t>{3}));
    EXPECT_EQ(t->data<int16_t>()[1], 300);
  }
  double d = 2.5;
  std::string scalar = MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", Bytes(&d, 8));
  auto s = ParseNpy(scalar.data(), scalar.size(), "s.npy");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->rank(), 0u);
  EXPECT_EQ(s->data<double>()[0], 2.5);
  // Empty array.
  std::string empty = MakeNpy("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4), }", "");
  auto e = ParseNpy(empty.data(), empty.size(), "e.npy");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->numel(), 0);
}

TEST(BaseNpy, AllDtypesRoundTrip) {
  struct Case {
    DataType t;
    const char* descr;
  } cases[] = {{DataType::kFloat, "<f4"},  {DataType::kDouble, "<f8"}, {DataType::kFloat16, "<f2"},
               {DataType::kInt8, "|i1"},   {DataType::kUint8, "|u1"},  {DataType::kInt16, "<i2"},
               {DataType::kUint16, "<u2"}, {DataType::kInt32, "<i4"},  {DataType::kUint32, "<u4"},
               {DataType::kInt64, "<i8"},  {DataType::kUint64, "<u8"}, {DataType::kBool, "|b1"}};
  for (const auto& c : cases) {
    auto t = Tensor::Create(c.t, {2, 2});
    ASSERT_TRUE(t.ok());
    for (int i = 0; i < 4; ++i) t->SetFromDouble(i, c.t == DataType::kBool ? (i & 1) : i + 1);
    auto bytes = SerializeNpy(*t);
    ASSERT_TRUE(bytes.ok());
    // Header is exactly numpy's: dict text, padded so that data starts at a multiple of 64.
    std::string expect_dict = std::string("{'descr': '") + c.descr + "', 'fortran_order': False, 'shape': (2, 2), }";
    EXPECT_EQ(bytes->substr(10, expect_dict.size()), expect_dict);
    EXPECT_EQ(bytes->size() % 64, t->nbytes() % 64);
    EXPECT_EQ(*bytes, MakeNpy(expect_dict, Bytes(t->raw(), t->nbytes())));
    auto back = ParseNpy(bytes->data(), bytes->size());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(back->BitwiseEqual(*t)) << c.descr;
  }
}

TEST(BaseNpy, OneDimShapeHasTrailingComma) {
  auto t = Tensor::Float({3}, std::vector<float>{1, 2, 3});
  auto bytes = SerializeNpy(t);
  ASSERT_TRUE(bytes.ok());
  EXPECT_NE(bytes->find("'shape': (3,), }"), std::string::npos);
}

void ExpectError(const std::string& file, const std::string& needle, StatusCode code) {
  auto t = ParseNpy(file.data(), file.size(), "bad.npy");
  ASSERT_FALSE(t.ok()) << needle;
  EXPECT_EQ(t.status().code(), code) << t.status().ToString();
  EXPECT_NE(t.status().message().find("bad.npy"), std::string::npos) << t.status().ToString();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status().ToString();
}

TEST(BaseNpy, RefusesBadFiles) {
  float v[4] = {};
  std::string f4 = Bytes(v, 16);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4), "Fortran",
              StatusCode::kUnsupported);
  ExpectError(MakeNpy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", f4), "big-endian",
              StatusCode::kUnsupported);
  ExpectError(MakeNpy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", f4), "object",
              StatusCode::kUnsupported);
  ExpectError(MakeNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", f4),
              "structured", StatusCode::kUnsupported);
  ExpectError(MakeNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", f4), "unsupported dtype",
              StatusCode::kUnsupported);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4), "truncated",
              StatusCode::kInvalidArgument);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", f4), "unexpected bytes",
              StatusCode::kInvalidArgument);
  ExpectError(MakeNpy("{'descr': '<f4', 'shape': (2, 2), }", f4), "lacks", StatusCode::kInvalidArgument);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }", f4), "non-negative",
              StatusCode::kInvalidArgument);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", f4), "unexpected key",
              StatusCode::kInvalidArgument);
  ExpectError("\x93NUMPX\x01\x00\x10\x00", "bad magic", StatusCode::kInvalidArgument);
  ExpectError(std::string("\x93NUMPY\x04\x00\x10\x00", 10), "version 4.0", StatusCode::kUnsupported);
  std::string cut = MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f4).substr(0, 40);
  ExpectError(cut, "truncated .npy header", StatusCode::kInvalidArgument);
  // Absurd shapes: refused by the limits before anything is allocated.
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }", f4),
              "limit", StatusCode::kOutOfRange);
  ExpectError(MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", f4),
              "64 bits", StatusCode::kOutOfRange);
  ExpectError(MakeNpy("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", f4),
              "shape", StatusCode::kOutOfRange);
  uint8_t b[2] = {1, 2};
  ExpectError(MakeNpy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", Bytes(b, 2)), "bool",
              StatusCode::kInvalidArgument);
  TensorLimits small;
  small.max_elements = 3;
  std::string ok4 = MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f4);
  auto limited = ParseNpy(ok4.data(), ok4.size(), "lim.npy", small);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.status().code(), StatusCode::kOutOfRange);
}

TEST(BaseNpy, FileRoundTripAndErrorsNameTheFile) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("onnxq_npy_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto t = Tensor::Float({2, 1, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  std::string path = (dir / "a.npy").string();
  ASSERT_TRUE(WriteNpy(path, t).ok());
  auto back = ReadNpy(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->BitwiseEqual(t));
  // No temporaries left behind.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);

  auto missing = ReadNpy((dir / "nope.npy").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.npy"), std::string::npos);

  // Truncated on disk.
  auto bytes = SerializeNpy(t);
  ASSERT_TRUE(bytes.ok());
  std::string cut_path = (dir / "cut.npy").string();
  std::ofstream(cut_path, std::ios::binary) << bytes->substr(0, bytes->size() - 3);
  auto cut = ReadNpy(cut_path);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.status().message().find("cut.npy"), std::string::npos);
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos);

  // Huge declared shape in a tiny file: refused before allocating.
  std::string huge_path = (dir / "huge.npy").string();
  std::ofstream(huge_path, std::ios::binary)
      << MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }", "abcd");
  auto huge = ReadNpy(huge_path);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("huge.npy"), std::string::npos);

  EXPECT_FALSE(WriteNpy((dir / "no_such_dir" / "x.npy").string(), t).ok());
  auto strings = Tensor::FromStrings({1}, {"a"});
  ASSERT_TRUE(strings.ok());
  EXPECT_EQ(WriteNpy((dir / "s.npy").string(), *strings).code(), StatusCode::kUnsupported);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace onnxq
