// Image decoding (stb_image) and the torchvision-on-PIL preprocessing convention. The resize is a
// reimplementation of Pillow's ImagingResample for 8-bit images with the bilinear filter (a
// triangle filter widened by the downscale factor, i.e. antialiased, with 22-bit fixed-point
// coefficients and 8-bit rounding after the horizontal pass), so that it matches
// `PIL.Image.resize(size, Image.BILINEAR)` and thus torchvision's Resize on PIL images.
#include <stb/stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "onnxq/base/file.h"
#include "onnxq/calib/dataset.h"
#include "jpeg_guard.h"

namespace onnxq::calib {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;   // per output index: xmin, count
  std::vector<int32_t> k;    // out_size * ksize fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
Coeffs PrecomputeCoeffs(int in_size, int out_size) {
  Coeffs c;
  double scale = double(in_size) / out_size;
  double filterscale = std::max(scale, 1.0);
  double support = 1.0 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * static_cast<size_t>(out_size));
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::fabs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline uint8_t Clip8(int32_t v) {
  if (v >= (255 << kPrecisionBits)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// Python's round() (half to even) of a non-negative half-integer or integer.
int RoundHalfEven(double v) { return static_cast<int>(std::nearbyint(v)); }

}  // namespace

Status PreprocessOptions::Validate() const {
  if (resize_shorter < 0 || resize_shorter > 16384)
    return InvalidArgument("resize size ", resize_shorter, " is out of range (0..16384)");
  if (crop_height < 0 || crop_width < 0 || crop_height > 16384 || crop_width > 16384)
    return InvalidArgument("crop size ", crop_height, "x", crop_width, " is out of range");
  if ((crop_height == 0) != (crop_width == 0))
    return InvalidArgument("crop needs both a height and a width (or neither)");
  if (!std::isfinite(scale) || scale == 0) return InvalidArgument("preprocessing scale must be finite and non-zero");
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(mean[c])) return InvalidArgument("preprocessing mean must be finite");
    if (!std::isfinite(std[c]) || std[c] == 0) return InvalidArgument("preprocessing std must be finite and non-zero");
  }
  return Status::Ok();
}

std::string PreprocessOptions::ToString() const {
  std::ostringstream os;
  os.precision(9);
  os << "resize_shorter=" << resize_shorter << " crop=" << crop_height << "x" << crop_width
     << " scale=" << scale << " mean=(" << mean[0] << "," << mean[1] << "," << mean[2] << ") std=("
     << std[0] << "," << std[1] << "," << std[2] << ") channels=" << (bgr ? "BGR" : "RGB")
     << " layout=" << (layout == ImageLayout::kNCHW ? "NCHW" : "NHWC");
  return os.str();
}

std::vector<std::string> PreprocessPresetNames() { return {"imagenet-torch", "imagenet-tf"}; }

StatusOr<PreprocessOptions> PreprocessPreset(const std::string& name) {
  PreprocessOptions o;
  if (name == "imagenet-torch") {
    o.scale = 1.0f / 255.0f;
    o.mean = {0.485f, 0.456f, 0.406f};
    o.std = {0.229f, 0.224f, 0.225f};
    return o;
  }
  if (name == "imagenet-tf") {
    o.scale = 1.0f / 127.5f;
    o.mean = {1.0f, 1.0f, 1.0f};
    o.std = {1.0f, 1.0f, 1.0f};
    return o;
  }
  return InvalidArgument("unknown preprocessing preset '", name, "' (known: imagenet-torch, imagenet-tf)");
}

Status ImageLimits::Validate() const {
  if (max_pixels < 1) return InvalidArgument("the image pixel limit must be positive, got ", max_pixels);
  if (max_file_bytes < 1) return InvalidArgument("the image file size limit must be positive, got ", max_file_bytes);
  return Status::Ok();
}

StatusOr<Image> DecodeImage(const void* data, size_t size, const std::string& name,
                            const ImageLimits& limits) {
  ONNXQ_RETURN_IF_ERROR(limits.Validate());
  if (size > static_cast<size_t>(INT32_MAX)) return InvalidArgument(name, ": image file too large");
  const auto* p = static_cast<const stbi_uc*>(data);
  // stb_image 2.27 must only ever see JPEG/PNG, and no JPEG that reaches its known bugs.
  ONNXQ_RETURN_IF_ERROR(CheckImageMagic(p, size, name));
  ONNXQ_RETURN_IF_ERROR(CheckJpegSafeForStb(p, size, name));
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(p, static_cast<int>(size), &w, &h, &comp))
    return InvalidArgument(name, ": not a decodable JPEG or PNG image (", stbi_failure_reason(), ")");
  if (w <= 0 || h <= 0 || int64_t{w} * h > limits.max_pixels)
    return OutOfRange(name, ": image of ", w, "x", h, " pixels exceeds the limit of ", limits.max_pixels,
                      " pixels (raise it with --max-image-pixels)");
  stbi_uc* pixels = stbi_load_from_memory(p, static_cast<int>(size), &w, &h, &comp, 3);
  if (!pixels) return InvalidArgument(name, ": cannot decode image (", stbi_failure_reason(), ")");
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(pixels, pixels + static_cast<size_t>(w) * h * 3);
  stbi_image_free(pixels);
  return img;
}

