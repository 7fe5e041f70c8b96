// Dependency-free FMA throughput loops, one per ISA (each in a file compiled with that ISA's flags):
// the measured fp32 peak the GEMM microkernel is compared with. `chains` independent accumulator
// chains (8, 12, 16 or 24 / 8, 12 or 14): the bench takes the best, since how many chains a core
// needs to saturate its FMA pipes differs between microarchitectures.
#pragma once

#include <cstdint>

namespace onnxq::bench {
// Returns the flops executed (2 per lane per FMA); adds the chains' result to *sink.
double FmaLoopAvx512(int chains, int64_t iters, float* sink);
double FmaLoopAvx2(int chains, int64_t iters, float* sink);
}  // namespace onnxq::bench
