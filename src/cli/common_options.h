// Options shared by several `onnxq` subcommands, declared once so that every command that reads a
// model (or images) offers the same limits with the same defaults and help text.
#pragma once

#include "cli/args.h"
#include "onnxq/base/status.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq::cli {

// --max-model-bytes, --max-tensor-elements: the importer's safety limits (defaults: ImportOptions).
void AddModelLimitOptions(ArgParser& p);
StatusOr<ImportOptions> ImportOptionsFromArgs(const ArgParser& a);

}  // namespace onnxq::cli
