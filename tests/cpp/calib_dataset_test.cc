#include "onnxq/calib/dataset.h"

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "onnxq/base/npy.h"
#include "onnxq/base/thread_pool.h"
#include "test_temp_dir.h"

namespace onnxq::calib {
namespace {

using ::onnxq::test_util::TempDir;

Image Pattern(int w, int h, int seed) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        img.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>((x * 7 + y * 13 + c * 50 + seed) % 256);
  return img;
}

void WritePng(const std::string& path, const Image& img) {
  ASSERT_NE(stbi_write_png(path.c_str(), img.width, img.height, 3, img.rgb.data(), img.width * 3), 0);
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(CalibPreprocess, Presets) {
  auto t = PreprocessPreset("imagenet-torch");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->resize_shorter, 256);
  EXPECT_EQ(t->crop_height, 224);
  EXPECT_FLOAT_EQ(t->mean[1], 0.456f);
  EXPECT_FLOAT_EQ(t->std[2], 0.225f);
  auto f = PreprocessPreset("imagenet-tf");
  ASSERT_TRUE(f.ok());
  EXPECT_FLOAT_EQ(f->scale, 1.0f / 127.5f);
  EXPECT_FLOAT_EQ(f->mean[0], 1.0f);
  auto bad = PreprocessPreset("imagenet");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("imagenet-tf"), std::string::npos);
  PreprocessOptions o;
  o.std = {1, 0, 1};
  EXPECT_FALSE(o.Validate().ok());
  o = PreprocessOptions{};
  o.crop_width = 0;
  EXPECT_FALSE(o.Validate().ok());
}

TEST(CalibPreprocess, ResizeHandComputed) {
  // 2x1 -> 1x1: Pillow's bilinear averages both pixels with weights 1/2 each, rounding half up
  // in fixed point: (10 + 21) / 2 = 15.5 -> 16.
  Image img;
  img.width = 2;
  img.height = 1;
  img.rgb = {10, 0, 255, 21, 1, 255};
  Image out = ResizeBilinear(img, 1, 1, 0, 0, 1, 1);
  EXPECT_EQ(out.rgb, (std::vector<uint8_t>{16, 1, 255}));
  // Identity size is the identity.
  Image p = Pattern(9, 5, 3);
  EXPECT_EQ(ResizeBilinear(p, 9, 5, 0, 0, 9, 5).rgb, p.rgb);
  // Upscaling a constant image stays constant.
  Image c = Pattern(1, 1, 0);
  Image up = ResizeBilinear(c, 7, 3, 0, 0, 7, 3);
  for (size_t i = 0; i < up.rgb.size(); ++i) EXPECT_EQ(up.rgb[i], c.rgb[i % 3]);
  // A window equals the same region of the full resize.
  Image big = Pattern(37, 23, 1);
  Image full = ResizeBilinear(big, 30, 19, 0, 0, 30, 19);
  Image win = ResizeBilinear(big, 30, 19, 4, 3, 20, 12);
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 20; ++x)
      for (int k = 0; k < 3; ++k)
        ASSERT_EQ(win.rgb[(y * 20 + x) * 3 + k], full.rgb[((y + 3) * 30 + x + 4) * 3 + k]);
}

TEST(CalibPreprocess, CropNormalizeLayout) {
  Image img = Pattern(10, 7, 0);
  PreprocessOptions o;
  o.resize_shorter = 0;
  o.crop_height = 4;  // (7 - 4) / 2 = 1.5 -> 2 (half to even)
  o.crop_width = 5;   // (10 - 5) / 2 = 2.5 -> 2
  o.scale = 0.5f;
  o.mean = {1, 2, 3};
  o.std = {2, 4, 8};
  auto t = PreprocessImage(img, o, "img");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->dims(), (std::vector<int64_t>{3, 4, 5}));
  const float* v = t->data<float>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x) {
        float px = img.rgb[((y + 2) * 10 + x + 2) * 3 + c];
        ASSERT_EQ(v[(c * 4 + y) * 5 + x], (px * 0.5f - o.mean[c]) / o.std[c]);
      }
  o.layout = ImageLayout::kNHWC;
  o.bgr = true;
  auto n = PreprocessImage(img, o, "img");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->dims(), (std::vector<int64_t>{4, 5, 3}));
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(n->data<float>()[(y * 5 + x) * 3 + c], v[((2 - c) * 4 + y) * 5 + x]);
  o.crop_height = 8;
  auto small = PreprocessImage(img, o, "tiny.png");
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("tiny.png"), std::string::npos);
}

TEST(CalibLabels, ParseAndErrors) {
  TempDir d;
  WriteText(d / "l.tsv", "# file\tclass\n\na.png\t3\tcat\tx\r\nb.png\t0\n");
  auto l = ReadLabels(d / "l.tsv");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_EQ(l->size(), 2u);
  EXPECT_EQ((*l)[0].file, "a.png");
  EXPECT_EQ((*l)[0].label, 3);
  EXPECT_EQ((*l)[1].line, 4);
  WriteText(d / "bad.tsv", "a.png\t1\nb.png\tx\n");
  auto b = ReadLabels(d / "bad.tsv");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("bad.tsv:2"), std::string::npos);
  WriteText(d / "dup.tsv", "a.png\t1\na.png\t2\n");
  EXPECT_FALSE(ReadLabels(d / "dup.tsv").ok());
  WriteText(d / "empty.tsv", "# nothing\n");
  EXPECT_FALSE(ReadLabels(d / "empty.tsv").ok());
}

