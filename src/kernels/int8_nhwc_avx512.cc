// AVX-512 VNNI channels-last kernels (int8_nhwc.h). Internal linkage except the table hook; no
// std:: templates (see kernels_internal.h for why).
//
// Pointwise GEMM: tiles of up to 6 pixels x 64 output channels; per k quad one broadcast of the
// pixel's 4 activation bytes and one vpdpbusd per (pixel, 16 channels) against the packed weight
// vectors, 24 accumulators. The requantization runs per 16-channel vector in registers.
// Depthwise: a ring of padded input rows converted once to float (x - x_zp), then per output
// pixel and 16 channels one FMA per tap; the sums are exact integers in float (int8_nhwc.cc).
// 3x3 at stride 2 instead keeps int16 pairs of neighbouring columns and uses vpdpwssd (below).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/int8_internal.h"

namespace onnxq::kernels::int8 {
namespace {

inline __mmask16 Mask16(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// The output stage's operands, held in locals / registers (byte stores may alias `a`).
struct Out {
  float* yf;
  const int32_t* off;
  const int32_t* wzp;
  const int32_t* xsum;
  const float* scale;
  uint8_t* y;
  int64_t ldy, co;
  __m512 lo, hi;
  __m512i zp;
  // Packed store of 64 channels (Store4): allowed when every |multiplier| < 0.5, so that no
  // product of an int32 accumulator overflows the int32 conversion.
  bool pack;
  bool sg;  // qmin < 0: int8 saturation
  __m512i zp16, qmin8, qmax8, perm;
};

// 4 x 16 channels of one pixel: round in int32, saturate to int16 and add the zero point
// (saturating), saturate to 8 bits, clamp to [qmin, qmax] on the bytes, one 64-byte store.
// Equal to the per-vector float clamp: clamping to the integers qmin - zp, qmax - zp commutes
// with rounding, and the saturations only move values that the clamp moves anyway.
inline void Store4(const Out& o, int64_t r, int64_t c0, __m512i v0, __m512i v1, __m512i v2,
                   __m512i v3) {
  auto q = [&](__m512i v, int64_t c) {
    if (o.wzp != nullptr)
      v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_loadu_si512(o.wzp + c),
                                                 _mm512_set1_epi32(o.xsum[r])));
    return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(o.scale + c)));
  };
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(q(v0, c0), q(v1, c0 + 16)), o.zp16);
  const __m512i b = _mm512_adds_epi16(_mm512_packs_epi32(q(v2, c0 + 32), q(v3, c0 + 48)), o.zp16);
  __m512i y;
  if (o.sg) {
    y = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, b), o.qmin8), o.qmax8);
  } else {
    y = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, b), o.qmin8), o.qmax8);
  }
  _mm512_storeu_si512(o.y + r * o.ldy + c0, _mm512_permutexvar_epi32(o.perm, y));
}

// The same for 2 x 16 channels (one 32-byte store); perm's first 8 entries put the dwords in
// order here too (lane k holds a_k, b_k, a_k, b_k).
inline void Store2(const Out& o, int64_t r, int64_t c0, __m512i v0, __m512i v1) {
  auto q = [&](__m512i v, int64_t c) {
    if (o.wzp != nullptr)
      v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_loadu_si512(o.wzp + c),
                                                 _mm512_set1_epi32(o.xsum[r])));
    return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(o.scale + c)));
  };
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(q(v0, c0), q(v1, c0 + 16)), o.zp16);
  __m512i y;
  if (o.sg) {
    y = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, a), o.qmin8), o.qmax8);
  } else {
    y = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, a), o.qmin8), o.qmax8);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.y + r * o.ldy + c0),
                      _mm512_castsi512_si256(_mm512_permutexvar_epi32(o.perm, y)));
}

