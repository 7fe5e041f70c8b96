// AVX-512 kernels (compiled with -mavx512f/bw/vl/dq...; only called when the CPU has them).
// Everything here has internal linkage except TableAvx512(), and nothing uses std:: templates, so no
// AVX-512 code can leak into portable callers through the linker's choice of an inline copy.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the masked-off source of unmasked
// shuffles / extracts, which -Wmaybe-uninitialized reports inside the compiler's own headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/kernels_internal.h"

namespace onnxq::kernels::internal {
namespace {

constexpr int kMr = 8;
constexpr int kNv = 3;  // zmm vectors per tile row
constexpr int kNr = 16 * kNv;

inline __mmask16 TailMask(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1u);
}

// 8 x (16*NV) tile: 8*NV accumulators, each B vector feeds 8 FMAs, each broadcast A value NV.
template <int NV>
void MicroTile(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
               int n, const Epilogue& ep) {
  __m512 acc[kMr][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < k; ++p) {
    // Packed A is one sequential stream (see PackAPanels): fetch ~2 KiB ahead, past this panel's
    // slice into the next one, so weights streamed from DRAM arrive before they are needed.
    _mm_prefetch(reinterpret_cast<const char*>(a + 512), _MM_HINT_T0);
    __m512 bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + v * 16);
#pragma GCC unroll 8
    for (int i = 0; i < kMr; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += kMr;
    b += ldb;
  }
  const __m512 alpha = _mm512_set1_ps(ep.alpha);
  const __m512 beta = _mm512_set1_ps(ep.beta);
  const __m512 lo = _mm512_set1_ps(ep.lo);
  const __m512 hi = _mm512_set1_ps(ep.hi);
  __mmask16 mask[NV];
#pragma GCC unroll 3
  for (int v = 0; v < NV; ++v) mask[v] = TailMask(n - v * 16 > 0 ? n - v * 16 : 0);
#pragma GCC unroll 8
  for (int i = 0; i < kMr; ++i) {
    if (i >= m) break;
    float* ci = c + i * ldc;
    const __m512 bias = _mm512_set1_ps(ep.bias != nullptr ? ep.bias[i] : 0.f);
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      __m512 r = ep.alpha == 1.f ? acc[i][v] : _mm512_mul_ps(alpha, acc[i][v]);
      if (ep.beta != 0.f) {
        r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask[v], ci + v * 16), r);
      }
      r = _mm512_add_ps(r, bias);
      if (ep.clamp) r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
      _mm512_mask_storeu_ps(ci + v * 16, mask[v], r);
    }
  }
}

void Micro(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
           int n, const Epilogue& ep) {
  if (n > 32) {
    MicroTile<3>(k, a, b, ldb, c, ldc, m, n, ep);
  } else if (n > 16) {
    MicroTile<2>(k, a, b, ldb, c, ldc, m, n, ep);
  } else {
    MicroTile<1>(k, a, b, ldb, c, ldc, m, n, ep);
  }
}

// Tiles of N <= 4 columns: vectors run down the 8 rows of the A panel instead of along a B row,
// so a k step costs one A load and N broadcasts (the 8 x 48 kernel on a 1-column edge would
// spend 8 broadcasts and a B load on 8 useful products). Four k-interleaved accumulators per
// column hide the FMA latency; they are summed in a fixed order.
template <int N>
void MicroNarrowTile(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                     int m, const Epilogue& ep) {
  __m256 acc[4][N];
#pragma GCC unroll 4
  for (int u = 0; u < 4; ++u) {
#pragma GCC unroll 4
    for (int j = 0; j < N; ++j) acc[u][j] = _mm256_setzero_ps();
  }
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(a + 512), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m256 av = _mm256_loadu_ps(a + u * kMr);
#pragma GCC unroll 4
      for (int j = 0; j < N; ++j) {
        acc[u][j] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(b + u * ldb + j), acc[u][j]);
      }
    }
    a += 4 * kMr;
    b += 4 * ldb;
  }
  for (; p < k; ++p) {
    const __m256 av = _mm256_loadu_ps(a);
#pragma GCC unroll 4
    for (int j = 0; j < N; ++j) acc[0][j] = _mm256_fmadd_ps(av, _mm256_broadcast_ss(b + j), acc[0][j]);
    a += kMr;
    b += ldb;
  }
  float col[N][kMr];
