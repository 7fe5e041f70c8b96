// .npy reader: ParseNpy with the default limits; a success must round-trip through SerializeNpy.
#include "fuzz_main.h"
#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  onnxq::fuzz::Report("npy_fuzzer", onnxq::fuzz::CheckNpy(data, size));
  return 0;
}