inline void StoreOut(const Out& o, int64_t r, int64_t c0, __m512i v) {
  if (o.wzp != nullptr)
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_loadu_si512(o.wzp + c0),
                                               _mm512_set1_epi32(o.xsum[r])));
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(o.scale + c0));
  if (o.yf != nullptr) {
    _mm512_mask_storeu_ps(o.yf + r * o.ldy + c0, Mask16(o.co - c0), f);
    return;
  }
  f = _mm512_min_ps(_mm512_max_ps(f, o.lo), o.hi);
  const __m128i q = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), o.zp));
  uint8_t* y = o.y + r * o.ldy + c0;
  if (o.co - c0 >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), q);
  } else {
    _mm_mask_storeu_epi8(y, Mask16(o.co - c0), q);
  }
}

template <int MR, int NV, bool FLIP>
void Tile(const NhwcGemmArgs& a, const Out& o, int64_t r0, int64_t cb0) {
  __m512i acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)  // the per-channel constant starts the sum
      acc[i][v] = (cb0 + v) * 16 < o.co ? _mm512_loadu_si512(o.off + (cb0 + v) * 16)
                                        : _mm512_setzero_si512();
  const uint8_t* x = a.x + r0 * a.ldx;
  const int64_t ldx = a.ldx;
  const int8_t* w = static_cast<const int8_t*>(a.w) + cb0 * a.kq * 64;
  const int64_t ws = a.kq * 64;
  const __m512i flip = _mm512_set1_epi32(static_cast<int32_t>(0x80808080u));
  for (int64_t q = 0; q < a.kq; ++q) {
    __m512i wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(w + v * ws + q * 64);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t quad;
      std::memcpy(&quad, x + i * ldx + q * 4, 4);
      __m512i xb = _mm512_set1_epi32(quad);
      if (FLIP) xb = _mm512_xor_si512(xb, flip);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], xb, wv[v]);
    }
  }
  if (NV == 4 && o.pack && (cb0 + 4) * 16 <= o.co) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      Store4(o, r0 + i, cb0 * 16, acc[i][0], acc[i][NV > 1 ? 1 : 0], acc[i][NV > 2 ? 2 : 0],
             acc[i][NV > 3 ? 3 : 0]);
    return;
  }
  if (NV == 2 && o.pack && (cb0 + 2) * 16 <= o.co) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) Store2(o, r0 + i, cb0 * 16, acc[i][0], acc[i][NV > 1 ? 1 : 0]);
    return;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      if ((cb0 + v) * 16 < o.co) StoreOut(o, r0 + i, (cb0 + v) * 16, acc[i][v]);
}

template <int MR, bool FLIP>
void TileNv(const NhwcGemmArgs& a, const Out& o, int64_t r0, int64_t cb0, int64_t nv) {
  switch (nv) {
    case 1: Tile<MR, 1, FLIP>(a, o, r0, cb0); break;
    case 2: Tile<MR, 2, FLIP>(a, o, r0, cb0); break;
    case 3: Tile<MR, 3, FLIP>(a, o, r0, cb0); break;
    default: Tile<MR, 4, FLIP>(a, o, r0, cb0); break;
  }
}

