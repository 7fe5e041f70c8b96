// Depthwise int8 convolution and the row requantization, written once and compiled into each ISA
// file (int8_gemm.cc, int8_gemm_avx2.cc, int8_gemm_avx512.cc). Everything here has internal
// linkage (anonymous namespace), so each translation unit keeps its own copy compiled with its own
// flags and the linker can never mix them up. Integer math is exact in every variant; the float
// requantization uses one multiply, a clamp and round-half-even, identically in all of them.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/int8_internal.h"

namespace onnxq::kernels::int8 {
namespace {

inline int32_t RequantScalar(int32_t acc, float scale, int32_t yzp, int32_t qmin, int32_t qmax) {
  float f = static_cast<float>(acc) * scale;
  f = f < static_cast<float>(qmin - yzp) ? static_cast<float>(qmin - yzp) : f;
  f = f > static_cast<float>(qmax - yzp) ? static_cast<float>(qmax - yzp) : f;
  return static_cast<int32_t>(std::nearbyint(f)) + yzp;
}

inline void StoreQ(void* y, int64_t j, int32_t q, bool out_signed) {
  if (out_signed) {
    static_cast<int8_t*>(y)[j] = static_cast<int8_t>(q);
  } else {
    static_cast<uint8_t*>(y)[j] = static_cast<uint8_t>(q);
  }
}

// y[j] = requantize(acc[j]) for j < n (or the int32 accumulators when scale is null).
inline void RequantRow(const int32_t* acc, int64_t n, const float* scale, int32_t yzp,
                       int32_t qmin, int32_t qmax, bool out_signed, void* y) {
  if (scale == nullptr) {
    for (int64_t j = 0; j < n; ++j) static_cast<int32_t*>(y)[j] = acc[j];
    return;
  }
  int64_t j = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(*scale);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin - yzp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax - yzp));
  const __m512i vz = _mm512_set1_epi32(yzp);
  for (; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + j)), vs);
    f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
    const __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), vz));
    _mm_mask_storeu_epi8(static_cast<uint8_t*>(y) + j, m, b);
  }
#elif defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(*scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin - yzp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(qmax - yzp));
  const __m256i vz = _mm256_set1_epi32(yzp);
  for (; j + 8 <= n; j += 8) {
    __m256 f = _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j))), vs);
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), vz);
    // Values are within [qmin, qmax]: keep the low byte of each lane.
    const __m256i shuf = _mm256_shuffle_epi8(
        q, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8,
                            12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    const uint32_t lo4 = static_cast<uint32_t>(_mm256_extract_epi32(shuf, 0));
    const uint32_t hi4 = static_cast<uint32_t>(_mm256_extract_epi32(shuf, 4));
    const uint64_t both = lo4 | (static_cast<uint64_t>(hi4) << 32);
    __builtin_memcpy(static_cast<uint8_t*>(y) + j, &both, 8);
  }
#endif
  for (; j < n; ++j) StoreQ(y, j, RequantScalar(acc[j], *scale, yzp, qmin, qmax), out_signed);
}

// One channel, integer arithmetic throughout. a.row: scratch for the whole padded plane as int16
// (x - xzp, 0 in the padding), in_h rows of a.row_len >= max(pad_left + in_w,
// (out_w - 1) * sw + (kw - 1) * dw + 1).
inline void DepthwiseInt(const DepthwiseArgs& a) {
  int16_t* plane = a.row;
  for (int64_t ih = 0; ih < a.in_h; ++ih) {
    int16_t* r = plane + ih * a.row_len;
    const uint8_t* xr = a.x + ih * a.in_w;
    int64_t p = 0;
    for (; p < a.pad_left && p < a.row_len; ++p) r[p] = 0;
    for (int64_t c = 0; c < a.in_w && p < a.row_len; ++c, ++p)
      r[p] = static_cast<int16_t>(static_cast<int32_t>(xr[c]) - a.xzp);
    for (; p < a.row_len; ++p) r[p] = 0;
  }
  int32_t* acc = a.scratch;
  const int64_t esize = a.scale ? 1 : 4;
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    for (int64_t ow = 0; ow < a.out_w; ++ow) acc[ow] = 0;
    for (int64_t i = 0; i < a.kh; ++i) {
      const int64_t ih = oh * a.sh - a.pad_top + i * a.dh;
      if (ih < 0 || ih >= a.in_h) continue;
      const int16_t* r = plane + ih * a.row_len;
      for (int64_t j = 0; j < a.kw; ++j) {
        const int32_t wv = a.w[i * a.kw + j];
        const int16_t* s = r + j * a.dw;
        for (int64_t ow = 0; ow < a.out_w; ++ow) acc[ow] += wv * s[ow * a.sw];
      }
    }
    for (int64_t ow = 0; ow < a.out_w; ++ow)
      acc[ow] = static_cast<int32_t>(static_cast<uint32_t>(acc[ow]) + static_cast<uint32_t>(a.bias));
    RequantRow(acc, a.out_w, a.scale, a.yzp, a.qmin, a.qmax, a.out_signed,
               static_cast<uint8_t*>(a.y) + oh * a.out_w * esize);
  }
}

