// `onnxq eval MODEL --data PATH [--labels TSV] [--skip N] [--count N] [--reference FLOAT] [--json]`
// (`--data NAME=PATH` once per input for a model with several):
// top-1/top-5 of a classifier in onnxq's executor (a QDQ model runs on integer kernels, as ONNX
// Runtime computes it), and, with a reference model, top-1 agreement and mean KL(reference ||
// model) of the softmax outputs.
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/evaluate.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::cli {


namespace {

int RunEval(const std::vector<std::string>& args) {
  ArgParser p("eval", "Evaluate a classifier on a labelled image folder (or .npy data).");
  p.Positional("MODEL", "the .onnx model (float or QDQ)");
  p.Option("data", 0, "PATH", "image folder (labels.tsv order and labels if present), .npy folder or stacked .npy; "
                              "a model with several inputs takes NAME=PATH once per input")
      .Repeated()
      .Required();
  p.Option("labels", 0, "TSV", "labels.tsv (default: DIR/labels.tsv)");
  p.Option("skip", 0, "N", "skip the first N samples", ArgKind::kInt).Default("0");
  p.Option("count", 0, "N", "evaluate N samples (default: all the rest)", ArgKind::kInt);
  AddDataOptions(p);
  AddModelLimitOptions(p);
  p.Option("reference", 0, "FLOAT_MODEL", "compare against this model: top-1 agreement, mean KL");
  p.Option("batch", 0, "N", "batch size", ArgKind::kInt).Default("8");
  p.Option("threads", 0, "N", "threads (default: all cores)", ArgKind::kInt).Default("0");
  p.Flag("json", 0, "print the result as JSON");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    calib::DatasetOptions dopt;
    ONNXQ_RETURN_IF_ERROR(DataOptionsFromArgs(a, &dopt));
    dopt.labels = a.Get("labels");
    dopt.skip = a.GetInt("skip");
    if (a.Has("count")) dopt.count = a.GetInt("count");
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ThreadPool pool(static_cast<int>(a.GetInt("threads")));
    ONNXQ_ASSIGN_OR_RETURN(CalibrationData data, OpenCalibrationData(a, model, dopt, &pool, "data"));
    // Labels: a single folder's labels.tsv (with one --data per input, none).
    std::vector<int64_t> labels;
    if (data.datasets.size() == 1 && data.datasets.front()->has_labels())
      for (int64_t i = 0; i < data.datasets.front()->size(); ++i) labels.push_back(data.datasets.front()->label(i));
    std::optional<Model> ref;
    if (a.Has("reference")) {
      ONNXQ_ASSIGN_OR_RETURN(ref, LoadModelWithLimits(a, a.Get("reference")));
    }
    quant::EvalOptions eo;
    eo.threads = static_cast<int>(a.GetInt("threads"));
    eo.batch_size = a.GetInt("batch");
    if (auto bar = TerminalProgress())
      eo.progress = [bar](int64_t d, int64_t t) { return bar("eval", d, t); };
    ONNXQ_ASSIGN_OR_RETURN(quant::EvalResult r,
                           quant::Evaluate(model, *data.source, labels, ref ? &*ref : nullptr, eo));
    if (a.GetFlag("json")) {
      std::printf("%s\n", r.ToJson().c_str());
    } else {
      std::printf("samples           %lld\n", static_cast<long long>(r.count));
      if (r.has_labels) std::printf("top-1             %.2f %%\ntop-5             %.2f %%\n", 100 * r.top1, 100 * r.top5);
      if (r.has_reference) {
        if (r.has_labels)
          std::printf("reference top-1   %.2f %%\nreference top-5   %.2f %%\n", 100 * r.reference_top1,
                      100 * r.reference_top5);
        std::printf("top-1 agreement   %.2f %%\nmean KL           %.6f\n", 100 * r.top1_agreement, r.mean_kl);
      }
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(eval, "eval", "evaluate a classifier: top-1/top-5, agreement and KL vs a reference",
                       RunEval);

}  // namespace onnxq::cli
