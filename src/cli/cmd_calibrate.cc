// `onnxq calibrate MODEL --calib PATH [--skip N] [--count N] -o SHARD.stats`: runs the calibration
// pass of `onnxq quantize` on one shard of the data and saves the observers (min/max and
// histograms, mergeable exactly); `onnxq calibrate --merge A.stats B.stats ... -o ALL.stats`
// combines shards; `onnxq quantize MODEL --stats ALL.stats ...` then quantizes without re-running
// calibration. The statistics carry a fingerprint of the prepared model and settings, so shards of
// different models or settings are refused.
#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::cli {


namespace {

int RunCalibrate(const std::vector<std::string>& args) {
  ArgParser p("calibrate",
              "Collect (or merge) activation statistics for `onnxq quantize --stats`, so that\n"
              "calibration can be split over processes or machines.");
  p.Positional("MODEL", "the float .onnx model (omit with --merge)", /*required=*/false);
  p.Option("output", 'o', "STATS", "statistics file to write").Required();
  p.Option("calib", 0, "PATH", "calibration data (as for quantize; NAME=PATH once per input of a model with "
                               "several inputs)").Repeated();
  p.Option("labels", 0, "TSV", "labels.tsv defining the sample order (default: PATH/labels.tsv)");
  p.Option("skip", 0, "N", "first sample of this shard", ArgKind::kInt).Default("0");
  p.Option("count", 0, "N", "samples in this shard (default: all the rest)", ArgKind::kInt);
  AddDataOptions(p);
  AddModelLimitOptions(p);
  p.Option("calibrator", 0, "METHOD", "the calibrator quantize will use (minmax needs no histograms)")
      .Default("auto");
  p.Option("weight-granularity", 0, "G", "as for quantize (it decides whether CLE runs)")
      .Default("per-channel").Choices({"per-channel", "per-tensor"});
  p.Option("cle", 0, "auto|on|off", "as for quantize").Default("auto");
  p.Option("exclude", 0, "NAME|OP", "as for quantize").Repeated();
  p.Option("merge", 0, "STATS", "merge these statistics files instead of calibrating").Repeated();
  p.Option("threads", 0, "N", "threads (default: all cores)", ArgKind::kInt).Default("0");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    if (a.Has("merge")) {
      auto files = a.GetAll("merge");
      ONNXQ_ASSIGN_OR_RETURN(calib::CalibrationStats all, calib::CalibrationStats::Load(files[0]));
      for (size_t i = 1; i < files.size(); ++i) {
        ONNXQ_ASSIGN_OR_RETURN(calib::CalibrationStats s, calib::CalibrationStats::Load(files[i]));
        Status m = all.Merge(s);
        if (!m.ok()) return m.Prepend("merging '" + files[i] + "'");
      }
      return all.Save(a.Get("output"));
    }
    if (a.Arg("MODEL").empty()) return InvalidArgument("MODEL is required unless --merge is given");
    if (!a.Has("calib")) return InvalidArgument("--calib PATH is required");
    quant::QuantizeConfig cfg;
    cfg.calibrator = a.Get("calibrator");
    cfg.per_channel = a.Get("weight-granularity") == "per-channel";
    ONNXQ_ASSIGN_OR_RETURN(cfg.cle, quant::ParseToggle(a.Get("cle"), "--cle"));
    cfg.exclude = a.GetAll("exclude");
    cfg.threads = static_cast<int>(a.GetInt("threads"));
    cfg.progress = TerminalProgress();
    calib::DatasetOptions dopt;
    ONNXQ_RETURN_IF_ERROR(DataOptionsFromArgs(a, &dopt));
    dopt.labels = a.Get("labels");
    dopt.skip = a.GetInt("skip");
    if (a.Has("count")) dopt.count = a.GetInt("count");
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ThreadPool pool(cfg.threads);
    ONNXQ_ASSIGN_OR_RETURN(CalibrationData data, OpenCalibrationData(a, model, dopt, &pool));
    ONNXQ_ASSIGN_OR_RETURN(quant::PreparedModel prep, quant::PrepareModel(model, cfg));
    ONNXQ_ASSIGN_OR_RETURN(calib::CalibrationStats stats, quant::CollectStatistics(prep, *data.source, cfg));
    return stats.Save(a.Get("output"));
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(calibrate, "calibrate",
                       "collect or merge activation statistics for quantize --stats (sharded calibration)",
                       RunCalibrate);

}  // namespace onnxq::cli
