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

#if defined(__AVX2__)
// The SIMD files' depthwise: the same exact float sums as DepthwiseFloat, but accumulated in
// registers. Outputs are cut into blocks of one register (16 floats AVX-512, 8 AVX2) along a row;
// four blocks (of any rows) are computed together so four independent FMA chains hide the FMA
// latency; each tap of a block is one unaligned register load from the phase-split plane (int8_internal.h), so strides cost nothing
// extra. The requantization is RequantRow's, lane-wise: (acc + bias) * scale in float, clamp,
// cvtps2dq (round half to even), plus the zero point. The bias joins in float (as the accumulators'
// start value) when that is exact (|bias| + taps * 255 * 255 < 2^24), else in int32 with
// wrap-around as MLAS's vpaddd.
// Native register width: GCC keeps 64-byte generic vectors in memory on AVX2.
#if defined(__AVX512F__)
constexpr int64_t kDwLanes = 16;
#else
constexpr int64_t kDwLanes = 8;
#endif
typedef float DwVf __attribute__((vector_size(kDwLanes * 4)));
typedef int32_t DwVi __attribute__((vector_size(kDwLanes * 4)));
typedef uint32_t DwVu __attribute__((vector_size(kDwLanes * 4)));

// kDwLanes bytes (sw == 1) or the even bytes of 2 * kDwLanes (sw == 2) -> floats minus z at dst.
inline void DwBytesToFloat(const uint8_t* p, int64_t sw, float z, float* dst) {
#if defined(__AVX512F__)
  __m512i w;
  if (sw == 1) {
    w = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else {
    w = _mm512_and_si512(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
        _mm512_set1_epi32(0xFF));
  }
  _mm512_storeu_ps(dst, _mm512_sub_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(z)));
#else
  __m256i w;
  if (sw == 1) {
    w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else {
    w = _mm256_and_si256(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
        _mm256_set1_epi32(0xFF));
  }
  _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_cvtepi32_ps(w), _mm256_set1_ps(z)));
#endif
}

// Rounds the lanes half to even (cvtps2dq), adds the zero point and stores n <= kDwLanes bytes
// (lanes are within the output type's range after the clamp, so narrowing only drops bits).
inline void DwRoundStore(const DwVf& f, int32_t yzp, uint8_t* y, int64_t n) {
#if defined(__AVX512F__)
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(reinterpret_cast<__m512>(f)),
                                     _mm512_set1_epi32(yzp));
  const __mmask16 m = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  _mm_mask_storeu_epi8(y, m, _mm512_cvtepi32_epi8(q));
#else
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(reinterpret_cast<__m256>(f)),
                                     _mm256_set1_epi32(yzp));
  // Low byte of each lane: the two's complement byte of an int8 / the uint8 value.
  const __m256i sh = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                      0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i b = _mm256_shuffle_epi8(q, sh);
  const uint64_t v = static_cast<uint32_t>(_mm256_extract_epi32(b, 0)) |
                     (static_cast<uint64_t>(static_cast<uint32_t>(_mm256_extract_epi32(b, 4))) << 32);
  if (n >= 8) {
    __builtin_memcpy(y, &v, 8);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(v >> (8 * i));
  }
#endif
}

