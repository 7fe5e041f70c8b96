// ONNX importer from bytes: LoadModelFromBytes with no folder and (when the input mentions external
// data) with a temp folder holding data files; a success must verify, serialize, re-import and
// re-serialize to the same bytes. See harness.h. ONNXQ_FUZZ_SKIP_KNOWN=1 skips the round trip for
// models with untyped node attributes (a known bug, docs/fuzzing.md).
#include <cstdlib>

#include "fuzz_main.h"
#include "harness.h"

namespace {
std::string g_dir;
bool g_skip_known = false;
void Cleanup() { onnxq::fuzz::RemoveTree(g_dir); }
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_dir = onnxq::fuzz::MakeImportFolder();
  const char* skip = std::getenv("ONNXQ_FUZZ_SKIP_KNOWN");
  g_skip_known = skip && *skip == '1';
  std::atexit(Cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  onnxq::fuzz::Report("onnx_import_fuzzer", onnxq::fuzz::CheckOnnxImport(data, size, g_dir, g_skip_known));
  return 0;
}