#pragma GCC unroll 4
  for (int j = 0; j < N; ++j) {
    _mm256_storeu_ps(col[j], _mm256_add_ps(_mm256_add_ps(acc[0][j], acc[1][j]),
                                           _mm256_add_ps(acc[2][j], acc[3][j])));
  }
  for (int i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    const float bias = ep.bias != nullptr ? ep.bias[i] : 0.f;
    for (int j = 0; j < N; ++j) {
      float v = ep.alpha * col[j][i];
      if (ep.beta != 0.f) v += ep.beta * ci[j];
      v += bias;
      if (ep.clamp) v = v < ep.lo ? ep.lo : (v > ep.hi ? ep.hi : v);
      ci[j] = v;
    }
  }
}

void MicroNarrow(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                 int m, int n, const Epilogue& ep) {
  switch (n) {
    case 1: return MicroNarrowTile<1>(k, a, b, ldb, c, ldc, m, ep);
    case 2: return MicroNarrowTile<2>(k, a, b, ldb, c, ldc, m, ep);
    case 3: return MicroNarrowTile<3>(k, a, b, ldb, c, ldc, m, ep);
    default: return MicroNarrowTile<4>(k, a, b, ldb, c, ldc, m, ep);
  }
}

// Lanes l of a 16-wide load starting at input column c0 (unit step) that lie inside [0, in_w).
inline __mmask16 ColumnMask(int64_t c0, int64_t in_w) {
  int64_t lo = -c0, hi = in_w - c0;
  lo = lo < 0 ? 0 : (lo > 16 ? 16 : lo);
  hi = hi < 0 ? 0 : (hi > 16 ? 16 : hi);
  if (hi <= lo) return 0;
  return static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// Border masks depend only on the output column vector and the tap column, so they are computed once
// per plane (for planes up to kMaskVectors vectors wide and kMaskTaps kernel columns).
constexpr int kMaskVectors = 64;
constexpr int kMaskTaps = 16;
struct ColumnMasks {
  __mmask16 m[kMaskVectors][kMaskTaps][2];  // [vector][tap column][load half (stride 2)]
};

// One vector of 16 outputs of row oh starting at column ow (before bias / clamp). kMasked: some taps
// may fall outside the plane, so loads are masked (masked-off lanes read zero and never fault);
// otherwise every tap of every lane is inside the plane and plain loads are used.
// wv: the kernel's weights pre-broadcast (compile-time sizes only, else null: broadcast per tap).
template <bool kMasked, int KH_T, int KW_T, int SW_T>
inline __m512 DepthwiseVector(const DepthwiseArgs& d, int64_t oh, int64_t ow, __mmask16 out_mask,
                              const __mmask16 (*masks)[2], const __m512* wv) {
  const int64_t kh = KH_T != 0 ? KH_T : d.kh;
  const int64_t kw = KW_T != 0 ? KW_T : d.kw;
  const int64_t sw = SW_T != 0 ? SW_T : d.sw;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  // One accumulator per kernel row (up to 3): shorter FMA dependency chains.
  __m512 accs[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
#pragma GCC unroll 3
  for (int64_t i = 0; i < kh; ++i) {
    __m512& acc = accs[i % 3];
    const int64_t ih = oh * d.sh - d.pad_top + i * d.dh;
    if (ih < 0 || ih >= d.in_h) continue;  // a zero row contributes nothing
    const float* row = d.x + ih * d.in_w;
    const float* wr = d.w + i * kw;
#pragma GCC unroll 3
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t c0 = ow * sw - d.pad_left + j * d.dw;
      __m512 xv;
      if (sw == 1) {
        if (kMasked) {
          const __mmask16 m = masks != nullptr ? masks[j][0] : ColumnMask(c0, d.in_w);
          xv = _mm512_maskz_loadu_ps(m, row + c0);
        } else {
          xv = _mm512_loadu_ps(row + c0);
        }
      } else if (sw == 2) {
        __m512 a, b;
        if (kMasked) {
          const __mmask16 m0 = masks != nullptr ? masks[j][0] : ColumnMask(c0, d.in_w);
          const __mmask16 m1 = masks != nullptr ? masks[j][1] : ColumnMask(c0 + 16, d.in_w);
          a = _mm512_maskz_loadu_ps(m0, row + c0);
          b = _mm512_maskz_loadu_ps(m1, row + c0 + 16);
        } else {
          a = _mm512_loadu_ps(row + c0);
          b = _mm512_loadu_ps(row + c0 + 16);
        }
        xv = _mm512_permutex2var_ps(a, even, b);
      } else {
        const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int>(sw))),
                                             _mm512_set1_epi32(static_cast<int>(c0)));
        const __mmask16 valid = _mm512_cmpge_epi32_mask(idx, _mm512_setzero_si512()) &
                                _mm512_cmplt_epi32_mask(idx, _mm512_set1_epi32(static_cast<int>(d.in_w))) &
                                out_mask;
        xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, idx, row, 4);
      }
      const __m512 wij = (KH_T != 0 && KW_T != 0) ? wv[i * kw + j] : _mm512_set1_ps(wr[j]);
      acc = _mm512_fmadd_ps(wij, xv, acc);
    }
  }
  return _mm512_add_ps(_mm512_add_ps(accs[0], accs[1]), accs[2]);
}

