// Blocked GEMM driver shared by Sgemm, PackedGemmB and the convolutions (portable code; the inner
// tile loops call the per-ISA microkernel from a KernelTable).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "kernels/kernels_internal.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/gemm.h"

namespace onnxq::kernels::internal {

// The kernel table of `isa`. The caller must have checked that the CPU supports it.
const KernelTable& GetTable(Isa isa);
bool IsaSupported(Isa isa);

// Depth of one k block: a KC x NR strip of B stays in L1 while the MR-row panels of A stream by.
constexpr int64_t kKc = 256;
// Rows of A per cache block (L2-resident A block of kMc x kKc), columns of B per block.
constexpr int64_t kMcPanels = 8;
constexpr int64_t kNc = 768;

using AlignedFloats = std::unique_ptr<float[], AlignedFree>;
// 64-byte aligned, uninitialized.
AlignedFloats AllocateFloats(int64_t count);

// Packs op(A) (m x k; op(A)(i, p) = trans ? a[p*lda + i] : a[i*lda + p]) into ceil(m/mr) panels of
// mr rows stored k-major, zero-padding the last panel's rows, in the order GemmBlock reads them:
// blocks of kMcPanels panels, inside a block k blocks of kKc, inside those the panels' kc x mr
// slices. One pass of GemmBlock over a column strip then streams the packed A sequentially, which
// the hardware prefetcher follows (weights of the late MobileNetV2 layers come from DRAM).
// PackedASize floats; PackedAOffset is where panel r's slice for the k block starting at k0 is.
void PackAPanels(bool trans, const float* a, int64_t lda, int64_t m, int64_t k, int mr, float* out);
int64_t PackedASize(int64_t m, int64_t k, int mr);
int64_t PackedAOffset(int64_t panel, int64_t k0, int64_t m, int64_t k, int mr);
// Packs op(B) (k x n; op(B)(p, j) = trans ? b[j*ldb + p] : b[p*ldb + j]) into ceil(n/nr) panels of
// k x nr (panel s at out + s*nr*k), zero-padding the last panel's columns.
void PackBPanels(bool trans, const float* b, int64_t ldb, int64_t k, int64_t n, int nr, float* out);

struct BMatrix {
  enum class Kind { kRowMajor, kTransposed, kPanels };
  Kind kind = Kind::kRowMajor;
  const float* data = nullptr;
  int64_t ld = 0;  // row stride for kRowMajor / kTransposed; unused for kPanels (k-major panels of nr)
};

// Floats of scratch GemmBlock needs (one packed KC x NR strip of B).
int64_t GemmScratchFloats(const KernelTable& t);

// C[i0:i1, j0:j1] = epilogue(op(A) * op(B)) with A pre-packed (PackAPanels over all m rows of A
// with t.mr). i0 must be a multiple of t.mr and j0 of t.nr when B is kPanels. ep.bias (if any) is the bias
// of row 0 of C. Summation order per element depends only on k, never on the block bounds, so any
// partition of C over threads gives identical bits.
void GemmBlock(const KernelTable& t, int64_t k, const float* packed_a, int64_t i0, int64_t i1,
               int64_t m, const BMatrix& b, int64_t j0, int64_t j1, float* c, int64_t ldc,
               const Epilogue& ep, float* scratch);

// Runs all of C = epilogue(op(A) * op(B)) (m x n) over the pool in blocks of whole A panels.
void GemmParallel(const KernelTable& t, int64_t m, int64_t n, int64_t k, const float* packed_a,
                  const BMatrix& b, float* c, int64_t ldc, const Epilogue& ep, ThreadPool* pool);

}  // namespace onnxq::kernels::internal
