// fp32 GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, with a register-blocked microkernel
// per ISA. PackedGemmB pre-packs a constant B (weights) once so that repeated calls skip packing.
#pragma once

#include <cstdint>
#include <memory>

#include "onnxq/base/status.h"
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

// The reference (test oracle): a plain triple loop accumulating in double.
void SgemmReference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                    float* c, int64_t ldc);

// Frees 64-byte aligned float buffers allocated by the kernels.
struct AlignedFree {
  void operator()(float* p) const;
};

// A constant B (e.g. the weights of Gemm / MatMul: Y = X * W) packed once into the microkernel's
// panel layout for `isa`; Run then only packs A. C = alpha * op(A) * B + beta * C, A is m x k.
class PackedGemmB {
 public:
  // op(B) is k x n: B(p, j) = trans_b ? b[j*ldb + p] : b[p*ldb + j]. Fails if the CPU cannot run isa.
  static StatusOr<std::unique_ptr<PackedGemmB>> Create(bool trans_b, int64_t k, int64_t n,
                                                       const float* b, int64_t ldb, Isa isa);
  static StatusOr<std::unique_ptr<PackedGemmB>> Create(bool trans_b, int64_t k, int64_t n,
                                                       const float* b, int64_t ldb) {
    return Create(trans_b, k, n, b, ldb, ActiveIsa());
  }
  ~PackedGemmB();
  // beta == 0 never reads C.
  void Run(bool trans_a, int64_t m, float alpha, const float* a, int64_t lda, float beta, float* c,
           int64_t ldc, ThreadPool* pool = nullptr) const;
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  Isa isa() const { return isa_; }

 private:
  PackedGemmB() = default;
  Isa isa_ = Isa::kReference;
  int64_t k_ = 0, n_ = 0;
  std::unique_ptr<float[], AlignedFree> data_;
};

}  // namespace onnxq::kernels
