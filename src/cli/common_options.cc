#include "cli/common_options.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <sstream>
#include <string>

#include "onnxq/kernels/cpu.h"

namespace onnxq::cli {

void AddModelLimitOptions(ArgParser& p) {
  p.Option("max-tensor-elements", 0, "N", "refuse tensors with more elements", ArgKind::kInt)
      .Default(std::to_string(TensorLimits{}.max_elements));
  p.Option("max-model-bytes", 0, "BYTES", "refuse model files larger than this (e.g. 4G)",
           ArgKind::kBytes)
      .Default(std::to_string(ImportOptions{}.max_model_bytes));
}

StatusOr<ImportOptions> ImportOptionsFromArgs(const ArgParser& a) {
  ImportOptions in;
  in.tensor_limits.max_elements = a.GetInt("max-tensor-elements", in.tensor_limits.max_elements);
  in.max_model_bytes = a.GetInt("max-model-bytes", in.max_model_bytes);
  if (in.tensor_limits.max_elements < 1)
    return InvalidArgument("--max-tensor-elements must be positive, got ", in.tensor_limits.max_elements);
  if (in.max_model_bytes < 1)
    return InvalidArgument("--max-model-bytes must be positive, got ", in.max_model_bytes);
  return in;
}


void AddDataOptions(ArgParser& p) {
  std::string presets;
  for (const auto& n : calib::PreprocessPresetNames()) presets += (presets.empty() ? "" : ", ") + n;
  p.Option("preprocess", 0, "PRESET", "image preprocessing preset (" + presets +
                                          "); the flags below override its fields");
  p.Option("resize", 0, "N", "resize the shorter side to N pixels (0: no resize)", ArgKind::kInt);
  p.Option("crop", 0, "HxW", "center crop (e.g. 224 or 224x224; 0: none)");
  p.Option("scale", 0, "S", "pixel multiplier before mean/std (default 1/255)", ArgKind::kDouble);
  p.Option("mean", 0, "R,G,B", "per-channel mean subtracted after scaling");
  p.Option("std", 0, "R,G,B", "per-channel std dividing after the mean");
  p.Flag("bgr", 0, "channel order BGR instead of RGB");
  p.Option("layout", 0, "NCHW|NHWC", "tensor layout").Choices({"NCHW", "NHWC"});
  p.Option("max-image-pixels", 0, "N", "refuse images with more pixels (width x height), checked before decoding",
           ArgKind::kInt)
      .Default(std::to_string(calib::ImageLimits{}.max_pixels));
}

namespace {

StatusOr<std::array<float, 3>> Triple(const std::string& s, const std::string& what) {
  std::array<float, 3> out{};
  std::stringstream ss(s);
  std::string item;
  int k = 0;
  while (std::getline(ss, item, ',')) {
    if (k >= 3) return InvalidArgument(what, " wants three comma-separated numbers, got '", s, "'");
    ONNXQ_ASSIGN_OR_RETURN(double v, ParseDouble(item));
    out[static_cast<size_t>(k++)] = static_cast<float>(v);
  }
  if (k == 1) out[1] = out[2] = out[0];
  else if (k != 3) return InvalidArgument(what, " wants three comma-separated numbers, got '", s, "'");
  return out;
}

}  // namespace

StatusOr<calib::PreprocessOptions> PreprocessFromArgs(const ArgParser& a) {
  calib::PreprocessOptions o;
  if (a.Has("preprocess")) {
    ONNXQ_ASSIGN_OR_RETURN(o, calib::PreprocessPreset(a.Get("preprocess")));
  }
  if (a.Has("resize")) o.resize_shorter = static_cast<int>(a.GetInt("resize"));
  if (a.Has("crop")) {
    std::string c = a.Get("crop");
    size_t x = c.find('x');
    ONNXQ_ASSIGN_OR_RETURN(int64_t h, ParseInt(c.substr(0, x)));
    int64_t w = h;
    if (x != std::string::npos) {
      ONNXQ_ASSIGN_OR_RETURN(w, ParseInt(c.substr(x + 1)));
    }
    o.crop_height = static_cast<int>(h);
    o.crop_width = static_cast<int>(w);
  }
  if (a.Has("scale")) o.scale = static_cast<float>(a.GetDouble("scale"));
  if (a.Has("mean")) {
    ONNXQ_ASSIGN_OR_RETURN(o.mean, Triple(a.Get("mean"), "--mean"));
  }
  if (a.Has("std")) {
    ONNXQ_ASSIGN_OR_RETURN(o.std, Triple(a.Get("std"), "--std"));
  }
  if (a.GetFlag("bgr")) o.bgr = true;
  if (a.Has("layout")) o.layout = a.Get("layout") == "NHWC" ? calib::ImageLayout::kNHWC : calib::ImageLayout::kNCHW;
  ONNXQ_RETURN_IF_ERROR(o.Validate());
  return o;
}

// A one-line progress bar on stderr, only when stderr is a terminal.
std::function<bool(const std::string&, int64_t, int64_t)> TerminalProgress() {
  if (!isatty(fileno(stderr))) return nullptr;
  return [](const std::string& stage, int64_t done, int64_t total) {
    const int width = 30;
    int fill = total > 0 ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\r%-28s [%s%s] %lld/%lld", stage.c_str(), std::string(fill, '#').c_str(),
                 std::string(width - fill, ' ').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total));
    if (done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
    return true;
  };
}

Status DataOptionsFromArgs(const ArgParser& a, calib::DatasetOptions* options) {
  ONNXQ_ASSIGN_OR_RETURN(options->preprocess, PreprocessFromArgs(a));
  options->image_limits.max_pixels = a.GetInt("max-image-pixels", options->image_limits.max_pixels);
  if (options->image_limits.max_pixels < 1)
    return InvalidArgument("--max-image-pixels must be positive, got ", options->image_limits.max_pixels);
  return Status::Ok();
}

void AddSessionOptions(ArgParser& p) {
  p.Option("threads", 't', "N", "worker threads (0: all cores)", ArgKind::kInt).Default("0");
  p.Option("isa", 0, "ISA", "force the kernels' instruction set").Choices({"reference", "avx2", "avx512"});
  p.Flag("float-qdq", 0, "QDQ models: compute Q/DQ nodes in float (the fake-quant reference) "
                         "instead of lowering the quantized patterns to integer kernels");
}

StatusOr<SessionOptions> SessionOptionsFromArgs(const ArgParser& a) {
  SessionOptions opts;
  opts.num_threads = static_cast<int>(a.GetInt("threads", 0));
  opts.integer_qdq = !a.GetFlag("float-qdq");
  if (a.Has("isa")) {
    ONNXQ_ASSIGN_OR_RETURN(opts.isa, kernels::ParseIsa(a.Get("isa")));
  }
  return opts;
}

StatusOr<Model> LoadModelWithLimits(const ArgParser& a, const std::string& path) {
  ONNXQ_ASSIGN_OR_RETURN(ImportOptions options, ImportOptionsFromArgs(a));
  return LoadModel(path, options);
}

StatusOr<std::vector<int>> ParseBitList(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    ONNXQ_ASSIGN_OR_RETURN(int64_t b, ParseInt(item));
    if (b < 2 || b > 8) return InvalidArgument("bit widths must be in 2..8, got ", b);
    out.push_back(static_cast<int>(b));
  }
  if (out.empty()) return InvalidArgument("empty bit-width list");
  return out;
}

}  // namespace onnxq::cli
