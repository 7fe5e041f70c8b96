// `onnxq run MODEL --input NAME=file.npy [...] --output-dir DIR [--threads N]`: runs a model on
// the float executor and writes every output as DIR/<output name>.npy.
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/npy.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/feeds.h"
#include "onnxq/runtime/session.h"

namespace onnxq::cli {
namespace {

int RunRun(const std::vector<std::string>& args) {
  ArgParser p("run",
              "Run a model on onnxq's CPU executor and write each output as DIR/<name>.npy\n"
              "(output names are made file-safe: characters outside [A-Za-z0-9._-] become '_').");
  p.Positional("MODEL", "the .onnx file");
  p.Option("input", 'i', "NAME=FILE.npy", "a model input (repeat for each input)").Repeated();
  p.Option("output-dir", 'o', "DIR", "folder for the outputs (created if missing)").Required();
  AddSessionOptions(p);
  AddModelLimitOptions(p);
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ONNXQ_ASSIGN_OR_RETURN(SessionOptions opts, SessionOptionsFromArgs(a));
    ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(model, opts));
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, LoadNpyFeeds(a.GetAll("input")));
    ONNXQ_ASSIGN_OR_RETURN(auto outputs, session->Run(feeds));
    // Everything is computed before the first file is written.
    const std::filesystem::path dir = a.Get("output-dir");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir))
      return IoError("cannot create output folder '", dir.string(), "': ", ec.message());
    const std::vector<std::string> names = session->output_names();
    const std::vector<std::string> stems = SafeFileStems(names);
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string path = (dir / (stems[i] + ".npy")).string();
      ONNXQ_RETURN_IF_ERROR(WriteNpy(path, outputs.at(names[i])));
      std::printf("%s -> %s\n", names[i].c_str(), path.c_str());
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(run, "run", "run a model on the CPU executor, writing outputs as .npy", RunRun);

}  // namespace onnxq::cli
