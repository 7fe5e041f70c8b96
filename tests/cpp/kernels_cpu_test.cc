#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/gemm.h"

namespace onnxq::kernels {
namespace {

TEST(KernelsCpu, SupportedIsasAreConsistentWithFeatures) {
  const std::vector<Isa> isas = SupportedIsas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kReference);
  const CpuFeatures& f = GetCpuFeatures();
  bool has_avx2 = false, has_avx512 = false;
  for (Isa isa : isas) {
    has_avx2 |= isa == Isa::kAvx2;
    has_avx512 |= isa == Isa::kAvx512;
  }
  EXPECT_EQ(has_avx2, f.avx2 && f.fma && f.f16c);
  EXPECT_EQ(has_avx512, f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
                            f.avx512vnni && f.avx512bf16);
  if (f.avx512f) {
    EXPECT_TRUE(f.avx2);  // every AVX-512 CPU also has AVX2
  }
}

TEST(KernelsCpu, ParseAndName) {
  for (Isa isa : {Isa::kReference, Isa::kAvx2, Isa::kAvx512}) {
    auto parsed = ParseIsa(IsaName(isa));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, isa);
  }
  auto bad = ParseIsa("sse9");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("sse9"), std::string::npos);
}

TEST(KernelsCpu, ForceIsaSelectsAndRestores) {
  const Isa automatic = ActiveIsa();
  for (Isa isa : SupportedIsas()) {
    ASSERT_TRUE(ForceIsa(isa).ok());
    EXPECT_EQ(ActiveIsa(), isa);
    // Kernels created now use the forced ISA.
    const float b[4] = {1, 2, 3, 4};
    auto packed = PackedGemmB::Create(false, 2, 2, b, 2);
    ASSERT_TRUE(packed.ok());
    EXPECT_EQ((*packed)->isa(), isa);
  }
  ASSERT_TRUE(ForceIsa(std::nullopt).ok());
  EXPECT_EQ(ActiveIsa(), automatic);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    bool supported = false;
    for (Isa s : SupportedIsas()) supported |= s == isa;
    if (!supported) {
      EXPECT_FALSE(ForceIsa(isa).ok());
    }
  }
}

// ONNXQ_ISA is read once per process, so it is checked in a child process running this binary.
TEST(KernelsCpu, EnvironmentVariableForcesIsa) {
  if (const char* expect = std::getenv("ONNXQ_TEST_EXPECT_ISA")) {
    EXPECT_STREQ(IsaName(ActiveIsa()), expect);
    return;
  }
  // The shell's /proc/self/exe would be the shell: resolve this binary's path here.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  for (Isa isa : SupportedIsas()) {
    const std::string cmd = std::string("ONNXQ_ISA=") + IsaName(isa) + " ONNXQ_TEST_EXPECT_ISA=" +
                            IsaName(isa) +
                            " '" + self + "' --gtest_filter=KernelsCpu.EnvironmentVariableForcesIsa"
                            " > /dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd;
  }
  // An unknown value falls back to the best ISA (with a warning on stderr).
  const std::string best = IsaName(SupportedIsas().back());
  const std::string cmd = "ONNXQ_ISA=bogus ONNXQ_TEST_EXPECT_ISA=" + best + " '" + self +
                          "' --gtest_filter=KernelsCpu.EnvironmentVariableForcesIsa"
                          " > /dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd;
}

}  // namespace
}  // namespace onnxq::kernels
