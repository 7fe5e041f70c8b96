// Post-training W8A8 quantization through the C++ API, built against an installed onnxq
// (find_package(onnxq)): calibrate on the first N images of a folder, write the QDQ model, then
// compare float and quantized on the remaining images (top-1/top-5 with labels.tsv, top-1
// agreement, mean KL, initializer sizes, latency).
//
//   quantize MODEL.onnx IMAGE_DIR OUT.onnx [--calib-count N] [--eval-count N] [--preprocess PRESET]
//
// For the shared MobileNetV2: quantize mobilenetv2-1.0.onnx imagenet-sample q.onnx --preprocess imagenet-tf
#include <algorithm>
#include <chrono>
#include <map>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/ir/summary.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/quant/evaluate.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/runtime/session.h"

namespace {

struct Args {
  std::string model, images, out, preprocess = "imagenet-torch";
  int64_t calib_count = 100, eval_count = -1;
};

// Median batch-1 latency in ms of `model` on one sample of `data`.
onnxq::StatusOr<double> LatencyMs(const onnxq::Model& model, const onnxq::calib::Dataset& data) {
  ONNXQ_ASSIGN_OR_RETURN(auto session, onnxq::Session::Create(model));
  if (session->input_names().size() != 1) return onnxq::InvalidArgument("the model must have one input");
  ONNXQ_ASSIGN_OR_RETURN(onnxq::Tensor sample, data.LoadBatch(0, 1));
  const std::map<std::string, onnxq::Tensor> feeds{{session->input_names()[0], sample}};
  std::vector<double> ms;
  for (int i = 0; i < 21; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ONNXQ_ASSIGN_OR_RETURN(auto outputs, session->Run(feeds));
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int64_t InitializerBytes(const onnxq::Model& model) {
  int64_t total = 0;
  for (const auto& [dtype, bytes] : onnxq::Summarize(model).bytes_by_dtype) total += bytes;
  return total;
}

onnxq::Status Run(const Args& args) {
  ONNXQ_ASSIGN_OR_RETURN(onnxq::Model model, onnxq::LoadModel(args.model));

  onnxq::calib::DatasetOptions calib_options;
  ONNXQ_ASSIGN_OR_RETURN(calib_options.preprocess, onnxq::calib::PreprocessPreset(args.preprocess));
  calib_options.count = args.calib_count;
  ONNXQ_ASSIGN_OR_RETURN(auto calib, onnxq::calib::Dataset::Open(args.images, calib_options));

  onnxq::ThreadPool pool(0);  // all cores
  auto source = onnxq::quant::DatasetSource(*calib, &pool);
  onnxq::quant::QuantizeConfig config;  // the defaults are the best setting
  config.progress = [](const std::string& stage, int64_t done, int64_t total) {
    std::fprintf(stderr, "\r%-12s %lld/%lld", stage.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total));
    return true;  // returning false cancels
  };
  ONNXQ_ASSIGN_OR_RETURN(onnxq::quant::QuantizeResult result,
                         onnxq::quant::Quantize(model, *source, config, args.model));
  std::fprintf(stderr, "\n");
  ONNXQ_RETURN_IF_ERROR(onnxq::SaveModel(result.quantized, args.out));

  onnxq::calib::DatasetOptions eval_options = calib_options;
  eval_options.skip = args.calib_count;  // evaluate on the images not used for calibration
  eval_options.count = args.eval_count;
  ONNXQ_ASSIGN_OR_RETURN(auto evalset, onnxq::calib::Dataset::Open(args.images, eval_options));
  ONNXQ_ASSIGN_OR_RETURN(onnxq::quant::EvalResult eval,
                         onnxq::quant::Evaluate(result.quantized, *evalset, &model));
  ONNXQ_ASSIGN_OR_RETURN(double float_ms, LatencyMs(model, *evalset));
  ONNXQ_ASSIGN_OR_RETURN(double int8_ms, LatencyMs(result.quantized, *evalset));

  std::printf("%-22s %10s %10s\n", "", "float", "int8");
  if (eval.has_labels) {
    std::printf("%-22s %9.2f%% %9.2f%%\n", "top-1", 100 * eval.reference_top1, 100 * eval.top1);
    std::printf("%-22s %9.2f%% %9.2f%%\n", "top-5", 100 * eval.reference_top5, 100 * eval.top5);
  }
  std::printf("%-22s %10.2f %10.2f\n", "weights (MB)", InitializerBytes(model) / 1e6,
              InitializerBytes(result.quantized) / 1e6);
  std::printf("%-22s %10.2f %10.2f\n", "latency, batch 1 (ms)", float_ms, int8_ms);
  std::printf("top-1 agreement %.2f %%, mean KL %.5f on %lld images; wrote %s\n",
              100 * eval.top1_agreement, eval.mean_kl, static_cast<long long>(eval.count),
              args.out.c_str());
  return onnxq::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--calib-count" && has_value) args.calib_count = std::atoll(argv[++i]);
    else if (a == "--eval-count" && has_value) args.eval_count = std::atoll(argv[++i]);
    else if (a == "--preprocess" && has_value) args.preprocess = argv[++i];
    else positional.push_back(a);
  }
  if (positional.size() != 3 || args.calib_count < 1) {
    std::fprintf(stderr,
                 "usage: %s MODEL.onnx IMAGE_DIR OUT.onnx [--calib-count N] [--eval-count N] "
                 "[--preprocess PRESET]\n",
                 argv[0]);
    return 2;
  }
  args.model = positional[0];
  args.images = positional[1];
  args.out = positional[2];
  onnxq::Status s = Run(args);
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
