#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "../../src/calib/jpeg_guard.h"
#include "onnxq/calib/dataset.h"

namespace onnxq::calib {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

const uint8_t* U8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

fs::path RegressionDir() { return fs::path(ONNXQ_SOURCE_DIR) / "tests/data/fuzz_regressions/image"; }

fs::path SharedDir() {
  if (const char* e = std::getenv("ONNXQ_SHARED")) return e;
  return fs::path(ONNXQ_SOURCE_DIR) / ".." / "shared";
}

TEST(CalibJpegGuard, RefusesDhtOver256Codes) {
  const std::string b = ReadAll(RegressionDir() / "jpeg_dht_over_256_codes.jpg");
  ASSERT_FALSE(b.empty());
  Status s = CheckJpegSafeForStb(U8(b), b.size(), "x.jpg");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("x.jpg: malformed JPEG: Huffman table"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("more than the 256"), std::string::npos) << s.message();
}

TEST(CalibJpegGuard, RefusesUndefinedHuffmanTable) {
  const std::string b = ReadAll(RegressionDir() / "jpeg_huffman_decode_oob_read.jpg");
  ASSERT_FALSE(b.empty());
  Status s = CheckJpegSafeForStb(U8(b), b.size(), "y.jpg");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("y.jpg: malformed JPEG: scan"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("uses AC Huffman table 0 before any DHT defines it"), std::string::npos) << s.message();
}

TEST(CalibJpegGuard, ReadImageRefusesEveryJpegReproducer) {
  int seen = 0;
  for (const auto& e : fs::directory_iterator(RegressionDir())) {
    if (e.path().extension() != ".jpg") continue;
    ++seen;
    auto img = ReadImage(e.path().string());
    ASSERT_FALSE(img.ok()) << e.path();
    const std::string& m = img.status().message();
    EXPECT_NE(m.find(e.path().string()), std::string::npos) << m;
    // The FF-fill file fails the magic check, the others the marker walk.
    EXPECT_TRUE(m.find("malformed JPEG: ") != std::string::npos ||
                m.find("not a JPEG or PNG image") != std::string::npos) << m;
  }
  EXPECT_EQ(seen, 4);
  // The fill-before-SOI file still reaches the DHT bug in stb's walk: the guard alone catches it.
  const std::string b = ReadAll(RegressionDir() / "jpeg_dht_over_256_codes_ff_fill_before_soi.jpg");
  EXPECT_FALSE(CheckJpegSafeForStb(U8(b), b.size(), "z").ok());
}

TEST(CalibJpegGuard, RefusesOtherFormatsByMagic) {
  const std::string gif = std::string("GIF89a\x01\x00\x01\x00\x00\x00\x00", 13);
  const std::string bmp = std::string("BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00", 14);
  for (const auto& [name, bytes] : {std::pair{"a.gif", gif}, std::pair{"a.bmp", bmp}}) {
    Status s = CheckImageMagic(U8(bytes), bytes.size(), name);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(std::string(name) + ": not a JPEG or PNG image"), std::string::npos) << s.message();
    auto img = DecodeImage(bytes.data(), bytes.size(), name);
    ASSERT_FALSE(img.ok());
    EXPECT_NE(img.status().message().find("not a JPEG or PNG image"), std::string::npos);
  }
  const std::string png("\x89PNG\r\n\x1a\n", 8);
  EXPECT_TRUE(CheckImageMagic(U8(png), png.size(), "p").ok());
  EXPECT_FALSE(CheckImageMagic(U8(png), 7, "p").ok());  // truncated signature
  const std::string jpg("\xff\xd8\xff", 3);
  EXPECT_TRUE(CheckImageMagic(U8(jpg), 3, "j").ok());
  EXPECT_FALSE(CheckImageMagic(U8(jpg), 2, "j").ok());
}

TEST(CalibJpegGuard, AcceptsImageNetSample) {
  const fs::path dir = SharedDir() / "data" / "imagenet-sample";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "shared ImageNet sample not found at " << dir << " (set ONNXQ_SHARED)";
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const auto ext = e.path().extension().string();
    if (ext != ".jpg" && ext != ".JPEG" && ext != ".jpeg") continue;
    const std::string b = ReadAll(e.path());
    ++n;
    EXPECT_TRUE(CheckImageMagic(U8(b), b.size(), e.path().string()).ok()) << e.path();
    Status s = CheckJpegSafeForStb(U8(b), b.size(), e.path().string());
    EXPECT_TRUE(s.ok()) << s.message();
  }
  EXPECT_EQ(n, 500);
}

}  // namespace
}  // namespace onnxq::calib
