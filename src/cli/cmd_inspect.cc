// `onnxq inspect MODEL [--json]`: what a model holds (ops, parameters, inputs/outputs, opsets).
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/runtime/session.h"
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
    const std::string out = a.GetFlag("json") ? InspectJson(model) : InspectText(model);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(inspect, "inspect", "show a model's operators, parameters, inputs and outputs",
                       RunInspect);

}  // namespace onnxq::cli
