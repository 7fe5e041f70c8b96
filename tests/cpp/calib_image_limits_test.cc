// The image decoder's decompression-bomb limits (ImageLimits) are configurable and enforced from
// the header, before pixels are decoded, for the decoder, the file reader, the resize and datasets.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "onnxq/calib/dataset.h"
#include "test_temp_dir.h"

namespace onnxq::calib {
namespace {

namespace fs = std::filesystem;

std::string PngBytes(int w, int h) {
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 31 % 251);
  std::string out;
  auto append = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  EXPECT_NE(stbi_write_png_to_func(append, &out, w, h, 3, rgb.data(), w * 3), 0);
  return out;
}

bool Mentions(const Status& s, const std::string& what) {
  return s.message().find(what) != std::string::npos;
}

TEST(CalibImageLimits, DecoderRefusesImagesOverThePixelLimitAndNamesIt) {
  const std::string png = PngBytes(40, 30);  // 1200 pixels
  ImageLimits limits;
  limits.max_pixels = 1199;
  auto refused = DecodeImage(png.data(), png.size(), "big.png", limits);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Mentions(refused.status(), "big.png")) << refused.status().message();
  EXPECT_TRUE(Mentions(refused.status(), "40x30")) << refused.status().message();
  EXPECT_TRUE(Mentions(refused.status(), "1199")) << refused.status().message();

  limits.max_pixels = 1200;  // exactly at the limit is allowed
  auto ok = DecodeImage(png.data(), png.size(), "big.png", limits);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->width, 40);
  EXPECT_EQ(ok->height, 30);
  // The default (64 Mpixel) accepts it too.
  EXPECT_TRUE(DecodeImage(png.data(), png.size(), "big.png").ok());
}

TEST(CalibImageLimits, InvalidLimitsAreRefused) {
  const std::string png = PngBytes(4, 4);
  ImageLimits limits;
  limits.max_pixels = 0;
  auto r = DecodeImage(png.data(), png.size(), "x.png", limits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  limits = {};
  limits.max_file_bytes = -1;
  EXPECT_FALSE(limits.Validate().ok());
}

using ::onnxq::test_util::TempDir;

TEST(CalibImageLimits, FileSizeLimitAppliesBeforeReading) {
  TempDir d;
  const std::string png = PngBytes(40, 30);
  std::ofstream(d / "a.png", std::ios::binary) << png;
  ImageLimits limits;
  limits.max_file_bytes = static_cast<int64_t>(png.size()) - 1;
  auto r = ReadImage(d / "a.png", limits);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r.status(), "a.png")) << r.status().message();
  limits.max_file_bytes = static_cast<int64_t>(png.size());
  EXPECT_TRUE(ReadImage(d / "a.png", limits).ok());
}

TEST(CalibImageLimits, ResizeTargetIsBoundedByThePixelLimit) {
  Image img;
  img.width = 40;
  img.height = 30;
  img.rgb.assign(40 * 30 * 3, 7);
  PreprocessOptions o;
  o.resize_shorter = 300;  // -> 400 x 300 = 120000 pixels
  o.crop_height = o.crop_width = 0;
  ImageLimits limits;
  limits.max_pixels = 119999;
  auto r = PreprocessImage(img, o, "small.png", limits);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Mentions(r.status(), "400x300")) << r.status().message();
  limits.max_pixels = 120000;
  auto ok = PreprocessImage(img, o, "small.png", limits);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->dims(), (std::vector<int64_t>{3, 300, 400}));
}

TEST(CalibImageLimits, DatasetPassesItsLimitToEveryImage) {
  TempDir d;
  std::ofstream(d / "a.png", std::ios::binary) << PngBytes(40, 30);
  DatasetOptions o;
  o.preprocess.resize_shorter = 0;
  o.preprocess.crop_height = o.preprocess.crop_width = 0;
  o.image_limits.max_pixels = 1000;
  auto ds = Dataset::Open(d.str(), o);
  ASSERT_TRUE(ds.ok()) << ds.status().message();
  auto s = (*ds)->Load(0);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Mentions(s.status(), "a.png")) << s.status().message();
  EXPECT_TRUE(Mentions(s.status(), "1000")) << s.status().message();

  o.image_limits = {};
  auto ds2 = Dataset::Open(d.str(), o);
  ASSERT_TRUE(ds2.ok());
  auto s2 = (*ds2)->Load(0);
  ASSERT_TRUE(s2.ok()) << s2.status().message();
  EXPECT_EQ(s2->dims(), (std::vector<int64_t>{3, 30, 40}));

  o.image_limits.max_pixels = -5;
  EXPECT_FALSE(Dataset::Open(d.str(), o).ok());
}

}  // namespace
}  // namespace onnxq::calib
