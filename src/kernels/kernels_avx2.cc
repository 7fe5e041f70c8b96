// AVX2 + FMA kernels (compiled with -mavx2 -mfma -mf16c; only called when the CPU has them).
// Internal linkage and no std:: templates, for the same reason as kernels_avx512.cc.
#include <immintrin.h>

#include "kernels/kernels_internal.h"

namespace onnxq::kernels::internal {
namespace {

constexpr int kMr = 4;
constexpr int kNv = 3;  // ymm vectors per tile row
constexpr int kNr = 8 * kNv;

// Lane mask with the first `count` (clamped to 0..8) lanes set.
inline __m256i TailMask(int64_t count) {
  const int c = count < 0 ? 0 : (count > 8 ? 8 : static_cast<int>(count));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), lane);
}

// 4 x (8*NV) tile: 4*NV accumulators (12 of the 16 ymm registers at NV = 3).
template <int NV>
void MicroTile(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
               int n, const Epilogue& ep) {
  __m256 acc[kMr][NV];
#pragma GCC unroll 4
  for (int i = 0; i < kMr; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; ++p) {
    // Packed A is one sequential stream (see PackAPanels): fetch ~2 KiB ahead, past this panel's
    // slice into the next one, so weights streamed from DRAM arrive before they are needed.
    _mm_prefetch(reinterpret_cast<const char*>(a + 512), _MM_HINT_T0);
    __m256 bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + v * 8);
#pragma GCC unroll 4
    for (int i = 0; i < kMr; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += kMr;
    b += ldb;
  }
  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  const __m256 beta = _mm256_set1_ps(ep.beta);
  const __m256 lo = _mm256_set1_ps(ep.lo);
  const __m256 hi = _mm256_set1_ps(ep.hi);
#pragma GCC unroll 4
  for (int i = 0; i < kMr; ++i) {
    if (i >= m) break;
    float* ci = c + i * ldc;
    const __m256 bias = _mm256_set1_ps(ep.bias != nullptr ? ep.bias[i] : 0.f);
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      const bool full = n >= (v + 1) * 8;
      const __m256i mask = TailMask(n - v * 8);
      __m256 r = ep.alpha == 1.f ? acc[i][v] : _mm256_mul_ps(alpha, acc[i][v]);
      if (ep.beta != 0.f) {
        const __m256 old = full ? _mm256_loadu_ps(ci + v * 8) : _mm256_maskload_ps(ci + v * 8, mask);
        r = _mm256_fmadd_ps(beta, old, r);
      }
      r = _mm256_add_ps(r, bias);
      if (ep.clamp) r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
      if (full) {
        _mm256_storeu_ps(ci + v * 8, r);
      } else {
        _mm256_maskstore_ps(ci + v * 8, mask, r);
      }
    }
  }
}

void Micro(int64_t k, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int m,
           int n, const Epilogue& ep) {
  if (n > 16) {
    MicroTile<3>(k, a, b, ldb, c, ldc, m, n, ep);
  } else if (n > 8) {
    MicroTile<2>(k, a, b, ldb, c, ldc, m, n, ep);
  } else {
    MicroTile<1>(k, a, b, ldb, c, ldc, m, n, ep);
  }
}

// Lanes of an 8-wide load starting at input column c0 (unit step) that lie inside [0, in_w).
inline __m256i ColumnMask(int64_t c0, int64_t in_w) {
  const __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                       _mm256_set1_epi32(static_cast<int>(c0)));
  return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(in_w)), idx));
}

// x[c0 .. c0+7] with out-of-row lanes zero; vmaskmovps never faults on masked-off lanes.
inline __m256 LoadColumns(const float* row, int64_t c0, int64_t in_w) {
  if (c0 >= 0 && c0 + 8 <= in_w) return _mm256_loadu_ps(row + c0);
  return _mm256_maskload_ps(row + c0, ColumnMask(c0, in_w));
}

inline void StoreOut(float* y, int64_t remaining, __m256 v) {
  if (remaining >= 8) {
    _mm256_storeu_ps(y, v);
  } else {
    _mm256_maskstore_ps(y, TailMask(remaining), v);
  }
}