template <bool FLIP>
void GemmImpl(const NhwcGemmArgs& a) {
  const int64_t blocks = (a.co + 15) / 16;
  bool small = true;
  for (int64_t c = 0; c < a.co; ++c) small = small && a.scale[c] < 0.5f && a.scale[c] > -0.5f;
  small = small && a.yf == nullptr;
  const Out o{a.yf, a.off, a.wzp, a.xsum, a.scale, a.y, a.ldy, a.co,
              _mm512_set1_ps(static_cast<float>(a.qmin - a.yzp)),
              _mm512_set1_ps(static_cast<float>(a.qmax - a.yzp)), _mm512_set1_epi32(a.yzp),
              small, a.qmin < 0, _mm512_set1_epi16(static_cast<int16_t>(a.yzp)),
              _mm512_set1_epi8(static_cast<char>(a.qmin)), _mm512_set1_epi8(static_cast<char>(a.qmax)),
              _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)};
  // Row chunks whose activations stay in L1 while every channel group passes over them.
  int64_t rc = 16384 / (a.kq * 4 > 0 ? a.kq * 4 : 1);
  rc = rc < 6 ? 6 : rc > 96 ? 96 : rc / 6 * 6;
  for (int64_t c0 = 0; c0 < a.rows; c0 += rc) {
    const int64_t c1 = c0 + rc < a.rows ? c0 + rc : a.rows;
    for (int64_t cb = 0; cb < blocks; cb += 4) {
      const int64_t nv = blocks - cb < 4 ? blocks - cb : 4;
      int64_t r = c0;
      for (; r + 6 <= c1; r += 6) TileNv<6, FLIP>(a, o, r, cb, nv);
      switch (c1 - r) {
        case 1: TileNv<1, FLIP>(a, o, r, cb, nv); break;
        case 2: TileNv<2, FLIP>(a, o, r, cb, nv); break;
        case 3: TileNv<3, FLIP>(a, o, r, cb, nv); break;
        case 4: TileNv<4, FLIP>(a, o, r, cb, nv); break;
        case 5: TileNv<5, FLIP>(a, o, r, cb, nv); break;
        default: break;
      }
    }
  }
}

void GemmAvx512(const NhwcGemmArgs& a) {
  if (a.x_flip) {
    GemmImpl<true>(a);
  } else {
    GemmImpl<false>(a);
  }
}

// The ring slot holding padded input row ih (filled on first use).
const float* RingRow(const NhwcDwArgs& a, int64_t ih) {
  const int64_t slot = (ih + a.pad_top) % a.ring_rows;
  float* row = a.ring + slot * a.ring_w * a.cp;
  if (a.ring_tag[slot] == ih) return row;
  a.ring_tag[slot] = ih;
  const int64_t cp = a.cp;
  if (ih < 0 || ih >= a.in_h) {
    std::memset(row, 0, static_cast<size_t>(a.ring_w * cp) * sizeof(float));
    return row;
  }
  const __m512 zp = _mm512_set1_ps(static_cast<float>(a.xzp));
  const int64_t nc = a.c, in_w = a.in_w, pad_left = a.pad_left, ring_w = a.ring_w;
  const bool sg = a.x_signed;
  const uint8_t* src = a.x + ih * in_w * nc;
  for (int64_t px = 0; px < ring_w; ++px) {
    const int64_t iw = px - pad_left;
    float* d = row + px * cp;
    if (iw < 0 || iw >= in_w) {
      for (int64_t c = 0; c < cp; c += 16) _mm512_storeu_ps(d + c, _mm512_setzero_ps());
      continue;
    }
    const uint8_t* s = src + iw * nc;
    int64_t c = 0;
    for (; c + 16 <= nc; c += 16) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + c));
      const __m512i v = sg ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
      _mm512_storeu_ps(d + c, _mm512_sub_ps(_mm512_cvtepi32_ps(v), zp));
    }
    if (c < cp) {
      const __m128i b = _mm_maskz_loadu_epi8(Mask16(nc - c), s + c);
      const __m512i v = sg ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
      _mm512_storeu_ps(d + c, _mm512_sub_ps(_mm512_cvtepi32_ps(v), zp));
    }
  }
  return row;
}

// Requantizes 16 exact float sums; a full mask stores with a plain (unmasked) store.
inline void DwStore(uint8_t* y, __mmask16 m, __m512 acc, __m512i bias, __m512 scale, __m512 lo,
                    __m512 hi, __m512i zp) {
  const __m512i s = _mm512_add_epi32(_mm512_cvtps_epi32(acc), bias);
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), scale);
  f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
  const __m128i q = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zp));
  if (m == 0xFFFF) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), q);
  } else {
    _mm_mask_storeu_epi8(y, m, q);
  }
}

