// `onnxq quantize MODEL -o OUT --calib PATH ...`: post-training static quantization to a QDQ model.
// Also defines the data/preprocessing options shared with `onnxq eval` and `onnxq calibrate`.
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/command.h"
#include "onnxq/base/file.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::cli {

// ---- shared by cmd_quantize.cc, cmd_eval.cc and cmd_calibrate.cc
void AddPreprocessOptions(ArgParser& p) {
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
}

static StatusOr<std::array<float, 3>> Triple(const std::string& s, const std::string& what) {
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

namespace {

int RunQuantize(const std::vector<std::string>& args) {
  ArgParser p("quantize",
              "Post-training static quantization: calibrate activation ranges on sample data and write\n"
              "a QDQ ONNX model (int8 weights, int32 biases, uint8 activations) that ONNX Runtime\n"
              "fuses into its integer kernels. The defaults are the best setting.");
  p.Positional("MODEL", "the float .onnx model");
  p.Option("output", 'o', "OUT", "the quantized .onnx file").Required();
  p.Option("calib", 0, "PATH", "calibration data: image folder (labels.tsv order if present), "
                               ".npy folder or stacked .npy");
  p.Option("calib-count", 0, "N", "use the first N samples (labels.tsv order, else sorted names)",
           ArgKind::kInt);
  p.Option("labels", 0, "TSV", "labels.tsv defining the sample order (default: PATH/labels.tsv)");
  AddPreprocessOptions(p);
  p.Option("calibrator", 0, "METHOD", "activation range: minmax|percentile|mse|kl|auto").Default("auto");
  p.Option("percentile", 0, "P", "percentile for --calibrator percentile", ArgKind::kDouble).Default("99.999");
  p.Option("weight-granularity", 0, "G", "per-channel|per-tensor").Default("per-channel")
      .Choices({"per-channel", "per-tensor"});
  p.Option("weight-scale", 0, "M", "weight scales: minmax (max-abs) or mse").Default("minmax")
      .Choices({"minmax", "mse"});
  p.Option("weight-bits", 0, "B", "weight bits (2..8; stored in int8)", ArgKind::kInt).Default("8");
  p.Option("act-bits", 0, "B", "activation bits (the QDQ export writes 8; 2..7 are simulation-only "
                               "through the library API)", ArgKind::kInt).Default("8");
  p.Option("exclude", 0, "NAME|OP", "leave a node (by name) or every node of an op type in float")
      .Repeated();
  p.Option("cle", 0, "auto|on|off", "cross-layer equalization (auto: on for per-tensor weights)")
      .Default("auto");
  p.Option("bias-correction", 0, "auto|on|off", "empirical bias correction (auto: on for per-tensor or sub-8-bit weights)")
      .Default("auto");
  p.Option("stats", 0, "FILE", "use observer statistics from `onnxq calibrate` instead of calibrating");
  p.Option("report", 0, "JSON", "write the quantization report here");
  p.Option("threads", 0, "N", "threads (default: all cores)", ArgKind::kInt).Default("0");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    quant::QuantizeConfig cfg;
    cfg.calibrator = a.Get("calibrator");
    cfg.percentile = a.GetDouble("percentile");
    cfg.per_channel = a.Get("weight-granularity") == "per-channel";
    cfg.weight_scale = a.Get("weight-scale");
    cfg.weight_bits = static_cast<int>(a.GetInt("weight-bits"));
    cfg.act_bits = static_cast<int>(a.GetInt("act-bits"));
    cfg.exclude = a.GetAll("exclude");
    ONNXQ_ASSIGN_OR_RETURN(cfg.cle, quant::ParseToggle(a.Get("cle"), "--cle"));
    ONNXQ_ASSIGN_OR_RETURN(cfg.bias_correction, quant::ParseToggle(a.Get("bias-correction"), "--bias-correction"));
    cfg.threads = static_cast<int>(a.GetInt("threads"));
    cfg.stats_path = a.Get("stats");
    cfg.progress = TerminalProgress();
    if (cfg.act_bits != 8) return InvalidArgument("--act-bits: the QDQ export writes 8-bit activations");
    ONNXQ_RETURN_IF_ERROR(cfg.Validate());
    if (!a.Has("calib") && !a.Has("stats")) return InvalidArgument("--calib PATH (or --stats FILE) is required");
    if (!a.Has("calib") && cfg.bias_correction == quant::Toggle::kOn)
      return InvalidArgument("--bias-correction on needs --calib data");
    if (!a.Has("calib")) cfg.bias_correction = quant::Toggle::kOff;

    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModel(a.Arg("MODEL")));
    ThreadPool pool(cfg.threads);
    std::unique_ptr<calib::Dataset> data;
    std::unique_ptr<quant::CalibrationSource> source;
    if (a.Has("calib")) {
      calib::DatasetOptions dopt;
      ONNXQ_ASSIGN_OR_RETURN(dopt.preprocess, PreprocessFromArgs(a));
      dopt.labels = a.Get("labels");
      if (a.Has("calib-count")) dopt.count = a.GetInt("calib-count");
      ONNXQ_ASSIGN_OR_RETURN(data, calib::Dataset::Open(a.Get("calib"), dopt));
      source = quant::DatasetSource(*data, &pool);
    } else {
      source = quant::TensorSource({});
    }
    ONNXQ_ASSIGN_OR_RETURN(quant::QuantizeResult r, quant::Quantize(model, *source, cfg, a.Arg("MODEL")));
    Status s = SaveModel(r.quantized, a.Get("output"));
    if (!s.ok()) return s.Prepend("cannot write '" + a.Get("output") + "'");
    if (a.Has("report")) {
      Status rs = AtomicWriteFile(a.Get("report"), r.report_json + "\n");
      if (!rs.ok()) return rs.Prepend("cannot write the report");
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(quantize, "quantize", "quantize a float model to a QDQ int8 model (onnxq quantize --help)",
                       RunQuantize);

}  // namespace onnxq::cli
