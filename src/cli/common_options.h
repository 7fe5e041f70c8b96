// Options shared by several `onnxq` subcommands, declared once so that every command that reads a
// model (or images) offers the same limits with the same defaults and help text.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cli/args.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/base/status.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/runtime/session.h"

namespace onnxq::cli {

// --max-model-bytes, --max-tensor-elements: the importer's safety limits (defaults: ImportOptions).
void AddModelLimitOptions(ArgParser& p);
StatusOr<ImportOptions> ImportOptionsFromArgs(const ArgParser& a);
// LoadModel with the limits of AddModelLimitOptions.
StatusOr<Model> LoadModelWithLimits(const ArgParser& a, const std::string& path);

// Executor options of the commands that run a model (run, bench): --threads, --isa, --float-qdq.
void AddSessionOptions(ArgParser& p);
StatusOr<SessionOptions> SessionOptionsFromArgs(const ArgParser& a);

// Image/.npy data: --preprocess PRESET and the flags that override its fields (--resize, --crop,
// --scale, --mean, --std, --bgr, --layout), and --max-image-pixels.
void AddDataOptions(ArgParser& p);
StatusOr<calib::PreprocessOptions> PreprocessFromArgs(const ArgParser& a);
// Sets options->preprocess and options->image_limits from AddDataOptions' flags.
Status DataOptionsFromArgs(const ArgParser& a, calib::DatasetOptions* options);

// --calib (repeatable): PATH for a model with one input; NAME=PATH for each input of a model with
// several (sample i of the model is sample i of every PATH). A PATH is an image folder, a .npy
// folder or a stacked .npy; .npy samples must have the input's element type. `options`
// (preprocessing, window, limits) applies to every PATH; an explicit --labels only to a single one.
struct CalibrationData {
  std::vector<std::unique_ptr<calib::Dataset>> datasets;
  std::unique_ptr<quant::CalibrationSource> source;
};
// `option` names the flag (`calib`; `data` for eval), in the errors too.
StatusOr<CalibrationData> OpenCalibrationData(const ArgParser& a, const Model& model,
                                              calib::DatasetOptions options, ThreadPool* pool,
                                              const std::string& option = "calib");

// A one-line progress bar on stderr, only when stderr is a terminal (else nullptr).
std::function<bool(const std::string&, int64_t, int64_t)> TerminalProgress();

// "2,3,4,8" -> {2, 3, 4, 8}; each in 2..8 (--candidate-bits, --bits).
StatusOr<std::vector<int>> ParseBitList(const std::string& s);

}  // namespace onnxq::cli