// One output row of a 3x3 depthwise convolution from three zero-padded input rows (column 0 of each
// is input column -pad_left, and each holds at least out_w*SW + 34 readable floats): a tight loop
// with the weights in registers and no bounds logic, since this kernel is load-bound.
template <int SW>
inline void Row3x3(const float* r0, const float* r1, const float* r2, const __m512* wv, __m512 bias,
                   __m512 lo, __m512 hi, float* y, int64_t out_w) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  for (int64_t ow = 0; ow < out_w; ow += 16) {
    const int64_t c = ow * SW;
    const float* rows[3] = {r0 + c, r1 + c, r2 + c};
    __m512 acc0 = bias, acc1 = _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) {
#pragma GCC unroll 3
      for (int j = 0; j < 3; ++j) {
        __m512 xv;
        if constexpr (SW == 1) {
          xv = _mm512_loadu_ps(rows[i] + j);
        } else {
          xv = _mm512_permutex2var_ps(_mm512_loadu_ps(rows[i] + j), even, _mm512_loadu_ps(rows[i] + j + 16));
        }
        if ((i * 3 + j) % 2 == 0) {
          acc0 = _mm512_fmadd_ps(wv[i * 3 + j], xv, acc0);
        } else {
          acc1 = _mm512_fmadd_ps(wv[i * 3 + j], xv, acc1);
        }
      }
    }
    const __m512 r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(acc0, acc1), lo), hi);
    // Masked stores are slow on some cores (Zen 4/5): only for the row's last partial vector.
    if (out_w - ow >= 16) {
      _mm512_storeu_ps(y + ow, r);
    } else {
      _mm512_mask_storeu_ps(y + ow, TailMask(out_w - ow), r);
    }
  }
}

