// `onnxq convert MODEL -o OUT`: import then export (the round trip through onnxq's IR).
#include <cstdio>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq::cli {
namespace {

int RunConvert(const std::vector<std::string>& args) {
  ArgParser p("convert",
              "Import an ONNX model into onnxq's IR and export it again. The output keeps node\n"
              "order, names, attributes, initializer bytes, opsets, metadata and declared\n"
              "value_info. Nothing is written unless the whole model imports cleanly, and the\n"
              "output appears atomically.");
  p.Positional("MODEL", "the input .onnx file");
  p.Option("output", 'o', "OUT", "the output .onnx file").Required();
  AddModelLimitOptions(p);
  p.Option("external-data-threshold", 0, "BYTES",
           "move large initializers to OUT.data when all tensors exceed this (e.g. 1G)",
           ArgKind::kBytes)
      .Default(std::to_string(ExportOptions{}.external_data_threshold));
  p.Flag("write-inferred-value-info", 0,
         "also write value_info for the shapes onnxq inferred, not only the declared ones");
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    ONNXQ_ASSIGN_OR_RETURN(ImportOptions in, ImportOptionsFromArgs(a));
    ExportOptions out;
    out.external_data_threshold = a.GetInt("external-data-threshold", out.external_data_threshold);
    out.write_inferred_value_info = a.GetFlag("write-inferred-value-info");
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModel(a.Arg("MODEL"), in));
    return SaveModel(model, a.Get("output"), out);  // errors name the output path
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(convert, "convert", "import a model and export it again (round trip)",
                       RunConvert);

}  // namespace onnxq::cli
