// Calibration and evaluation data: image folders (JPEG/PNG) with preprocessing, .npy files and
// folders, and an optional labels.tsv. A Dataset is an index of samples; samples are decoded one
// (or one batch) at a time, so memory does not grow with the size of the set. Every problem (an
// unreadable or corrupt image, NaN/Inf, a wrong shape or type, an empty set, a label naming a
// missing file) is an error that names the file; nothing is skipped silently.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {
class ThreadPool;
}

namespace onnxq::calib {

enum class ImageLayout { kNCHW, kNHWC };

// Image preprocessing, in this order (docs/calibration.md has the exact conventions):
//  1. decode to 8-bit RGB (grey is replicated, alpha dropped);
//  2. resize so that the shorter side is `resize_shorter` (0: no resize), the longer side
//     int(resize_shorter * long / short) (torchvision's rule), with PIL's antialiased bilinear
//     filter and 8-bit rounding between the horizontal and vertical passes, as torchvision does
//     on PIL images;
//  3. center crop to crop_height x crop_width (0: no crop), offsets round((size - crop) / 2)
//     rounded half to even (torchvision's CenterCrop); an image smaller than the crop is an error;
//  4. value = (pixel * scale - mean[c]) / std[c] in float32, channels in RGB order or BGR;
//  5. layout CHW (NCHW batches) or HWC (NHWC batches).
struct PreprocessOptions {
  int resize_shorter = 256;
  int crop_height = 224;
  int crop_width = 224;
  float scale = 1.0f / 255.0f;
  std::array<float, 3> mean{0.0f, 0.0f, 0.0f};
  std::array<float, 3> std{1.0f, 1.0f, 1.0f};
  bool bgr = false;
  ImageLayout layout = ImageLayout::kNCHW;

  Status Validate() const;
  std::string ToString() const;  // for reports: every field
};

// "imagenet-torch": resize 256, crop 224, /255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
// "imagenet-tf": resize 256, crop 224, x / 127.5 - 1 (the shared MobileNetV2's input).
StatusOr<PreprocessOptions> PreprocessPreset(const std::string& name);
std::vector<std::string> PreprocessPresetNames();

// 8-bit interleaved RGB image.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3
};
// Decompression-bomb limits, checked from the header before any pixel is decoded. The defaults
// are far beyond any calibration photo; raise them for unusual data (`--max-image-pixels`).
struct ImageLimits {
  int64_t max_pixels = int64_t{1} << 26;          // width x height of the file and of the resize
  int64_t max_file_bytes = int64_t{256} << 20;    // size of an image file
  Status Validate() const;
};
// Decodes JPEG or PNG (stb_image); errors name `name`.
StatusOr<Image> DecodeImage(const void* data, size_t size, const std::string& name,
                            const ImageLimits& limits = {});
StatusOr<Image> ReadImage(const std::string& path, const ImageLimits& limits = {});
// PIL-compatible bilinear resize of the region that ends up in the output window
// [x0, x0 + out_w) x [y0, y0 + out_h) of a full resize to full_w x full_h (so a resize followed by a
// center crop only computes the cropped pixels).
Image ResizeBilinear(const Image& in, int full_w, int full_h, int x0, int y0, int out_w, int out_h);
// Steps 2-5 on a decoded image: float32 [3, H, W] (NCHW) or [H, W, 3] (NHWC).
StatusOr<Tensor> PreprocessImage(const Image& img, const PreprocessOptions& options,
                                 const std::string& name, const ImageLimits& limits = {});
// ReadImage + PreprocessImage.
StatusOr<Tensor> LoadImage(const std::string& path, const PreprocessOptions& options,
                           const ImageLimits& limits = {});

// labels.tsv: one sample per line, tab-separated "file<TAB>class_index[<TAB>anything...]"; blank
// lines and lines starting with '#' (the header) are ignored.
struct LabelEntry {
  std::string file;
  int64_t label = 0;
  int line = 0;
};
StatusOr<std::vector<LabelEntry>> ReadLabels(const std::string& path);

struct DatasetOptions {
  PreprocessOptions preprocess;  // for images
  // labels.tsv to use; empty: <folder>/labels.tsv if it exists. When labels are used, they define
  // the samples and their order; otherwise the folder's files in sorted order.
  std::string labels;
  // Window of the sample list: entries [skip, skip + count) (count < 0: all the rest). For
  // `--calib-count 100` use count = 100; for the evaluation split use skip = 100.
  int64_t skip = 0;
  int64_t count = -1;
  // For .npy data: the expected per-sample shape (without the batch dim; empty: taken from the
  // first sample, all others must match) and element type (float32 by default). A per-sample file
  // may also carry a leading batch dim of 1.
  std::vector<int64_t> sample_shape;
  DataType dtype = DataType::kFloat;
  TensorLimits limits;
  ImageLimits image_limits;
};

class Dataset {
 public:
  enum class Kind { kImages, kNpyFiles, kNpyStack };

  // `path`: a folder of images (.jpg/.jpeg/.png, any case), a folder of .npy files (one sample
  // each), a single .npy file whose first dim indexes samples, or a single image. Other files in a
  // folder (labels.tsv, README, ...) are ignored; a folder with both images and .npy files is an
  // error. The listing and labels are checked here; pixels are decoded in Load.
  static StatusOr<std::unique_ptr<Dataset>> Open(const std::string& path, const DatasetOptions& options);

  Kind kind() const { return kind_; }
  int64_t size() const { return static_cast<int64_t>(files_.size()); }
  // File of sample i (for a stacked .npy: the file, with "[i]" appended).
  std::string source(int64_t i) const;
  bool has_labels() const { return !labels_.empty(); }
  int64_t label(int64_t i) const { return labels_.at(static_cast<size_t>(i)); }
  // Per-sample dims (without batch) when known up front: fixed-size image crops, or .npy data.
  // Empty for images without a crop (sizes vary per image).
  const std::vector<int64_t>& sample_dims() const { return sample_dims_; }

  // Sample i without the batch dim. Thread-safe.
  StatusOr<Tensor> Load(int64_t i) const;
  // Samples [begin, begin + n) stacked on a new leading dim, decoded in parallel on `pool`
  // (optional). All samples must share dims.
  StatusOr<Tensor> LoadBatch(int64_t begin, int64_t n, ThreadPool* pool = nullptr) const;

 private:
  Dataset() = default;
  Status CheckSample(const Tensor& t, int64_t i) const;

  Kind kind_ = Kind::kImages;
  DatasetOptions options_;
  std::vector<std::string> files_;  // full paths (kNpyStack: the same file repeated)
  std::vector<int64_t> labels_;     // empty, or one per sample
  std::vector<int64_t> sample_dims_;
  Tensor stack_;  // kNpyStack: the whole array (the file is the set; see docs)
};

// Streams a dataset in batches: Next() yields the following batch (the last may be smaller) until
// it returns an empty optional. Only one batch is alive at a time.
class BatchReader {
 public:
  BatchReader(const Dataset& dataset, int64_t batch_size, ThreadPool* pool = nullptr)
      : dataset_(dataset), batch_size_(batch_size < 1 ? 1 : batch_size), pool_(pool) {}
  StatusOr<std::optional<Tensor>> Next();
  int64_t position() const { return next_; }  // index of the first sample of the next batch

 private:
  const Dataset& dataset_;
  int64_t batch_size_;
  ThreadPool* pool_;
  int64_t next_ = 0;
};

}  // namespace onnxq::calib
