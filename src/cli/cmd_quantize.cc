// `onnxq quantize MODEL -o OUT --calib PATH ...`: post-training static quantization to a QDQ model
// (or, with --mode dynamic, dynamic-range quantization without calibration data).
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/file.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_dynamic.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::cli {
namespace {

// --mode dynamic (include/onnxq/quant/quantize_dynamic.h): int8 weights, activations quantized at
// run time (DynamicQuantizeLinear + ConvInteger / MatMulInteger); no calibration data.
Status RunDynamic(const ArgParser& a) {
  for (const char* opt : {"calib", "calib-count", "labels", "stats", "calibrator", "percentile", "act-bits",
                          "cle", "bias-correction", "act-equalization", "rounding", "rounding-samples", "rounding-objective",
                          "adaround-iters", "weight-grid", "layer-bits",
                          "weight-bits-avg", "weight-memory", "bops", "candidate-bits", "sensitivity-samples"})
    if (a.Has(opt)) return InvalidArgument("--", opt, " applies to --mode static only");
  quant::DynamicQuantizeOptions o;
  o.per_channel = a.Get("weight-granularity") == "per-channel";
  o.weight_scale = a.Get("weight-scale");
  o.weight_bits = static_cast<int>(a.GetInt("weight-bits"));
  o.exclude = a.GetAll("exclude");
  o.threads = static_cast<int>(a.GetInt("threads"));
  o.eval_batch_size = a.GetInt("eval-batch");
  ONNXQ_RETURN_IF_ERROR(o.Validate());
  std::unique_ptr<calib::Dataset> eval;
  if (a.Has("eval")) {
    calib::DatasetOptions dopt;
    ONNXQ_RETURN_IF_ERROR(DataOptionsFromArgs(a, &dopt));
    dopt.skip = a.GetInt("eval-skip");
    if (a.Has("eval-count")) dopt.count = a.GetInt("eval-count");
    ONNXQ_ASSIGN_OR_RETURN(eval, calib::Dataset::Open(a.Get("eval"), dopt));
    o.eval_data = eval.get();
    if (auto bar = TerminalProgress()) o.eval_progress = [bar](int64_t d, int64_t t) { return bar("evaluate", d, t); };
  } else if (a.Has("eval-skip") || a.Has("eval-count")) {
    return InvalidArgument("--eval-skip / --eval-count need --eval DATA");
  }
  ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
  ONNXQ_ASSIGN_OR_RETURN(quant::DynamicQuantizeResult r, quant::QuantizeDynamic(model, o, a.Arg("MODEL")));
  Status s = SaveModel(r.quantized, a.Get("output"));
  if (!s.ok()) return s.Prepend("cannot write '" + a.Get("output") + "'");
  if (a.Has("report")) {
    Status rs = AtomicWriteFile(a.Get("report"), r.report_json + "\n");
    if (!rs.ok()) return rs.Prepend("cannot write the report");
  }
  if (r.evaluation) {
    const quant::EvalResult& e = *r.evaluation;
    if (e.has_labels) std::printf("top-1 %.2f %% (float %.2f %%), ", 100 * e.top1, 100 * e.reference_top1);
    std::printf("top-1 agreement with float %.2f %%, mean KL %.6f on %lld samples\n", 100 * e.top1_agreement,
                e.mean_kl, static_cast<long long>(e.count));
  }
  return Status::Ok();
}

int RunQuantize(const std::vector<std::string>& args) {
  ArgParser p("quantize",
              "Post-training static quantization: calibrate activation ranges on sample data and write\n"
              "a QDQ ONNX model (int8 weights, int32 biases, uint8 activations) that ONNX Runtime\n"
              "fuses into its integer kernels. The defaults are the best setting.");
  p.Positional("MODEL", "the float .onnx model");
  p.Option("output", 'o', "OUT", "the quantized .onnx file").Required();
  p.Option("calib", 0, "PATH", "calibration data: image folder (labels.tsv order if present), "
                               ".npy folder or stacked .npy; a model with several inputs takes "
                               "NAME=PATH once per input")
      .Repeated();
  p.Option("calib-count", 0, "N", "use the first N samples (labels.tsv order, else sorted names)",
           ArgKind::kInt);
  p.Option("labels", 0, "TSV", "labels.tsv defining the sample order (default: PATH/labels.tsv)");
  AddDataOptions(p);
  AddModelLimitOptions(p);
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
  p.Option("act-equalization", 0, "auto|on|off", "activation-channel equalization of linear tensors "
                                                  "(auto: off; it measured worse on MobileNetV2)")
      .Default("auto");
  p.Option("rounding", 0, "M", "weight rounding: nearest, adaround or gptq (error-compensating, on Gram "
                               "matrices of the layer inputs from the first --rounding-samples calibration "
                               "samples)").Default("nearest")
      .Choices({"nearest", "adaround", "gptq"});
  p.Option("rounding-samples", 0, "N", "calibration samples for the rounding's Gram matrices (the "
                                      "sensitivity's: at most those before its --sensitivity-samples)",
           ArgKind::kInt).Default("100");
  p.Option("rounding-objective", 0, "O", "adaround/gptq objective: asymmetric (match the float layer output "
                                         "from the inputs of the model quantized so far) or float (float inputs)")
      .Default("float").Choices({"float", "asymmetric"});
  p.Option("adaround-iters", 0, "N", "AdaRound: Adam steps per layer", ArgKind::kInt).Default("1000");
  p.Option("weight-grid", 0, "G", "sub-8-bit weight grid: auto (full; at 2 bits per channel [-2, 1] or its "
                                  "mirror [-1, 2]), full ([-8, 7] at 4 bits), oriented (per channel the full "
                                  "grid or its mirror at every width) or narrow ([-7, 7])")
      .Default("auto").Choices({"auto", "full", "oriented", "narrow"});
  p.Option("layer-bits", 0, "NODE=B", "weight bits of one layer (node name), overriding --weight-bits")
      .Repeated();
  p.Option("weight-bits-avg", 0, "B", "mixed precision: per-layer weight bits chosen from the measured "
                                      "sensitivity so that the average over all weights is <= B", ArgKind::kDouble);
  p.Option("weight-memory", 0, "M", "mixed precision budget: packed weight memory (weights at their bits + "
                                    "fp32 scales), a fraction of float32 if <= 1, else bytes", ArgKind::kDouble);
  p.Option("bops", 0, "N", "mixed precision budget: sum of MACs x weight bits x activation bits", ArgKind::kDouble);
  p.Option("candidate-bits", 0, "LIST", "weight bit widths the allocator may choose, e.g. 2,3,4,5,6,7,8")
      .Default("2,3,4,5,6,7,8");
  p.Option("sensitivity-samples", 0, "N", "calibration samples for the per-layer sensitivity (the last ones)",
           ArgKind::kInt).Default("64");
  p.Option("stats", 0, "FILE", "use observer statistics from `onnxq calibrate` instead of calibrating");
  p.Option("report", 0, "JSON", "write the quantization report here");
  p.Option("threads", 0, "N", "threads (default: all cores)", ArgKind::kInt).Default("0");
  p.Option("mode", 0, "M", "static: calibrated QDQ model; dynamic: int8 weights, activations quantized at "
                           "run time (DynamicQuantizeLinear + ConvInteger / MatMulInteger), no calibration data")
      .Default("static").Choices({"static", "dynamic"});
  p.Option("eval", 0, "PATH", "--mode dynamic: labelled images (or .npy) to measure accuracy against the "
                              "float model (in the report)");
  p.Option("eval-skip", 0, "N", "--mode dynamic: skip the first N evaluation samples", ArgKind::kInt).Default("0");
  p.Option("eval-count", 0, "N", "--mode dynamic: evaluate N samples (default: all the rest)", ArgKind::kInt);
  p.Option("eval-batch", 0, "N", "--mode dynamic: evaluation batch (activation ranges span the batch)",
           ArgKind::kInt).Default("1");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    if (a.Get("mode") == "dynamic") return RunDynamic(a);
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
    ONNXQ_ASSIGN_OR_RETURN(cfg.act_equalization, quant::ParseToggle(a.Get("act-equalization"), "--act-equalization"));
    cfg.threads = static_cast<int>(a.GetInt("threads"));
    cfg.stats_path = a.Get("stats");
    cfg.rounding = a.Get("rounding");
    cfg.rounding_samples = a.GetInt("rounding-samples");
    cfg.rounding_objective = a.Get("rounding-objective");
    cfg.adaround_iters = a.GetInt("adaround-iters");
    cfg.weight_grid = a.Get("weight-grid");
    for (const std::string& lb : a.GetAll("layer-bits")) {
      size_t eq = lb.rfind('=');
      if (eq == std::string::npos || eq == 0) return InvalidArgument("--layer-bits wants NODE=BITS, got '", lb, "'");
      ONNXQ_ASSIGN_OR_RETURN(int64_t b, ParseInt(lb.substr(eq + 1)));
      cfg.layer_weight_bits[lb.substr(0, eq)] = static_cast<int>(b);
    }
    if (a.Has("weight-bits-avg")) cfg.weight_bits_avg = a.GetDouble("weight-bits-avg");
    if (a.Has("weight-memory")) cfg.weight_memory = a.GetDouble("weight-memory");
    if (a.Has("bops")) cfg.bops = a.GetDouble("bops");
    ONNXQ_ASSIGN_OR_RETURN(cfg.candidate_bits, ParseBitList(a.Get("candidate-bits")));
    cfg.sensitivity_samples = a.GetInt("sensitivity-samples");
    cfg.progress = TerminalProgress();
    if (cfg.act_bits != 8) return InvalidArgument("--act-bits: the QDQ export writes 8-bit activations");
    ONNXQ_RETURN_IF_ERROR(cfg.Validate());
    if (!a.Has("calib") && !a.Has("stats")) return InvalidArgument("--calib PATH (or --stats FILE) is required");
    if (!a.Has("calib") && cfg.bias_correction == quant::Toggle::kOn)
      return InvalidArgument("--bias-correction on needs --calib data");
    if (!a.Has("calib")) cfg.bias_correction = quant::Toggle::kOff;

    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ThreadPool pool(cfg.threads);
    CalibrationData data;
    if (a.Has("calib")) {
      calib::DatasetOptions dopt;
      ONNXQ_RETURN_IF_ERROR(DataOptionsFromArgs(a, &dopt));
      dopt.labels = a.Get("labels");
      if (a.Has("calib-count")) dopt.count = a.GetInt("calib-count");
      ONNXQ_ASSIGN_OR_RETURN(data, OpenCalibrationData(a, model, dopt, &pool));
    } else {
      data.source = quant::TensorSource({});
    }
    quant::CalibrationSource* source = data.source.get();
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