// Stride-2 3x3 row from deinterleaved padded rows: e[i] holds the even padded columns of kernel row
// i, o[i] the odd ones, so taps 0 / 1 / 2 of output ow are e[ow], o[ow], e[ow + 1]: plain loads.
inline void Row3x3S2(const float* const* e, const float* const* o, const __m512* wv, __m512 bias,
                     __m512 lo, __m512 hi, float* y, int64_t out_w) {
  for (int64_t ow = 0; ow < out_w; ow += 16) {
    __m512 acc0 = bias, acc1 = _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) {
      acc0 = _mm512_fmadd_ps(wv[i * 3], _mm512_loadu_ps(e[i] + ow), acc0);
      acc1 = _mm512_fmadd_ps(wv[i * 3 + 1], _mm512_loadu_ps(o[i] + ow), acc1);
      acc0 = _mm512_fmadd_ps(wv[i * 3 + 2], _mm512_loadu_ps(e[i] + ow + 1), acc0);
    }
    const __m512 r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(acc0, acc1), lo), hi);
    if (out_w - ow >= 16) {
      _mm512_storeu_ps(y + ow, r);
    } else {
      _mm512_mask_storeu_ps(y + ow, TailMask(out_w - ow), r);
    }
  }
}

// 3x3, dilation 1, stride SW: the whole plane is first copied into the zero-padded scratch (so a
// load never reads a just-stored row: a load straddling two recent stores cannot be
// store-forwarded and stalls), then every output vector is a plain Row3x3. For stride 2 each padded
// row is stored deinterleaved (even columns, then odd columns), which turns the stride-2 taps into
// plain loads instead of two loads and a permute each.
template <int SW>
void Depthwise3x3Padded(const DepthwiseArgs& d) {
  const int64_t stride = d.scratch_stride;
  const int64_t padded_rows = (d.out_h - 1) * SW + 3;  // rows the kernel reads
  float* buf = d.scratch;
  const __m512 zero = _mm512_setzero_ps();
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  // Columns the kernel reads (per half row for stride 2): only those need zeroing, which matters
  // for small planes (7x7, 14x14) where the stride is mostly slack.
  const int64_t read_w = ((d.out_w + 15) / 16) * 16 + 16;
  const int64_t zero_w = SW == 1 ? (read_w < stride ? read_w : stride)
                                 : (read_w < stride / 2 ? read_w : stride / 2);
  for (int64_t r = 0; r < padded_rows; ++r) {
    float* dst = buf + r * stride;
    for (int64_t c = 0; c < zero_w; c += 16) {
      _mm512_storeu_ps(dst + c, zero);
      if (SW == 2) _mm512_storeu_ps(dst + stride / 2 + c, zero);
    }
    const int64_t ih = r - d.pad_top;
    if (ih < 0 || ih >= d.in_h) continue;
    const float* in = d.x + ih * d.in_w;
    if constexpr (SW == 1) {
      float* out = dst + d.pad_left;
      int64_t c = 0;
      for (; c + 16 <= d.in_w; c += 16) _mm512_storeu_ps(out + c, _mm512_loadu_ps(in + c));
      if (c < d.in_w) {
        const __mmask16 m = TailMask(d.in_w - c);
        _mm512_mask_storeu_ps(out + c, m, _mm512_maskz_loadu_ps(m, in + c));
      }
    } else {
      // Padded column p = pad_left + c goes to half p % 2 at p / 2: the input's even columns land
      // in the even half when pad_left is even, in the odd half when it is odd.
      float* e = dst;
      float* o = dst + stride / 2;
      float* to_even_cols = (d.pad_left % 2 == 0) ? e + d.pad_left / 2 : o + d.pad_left / 2;
      float* to_odd_cols = (d.pad_left % 2 == 0) ? o + d.pad_left / 2 : e + (d.pad_left + 1) / 2;
      for (int64_t c = 0; c < d.in_w; c += 32) {
        const int64_t left = d.in_w - c;
        const __m512 a = _mm512_maskz_loadu_ps(TailMask(left), in + c);
        const __m512 b = _mm512_maskz_loadu_ps(TailMask(left > 16 ? left - 16 : 0), in + c + 16);
        const int64_t n_even = left >= 32 ? 16 : (left + 1) / 2, n_odd = left >= 32 ? 16 : left / 2;
        _mm512_mask_storeu_ps(to_even_cols + c / 2, TailMask(n_even), _mm512_permutex2var_ps(a, even, b));
        _mm512_mask_storeu_ps(to_odd_cols + c / 2, TailMask(n_odd), _mm512_permutex2var_ps(a, odd, b));
      }
    }
  }
  __m512 wv[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) wv[t] = _mm512_set1_ps(d.w[t]);
  const __m512 bias = _mm512_set1_ps(d.bias);
  const __m512 lo = _mm512_set1_ps(d.lo);
  const __m512 hi = _mm512_set1_ps(d.hi);
  for (int64_t oh = 0; oh < d.out_h; ++oh) {
    const float* r0 = buf + oh * SW * stride;
    if constexpr (SW == 1) {
      Row3x3<1>(r0, r0 + stride, r0 + 2 * stride, wv, bias, lo, hi, d.y + oh * d.out_w, d.out_w);
    } else {
      const float* e[3] = {r0, r0 + stride, r0 + 2 * stride};
      const float* o[3] = {r0 + stride / 2, r0 + stride + stride / 2, r0 + 2 * stride + stride / 2};
      Row3x3S2(e, o, wv, bias, lo, hi, d.y + oh * d.out_w, d.out_w);
    }
  }
}

