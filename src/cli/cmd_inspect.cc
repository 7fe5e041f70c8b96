// `onnxq inspect MODEL [--json]`: what a model holds (ops, parameters, inputs/outputs, opsets).
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/json.h"
#include "onnxq/runtime/session.h"
#include "onnxq/ir/summary.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq::cli {
namespace {

int RunInspect(const std::vector<std::string>& args) {
  ArgParser p("inspect",
              "Load an ONNX model (with the same checks as every other command) and print its\n"
              "operator histogram, parameter count, bytes by element type, inputs and outputs\n"
              "with shapes, opsets and metadata.");
  p.Positional("MODEL", "the .onnx file");
  p.Flag("json", 0, "print JSON (stable keys) instead of text");
  AddModelLimitOptions(p);
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    ONNXQ_ASSIGN_OR_RETURN(ImportOptions opts, ImportOptionsFromArgs(a));
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModel(a.Arg("MODEL"), opts));
    ModelSummary s = Summarize(model);
    const std::vector<UnsupportedOp> bad = UnsupportedOps(model);
    std::string out;
    if (a.GetFlag("json")) {
      out = SummaryToJson(s);
      // One more key in the same object: the operators onnxq's executor cannot run.
      std::string field = ",\n  \"unsupported_ops\": [";
      for (size_t i = 0; i < bad.size(); ++i)
        field += (i ? ", " : "") + std::string("{\"op\": ") + JsonQuote(bad[i].op) +
                 ", \"nodes\": " + std::to_string(bad[i].nodes) + "}";
      field += "]\n";
      const size_t end = out.rfind('}');
      if (end == std::string::npos) return Internal("inspect: malformed summary JSON");
      size_t cut = end;
      while (cut > 0 && (out[cut - 1] == '\n' || out[cut - 1] == ' ')) --cut;
      out = out.substr(0, cut) + field + out.substr(end);
    } else {
      out = SummaryToText(s);
      if (bad.empty()) {
        out += "executor:   every operator is supported\n";
      } else {
        out += "executor:   cannot run this model (so cannot calibrate it); unsupported:";
        for (const UnsupportedOp& u : bad)
          out += " " + u.op + " (" + std::to_string(u.nodes) + (u.nodes == 1 ? " node)" : " nodes)");
        out += "\n";
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(inspect, "inspect", "show a model's operators, parameters, inputs and outputs",
                       RunInspect);

}  // namespace onnxq::cli