// One vector of 8 outputs of row oh at column ow (before bias / clamp); kMasked as in the AVX-512
// file: border vectors mask their loads, interior ones use plain loads.
template <bool kMasked, int KW_T, int SW_T>
inline __m256 DepthwiseVector(const DepthwiseArgs& d, int64_t oh, int64_t ow) {
  const int64_t kw = KW_T != 0 ? KW_T : d.kw;
  const int64_t sw = SW_T != 0 ? SW_T : d.sw;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < d.kh; ++i) {
    const int64_t ih = oh * d.sh - d.pad_top + i * d.dh;
    if (ih < 0 || ih >= d.in_h) continue;
    const float* row = d.x + ih * d.in_w;
    const float* wr = d.w + i * kw;
#pragma GCC unroll 3
    for (int64_t j = 0; j < kw; ++j) {
      const int64_t c0 = ow * sw - d.pad_left + j * d.dw;
      __m256 xv;
      if (sw == 1) {
        xv = kMasked ? LoadColumns(row, c0, d.in_w) : _mm256_loadu_ps(row + c0);
      } else if (sw == 2) {
        // Even elements of x[c0 .. c0+15].
        const __m256 a = kMasked ? LoadColumns(row, c0, d.in_w) : _mm256_loadu_ps(row + c0);
        const __m256 b = kMasked ? LoadColumns(row, c0 + 8, d.in_w) : _mm256_loadu_ps(row + c0 + 8);
        const __m256 s = _mm256_shuffle_ps(a, b, 0x88);
        xv = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
      } else {
        const __m256i idx = _mm256_add_epi32(
            _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(sw))),
            _mm256_set1_epi32(static_cast<int>(c0)));
        const __m256i valid = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1)),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(d.in_w)), idx)),
            TailMask(d.out_w - ow));
        xv = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), row, idx, _mm256_castsi256_ps(valid), 4);
      }
      acc = _mm256_fmadd_ps(_mm256_set1_ps(wr[j]), xv, acc);
    }
  }
  return acc;
}

template <int KW_T, int SW_T>
void DepthwisePlane(const DepthwiseArgs& d) {
  const int64_t kw = KW_T != 0 ? KW_T : d.kw;
  const int64_t sw = SW_T != 0 ? SW_T : d.sw;
  const __m256 bias = _mm256_set1_ps(d.bias);
  const __m256 lo = _mm256_set1_ps(d.lo);
  const __m256 hi = _mm256_set1_ps(d.hi);
  const int64_t span = sw == 1 ? 8 : (sw == 2 ? 16 : 8 * sw);
  const int64_t ow_lo = (d.pad_left + sw - 1) / sw;
  const int64_t room = d.in_w + d.pad_left - (kw - 1) * d.dw - span;
  const int64_t ow_hi = (sw <= 2 && room >= 0) ? room / sw : -1;
  for (int64_t oh = 0; oh < d.out_h; ++oh) {
    float* yr = d.y + oh * d.out_w;
    for (int64_t ow = 0; ow < d.out_w; ow += 8) {
      const bool interior = ow >= ow_lo && ow <= ow_hi;
      __m256 acc = interior ? DepthwiseVector<false, KW_T, SW_T>(d, oh, ow)
                            : DepthwiseVector<true, KW_T, SW_T>(d, oh, ow);
      acc = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(acc, bias), lo), hi);
      StoreOut(yr + ow, d.out_w - ow, acc);
    }
  }
}

