// Image decoding (DecodeImage: stb_image, compiled into this binary with ASan) and preprocessing
// (PreprocessImage, four setups picked by the input size). See harness.h. ONNXQ_FUZZ_SKIP_KNOWN=1
// skips JPEGs that reach the known stb_image 2.27 Huffman-table bugs (docs/fuzzing.md).
#include <cstdlib>

#include "fuzz_main.h"
#include "harness.h"

namespace {
bool g_skip_known = false;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* skip = std::getenv("ONNXQ_FUZZ_SKIP_KNOWN");
  g_skip_known = skip && *skip == '1';
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  onnxq::fuzz::Report("image_fuzzer", onnxq::fuzz::CheckImage(data, size, g_skip_known));
  return 0;
}
