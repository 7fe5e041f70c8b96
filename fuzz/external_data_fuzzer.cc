// External-data resolution: ResolvePathInside, and import of a model whose external_data
// location/offset/length/dims/type come from the input, against a folder with inside and escaping
// symlinks. See harness.h for the input format and invariants. ONNXQ_FUZZ_FIFO=1 adds a FIFO to
// the folder (off by default: a hang stops the run); ONNXQ_FUZZ_SKIP_KNOWN=1 skips inputs that reach
// already-reported bugs (harness.h, HitsKnownExternalDataBug).
#include <cstdlib>

#include "fuzz_main.h"
#include "harness.h"

namespace {
onnxq::fuzz::ExternalDataFolder g_folder;
bool g_skip_known = false;
void Cleanup() { onnxq::fuzz::RemoveTree(g_folder.root); }
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* fifo = std::getenv("ONNXQ_FUZZ_FIFO");
  g_folder = onnxq::fuzz::MakeExternalDataFolder(fifo && *fifo == '1');
  const char* skip = std::getenv("ONNXQ_FUZZ_SKIP_KNOWN");
  g_skip_known = skip && *skip == '1';
  std::atexit(Cleanup);
  if (g_folder.model_real.empty()) onnxq::fuzz::Report("external_data_fuzzer", "cannot create the temp folder");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  onnxq::fuzz::Report("external_data_fuzzer", onnxq::fuzz::CheckExternalData(g_folder, data, size, g_skip_known));
  return 0;
}