// Depthwise convolution of one plane, 16 outputs of a row per vector: border vectors take masked
// loads, the interior plain ones. KH_T / KW_T / SW_T: compile-time kernel size / stride (0 = runtime).
template <int KH_T, int KW_T, int SW_T>
void DepthwisePlane(const DepthwiseArgs& args) {
  const DepthwiseArgs d = args;  // a local copy: stores to y cannot alias it
  const int64_t kw = KW_T != 0 ? KW_T : d.kw;
  const int64_t sw = SW_T != 0 ? SW_T : d.sw;
  const __m512 bias = _mm512_set1_ps(d.bias);
  const __m512 lo = _mm512_set1_ps(d.lo);
  const __m512 hi = _mm512_set1_ps(d.hi);
  // Vectors starting at ow in [ow_lo, ow_hi] read only inside the row (span: columns per load).
  const int64_t span = sw == 1 ? 16 : 32;
  const int64_t ow_lo = (d.pad_left + sw - 1) / sw;
  const int64_t room = d.in_w + d.pad_left - (kw - 1) * d.dw - span;
  const int64_t ow_hi = (sw <= 2 && room >= 0) ? room / sw : -1;
  const int64_t vectors = (d.out_w + 15) / 16;
  // Weights held in registers for fixed sizes: a broadcast from memory per tap would double the
  // loads of this load-bound kernel.
  __m512 wv[KH_T * KW_T > 0 ? KH_T * KW_T : 1];
  if constexpr (KH_T * KW_T > 0) {
#pragma GCC unroll 9
    for (int t = 0; t < KH_T * KW_T; ++t) wv[t] = _mm512_set1_ps(d.w[t]);
  }
  ColumnMasks cm;
  const bool precomputed = sw <= 2 && vectors <= kMaskVectors && kw <= kMaskTaps;
  if (precomputed) {
    for (int64_t v = 0; v < vectors; ++v) {
      for (int64_t j = 0; j < kw; ++j) {
        const int64_t c0 = v * 16 * sw - d.pad_left + j * d.dw;
        cm.m[v][j][0] = ColumnMask(c0, d.in_w);
        cm.m[v][j][1] = ColumnMask(c0 + 16, d.in_w);
      }
    }
  }
  for (int64_t oh = 0; oh < d.out_h; ++oh) {
    float* yr = d.y + oh * d.out_w;
    for (int64_t v = 0; v < vectors; ++v) {
      const int64_t ow = v * 16;
      const __mmask16 out_mask = TailMask(d.out_w - ow);
      const bool interior = ow >= ow_lo && ow <= ow_hi;
      __m512 acc = interior ? DepthwiseVector<false, KH_T, KW_T, SW_T>(d, oh, ow, out_mask, nullptr, wv)
                            : DepthwiseVector<true, KH_T, KW_T, SW_T>(
                                  d, oh, ow, out_mask, precomputed ? cm.m[v] : nullptr, wv);
      acc = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(acc, bias), lo), hi);
      // Masked stores are much slower than plain ones on some cores (Zen 4/5): only at the row end.
      if (out_mask == 0xFFFF) {
        _mm512_storeu_ps(yr + ow, acc);
      } else {
        _mm512_mask_storeu_ps(yr + ow, out_mask, acc);
      }
    }
  }
}

