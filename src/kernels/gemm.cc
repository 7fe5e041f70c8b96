#include "onnxq/kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/gemm_driver.h"

namespace onnxq::kernels {
namespace internal {
namespace {

constexpr int kRefMr = 4;
constexpr int kRefNr = 16;

// Portable microkernel (the kReference variant of the blocked driver).
void MicroReference(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                    int m, int n, const Epilogue& ep) {
  float acc[kRefMr][kRefNr] = {};
  for (int64_t p = 0; p < k; ++p) {
    const float* ap = a + p * kRefMr;
    const float* bp = b + p * ldb;
    for (int i = 0; i < kRefMr; ++i) {
      const float av = ap[i];
      for (int j = 0; j < kRefNr; ++j) acc[i][j] += av * bp[j];
    }
  }
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    const float bias = ep.bias != nullptr ? ep.bias[i] : 0.f;
    for (int j = 0; j < n; ++j) {
      float v = ep.alpha * acc[i][j];
      if (ep.beta != 0.f) v += ep.beta * ci[j];
      v += bias;
      if (ep.clamp) v = std::min(std::max(v, ep.lo), ep.hi);
      ci[j] = v;
    }
  }
}

void DepthwiseReference(const DepthwiseArgs& d) {
  for (int64_t oh = 0; oh < d.out_h; ++oh) {
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      float acc = 0.f;
      for (int64_t i = 0; i < d.kh; ++i) {
        const int64_t ih = oh * d.sh - d.pad_top + i * d.dh;
        if (ih < 0 || ih >= d.in_h) continue;
        for (int64_t j = 0; j < d.kw; ++j) {
          const int64_t iw = ow * d.sw - d.pad_left + j * d.dw;
          if (iw < 0 || iw >= d.in_w) continue;
          acc += d.w[i * d.kw + j] * d.x[ih * d.in_w + iw];
        }
      }
      d.y[oh * d.out_w + ow] = std::min(std::max(acc + d.bias, d.lo), d.hi);
    }
  }
}

void GemvReference(const float* w, int64_t ldw, int64_t rows, const float* x, int64_t k, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc = 0.f;
    for (int64_t p = 0; p < k; ++p) acc += w[r * ldw + p] * x[p];
    out[r] = acc;
  }
}

}  // namespace

KernelTable TableReference() {
  KernelTable t;
  t.mr = kRefMr;
  t.nr = kRefNr;
  t.vec = kRefNr;
  t.gemm_micro = MicroReference;
  t.depthwise = DepthwiseReference;
  t.gemv = GemvReference;
  return t;
}

bool IsaSupported(Isa isa) {
  for (Isa s : SupportedIsas()) {
    if (s == isa) return true;
  }
  return false;
}

const KernelTable& GetTable(Isa isa) {
  static const KernelTable reference = TableReference();
  // A variant's table is only fetched (and its code only ever called) when the CPU supports it.
  static const KernelTable avx2 = IsaSupported(Isa::kAvx2) ? TableAvx2() : reference;
  static const KernelTable avx512 = IsaSupported(Isa::kAvx512) ? TableAvx512() : reference;
  switch (isa) {
    case Isa::kReference: return reference;
    case Isa::kAvx2: return IsaSupported(Isa::kAvx2) ? avx2 : reference;
    case Isa::kAvx512: return IsaSupported(Isa::kAvx512) ? avx512 : reference;
  }
  return reference;
}

AlignedFloats AllocateFloats(int64_t count) {
  size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  return AlignedFloats(static_cast<float*>(std::aligned_alloc(64, bytes)));
}

int64_t PackedASize(int64_t m, int64_t k, int mr) {
  return (m + mr - 1) / mr * mr * std::max<int64_t>(k, 1);
}

int64_t PackedAOffset(int64_t panel, int64_t k0, int64_t m, int64_t k, int mr) {
  const int64_t panels = (m + mr - 1) / mr;
  const int64_t block = panel / kMcPanels;
  const int64_t in_block = std::min<int64_t>(kMcPanels, panels - block * kMcPanels);
  const int64_t kc = std::min(kKc, k - k0);
  return block * kMcPanels * mr * k + k0 * in_block * mr + (panel - block * kMcPanels) * mr * kc;
}

void PackAPanels(bool trans, const float* a, int64_t lda, int64_t m, int64_t k, int mr, float* out) {
  for (int64_t r = 0; r * mr < m; ++r) {
    const int64_t rows = std::min<int64_t>(mr, m - r * mr);
    for (int64_t k0 = 0; k0 < k; k0 += kKc) {
      float* slice = out + PackedAOffset(r, k0, m, k, mr);
      const int64_t kc = std::min(kKc, k - k0);
      for (int64_t p = 0; p < kc; ++p) {
        float* dst = slice + p * mr;
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t row = r * mr + i;
          dst[i] = trans ? a[(k0 + p) * lda + row] : a[row * lda + k0 + p];
        }
        for (int64_t i = rows; i < mr; ++i) dst[i] = 0.f;
      }
    }
  }
}

