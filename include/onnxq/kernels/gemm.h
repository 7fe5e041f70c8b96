// fp32 GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, with a register-blocked microkernel
// per ISA. PackedGemmB pre-packs a constant B (weights) once so that repeated calls skip packing.
#pragma once

#include <cstdint>
#include <memory>

#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq::kernels {

// Plain GEMM on row-major matrices. lda/ldb/ldc are row strides in elements.
void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc, ThreadPool* pool, Isa isa);
inline void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc, ThreadPool* pool = nullptr) {
  Sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, pool, ActiveIsa());
}

// The reference (test oracle): triple loop in double accumulation order-independent enough for
// tolerance checks.
void SgemmReference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc);
}  // namespace onnxq::kernels