// 3x3 / dilation 1 / stride 1 or 2 through a zero-padded copy of the plane (see the AVX-512 file
// for why the whole plane is copied first); stride-2 rows are stored deinterleaved (even padded
// columns, then odd ones) so every tap is a plain load.
template <int SW>
void Depthwise3x3Padded(const DepthwiseArgs& d) {
  const int64_t stride = d.scratch_stride;
  const int64_t padded_rows = (d.out_h - 1) * SW + 3;
  float* buf = d.scratch;
  const __m256 zero = _mm256_setzero_ps();
  const int64_t read_w = ((d.out_w + 7) / 8) * 8 + 16;
  const int64_t zero_w = SW == 1 ? (read_w < stride ? read_w : stride)
                                 : (read_w < stride / 2 ? read_w : stride / 2);
  for (int64_t r = 0; r < padded_rows; ++r) {
    float* dst = buf + r * stride;
    for (int64_t c = 0; c < zero_w; c += 8) {
      _mm256_storeu_ps(dst + c, zero);
      if (SW == 2) _mm256_storeu_ps(dst + stride / 2 + c, zero);
    }
    const int64_t ih = r - d.pad_top;
    if (ih < 0 || ih >= d.in_h) continue;
    const float* in = d.x + ih * d.in_w;
    if constexpr (SW == 1) {
      float* out = dst + d.pad_left;
      int64_t c = 0;
      for (; c + 8 <= d.in_w; c += 8) _mm256_storeu_ps(out + c, _mm256_loadu_ps(in + c));
      if (c < d.in_w) {
        const __m256i m = TailMask(d.in_w - c);
        _mm256_maskstore_ps(out + c, m, _mm256_maskload_ps(in + c, m));
      }
    } else {
      float* e = dst;
      float* o = dst + stride / 2;
      float* to_even_cols = (d.pad_left % 2 == 0) ? e + d.pad_left / 2 : o + d.pad_left / 2;
      float* to_odd_cols = (d.pad_left % 2 == 0) ? o + d.pad_left / 2 : e + (d.pad_left + 1) / 2;
      for (int64_t c = 0; c < d.in_w; c += 16) {
        const int64_t left = d.in_w - c;
        const __m256 a = _mm256_maskload_ps(in + c, TailMask(left));
        const __m256 b = _mm256_maskload_ps(in + c + 8, TailMask(left - 8));
        const __m256 ev = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
        const __m256 od = _mm256_castpd_ps(
            _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
        const int64_t n_even = left >= 16 ? 8 : (left + 1) / 2, n_odd = left >= 16 ? 8 : left / 2;
        _mm256_maskstore_ps(to_even_cols + c / 2, TailMask(n_even), ev);
        _mm256_maskstore_ps(to_odd_cols + c / 2, TailMask(n_odd), od);
      }
    }
  }
  __m256 wv[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) wv[t] = _mm256_set1_ps(d.w[t]);
  const __m256 bias = _mm256_set1_ps(d.bias);
  const __m256 lo = _mm256_set1_ps(d.lo);
  const __m256 hi = _mm256_set1_ps(d.hi);
  for (int64_t oh = 0; oh < d.out_h; ++oh) {
    const float* r0 = buf + oh * SW * stride;
    float* y = d.y + oh * d.out_w;
    for (int64_t ow = 0; ow < d.out_w; ow += 8) {
      __m256 acc0 = bias, acc1 = _mm256_setzero_ps();
#pragma GCC unroll 3
      for (int i = 0; i < 3; ++i) {
        const float* row = r0 + i * stride;
        if constexpr (SW == 1) {
          acc0 = _mm256_fmadd_ps(wv[i * 3], _mm256_loadu_ps(row + ow), acc0);
          acc1 = _mm256_fmadd_ps(wv[i * 3 + 1], _mm256_loadu_ps(row + ow + 1), acc1);
          acc0 = _mm256_fmadd_ps(wv[i * 3 + 2], _mm256_loadu_ps(row + ow + 2), acc0);
        } else {
          const float* e = row;
          const float* o = row + stride / 2;
          acc0 = _mm256_fmadd_ps(wv[i * 3], _mm256_loadu_ps(e + ow), acc0);
          acc1 = _mm256_fmadd_ps(wv[i * 3 + 1], _mm256_loadu_ps(o + ow), acc1);
          acc0 = _mm256_fmadd_ps(wv[i * 3 + 2], _mm256_loadu_ps(e + ow + 1), acc0);
        }
      }
      StoreOut(y + ow, d.out_w - ow, _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(acc0, acc1), lo), hi));
    }
  }
}

void Depthwise(const DepthwiseArgs& d) {
  if (d.kh == 3 && d.kw == 3 && d.dh == 1 && d.dw == 1 && d.scratch != nullptr) {
    if (d.sw == 1 && d.sh == 1) return Depthwise3x3Padded<1>(d);
    if (d.sw == 2 && d.sh == 2) return Depthwise3x3Padded<2>(d);
  }
  if (d.kw == 3 && d.sw == 1) return DepthwisePlane<3, 1>(d);
  if (d.kw == 3 && d.sw == 2) return DepthwisePlane<3, 2>(d);
  if (d.sw == 1) return DepthwisePlane<0, 1>(d);
  if (d.sw == 2) return DepthwisePlane<0, 2>(d);
  DepthwisePlane<0, 0>(d);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Four rows at a time, 8 k per FMA, masked tail.
void Gemv(const float* w, int64_t ldw, int64_t rows, const float* x, int64_t k, float* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + r * ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
      const __m256 xv = _mm256_loadu_ps(x + p);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + p), xv, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + ldw + p), xv, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 2 * ldw + p), xv, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + 3 * ldw + p), xv, a3);
    }
    if (p < k) {
      const __m256i m = TailMask(k - p);
      const __m256 xv = _mm256_maskload_ps(x + p, m);
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + p, m), xv, a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + ldw + p, m), xv, a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + 2 * ldw + p, m), xv, a2);
      a3 = _mm256_fmadd_ps(_mm256_maskload_ps(w0 + 3 * ldw + p, m), xv, a3);
    }
    out[r] = HorizontalSum(a0);
    out[r + 1] = HorizontalSum(a1);
    out[r + 2] = HorizontalSum(a2);
    out[r + 3] = HorizontalSum(a3);
  }
  for (; r < rows; ++r) {
    const float* wr = w + r * ldw;
    __m256 a = _mm256_setzero_ps();
    for (int64_t p = 0; p < k; p += 8) {
      const __m256i m = TailMask(k - p);
      a = _mm256_fmadd_ps(_mm256_maskload_ps(wr + p, m), _mm256_maskload_ps(x + p, m), a);
    }
    out[r] = HorizontalSum(a);
  }
}

}  // namespace

KernelTable TableAvx2() {
  KernelTable t;
  t.mr = kMr;
  t.nr = kNr;
  t.vec = 8;
  t.gemm_micro = Micro;
  t.depthwise = Depthwise;
  t.gemv = Gemv;
  return t;
}

}  // namespace onnxq::kernels::internal