StatusOr<Image> ReadImage(const std::string& path, const ImageLimits& limits) {
  ONNXQ_RETURN_IF_ERROR(limits.Validate());
  ONNXQ_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path, limits.max_file_bytes));
  return DecodeImage(bytes.data(), bytes.size(), path, limits);
}

namespace {

// One separable pass over an interleaved RGB image: output index o (in [o0, o0 + n) of the full
// output) along the axis given by `stride_axis`, computed from the input. `Horizontal` selects
// whether the pass runs along x (rows stay) or along y (columns stay).
Image HorizontalPass(const Image& in, const Coeffs& c, int x0, int out_w, int row_lo, int rows) {
  Image out;
  out.width = out_w;
  out.height = rows;
  out.rgb.resize(static_cast<size_t>(rows) * out_w * 3);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = in.rgb.data() + static_cast<size_t>(y + row_lo) * in.width * 3;
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(y) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      int X = xx + x0;
      int xmin = c.bounds[2 * X], n = c.bounds[2 * X + 1];
      const int32_t* k = c.k.data() + static_cast<size_t>(X) * c.ksize;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      const uint8_t* px = src + static_cast<size_t>(xmin) * 3;
      for (int x = 0; x < n; ++x) {
        s0 += px[3 * x] * k[x];
        s1 += px[3 * x + 1] * k[x];
        s2 += px[3 * x + 2] * k[x];
      }
      dst[3 * xx] = Clip8(s0);
      dst[3 * xx + 1] = Clip8(s1);
      dst[3 * xx + 2] = Clip8(s2);
    }
  }
  return out;
}

// Vertical pass: output rows [y0, y0 + out_h) of the full output from input rows that start at
// `row_lo` in `in` (which holds only the rows the pass needs), columns [col_lo, col_lo + cols).
Image VerticalPass(const Image& in, const Coeffs& c, int y0, int out_h, int row_lo, int col_lo, int cols) {
  Image out;
  out.width = cols;
  out.height = out_h;
  out.rgb.resize(static_cast<size_t>(cols) * out_h * 3);
  std::vector<int32_t> acc(static_cast<size_t>(cols) * 3);
  for (int yy = 0; yy < out_h; ++yy) {
    int Y = yy + y0;
    int ymin = c.bounds[2 * Y] - row_lo, n = c.bounds[2 * Y + 1];
    const int32_t* k = c.k.data() + static_cast<size_t>(Y) * c.ksize;
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const uint8_t* row = in.rgb.data() + (static_cast<size_t>(ymin + y) * in.width + col_lo) * 3;
      const int32_t ky = k[y];
      for (int i = 0; i < cols * 3; ++i) acc[i] += row[i] * ky;
    }
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(yy) * cols * 3;
    for (int i = 0; i < cols * 3; ++i) dst[i] = Clip8(acc[i]);
  }
  return out;
}

// Input index range [lo, hi) that outputs [o0, o0 + n) read.
void NeededRange(const Coeffs& c, int o0, int n, int limit, int* lo, int* hi) {
  *lo = limit;
  *hi = 0;
  for (int o = o0; o < o0 + n; ++o) {
    *lo = std::min(*lo, c.bounds[2 * o]);
    *hi = std::max(*hi, c.bounds[2 * o] + c.bounds[2 * o + 1]);
  }
  if (*hi < *lo) *hi = *lo;
}

}  // namespace

Image ResizeBilinear(const Image& in, int full_w, int full_h, int x0, int y0, int out_w, int out_h) {
  Coeffs ch = PrecomputeCoeffs(in.width, full_w);
  Coeffs cv = PrecomputeCoeffs(in.height, full_h);
  // Pillow (13) runs the vertical pass first when the width grows and the height shrinks, and
  // the horizontal pass first otherwise; the 8-bit rounding between passes makes the order
  // visible, so follow it.
  bool vertical_first = full_w > in.width && full_h < in.height;
  if (!vertical_first) {
    int row_lo, row_hi;
    NeededRange(cv, y0, out_h, in.height, &row_lo, &row_hi);
    Image tmp = HorizontalPass(in, ch, x0, out_w, row_lo, row_hi - row_lo);
    return VerticalPass(tmp, cv, y0, out_h, row_lo, 0, out_w);
  }
  int col_lo, col_hi;
  NeededRange(ch, x0, out_w, in.width, &col_lo, &col_hi);
  Image tmp = VerticalPass(in, cv, y0, out_h, 0, col_lo, col_hi - col_lo);
  // tmp's column 0 is input column col_lo: shift the horizontal bounds accordingly.
  Coeffs shifted = ch;
  for (int o = 0; o < full_w; ++o) shifted.bounds[2 * o] -= col_lo;
  return HorizontalPass(tmp, shifted, x0, out_w, 0, out_h);
}

