#include "cli/common_options.h"

#include <unistd.h>

#include <algorithm>
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

StatusOr<CalibrationData> OpenCalibrationData(const ArgParser& a, const Model& model,
                                              calib::DatasetOptions options, ThreadPool* pool,
                                              const std::string& option) {
  const std::string flag = "--" + option;
  std::vector<std::pair<std::string, DataType>> inputs;
  for (ValueId v : model.graph.RuntimeInputs()) {
    const Value& val = model.graph.value(v);
    inputs.emplace_back(val.name(), val.dtype == DataType::kUndefined ? DataType::kFloat : val.dtype);
  }
  std::string names;
  for (const auto& [n, t] : inputs) names += (names.empty() ? "'" : ", '") + n + "'";
  auto input_type = [&](const std::string& n) -> const DataType* {
    for (const auto& in : inputs)
      if (in.first == n) return &in.second;
    return nullptr;
  };
  // NAME=PATH only when NAME is an input of the model, so a path containing '=' still works.
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> plain;
  for (const std::string& v : a.GetAll(option)) {
    size_t eq = v.find('=');
    if (eq != std::string::npos && input_type(v.substr(0, eq)) != nullptr)
      named.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    else
      plain.push_back(v);
  }
  if (named.empty() && plain.empty()) return InvalidArgument(flag, " PATH is required");
  if (!named.empty() && !plain.empty())
    return InvalidArgument(flag, " '", plain.front(), "' names no input of the model (its inputs: ", names,
                           "): give ", flag, " NAME=PATH for each input");
  if (plain.size() > 1 || (!plain.empty() && inputs.size() > 1))
    return InvalidArgument("the model has ", inputs.size(), " input", inputs.size() == 1 ? "" : "s", " (", names,
                           "): give ", inputs.size() == 1 ? "one " + flag + " PATH" : flag + " NAME=PATH for each input");
  if (!plain.empty()) named.emplace_back(inputs.front().first, plain.front());
  for (const auto& [n, t] : inputs) {
    (void)t;
    if (std::none_of(named.begin(), named.end(), [&](const auto& e) { return e.first == n; }))
      return InvalidArgument("no ", flag, " data for the model input '", n, "': give ", flag, " ", n, "=PATH");
  }
  if (named.size() > 1 && !options.labels.empty())
    return InvalidArgument("--labels applies to a single ", flag, " folder; with one ", flag, " per input each "
                           "folder's own labels.tsv (if any) orders it");
  CalibrationData out;
  std::vector<std::pair<std::string, const calib::Dataset*>> sets;
  for (const auto& [name, path] : named) {
    calib::DatasetOptions o = options;
    o.dtype = *input_type(name);
    o.sample_shape = quant::InputSampleShape(model, name);
    auto d = calib::Dataset::Open(path, o);
    if (!d.ok()) {
      Status s = d.status();
      return named.size() > 1 ? s.Prepend(flag + " " + name) : s;
    }
    if ((*d)->kind() == calib::Dataset::Kind::kImages && o.dtype != DataType::kFloat)
      return InvalidArgument(flag, " ", name, "=", path, ": images give float32, but the input '", name,
                             "' is ", DataTypeName(o.dtype));
    sets.emplace_back(name, d->get());
    out.datasets.push_back(std::move(*d));
  }
  if (sets.size() == 1) {
    out.source = quant::DatasetSource(*out.datasets.front(), pool);
  } else {
    ONNXQ_ASSIGN_OR_RETURN(out.source, quant::DatasetMapSource(std::move(sets), pool));
  }
  return out;
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