// ---- 3x3 depthwise with horizontal dilation 1 in int16 pairs (vpdpwssd).
// Ring slot layout: per padded column px and 16 channels, 32 int16: the pairs
// (x[px][c] - zp, x[px + 1][c] - zp) in channel order. One vpdpwssd then applies taps (i, 0) and
// (i, 1) of a row, a second one tap (i, 2) (paired with a zero weight): 6 instructions per
// 16 outputs instead of 9 FMAs, the sum exact in int32 (|products| <= 255 * 255).

// Interleaves two 16 x int16 vectors into 16 (a, b) pairs in channel order.
inline __m512i Pairs(__m256i lo, __m256i hi, __m512i idx) {
  return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

inline __m256i Widen16(const uint8_t* p, __mmask16 m, bool sg) {
  const __m128i b = _mm_maskz_loadu_epi8(m, p);
  return sg ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
}

const int16_t* RingRowPairs(const NhwcDwArgs& a, int64_t ih, __m512i idx) {
  const int64_t slot = (ih + a.pad_top) % a.ring_rows;
  int16_t* row = reinterpret_cast<int16_t*>(a.ring) + slot * a.ring_w * a.cp * 2;
  if (a.ring_tag[slot] == ih) return row;
  a.ring_tag[slot] = ih;
  const int64_t cp = a.cp, nc = a.c, in_w = a.in_w, pad_left = a.pad_left, ring_w = a.ring_w;
  const bool sg = a.x_signed;
  if (ih < 0 || ih >= a.in_h) {
    for (int64_t i = 0; i < ring_w * cp * 2; i += 32) _mm512_storeu_si512(row + i, _mm512_setzero_si512());
    return row;
  }
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(a.xzp));
  const uint8_t* src = a.x + ih * in_w * nc;
  // Stride 2 reads pairs at even columns only (taps 0-1 at 2 ow, tap 2 at 2 ow + 2).
  const int64_t step = a.sw == 2 ? 2 : 1;
  for (int64_t px = 0; px < ring_w; px += step) {
    const int64_t iw0 = px - pad_left, iw1 = iw0 + 1;
    const bool in0 = iw0 >= 0 && iw0 < in_w, in1 = iw1 >= 0 && iw1 < in_w && px + 1 < ring_w;
    int16_t* d = row + px * cp * 2;
    for (int64_t c = 0; c < cp; c += 16) {
      const __mmask16 m = Mask16(nc - c);
      const __m256i v0 = in0 ? _mm256_sub_epi16(Widen16(src + iw0 * nc + c, m, sg), zp)
                             : _mm256_setzero_si256();
      const __m256i v1 = in1 ? _mm256_sub_epi16(Widen16(src + iw1 * nc + c, m, sg), zp)
                             : _mm256_setzero_si256();
      _mm512_storeu_si512(d + c * 2, Pairs(v0, v1, idx));
    }
  }
  return row;
}