TEST(CalibDataset, ImageFolderOrderWindowsBatches) {
  TempDir d;
  for (int i = 0; i < 5; ++i) WritePng(d / ("img" + std::to_string(4 - i) + ".png"), Pattern(40 + i, 30, i));
  WriteText(d / "notes.txt", "not an image");
  DatasetOptions o;
  o.preprocess.resize_shorter = 32;
  o.preprocess.crop_height = o.preprocess.crop_width = 24;
  auto ds = Dataset::Open(d.str(), o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ((*ds)->size(), 5);
  EXPECT_EQ((*ds)->source(0), d / "img0.png");
  EXPECT_FALSE((*ds)->has_labels());
  EXPECT_EQ((*ds)->sample_dims(), (std::vector<int64_t>{3, 24, 24}));
  ThreadPool pool(2);
  auto batch = (*ds)->LoadBatch(0, 5, &pool);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->dims(), (std::vector<int64_t>{5, 3, 24, 24}));
  for (int i = 0; i < 5; ++i) {
    auto one = (*ds)->Load(i);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ(std::memcmp(batch->data<float>() + i * one->numel(), one->data<float>(), one->nbytes()), 0);
  }
  BatchReader reader(**ds, 2, &pool);
  std::vector<int64_t> sizes;
  while (true) {
    auto next = reader.Next();
    ASSERT_TRUE(next.ok());
    if (!next->has_value()) break;
    sizes.push_back((**next).dims()[0]);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{2, 2, 1}));

  // labels.tsv defines the samples and their order; skip/count select a window.
  WriteText(d / "labels.tsv", "# file\tclass\nimg3.png\t7\nimg1.png\t5\nimg4.png\t2\n");
  o.skip = 1;
  o.count = 2;
  auto lab = Dataset::Open(d.str(), o);
  ASSERT_TRUE(lab.ok()) << lab.status().ToString();
  ASSERT_EQ((*lab)->size(), 2);
  EXPECT_EQ((*lab)->source(0), d / "img1.png");
  EXPECT_EQ((*lab)->label(0), 5);
  EXPECT_EQ((*lab)->label(1), 2);
  o.count = 3;
  auto too_many = Dataset::Open(d.str(), o);
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("only 3"), std::string::npos);
  o.skip = 3;
  o.count = -1;
  EXPECT_FALSE(Dataset::Open(d.str(), o).ok());
}

TEST(CalibDataset, BadDataIsAnErrorNamingTheFile) {
  TempDir d;
  DatasetOptions o;
  auto empty = Dataset::Open(d.str(), o);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no .jpg"), std::string::npos);
  EXPECT_EQ(Dataset::Open(d / "missing", o).status().code(), StatusCode::kNotFound);

  WritePng(d / "a.png", Pattern(300, 300, 0));
  WriteText(d / "b.jpg", "\xff\xd8\xff garbage");
  auto ds = Dataset::Open(d.str(), o);
  ASSERT_TRUE(ds.ok());
  EXPECT_TRUE((*ds)->Load(0).ok());
  auto bad = (*ds)->Load(1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("b.jpg"), std::string::npos);
  auto batch = (*ds)->LoadBatch(0, 2);
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("b.jpg"), std::string::npos);

  WriteText(d / "labels.tsv", "a.png\t1\nghost.png\t2\n");
  auto ghost = Dataset::Open(d.str(), o);
  ASSERT_FALSE(ghost.ok());
  EXPECT_NE(ghost.status().message().find("labels.tsv:2"), std::string::npos);
  EXPECT_NE(ghost.status().message().find("ghost.png"), std::string::npos);
  WriteText(d / "labels.tsv", "/etc/passwd\t1\n");
  EXPECT_FALSE(Dataset::Open(d.str(), o).ok());

  TempDir n;
  auto nan = Tensor::Float({2}, std::vector<float>{1.0f, NAN});
  ASSERT_TRUE(WriteNpy(n / "x.npy", nan).ok());
  DatasetOptions no;
  no.sample_shape = {2};
  auto nd = Dataset::Open(n.str(), no);
  ASSERT_TRUE(nd.ok());
  auto l = (*nd)->Load(0);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("x.npy"), std::string::npos);
  EXPECT_NE(l.status().message().find("non-finite"), std::string::npos);
  no.sample_shape = {3};
  auto wrong = Dataset::Open(n.str(), no);
  ASSERT_TRUE(wrong.ok());
  auto w = (*wrong)->Load(0);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("shape"), std::string::npos);
  auto i64 = Tensor::Int64({2}, std::vector<int64_t>{1, 2});
  ASSERT_TRUE(WriteNpy(n / "stack.npy", i64).ok());
  auto st = Dataset::Open(n / "stack.npy", DatasetOptions{});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("int64"), std::string::npos);
}

}  // namespace
}  // namespace onnxq::calib

namespace onnxq::calib {
namespace {

// Regression (docs/fuzzing.md): the long side of a resize was cast to int before its range check,
// so a 1 x 131072 image resized to a shorter side of 16384 overflowed int.
TEST(CalibPreprocess, ExtremeAspectRatioResizeIsRefusedNotOverflowed) {
  Image img;
  img.width = 1;
  img.height = 131072;
  img.rgb.assign(size_t{131072} * 3, 128);
  PreprocessOptions o;
  o.resize_shorter = 16384;
  o.crop_height = 0;
  o.crop_width = 0;
  auto t = PreprocessImage(img, o, "tall.png");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(t.status().message().find("tall.png: resizing 1x131072"), std::string::npos)
      << t.status().message();
}

}  // namespace
}  // namespace onnxq::calib
