// Instruction-set selection for kernels. Each kernel has a portable reference implementation (the
// test oracle) and SIMD variants compiled in their own files with their own flags. The variant is
// chosen once, when a kernel object is created, never per call.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"

namespace onnxq::kernels {

enum class Isa { kReference = 0, kAvx2 = 1, kAvx512 = 2 };

const char* IsaName(Isa isa);  // "reference", "avx2", "avx512"
StatusOr<Isa> ParseIsa(const std::string& name);

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx_vnni = false;
};
const CpuFeatures& GetCpuFeatures();

// ISAs this CPU can run (always includes kReference), best last.
std::vector<Isa> SupportedIsas();
// The ISA new kernels use: a forced one (ForceIsa, or the ONNXQ_ISA environment variable read
// once: reference|avx2|avx512), else the best supported.
Isa ActiveIsa();
// Forces an ISA for kernels created from now on (tests use this); nullopt returns to automatic.
// Fails if the CPU cannot run it.
Status ForceIsa(std::optional<Isa> isa);

}  // namespace onnxq::kernels