// One phase row of the plane: row[c] = padded[c * sw + p] - xzp (0 in the padding), c < ls.
inline void DepthwiseFillRow(float* row, int64_t ls, const uint8_t* xr, int64_t in_w,
                             int64_t pad_left, int64_t p, int64_t sw, int32_t xzp) {
  const float z = static_cast<float>(xzp);
  for (int64_t c = 0; c < ls; c += 16) __builtin_memset(row + c, 0, 64);
  int64_t c0 = pad_left > p ? (pad_left - p + sw - 1) / sw : 0;
  int64_t c1 = (in_w + pad_left - p + sw - 1) / sw;
  c1 = c1 < ls ? c1 : ls;
  if (c0 >= c1) return;
  if (sw > 2) {
    for (int64_t c = c0; c < c1; ++c) row[c] = static_cast<float>(xr[c * sw + p - pad_left]) - z;
    return;
  }
  // Column c reads source byte c * sw + p - pad_left; a block needs kDwLanes * sw bytes. The last
  // block reads only the bytes the row has: masked (AVX-512), or from a copy padded with xzp whose
  // lanes come out as 0 (AVX2; DepthwiseVecRowLen leaves room for the whole block).
  for (int64_t c = c0; c < c1; c += kDwLanes) {
    const int64_t src = c * sw + p - pad_left;
    if (src + kDwLanes * sw <= in_w) {
      DwBytesToFloat(xr + src, sw, z, row + c);
    } else {
      const int64_t n = in_w - src < 32 ? in_w - src : 32;  // readable source bytes
#if defined(__AVX512F__)
      // Masked loads never touch the bytes past the row; only the valid columns are stored.
      const int64_t cols = c1 - c < 16 ? c1 - c : 16;
      const __mmask16 cm = static_cast<__mmask16>((1u << cols) - 1);
      __m512i w;
      if (sw == 1) {
        w = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(cm, xr + src));
      } else {
        const __mmask32 bm = n >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << n) - 1);
        w = _mm512_and_si512(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi8(bm, xr + src)),
                             _mm512_set1_epi32(0xFF));
      }
      _mm512_mask_storeu_ps(row + c, cm,
                            _mm512_sub_ps(_mm512_cvtepi32_ps(w), _mm512_set1_ps(z)));
#else
      alignas(32) uint8_t tmp[32];
      __builtin_memset(tmp, xzp, 32);
      __builtin_memcpy(tmp, xr + src, static_cast<size_t>(n));
      DwBytesToFloat(tmp, sw, z, row + c);
#endif
    }
  }
}