void Depthwise3x3Pairs(const NhwcDwArgs& a) {
  const int64_t cp = a.cp, nc = a.c, out_w = a.out_w;
  const int64_t sx = a.sw * cp * 2;  // int16 elements between output columns
  const int64_t two = 2 * cp * 2;    // column px + 2
  const int16_t* const wi = a.wi;
  const int32_t* const bias_p = a.bias;
  const float* const scale_p = a.scale;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.qmin - a.yzp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.qmax - a.yzp));
  const __m512i zp = _mm512_set1_epi32(a.yzp);
  __m512i idx;
  {
    alignas(64) int16_t v[32];
    for (int c = 0; c < 16; ++c) {
      v[2 * c] = static_cast<int16_t>(c);
      v[2 * c + 1] = static_cast<int16_t>(16 + c);
    }
    idx = _mm512_load_si512(v);
  }
  const int16_t* rows[3];
  for (int64_t oh = a.oh_begin; oh < a.oh_end; ++oh) {
    for (int64_t i = 0; i < 3; ++i) rows[i] = RingRowPairs(a, oh * a.sh - a.pad_top + i * a.dh, idx);
    uint8_t* const y = a.y + oh * out_w * nc;
    for (int64_t c = 0; c < cp; c += 16) {
      auto tap = [&](int t) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wi + t * cp + c));
      };
      const __m256i z = _mm256_setzero_si256();
      // Weight pairs: (w(i,0), w(i,1)) and (w(i,2), 0) for the three rows.
      const __m512i w01_0 = Pairs(tap(0), tap(1), idx), w2_0 = Pairs(tap(2), z, idx);
      const __m512i w01_1 = Pairs(tap(3), tap(4), idx), w2_1 = Pairs(tap(5), z, idx);
      const __m512i w01_2 = Pairs(tap(6), tap(7), idx), w2_2 = Pairs(tap(8), z, idx);
      const __m512i bias = _mm512_loadu_si512(bias_p + c);
      const __m512 scale = _mm512_loadu_ps(scale_p + c);
      const __mmask16 m = Mask16(nc - c);
      const int16_t* r0 = rows[0] + c * 2;
      const int16_t* r1 = rows[1] + c * 2;
      const int16_t* r2 = rows[2] + c * 2;
      uint8_t* yc = y + c;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t o = ow * sx;
        __m512i s0 = _mm512_dpwssd_epi32(bias, _mm512_loadu_si512(r0 + o), w01_0);
        __m512i s1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(r1 + o), w01_1);
        s0 = _mm512_dpwssd_epi32(s0, _mm512_loadu_si512(r2 + o), w01_2);
        s1 = _mm512_dpwssd_epi32(s1, _mm512_loadu_si512(r0 + o + two), w2_0);
        s0 = _mm512_dpwssd_epi32(s0, _mm512_loadu_si512(r1 + o + two), w2_1);
        s1 = _mm512_dpwssd_epi32(s1, _mm512_loadu_si512(r2 + o + two), w2_2);
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale);
        f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        const __m128i q = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zp));
        if (m == 0xFFFF) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(yc + ow * nc), q);
        } else {
          _mm_mask_storeu_epi8(yc + ow * nc, m, q);
        }
      }
    }
  }
}