void PackBPanels(bool trans, const float* b, int64_t ldb, int64_t k, int64_t n, int nr, float* out) {
  for (int64_t s = 0; s * nr < n; ++s) {
    float* panel = out + s * nr * k;
    const int64_t cols = std::min<int64_t>(nr, n - s * nr);
    for (int64_t p = 0; p < k; ++p) {
      float* dst = panel + p * nr;
      if (!trans) {
        std::memcpy(dst, b + p * ldb + s * nr, cols * sizeof(float));
      } else {
        for (int64_t j = 0; j < cols; ++j) dst[j] = b[(s * nr + j) * ldb + p];
      }
      for (int64_t j = cols; j < nr; ++j) dst[j] = 0.f;
    }
  }
}

int64_t GemmScratchFloats(const KernelTable& t) { return kKc * t.nr; }

void GemmBlock(const KernelTable& t, int64_t k, const float* packed_a, int64_t i0, int64_t i1,
               int64_t m, const BMatrix& b, int64_t j0, int64_t j1, float* c, int64_t ldc,
               const Epilogue& ep, float* scratch) {
  const int mr = t.mr, nr = t.nr;
  if (k == 0) {
    // No products: C = clamp(beta * C + bias).
    for (int64_t i = i0; i < i1; ++i) {
      for (int64_t j = j0; j < j1; ++j) {
        float v = ep.beta != 0.f ? ep.beta * c[i * ldc + j] : 0.f;
        if (ep.bias != nullptr) v += ep.bias[i];
        if (ep.clamp) v = std::min(std::max(v, ep.lo), ep.hi);
        c[i * ldc + j] = v;
      }
    }
    return;
  }
  const int64_t mc = kMcPanels * mr;
  for (int64_t ib = i0; ib < i1; ib += mc) {
    const int64_t ie = std::min(i1, ib + mc);
    for (int64_t k0 = 0; k0 < k; k0 += kKc) {
      const int64_t kc = std::min(kKc, k - k0);
      Epilogue blk = ep;
      if (k0 > 0) blk.beta = 1.f;  // later k blocks accumulate onto the partial result
      const bool last = k0 + kc == k;
      if (!last) {
        blk.bias = nullptr;
        blk.clamp = false;
      }
      for (int64_t j = j0; j < j1; j += nr) {
        const int nj = static_cast<int>(std::min<int64_t>(nr, j1 - j));
        const float* bp;
        int64_t ldb;
        GemmMicroFn micro = t.gemm_micro;
        if (nj <= t.narrow_n) micro = t.gemm_narrow;
        if (b.kind == BMatrix::Kind::kPanels) {
          bp = b.data + (j / nr) * nr * k + k0 * nr;
          ldb = nr;
        } else if (b.kind == BMatrix::Kind::kRowMajor && (nj % t.vec == 0 || nj <= t.narrow_n)) {
          bp = b.data + k0 * b.ld + j;
          ldb = b.ld;
        } else {
          // Edge strip or transposed B: pack the KC x NR strip (zero-padded) once for all A panels.
          for (int64_t p = 0; p < kc; ++p) {
            float* dst = scratch + p * nr;
            if (b.kind == BMatrix::Kind::kRowMajor) {
              std::memcpy(dst, b.data + (k0 + p) * b.ld + j, nj * sizeof(float));
            } else {
              for (int jj = 0; jj < nj; ++jj) dst[jj] = b.data[(j + jj) * b.ld + k0 + p];
            }
            for (int jj = nj; jj < nr; ++jj) dst[jj] = 0.f;
          }
          bp = scratch;
          ldb = nr;
        }
        for (int64_t i = ib; i < ie; i += mr) {
          const int mi = static_cast<int>(std::min<int64_t>(mr, ie - i));
          Epilogue tile = blk;
          if (tile.bias != nullptr) tile.bias = ep.bias + i;
          micro(kc, packed_a + PackedAOffset(i / mr, k0, m, k, mr), bp, ldb, c + i * ldc + j, ldc,
                mi, nj, tile);
        }
      }
    }
  }
}