void Depthwise(const DepthwiseArgs& d) {
  if (d.kh == 3 && d.kw == 3 && d.dh == 1 && d.dw == 1) {
    if (d.sw == 1 && d.sh == 1 && d.scratch != nullptr) return Depthwise3x3Padded<1>(d);
    if (d.sw == 2 && d.sh == 2 && d.scratch != nullptr) return Depthwise3x3Padded<2>(d);
  }
  if (d.kh == 3 && d.kw == 3 && d.sw == 1) return DepthwisePlane<3, 3, 1>(d);
  if (d.kh == 3 && d.kw == 3 && d.sw == 2) return DepthwisePlane<3, 3, 2>(d);
  if (d.sw == 1) return DepthwisePlane<0, 0, 1>(d);
  if (d.sw == 2) return DepthwisePlane<0, 0, 2>(d);
  DepthwisePlane<0, 0, 0>(d);
}

// In-register transpose of a 16x16 float block: r[i] lane j becomes r[j] lane i.
inline void Transpose16x16(__m512* r) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 16; h += 8) {
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}

// One output pixel of the channel-blocked 3x3 convolution: b points at its top-left input vector.
inline __m512 Blocked3x3Pixel(const float* b, int64_t row, int64_t step, const __m512* wv,
                              __m512 bias) {
  __m512 acc0 = _mm512_fmadd_ps(wv[0], _mm512_load_ps(b), bias);
  __m512 acc1 = _mm512_mul_ps(wv[1], _mm512_load_ps(b + step));
  acc0 = _mm512_fmadd_ps(wv[2], _mm512_load_ps(b + 2 * step), acc0);
  acc1 = _mm512_fmadd_ps(wv[3], _mm512_load_ps(b + row), acc1);
  acc0 = _mm512_fmadd_ps(wv[4], _mm512_load_ps(b + row + step), acc0);
  acc1 = _mm512_fmadd_ps(wv[5], _mm512_load_ps(b + row + 2 * step), acc1);
  acc0 = _mm512_fmadd_ps(wv[6], _mm512_load_ps(b + 2 * row), acc0);
  acc1 = _mm512_fmadd_ps(wv[7], _mm512_load_ps(b + 2 * row + step), acc1);
  acc0 = _mm512_fmadd_ps(wv[8], _mm512_load_ps(b + 2 * row + 2 * step), acc0);
  return _mm512_add_ps(acc0, acc1);
}