void DepthwiseAvx512(const NhwcDwArgs& a) {
  // Stride 2: the pair ring needs only the even columns (half the conversion work of the float
  // ring), measured 95 vs 117 us on 96 channels at 112x112; at stride 1 the float ring is faster
  // (83 vs 92 us on 32 channels at 112x112, 102 vs 103 us on 144 at 56x56).
  if (a.kh == 3 && a.kw == 3 && a.dw == 1 && a.sw == 2) {
    Depthwise3x3Pairs(a);
    return;
  }
  // Everything the loops need in locals: the byte stores to y may alias any memory, so fields
  // read through `a` would be reloaded after every store.
  const int64_t cp = a.cp, nc = a.c, out_w = a.out_w, kh = a.kh, kw = a.kw;
  const int64_t sx = a.sw * cp, dx = a.dw * cp;
  const float* const wf = a.wf;
  const int32_t* const bias_p = a.bias;
  const float* const scale_p = a.scale;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.qmin - a.yzp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.qmax - a.yzp));
  const __m512i zp = _mm512_set1_epi32(a.yzp);
  const float* rows[32];
  for (int64_t oh = a.oh_begin; oh < a.oh_end; ++oh) {
    for (int64_t i = 0; i < kh; ++i) rows[i] = RingRow(a, oh * a.sh - a.pad_top + i * a.dh);
    uint8_t* const y = a.y + oh * out_w * nc;
    if (kh == 3 && kw == 3) {
      for (int64_t c = 0; c < cp; c += 16) {
        const __m512 w0 = _mm512_loadu_ps(wf + 0 * cp + c), w1 = _mm512_loadu_ps(wf + 1 * cp + c),
                     w2 = _mm512_loadu_ps(wf + 2 * cp + c), w3 = _mm512_loadu_ps(wf + 3 * cp + c),
                     w4 = _mm512_loadu_ps(wf + 4 * cp + c), w5 = _mm512_loadu_ps(wf + 5 * cp + c),
                     w6 = _mm512_loadu_ps(wf + 6 * cp + c), w7 = _mm512_loadu_ps(wf + 7 * cp + c),
                     w8 = _mm512_loadu_ps(wf + 8 * cp + c);
        const __m512i bias = _mm512_loadu_si512(bias_p + c);
        const __m512 scale = _mm512_loadu_ps(scale_p + c);
        const __mmask16 m = Mask16(nc - c);
        const float* r0 = rows[0] + c;
        const float* r1 = rows[1] + c;
        const float* r2 = rows[2] + c;
        uint8_t* yc = y + c;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t o = ow * sx;
          __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(r0 + o), w0);
          __m512 s1 = _mm512_mul_ps(_mm512_loadu_ps(r1 + o), w3);
          __m512 s2 = _mm512_mul_ps(_mm512_loadu_ps(r2 + o), w6);
          s0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + o + dx), w1, s0);
          s1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + o + dx), w4, s1);
          s2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + o + dx), w7, s2);
          s0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + o + 2 * dx), w2, s0);
          s1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + o + 2 * dx), w5, s1);
          s2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + o + 2 * dx), w8, s2);
          const __m512 acc = _mm512_add_ps(_mm512_add_ps(s0, s1), s2);
          DwStore(yc + ow * nc, m, acc, bias, scale, lo, hi, zp);
        }
      }
      continue;
    }
    for (int64_t c = 0; c < cp; c += 16) {
      const __m512i bias = _mm512_loadu_si512(bias_p + c);
      const __m512 scale = _mm512_loadu_ps(scale_p + c);
      const __mmask16 m = Mask16(nc - c);
      for (int64_t ow = 0; ow < out_w; ++ow) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(rows[i] + ow * sx + j * dx + c),
                                  _mm512_loadu_ps(wf + (i * kw + j) * cp + c), acc);
        DwStore(y + ow * nc + c, m, acc, bias, scale, lo, hi, zp);
      }
    }
  }
}

void Quantize8Avx512(const float* x, int64_t n, float scale, int32_t zp, bool is_signed, void* y) {
  const __m512 s = _mm512_set1_ps(scale);
  const float lo = is_signed ? -128.f : 0.f, hi = is_signed ? 127.f : 255.f;
  const __m512 vlo = _mm512_set1_ps(lo - static_cast<float>(zp));
  const __m512 vhi = _mm512_set1_ps(hi - static_cast<float>(zp));
  const __m512i z = _mm512_set1_epi32(zp);
  uint8_t* out = static_cast<uint8_t*>(y);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = Mask16(n - j);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + j), s);
    v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);  // max_ps(NaN, lo) is lo
    _mm_mask_storeu_epi8(out + j, m, _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), z)));
  }
}

bool MinMaxAvx512(const float* x, int64_t n, float* lo, float* hi) {
  __m512 vlo = _mm512_set1_ps(x[0]), vhi = vlo;
  __mmask16 nan = 0;
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = Mask16(n - j);
    const __m512 v = _mm512_mask_loadu_ps(vlo, m, x + j);  // masked-off lanes repeat a seen value
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    vlo = _mm512_min_ps(vlo, v);
    vhi = _mm512_max_ps(vhi, v);
  }
  *lo = _mm512_reduce_min_ps(vlo);
  *hi = _mm512_reduce_max_ps(vhi);
  return nan == 0;
}

}  // namespace

void NhwcKernelsAvx512(Table* t) {
  t->minmax = &MinMaxAvx512;
  t->nhwc_gemm = &GemmAvx512;
  t->nhwc_dw = &DepthwiseAvx512;
  t->quantize8 = &Quantize8Avx512;
}

}  // namespace onnxq::kernels::int8