inline void DepthwiseVec(const DepthwiseArgs& a) {
  const int64_t sh = a.sh, sw = a.sw;
  const int64_t ls = DepthwiseVecRowLen(a.out_w, sw, a.kw, a.dw, a.in_w, a.pad_left);
  const int64_t rows = (a.out_h - 1) * sh + (a.kh - 1) * a.dh + 1;
  float* plane = a.vplane;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ir = r - a.pad_top;
    float* row = plane + r * sw * ls;
    if (ir < 0 || ir >= a.in_h) {
      for (int64_t c = 0; c < sw * ls; c += 16) __builtin_memset(row + c, 0, 64);
      continue;
    }
    for (int64_t p = 0; p < sw; ++p)
      DepthwiseFillRow(row + p * ls, ls, a.x + ir * a.in_w, a.in_w, a.pad_left, p, sw, a.xzp);
  }
  const int64_t taps = a.kh * a.kw;
  float wf[260];  // taps * 255 * 255 < 2^24 allows at most 258 taps
  int64_t off[260];
  for (int64_t i = 0; i < a.kh; ++i)
    for (int64_t j = 0; j < a.kw; ++j) {
      const int64_t t = i * a.kw + j;
      wf[t] = static_cast<float>(a.w[t]);
      off[t] = sw == 1 ? i * a.dh * ls + j * a.dw
                       : (i * a.dh * sw + (j * a.dw) % sw) * ls + (j * a.dw) / sw;
    }
  const int64_t nb = (a.out_w + kDwLanes - 1) / kDwLanes;
  const int64_t jobs = a.out_h * nb;
  const int64_t esize = a.scale ? 1 : 4;
  const int64_t abs_bias = a.bias < 0 ? -static_cast<int64_t>(a.bias) : a.bias;
  const bool float_bias = abs_bias + taps * 255 * 255 < (int64_t{1} << 24);
  // The accumulators start at the bias when that is exact.
  const bool bias_in_acc = float_bias && a.scale != nullptr;
  const DwVf acc0 = DwVf{} + (bias_in_acc ? static_cast<float>(a.bias) : 0.f);
  const DwVu ubias = DwVu{} + static_cast<uint32_t>(a.bias);
  const float sc = a.scale ? *a.scale : 0.f;
  const DwVf lo = DwVf{} + static_cast<float>(a.qmin - a.yzp);
  const DwVf hi = DwVf{} + static_cast<float>(a.qmax - a.yzp);
  // Jobs are (output row, 16-column block) pairs in row-major order, walked with counters (no
  // divisions in the loop).
  auto store = [&](int64_t oh, int64_t ob, const DwVf& acc) {
    const int64_t n = a.out_w - ob < kDwLanes ? a.out_w - ob : kDwLanes;
    uint8_t* y = static_cast<uint8_t*>(a.y) + (oh * a.out_w + ob) * esize;
    DwVf f;
    if (bias_in_acc) {
      f = acc;  // started at the bias: exact, an integer below 2^24
    } else {
      // acc holds integers below 2^24: the conversion is exact.
      const DwVi ai = reinterpret_cast<DwVi>(
          reinterpret_cast<DwVu>(__builtin_convertvector(acc, DwVi)) + ubias);
      if (a.scale == nullptr) {
        __builtin_memcpy(y, &ai, static_cast<size_t>(n) * 4);
        return;
      }
      f = __builtin_convertvector(ai, DwVf);
    }
    f = f * sc;
    f = f > lo ? f : lo;
    f = f < hi ? f : hi;
    DwRoundStore(f, a.yzp, y, n);
  };
  auto base = [&](int64_t oh, int64_t ob) { return plane + oh * sh * sw * ls + ob; };
  auto next = [&](int64_t& oh, int64_t& ob) {
    ob += kDwLanes;
    if (ob >= nb * kDwLanes) {
      ob = 0;
      ++oh;
    }
  };
  // Four consecutive jobs from (h0, b0): four independent FMA chains.
  auto group = [&](int64_t h0, int64_t b0) {
    int64_t h[4], b[4];
    h[0] = h0;
    b[0] = b0;
    for (int k = 1; k < 4; ++k) {
      h[k] = h[k - 1];
      b[k] = b[k - 1];
      next(h[k], b[k]);
    }
    const float* p0 = base(h[0], b[0]);
    const float* p1 = base(h[1], b[1]);
    const float* p2 = base(h[2], b[2]);
    const float* p3 = base(h[3], b[3]);
    DwVf a0 = acc0, a1 = acc0, a2 = acc0, a3 = acc0;
    for (int64_t t = 0; t < taps; ++t) {
      DwVf v0, v1, v2, v3;
      __builtin_memcpy(&v0, p0 + off[t], sizeof(DwVf));
      __builtin_memcpy(&v1, p1 + off[t], sizeof(DwVf));
      __builtin_memcpy(&v2, p2 + off[t], sizeof(DwVf));
      __builtin_memcpy(&v3, p3 + off[t], sizeof(DwVf));
      a0 += wf[t] * v0;
      a1 += wf[t] * v1;
      a2 += wf[t] * v2;
      a3 += wf[t] * v3;
    }
    store(h[0], b[0], a0);
    store(h[1], b[1], a1);
    store(h[2], b[2], a2);
    store(h[3], b[3], a3);
  };
  int64_t q = 0, qh = 0, qb = 0;  // job q is (qh, qb)
  for (; q + 4 <= jobs; q += 4) {
    group(qh, qb);
    for (int k = 0; k < 4; ++k) next(qh, qb);
  }
  if (q < jobs && jobs >= 4) {
    // The last jobs as one more group of four ending at the last job: the overlap recomputes and
    // rewrites identical values, cheaper than single FMA chains.
    const int64_t first = jobs - 4;
    group(first / nb, (first % nb) * kDwLanes);
    q = jobs;
  }
  for (; q < jobs; ++q) {
    const float* p0 = base(qh, qb);
    DwVf a0 = acc0;
    for (int64_t t = 0; t < taps; ++t) {
      DwVf v0;
      __builtin_memcpy(&v0, p0 + off[t], sizeof(DwVf));
      a0 += wf[t] * v0;
    }
    store(qh, qb, a0);
    next(qh, qb);
  }
}
#endif