// Splits C into blocks of whole A panels x kNc columns and runs them over the pool.
void GemmParallel(const KernelTable& t, int64_t m, int64_t n, int64_t k, const float* packed_a,
                  const BMatrix& b, float* c, int64_t ldc, const Epilogue& ep, ThreadPool* pool) {
  const int64_t panels = (m + t.mr - 1) / t.mr;
  const int64_t threads = pool != nullptr ? pool->num_threads() : 1;
  // Column blocks of kNc (a multiple of nr); more row blocks when there are too few tasks.
  const int64_t n_blocks = (n + kNc - 1) / kNc;
  int64_t m_blocks = std::min<int64_t>(panels, std::max<int64_t>(1, (2 * threads + n_blocks - 1) / n_blocks));
  int64_t panels_per_block = (panels + m_blocks - 1) / m_blocks;
  // Whole storage blocks of packed A per task, so each task streams it sequentially.
  if (panels_per_block > kMcPanels) {
    panels_per_block = (panels_per_block + kMcPanels - 1) / kMcPanels * kMcPanels;
  }
  m_blocks = (panels + panels_per_block - 1) / panels_per_block;
  const int64_t tasks = m_blocks * n_blocks;
  auto run = [&](int64_t begin, int64_t end) {
    AlignedFloats scratch = AllocateFloats(GemmScratchFloats(t));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t mb = task / n_blocks, nb = task % n_blocks;
      const int64_t i0 = mb * panels_per_block * t.mr;
      const int64_t i1 = std::min(m, i0 + panels_per_block * t.mr);
      const int64_t j0 = nb * kNc, j1 = std::min(n, j0 + kNc);
      GemmBlock(t, k, packed_a, i0, i1, m, b, j0, j1, c, ldc, ep, scratch.get());
    }
  };
  if (pool != nullptr && tasks > 1) {
    pool->ParallelFor(tasks, run);
  } else {
    run(0, tasks);
  }
}

}  // namespace internal

using internal::BMatrix;

void SgemmReference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      double v = alpha * acc;
      if (beta != 0.f) v += static_cast<double>(beta) * c[i * ldc + j];
      c[i * ldc + j] = static_cast<float>(v);
    }
  }
}

void Sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
           ThreadPool* pool, Isa isa) {
  if (m <= 0 || n <= 0) return;
  const internal::KernelTable& t = internal::GetTable(isa);
  internal::AlignedFloats packed_a = internal::AllocateFloats(internal::PackedASize(m, k, t.mr));
  if (k > 0) internal::PackAPanels(trans_a, a, lda, m, k, t.mr, packed_a.get());
  BMatrix bm;
  bm.kind = trans_b ? BMatrix::Kind::kTransposed : BMatrix::Kind::kRowMajor;
  bm.data = b;
  bm.ld = ldb;
  internal::Epilogue ep;
  ep.alpha = alpha;
  ep.beta = beta;
  internal::GemmParallel(t, m, n, k, packed_a.get(), bm, c, ldc, ep, pool);
}

StatusOr<std::unique_ptr<PackedGemmB>> PackedGemmB::Create(bool trans_b, int64_t k, int64_t n,
                                                           const float* b, int64_t ldb, Isa isa) {
  if (k < 0 || n <= 0) return InvalidArgument("PackedGemmB: bad sizes k=", k, " n=", n);
  if (ldb < (trans_b ? k : n)) return InvalidArgument("PackedGemmB: ldb ", ldb, " too small");
  if (!internal::IsaSupported(isa)) {
    return Unsupported("PackedGemmB: this CPU cannot run ISA ", IsaName(isa));
  }
  std::unique_ptr<PackedGemmB> packed(new PackedGemmB());
  packed->isa_ = isa;
  packed->k_ = k;
  packed->n_ = n;
  const internal::KernelTable& t = internal::GetTable(isa);
  const int64_t panels = (n + t.nr - 1) / t.nr;
  packed->data_ = internal::AllocateFloats(panels * t.nr * std::max<int64_t>(k, 1));
  if (k > 0) internal::PackBPanels(trans_b, b, ldb, k, n, t.nr, packed->data_.get());
  return packed;
}

void PackedGemmB::Run(bool trans_a, int64_t m, float alpha, const float* a, int64_t lda, float beta,
                      float* c, int64_t ldc, ThreadPool* pool) const {
  if (m <= 0) return;
  const internal::KernelTable& t = internal::GetTable(isa_);
  internal::AlignedFloats packed_a = internal::AllocateFloats(internal::PackedASize(m, k_, t.mr));
  if (k_ > 0) internal::PackAPanels(trans_a, a, lda, m, k_, t.mr, packed_a.get());
  BMatrix bm;
  bm.kind = BMatrix::Kind::kPanels;
  bm.data = data_.get();
  internal::Epilogue ep;
  ep.alpha = alpha;
  ep.beta = beta;
  internal::GemmParallel(t, m, n_, k_, packed_a.get(), bm, c, ldc, ep, pool);
}

PackedGemmB::~PackedGemmB() = default;

void AlignedFree::operator()(float* p) const { std::free(p); }

}  // namespace onnxq::kernels