// The same sums in float, which vectorises far better: every product (x - xzp)(w - wzp) is an
// integer of magnitude <= 255 * 255, so while taps * 255 * 255 < 2^24 every partial sum, in any
// order, is an integer float represents exactly; the result is converted back to int32 exactly
// before the bias and the requantization. DepthwiseImpl only takes this path within that bound
// and with equal strides. The plane is fully padded (zeros = the input zero point) with row length
// L = row_len, and the accumulators use the same row length, so output (oh, ow) = flat index
// q = oh * L + ow reads plane[s * q + i * dh * L + j * dw] for tap (i, j): one flat loop per tap.
// Columns ow >= out_w are computed and dropped.
inline void DepthwiseFloat(const DepthwiseArgs& a) {
  const int64_t L = a.row_len, s = a.sh;
  const int64_t rows = DepthwisePlaneRows(a.out_h, a.sh, a.kh, a.dh);
  float* plane = a.fplane;
  const float z = static_cast<float>(a.xzp);
  // Zero only the padding: rows above and below the input, columns left and right of it.
  const int64_t first = a.pad_top < rows ? a.pad_top : rows;
  const int64_t last = a.pad_top + a.in_h < rows ? a.pad_top + a.in_h : rows;
  for (int64_t i = 0; i < first * L; ++i) plane[i] = 0.f;
  for (int64_t i = last * L; i < rows * L; ++i) plane[i] = 0.f;
  for (int64_t r = first; r < last; ++r) {
    float* row = plane + r * L;
    const uint8_t* xr = a.x + (r - a.pad_top) * a.in_w;
    for (int64_t c = 0; c < a.pad_left; ++c) row[c] = 0.f;
    for (int64_t c = 0; c < a.in_w; ++c) row[a.pad_left + c] = static_cast<float>(xr[c]) - z;
    for (int64_t c = a.pad_left + a.in_w; c < L; ++c) row[c] = 0.f;
  }
  const int64_t n = a.out_h * L;
  float* acc = a.facc;
  for (int64_t q = 0; q < n; ++q) acc[q] = 0.f;
  for (int64_t i = 0; i < a.kh; ++i)
    for (int64_t j = 0; j < a.kw; ++j) {
      const float wv = static_cast<float>(a.w[i * a.kw + j]);
      const float* src = plane + i * a.dh * L + j * a.dw;
      if (wv == 0.f) continue;
      if (s == 1) {
        for (int64_t q = 0; q < n; ++q) acc[q] += wv * src[q];
      } else if (s == 2) {
        for (int64_t q = 0; q < n; ++q) acc[q] += wv * src[2 * q];
      } else {
        for (int64_t q = 0; q < n; ++q) acc[q] += wv * src[s * q];
      }
    }
  // Requantize the whole flat array (one long loop), in place in the int32 scratch (the 8-bit
  // results never overtake the values still to be read), then keep the out_w valid columns.
  int32_t* iacc = a.scratch;
  // The bias is added with int32 wrap-around, as MLAS's vpaddd does.
  const uint32_t ub = static_cast<uint32_t>(a.bias);
  for (int64_t q = 0; q < n; ++q)
    iacc[q] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<int32_t>(acc[q])) + ub);
  const int64_t esize = a.scale ? 1 : 4;
  RequantRow(iacc, n, a.scale, a.yzp, a.qmin, a.qmax, a.out_signed, iacc);
  const uint8_t* src = reinterpret_cast<const uint8_t*>(iacc);
  uint8_t* y = static_cast<uint8_t*>(a.y);
  for (int64_t oh = 0; oh < a.out_h; ++oh)
    __builtin_memcpy(y + oh * a.out_w * esize, src + oh * L * esize, a.out_w * esize);
}

inline void DepthwiseImpl(const DepthwiseArgs& a) {
  const int64_t taps = a.kh * a.kw;
  if (taps * 255 * 255 < (int64_t{1} << 24) && a.sh == a.sw && a.fplane && a.facc) {
    DepthwiseFloat(a);
  } else {
    DepthwiseInt(a);
  }
}

// QLinearAdd, element by element: the same float operations as MLAS's AVX2 kernel (fma, then
// cvtps2dq, then saturation), so every variant matches it exactly.
template <typename T>
inline void AddTyped(const AddArgs& p) {
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* c = static_cast<T*>(p.c);
  constexpr float lo = sizeof(T) == 1 && static_cast<T>(-1) < 0 ? -128.f : 0.f;
  constexpr float hi = lo < 0 ? 127.f : 255.f;
  float k = p.k;
  if (p.a_scalar) k = k + static_cast<float>(a[0]) * p.ra;
  if (p.b_scalar) k = k + static_cast<float>(b[0]) * p.rb;
  for (int64_t i = 0; i < p.n; ++i) {
    float v = k;
    if (!p.b_scalar) v = std::fma(static_cast<float>(b[i]), p.rb, v);
    if (!p.a_scalar) v = std::fma(static_cast<float>(a[i]), p.ra, v);
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    c[i] = static_cast<T>(std::nearbyint(v));
  }
}

inline void AddImpl(const AddArgs& p) {
  if (p.is_signed) {
    AddTyped<int8_t>(p);
  } else {
    AddTyped<uint8_t>(p);
  }
}

}  // namespace
}  // namespace onnxq::kernels::int8