// RequantFloatFn (int8_internal.h).
inline void RequantFloatImpl(const float* acc, int64_t n, int32_t bias, const float* scale,
                             int32_t yzp, int32_t qmin, int32_t qmax, bool out_signed, void* y) {
  int64_t j = 0;
#if defined(__AVX2__)
  if (scale != nullptr) {
    const bool float_bias = (bias < 0 ? -static_cast<int64_t>(bias) : bias) + 258 * 255 * 255 <
                            (int64_t{1} << 24);
    const DwVf vb = DwVf{} + static_cast<float>(bias);
    const DwVu ub = DwVu{} + static_cast<uint32_t>(bias);
    const DwVf lo = DwVf{} + static_cast<float>(qmin - yzp);
    const DwVf hi = DwVf{} + static_cast<float>(qmax - yzp);
    const float sc = *scale;
    uint8_t* yb = static_cast<uint8_t*>(y);
    for (; j < n; j += kDwLanes) {
      const int64_t m = n - j < kDwLanes ? n - j : kDwLanes;
      DwVf a{};
      if (m == kDwLanes) {
        __builtin_memcpy(&a, acc + j, sizeof(DwVf));
      } else {
        for (int64_t i = 0; i < m; ++i) a[i] = acc[j + i];
      }
      DwVf f;
      if (float_bias) {
        f = a + vb;  // exact: integers below 2^24
      } else {
        f = __builtin_convertvector(
            reinterpret_cast<DwVi>(reinterpret_cast<DwVu>(__builtin_convertvector(a, DwVi)) + ub),
            DwVf);
      }
      f = f * sc;
      f = f > lo ? f : lo;
      f = f < hi ? f : hi;
      DwRoundStore(f, yzp, yb + j, m);
    }
    return;
  }
#endif
  for (; j < n; ++j) {
    const int32_t a = static_cast<int32_t>(static_cast<uint32_t>(static_cast<int32_t>(acc[j])) +
                                           static_cast<uint32_t>(bias));
    if (scale == nullptr) {
      static_cast<int32_t*>(y)[j] = a;
    } else {
      StoreQ(y, j, RequantScalar(a, *scale, yzp, qmin, qmax), out_signed);
    }
  }
}

inline void DepthwiseImpl(const DepthwiseArgs& a) {
  const int64_t taps = a.kh * a.kw;
  const bool exact_in_float = taps * 255 * 255 < (int64_t{1} << 24);
#if defined(__AVX2__)
  if (exact_in_float && a.vplane) {
    DepthwiseVec(a);
    return;
  }
#endif
  if (exact_in_float && a.sh == a.sw && a.fplane && a.facc) {
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
  // Clamping before rounding equals rounding before clamping (the bounds are integers); the
  // clamped value rounds half to even exactly by adding and subtracting 1.5 * 2^23. Locals
  // (not p.*) so the byte stores cannot alias the loop bounds: the loop vectorises.
  constexpr float kMagic = 12582912.f;
  const float k = p.k;  // includes a broadcast operand's term (Int8Add)
  const float ra = p.ra, rb = p.rb;
  const int64_t n = p.n;
  auto finish = [&](float v) {
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return static_cast<T>(static_cast<int32_t>((v + kMagic) - kMagic));
  };
  if (p.a_scalar) {
    for (int64_t i = 0; i < n; ++i) c[i] = finish(std::fma(static_cast<float>(b[i]), rb, k));
  } else if (p.b_scalar) {
    for (int64_t i = 0; i < n; ++i) c[i] = finish(std::fma(static_cast<float>(a[i]), ra, k));
  } else {
    for (int64_t i = 0; i < n; ++i)
      c[i] = finish(std::fma(static_cast<float>(a[i]), ra, std::fma(static_cast<float>(b[i]), rb, k)));
  }
}

inline void AddImpl(const AddArgs& p) {
  AddArgs q = p;
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t o = r * p.ld;
    if (!p.a_scalar) q.a = static_cast<const uint8_t*>(p.a) + o;
    if (!p.b_scalar) q.b = static_cast<const uint8_t*>(p.b) + o;
    q.c = static_cast<uint8_t*>(p.c) + o;
    if (p.is_signed) {
      AddTyped<int8_t>(q);
    } else {
      AddTyped<uint8_t>(q);
    }
  }
}

}  // namespace
}  // namespace onnxq::kernels::int8
