#include "onnxq/kernels/cpu.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define ONNXQ_X86 1
#endif

namespace onnxq::kernels {
namespace {

#ifdef ONNXQ_X86
// XGETBV through inline asm: the _xgetbv intrinsic would need -mxsave on this (portable) file.
uint64_t ReadXcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
#ifdef ONNXQ_X86
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool cpu_fma = (ecx >> 12) & 1;
  const bool cpu_f16c = (ecx >> 29) & 1;
  const bool cpu_avx = (ecx >> 28) & 1;
  if (!osxsave || !cpu_avx) return f;
  const uint64_t xcr0 = ReadXcr0();
  // The OS must save the YMM state (XCR0 bits 1, 2) for AVX and additionally the opmask and both
  // ZMM halves (bits 5, 6, 7) for AVX-512; a CPU feature bit alone is not enough.
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  if (!os_avx) return f;
  unsigned int max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.fma = cpu_fma;
  f.f16c = cpu_f16c;
  f.avx2 = (ebx >> 5) & 1;
  f.avx_vnni = false;
  if (os_avx512) {
    f.avx512f = (ebx >> 16) & 1;
    f.avx512dq = (ebx >> 17) & 1;
    f.avx512bw = (ebx >> 30) & 1;
    f.avx512vl = (ebx >> 31) & 1;
    f.avx512vnni = (ecx >> 11) & 1;
  }
  unsigned int eax1 = 0, ebx1 = 0, ecx1 = 0, edx1 = 0;
  __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
  f.avx_vnni = (eax1 >> 4) & 1;
  if (os_avx512) f.avx512bf16 = (eax1 >> 5) & 1;
#endif
  return f;
}

bool CanRun(Isa isa) {
  const CpuFeatures& f = GetCpuFeatures();
  switch (isa) {
    case Isa::kReference: return true;
    case Isa::kAvx2: return f.avx2 && f.fma && f.f16c;
    // The AVX-512 variant files are compiled with F/BW/VL/DQ/VNNI/BF16: require all of them.
    case Isa::kAvx512:
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
             f.avx512vnni && f.avx512bf16;
  }
  return false;
}

Isa BestIsa() {
  std::vector<Isa> isas = SupportedIsas();
  return isas.back();
}

// -1: automatic; otherwise the forced Isa value.
std::atomic<int> g_forced{-1};

Isa EnvIsa() {
  static const Isa isa = [] {
    const char* env = std::getenv("ONNXQ_ISA");
    if (env == nullptr || *env == '\0') return BestIsa();
    StatusOr<Isa> parsed = ParseIsa(env);
    if (!parsed.ok()) {
      std::fprintf(stderr, "onnxq: ignoring ONNXQ_ISA=%s (%s); using %s\n", env,
                   parsed.status().message().c_str(), IsaName(BestIsa()));
      return BestIsa();
    }
    if (!CanRun(*parsed)) {
      std::fprintf(stderr, "onnxq: ignoring ONNXQ_ISA=%s: this CPU does not support it; using %s\n",
                   env, IsaName(BestIsa()));
      return BestIsa();
    }
    return *parsed;
  }();
  return isa;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kReference: return "reference";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

StatusOr<Isa> ParseIsa(const std::string& name) {
  if (name == "reference") return Isa::kReference;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  return InvalidArgument("unknown ISA '", name, "' (expected reference, avx2 or avx512)");
}

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = DetectCpuFeatures();
  return features;
}

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> isas{Isa::kReference};
  if (CanRun(Isa::kAvx2)) isas.push_back(Isa::kAvx2);
  if (CanRun(Isa::kAvx512)) isas.push_back(Isa::kAvx512);
  return isas;
}

Isa ActiveIsa() {
  int forced = g_forced.load(std::memory_order_acquire);
  if (forced >= 0) return static_cast<Isa>(forced);
  return EnvIsa();
}

Status ForceIsa(std::optional<Isa> isa) {
  if (!isa.has_value()) {
    g_forced.store(-1, std::memory_order_release);
    return Status::Ok();
  }
  if (!CanRun(*isa)) return Unsupported("cannot force ISA ", IsaName(*isa), ": this CPU does not support it");
  g_forced.store(static_cast<int>(*isa), std::memory_order_release);
  return Status::Ok();
}

}  // namespace onnxq::kernels
