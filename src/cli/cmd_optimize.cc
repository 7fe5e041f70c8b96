// `onnxq optimize MODEL -o OUT [--passes default|none|a,b,c] [--dump-dir DIR] [--verbose]`.
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/passes/pass.h"

namespace onnxq::cli {
namespace {

std::string PassList() {
  std::string s = "passes:\n";
  for (const auto& name : passes::RegisteredPasses())
    s += "  " + name + std::string(name.size() < 24 ? 24 - name.size() : 1, ' ') +
         passes::PassDescription(name) + "\n";
  s += "\ndefault pipeline: ";
  const auto& d = passes::DefaultPipeline();
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + d[i];
  s += "\n";
  return s;
}

int RunOptimize(const std::vector<std::string>& args) {
  ArgParser p("optimize",
              "Run graph-optimization passes on a model (verifying the graph after each pass) and\n"
              "write the result. Nothing is written if any pass fails.");
  p.Positional("MODEL", "the input .onnx file");
  p.Option("output", 'o', "OUT", "the output .onnx file").Required();
  p.Option("passes", 0, "LIST", "'default', 'none', or a comma-separated list of pass names "
                                "(may include 'default', e.g. default,cle)")
      .Default("default");
  p.Option("cle-clip", 0, "POLICY",
           "cle: how to treat Clip(0, M): 'exact' scales only channels proven never to reach M; "
           "'per-channel-min' scales all and rewrites Clip as Relu -> Min(per-channel bound)")
      .Default("exact")
      .Choices({"exact", "per-channel-min"});
  p.Option("input-range", 0, "LO,HI", "cle: known range of the model input (tightens bounds)");
  p.Option("dump-dir", 0, "DIR", "write the model after each pass to DIR/NN-<pass>.onnx (+ .txt)");
  p.Flag("report-json", 0, "print the pass report as JSON on stdout");
  p.Flag("verbose", 'v', "print each pass: changed or not, time, counters and notes");
  p.Flag("no-verify", 0, "skip the graph verifier between passes");
  AddModelLimitOptions(p);
  p.Epilog(PassList());
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    passes::OptimizeOptions opt;
    ONNXQ_ASSIGN_OR_RETURN(opt.passes, passes::ParsePipeline(a.Get("passes")));
    opt.dump_dir = a.Get("dump-dir");
    opt.verify = !a.GetFlag("no-verify");
    opt.equalization.clip_policy = a.Get("cle-clip") == "per-channel-min"
                                       ? passes::ClipPolicy::kPerChannelMin
                                       : passes::ClipPolicy::kExact;
    if (a.Has("input-range")) {
      std::string r = a.Get("input-range");
      size_t comma = r.find(',');
      if (comma == std::string::npos) return InvalidArgument("--input-range wants LO,HI, got '", r, "'");
      ONNXQ_ASSIGN_OR_RETURN(double lo, ParseDouble(r.substr(0, comma)));
      ONNXQ_ASSIGN_OR_RETURN(double hi, ParseDouble(r.substr(comma + 1)));
      if (!(lo <= hi)) return InvalidArgument("--input-range: LO must not exceed HI");
      opt.equalization.input_min = static_cast<float>(lo);
      opt.equalization.input_max = static_cast<float>(hi);
    }
    ONNXQ_ASSIGN_OR_RETURN(ImportOptions import_options, ImportOptionsFromArgs(a));
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModel(a.Arg("MODEL"), import_options));
    ONNXQ_ASSIGN_OR_RETURN(passes::PassReport report, passes::Optimize(model, opt));
    Status s = SaveModel(model, a.Get("output"));
    if (!s.ok()) return s.Prepend("cannot write '" + a.Get("output") + "'");
    if (a.GetFlag("report-json")) {
      std::fputs(report.ToJson().c_str(), stdout);
    } else if (a.GetFlag("verbose")) {
      std::fputs(report.ToText(/*verbose=*/true).c_str(), stdout);
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(optimize, "optimize", "run graph-optimization passes (onnxq optimize --help)",
                       RunOptimize);

}  // namespace onnxq::cli