void DepthwiseBlocked(const DepthwiseBlockedArgs& args) {
  const DepthwiseBlockedArgs d = args;  // a local copy: stores cannot alias it
  const int64_t in_plane = d.in_h * d.in_w, out_plane = d.out_h * d.out_w;
  const int64_t wp = d.padded_w, sd = d.stride;
  const int64_t in_rows = (d.band_rows - 1) * sd + 3;
  float* const in = d.scratch;
  float* const out = d.scratch + in_rows * wp * 16;
  __m512 wv[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) wv[t] = _mm512_load_ps(d.w + 16 * t);
  const __m512 bias = _mm512_loadu_ps(d.bias);
  const __m512 lo = _mm512_set1_ps(d.lo), hi = _mm512_set1_ps(d.hi);
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t oh0 = 0; oh0 < d.out_h; oh0 += d.band_rows) {
    const int64_t oh1 = d.out_h - oh0 < d.band_rows ? d.out_h : oh0 + d.band_rows;
    const int64_t r0 = oh0 * sd;                  // first padded row of the band
    const int64_t rows = (oh1 - 1) * sd + 3 - r0;  // padded rows the band reads
    // Zero the padding: whole rows outside the input, the left and right columns of the others.
    for (int64_t lr = 0; lr < rows; ++lr) {
      const int64_t ih = r0 + lr - d.pad_top;
      float* row = in + lr * wp * 16;
      if (ih < 0 || ih >= d.in_h) {
        for (int64_t c = 0; c < wp; ++c) _mm512_store_ps(row + c * 16, zero);
        continue;
      }
      for (int64_t c = 0; c < d.pad_left; ++c) _mm512_store_ps(row + c * 16, zero);
      for (int64_t c = d.pad_left + d.in_w; c < wp; ++c) _mm512_store_ps(row + c * 16, zero);
    }
    // Transpose input rows [ih0, ih1) in blocks of 16 pixels; the last block of a range of at
    // least 16 pixels is moved back to overlap the previous one, so every load is a full vector.
    const int64_t ih0 = r0 - d.pad_top < 0 ? 0 : r0 - d.pad_top;
    const int64_t ih1 = r0 + rows - d.pad_top > d.in_h ? d.in_h : r0 + rows - d.pad_top;
    if (ih0 < ih1) {
      const int64_t q0 = ih0 * d.in_w, q1 = ih1 * d.in_w;
      int64_t hb = ih0, wb = 0;  // row and column of pixel qb (no division per block)
      for (int64_t qb = q0; qb < q1; qb += 16) {
        int64_t q = qb;
        int64_t n = q1 - q < 16 ? q1 - q : 16;
        int64_t h = hb, w = wb;
        if (n < 16 && q1 - q0 >= 16) {
          q = q1 - 16;
          n = 16;
          h = q / d.in_w;
          w = q - h * d.in_w;
        }
        for (wb += 16; wb >= d.in_w; wb -= d.in_w) ++hb;
        __m512 v[16];
        if (n == 16) {
#pragma GCC unroll 16
          for (int c = 0; c < 16; ++c) v[c] = _mm512_loadu_ps(d.x + c * in_plane + q);
        } else {
          const __mmask16 m = TailMask(n);
#pragma GCC unroll 16
          for (int c = 0; c < 16; ++c) v[c] = _mm512_maskz_loadu_ps(m, d.x + c * in_plane + q);
        }
        Transpose16x16(v);
        float* dst = in + ((h + d.pad_top - r0) * wp + w + d.pad_left) * 16;
        for (int64_t p = 0; p < n; ++p) {
          _mm512_store_ps(dst, v[p]);
          dst += 16;
          if (++w == d.in_w) {
            w = 0;
            dst += (wp - d.in_w) * 16;
          }
        }
      }
    }
    // Convolve the band into the blocked output.
    const int64_t row = wp * 16, step = sd * 16;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const float* base = in + (oh - oh0) * sd * row;
      float* o = out + (oh - oh0) * d.out_w * 16;
      int64_t ow = 0;
      for (; ow + 2 <= d.out_w; ow += 2) {
        const __m512 a = Blocked3x3Pixel(base + ow * step, row, 16, wv, bias);
        const __m512 b = Blocked3x3Pixel(base + (ow + 1) * step, row, 16, wv, bias);
        _mm512_store_ps(o + ow * 16, _mm512_min_ps(_mm512_max_ps(a, lo), hi));
        _mm512_store_ps(o + ow * 16 + 16, _mm512_min_ps(_mm512_max_ps(b, lo), hi));
      }
      if (ow < d.out_w) {
        const __m512 a = Blocked3x3Pixel(base + ow * step, row, 16, wv, bias);
        _mm512_store_ps(o + ow * 16, _mm512_min_ps(_mm512_max_ps(a, lo), hi));
      }
    }
    // Transpose back to the 16 output planes (same overlap trick; out has 16 vectors of slack for
    // the short-band case, whose extra lanes are never stored).
    const int64_t q0 = oh0 * d.out_w, q1 = oh1 * d.out_w;
    for (int64_t qb = q0; qb < q1; qb += 16) {
      int64_t q = qb;
      int64_t n = q1 - q < 16 ? q1 - q : 16;
      if (n < 16 && q1 - q0 >= 16) {
        q = q1 - 16;
        n = 16;
      }
      __m512 v[16];
      const float* src = out + (q - q0) * 16;
#pragma GCC unroll 16
      for (int p = 0; p < 16; ++p) v[p] = _mm512_load_ps(src + p * 16);
      Transpose16x16(v);
      if (n == 16) {
#pragma GCC unroll 16
        for (int c = 0; c < 16; ++c) _mm512_storeu_ps(d.y + c * out_plane + q, v[c]);
      } else {
        const __mmask16 m = TailMask(n);
#pragma GCC unroll 16
        for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(d.y + c * out_plane + q, m, v[c]);
      }
    }
  }
}