StatusOr<Tensor> PreprocessImage(const Image& img, const PreprocessOptions& o, const std::string& name,
                                 const ImageLimits& limits) {
  const int64_t max_pixels = limits.max_pixels;
  ONNXQ_RETURN_IF_ERROR(o.Validate());
  if (img.width <= 0 || img.height <= 0) return InvalidArgument(name, ": empty image");
  // torchvision Resize(int): shorter side -> size, longer side int(size * long / short).
  int rw = img.width, rh = img.height;
  if (o.resize_shorter > 0) {
    // The long side is computed in int64 and range-checked before it becomes an int (a 1x131072
    // image resized to 16384 would overflow int).
    int64_t rw64 = img.width, rh64 = img.height;
    if (img.width <= img.height) {
      rw64 = o.resize_shorter;
      rh64 = static_cast<int64_t>(double(int64_t{o.resize_shorter} * img.height) / img.width);
    } else {
      rh64 = o.resize_shorter;
      rw64 = static_cast<int64_t>(double(int64_t{o.resize_shorter} * img.width) / img.height);
    }
    if (rw64 < 1 || rh64 < 1 || rw64 > max_pixels || rh64 > max_pixels || rw64 * rh64 > max_pixels)
      return OutOfRange(name, ": resizing ", img.width, "x", img.height, " to ", rw64, "x", rh64,
                        " is out of range");
    rw = static_cast<int>(rw64);
    rh = static_cast<int>(rh64);
  }
  int cw = rw, chh = rh, x0 = 0, y0 = 0;
  if (o.crop_height > 0) {
    if (o.crop_height > rh || o.crop_width > rw)
      return InvalidArgument(name, ": image of ", rw, "x", rh, " (after resize) is smaller than the ",
                             o.crop_width, "x", o.crop_height, " crop");
    cw = o.crop_width;
    chh = o.crop_height;
    y0 = RoundHalfEven((rh - chh) / 2.0);
    x0 = RoundHalfEven((rw - cw) / 2.0);
  }
  Image cropped;
  const Image* src = &img;
  if (rw != img.width || rh != img.height || cw != img.width || chh != img.height) {
    if (rw == img.width && rh == img.height) {
      // Crop only: copy rows.
      cropped.width = cw;
      cropped.height = chh;
      cropped.rgb.resize(static_cast<size_t>(cw) * chh * 3);
      for (int y = 0; y < chh; ++y)
        std::memcpy(cropped.rgb.data() + static_cast<size_t>(y) * cw * 3,
                    img.rgb.data() + (static_cast<size_t>(y + y0) * img.width + x0) * 3,
                    static_cast<size_t>(cw) * 3);
    } else {
      cropped = ResizeBilinear(img, rw, rh, x0, y0, cw, chh);
    }
    src = &cropped;
  }
  // Per-channel lookup table: float32((p * scale - mean) / std) for all 256 pixel values.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v)
      lut[c][v] = (static_cast<float>(v) * o.scale - o.mean[c]) / o.std[c];
  std::vector<int64_t> dims = o.layout == ImageLayout::kNCHW
                                  ? std::vector<int64_t>{3, chh, cw}
                                  : std::vector<int64_t>{chh, cw, 3};
  ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DataType::kFloat, dims));
  float* out = t.mutable_data<float>();
  const uint8_t* px = src->rgb.data();
  const size_t plane = static_cast<size_t>(chh) * cw;
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      int sc = o.bgr ? 2 - c : c;  // output channel c takes source channel sc
      float v = lut[sc][px[3 * i + sc]];
      if (o.layout == ImageLayout::kNCHW)
        out[c * plane + i] = v;
      else
        out[3 * i + c] = v;
    }
  }
  return t;
}

StatusOr<Tensor> LoadImage(const std::string& path, const PreprocessOptions& options,
                           const ImageLimits& limits) {
  ONNXQ_ASSIGN_OR_RETURN(Image img, ReadImage(path, limits));
  return PreprocessImage(img, options, path, limits);
}

}  // namespace onnxq::calib
