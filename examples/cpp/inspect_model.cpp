// Loads an ONNX model with onnxq and prints its summary (what `onnxq inspect` shows).
// Usage: inspect_model MODEL.onnx [--json]
#include <cstdio>
#include <string>

#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/session.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::string(argv[2]) != "--json")) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [--json]\n", argv[0]);
    return 2;
  }
  onnxq::StatusOr<onnxq::Model> model = onnxq::LoadModel(argv[1]);
  if (!model.ok()) {
    // Every onnxq error names the file and the node or tensor at fault.
    std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
    return 1;
  }
  // The IR summary plus whether onnxq's executor can run the model.
  std::string text = argc == 3 ? onnxq::InspectJson(*model) : onnxq::InspectText(*model);
  std::fputs(text.c_str(), stdout);
  if (!text.empty() && text.back() != '\n') std::fputc('\n', stdout);
  return 0;
}