// Stride 2: two loads and one permute per 16 outputs (the last source vector masked so nothing
// past src[(n - 1) * 2] is touched).
void StridedCopy(const float* src, int64_t stride, int64_t n, float* dst) {
  if (stride != 2) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
    return;
  }
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  int64_t i = 0;
  for (; i + 16 <= n - 1; i += 16) {  // reads src[2i, 2i + 32) <= src[2(n - 1)]
    const __m512 a = _mm512_loadu_ps(src + 2 * i), b = _mm512_loadu_ps(src + 2 * i + 16);
    _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, even, b));
  }
  if (i < n) {
    const int64_t last = 2 * (n - 1 - i) + 1;  // source floats from src + 2i still readable
    const __m512 a = _mm512_maskz_loadu_ps(TailMask(last), src + 2 * i);
    const __m512 b = _mm512_maskz_loadu_ps(TailMask(last > 16 ? last - 16 : 0), src + 2 * i + 16);
    _mm512_mask_storeu_ps(dst + i, TailMask(n - i), _mm512_permutex2var_ps(a, even, b));
  }
}

// Four rows at a time (independent accumulators), 16 k per FMA, masked tail.
void Gemv(const float* w, int64_t ldw, int64_t rows, const float* x, int64_t k, float* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + r * ldw;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
      const __m512 xv = _mm512_loadu_ps(x + p);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + p), xv, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + ldw + p), xv, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + 2 * ldw + p), xv, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + 3 * ldw + p), xv, a3);
    }
    if (p < k) {
      const __mmask16 m = TailMask(k - p);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + p);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + p), xv, a0);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + ldw + p), xv, a1);
      a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + 2 * ldw + p), xv, a2);
      a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + 3 * ldw + p), xv, a3);
    }
    out[r] = _mm512_reduce_add_ps(a0);
    out[r + 1] = _mm512_reduce_add_ps(a1);
    out[r + 2] = _mm512_reduce_add_ps(a2);
    out[r + 3] = _mm512_reduce_add_ps(a3);
  }
  for (; r < rows; ++r) {
    const float* wr = w + r * ldw;
    __m512 a = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
      const __mmask16 m = TailMask(k - p);
      a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wr + p), _mm512_maskz_loadu_ps(m, x + p), a);
    }
    out[r] = _mm512_reduce_add_ps(a);
  }
}

}  // namespace

KernelTable TableAvx512() {
  KernelTable t;
  t.mr = kMr;
  t.nr = kNr;
  t.vec = 16;
  t.gemm_micro = Micro;
  t.gemm_narrow = MicroNarrow;
  t.narrow_n = 4;
  t.depthwise = Depthwise;
  t.depthwise_blocked = DepthwiseBlocked;
  t.gemv = Gemv;
  t.strided_copy = StridedCopy;
  return t;
}

}  // namespace onnxq::kernels::internal
