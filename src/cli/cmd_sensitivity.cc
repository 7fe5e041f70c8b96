// `onnxq sensitivity MODEL --calib DIR ...` (--calib NAME=PATH once per input of a model with
// several): per-layer damage of weight quantization at each candidate bit width (what the
// mixed-precision allocator of `onnxq quantize --weight-bits-avg` minimises), as a table or JSON.
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/file.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::cli {


namespace {

int RunSensitivity(const std::vector<std::string>& args) {
  ArgParser p("sensitivity",
              "Per-layer sensitivity to weight bit width: for every quantizable layer and candidate bit\n"
              "width, the damage to the model's output (mean KL of the softmax against float, or relative\n"
              "MSE) with only that layer's weights quantized, on the last --samples of the first\n"
              "--samples (+ --rounding-samples with adaround/gptq) images of the calibration data.");
  p.Positional("MODEL", "the float .onnx model");
  p.Option("calib", 0, "PATH", "calibration data: image folder (labels.tsv order if present), .npy folder "
                               "or stacked .npy; a model with several inputs takes NAME=PATH once per input")
      .Repeated()
      .Required();
  p.Option("labels", 0, "TSV", "labels.tsv defining the sample order (default: PATH/labels.tsv)");
  AddDataOptions(p);
  AddModelLimitOptions(p);
  p.Option("samples", 0, "N", "calibration samples the damage is measured on", ArgKind::kInt).Default("64");
  p.Option("bits", 0, "LIST", "candidate weight bit widths").Default("2,3,4,5,6,7,8");
  p.Option("metric", 0, "M", "kl | mse | auto (kl for [N, classes] outputs)").Default("auto")
      .Choices({"auto", "kl", "mse"});
  p.Option("weight-granularity", 0, "G", "per-channel|per-tensor").Default("per-channel")
      .Choices({"per-channel", "per-tensor"});
  p.Option("weight-scale", 0, "M", "weight scales: minmax or mse").Default("minmax").Choices({"minmax", "mse"});
  p.Option("rounding", 0, "M", "weight rounding the damage is measured with: nearest, adaround or gptq "
                               "(on float-input Gram matrices)").Default("nearest")
      .Choices({"nearest", "adaround", "gptq"});
  p.Option("rounding-samples", 0, "N", "calibration samples for the rounding's Gram matrices (the first "
                                      "ones, before the --samples)", ArgKind::kInt).Default("36");
  p.Option("adaround-iters", 0, "N", "AdaRound: Adam steps per layer", ArgKind::kInt).Default("1000");
  p.Option("weight-grid", 0, "G", "sub-8-bit weight grid: auto (full; at 2 bits per channel [-2, 1] or its "
                                  "mirror [-1, 2]), full ([-8, 7] at 4 bits), oriented (per channel the full "
                                  "grid or its mirror at every width) or narrow ([-7, 7])")
      .Default("auto").Choices({"auto", "full", "oriented", "narrow"});
  p.Option("exclude", 0, "NAME|OP", "leave a node (by name) or an op type in float").Repeated();
  p.Flag("json", 0, "print JSON instead of a table");
  p.Option("output", 'o', "JSON", "also write the JSON here");
  p.Option("threads", 0, "N", "threads (default: all cores)", ArgKind::kInt).Default("0");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    quant::QuantizeConfig cfg;
    cfg.per_channel = a.Get("weight-granularity") == "per-channel";
    cfg.weight_scale = a.Get("weight-scale");
    cfg.rounding = a.Get("rounding");
    cfg.rounding_samples = a.GetInt("rounding-samples");
    cfg.adaround_iters = a.GetInt("adaround-iters");
    cfg.weight_grid = a.Get("weight-grid");
    cfg.exclude = a.GetAll("exclude");
    cfg.sensitivity_samples = a.GetInt("samples");
    cfg.sensitivity_metric = a.Get("metric");
    cfg.threads = static_cast<int>(a.GetInt("threads"));
    ONNXQ_ASSIGN_OR_RETURN(cfg.candidate_bits, ParseBitList(a.Get("bits")));
    ONNXQ_RETURN_IF_ERROR(cfg.Validate());
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ThreadPool pool(cfg.threads);
    calib::DatasetOptions dopt;
    ONNXQ_RETURN_IF_ERROR(DataOptionsFromArgs(a, &dopt));
    dopt.labels = a.Get("labels");
    // The rounding's Gram matrices use the first samples, the damage the last ones: keep them apart.
    dopt.count = cfg.sensitivity_samples + (cfg.rounding != "nearest" ? cfg.rounding_samples : 0);
    ONNXQ_ASSIGN_OR_RETURN(CalibrationData data, OpenCalibrationData(a, model, dopt, &pool));
    ONNXQ_ASSIGN_OR_RETURN(quant::SensitivityResult r, quant::Sensitivity(model, *data.source, cfg));
    const std::string json = r.ToJson();
    if (a.Has("output")) {
      Status s = AtomicWriteFile(a.Get("output"), json + "\n");
      if (!s.ok()) return s.Prepend("cannot write '" + a.Get("output") + "'");
    }
    if (a.GetFlag("json")) {
      std::printf("%s\n", json.c_str());
      return Status::Ok();
    }
    std::printf("%-36s %-6s %9s", "layer", "op", "params");
    for (const auto& [b, d] : r.layers.empty() ? std::vector<std::pair<int, double>>{} : r.layers[0].damage)
      std::printf(" %10s", (std::to_string(b) + " bits").c_str());
    std::printf("\n");
    for (const auto& l : r.layers) {
      std::printf("%-36s %-6s %9lld", l.node.c_str(), l.op.c_str(), static_cast<long long>(l.cost.params));
      for (const auto& [b, d] : l.damage) std::printf(" %10.3g", d);
      std::printf("\n");
    }
    std::printf("metric %s (rounding %s) on %lld samples, %.1f s\n", r.metric.c_str(), r.rounding.c_str(),
                static_cast<long long>(r.samples), r.seconds);
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(sensitivity, "sensitivity",
                       "per-layer sensitivity to weight bit width (onnxq sensitivity --help)", RunSensitivity);

}  // namespace onnxq::cli
