// AVX-512 VNNI channels-last kernels (int8_nhwc.h). Internal linkage except the table hook; no
// std:: templates (see kernels_internal.h for why).
//
// Pointwise GEMM: tiles of up to 6 pixels x 64 output channels; per k quad one broadcast of the
// pixel's 4 activation bytes and one vpdpbusd per (pixel, 16 channels) against the packed weight
// vectors, 24 accumulators. The requantization runs per 16-channel vector in registers.
// Depthwise: kernels up to 4 wide with weights within int8 (every symmetric int8 model) use byte
// quads: a ring of input rows rebuilt as one dword per output column and channel holding the
// bytes a kernel row reads, then one vpdpbusd per kernel row (DepthwiseQuads, below). Otherwise
// a ring of padded input rows converted once to float (x - x_zp), then per output pixel and 16
// channels one FMA per tap; the sums are exact integers in float (int8_nhwc.cc); 3x3 at stride 2
// keeps int16 pairs of neighbouring columns and uses vpdpwssd.
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
  // A partial last channel block may be stored with a full 16-byte store that spills into the
  // following pixels' first channels, which are written after it (the call covers whole pixel
  // rows, ldy == co, all channel blocks in one tile), as long as the spill stays inside this
  // call's rows. Masked byte stores are slow on this CPU.
  bool spill;
  int64_t rows;
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

// 16 channels (co == 16 == ldy, no weight zero points) of NP = 4 or 2 consecutive pixels from r:
// their bytes are contiguous, so as Store4 / Store2 with one multiplier vector.
template <int NP>
inline void StorePixels(const Out& o, int64_t r, __m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  const __m512 sc = _mm512_loadu_ps(o.scale);
  auto q = [&](__m512i v) { return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), sc)); };
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(q(v0), q(v1)), o.zp16);
  const __m512i b = NP == 4 ? _mm512_adds_epi16(_mm512_packs_epi32(q(v2), q(v3)), o.zp16) : a;
  __m512i y;
  if (o.sg) {
    y = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, b), o.qmin8), o.qmax8);
  } else {
    y = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, b), o.qmin8), o.qmax8);
  }
  y = _mm512_permutexvar_epi32(o.perm, y);
  if (NP == 4) {
    _mm512_storeu_si512(o.y + r * 16, y);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.y + r * 16), _mm512_castsi512_si256(y));
  }
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
  if (o.co - c0 >= 16 || (o.spill && (r + 1) * o.ldy + 16 - (o.co - c0) <= o.rows * o.ldy)) {
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
  // 16 channels per pixel, pixel rows contiguous: four pixels in one 64-byte store.
  if (NV == 1 && MR >= 4 && o.pack && o.co == 16 && o.ldy == 16 && o.wzp == nullptr) {
    StorePixels<4>(o, r0, acc[0][0], acc[MR > 1 ? 1 : 0][0], acc[MR > 2 ? 2 : 0][0],
                   acc[MR > 3 ? 3 : 0][0]);
    if (MR == 6) {
      StorePixels<2>(o, r0 + 4, acc[MR > 4 ? 4 : 0][0], acc[MR > 5 ? 5 : 0][0], acc[0][0], acc[0][0]);
    } else {
      for (int i = 4; i < MR; ++i) StoreOut(o, r0 + i, 0, acc[i][0]);
    }
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
  // The packed stores need every |multiplier| < 0.5 (see Out::pack): the driver checks it once
  // per run (small_scales); the loop is the fallback for callers that do not.
  bool small = a.small_scales > 0;
  if (a.small_scales < 0) {
    small = true;
    for (int64_t c = 0; c < a.co; ++c) small = small && a.scale[c] < 0.5f && a.scale[c] > -0.5f;
  }
  small = small && a.yf == nullptr;
  const Out o{a.yf, a.off, a.wzp, a.xsum, a.scale, a.y, a.ldy, a.co,
              _mm512_set1_ps(static_cast<float>(a.qmin - a.yzp)),
              _mm512_set1_ps(static_cast<float>(a.qmax - a.yzp)), _mm512_set1_epi32(a.yzp),
              small, a.qmin < 0, _mm512_set1_epi16(static_cast<int16_t>(a.yzp)),
              _mm512_set1_epi8(static_cast<char>(a.qmin)), _mm512_set1_epi8(static_cast<char>(a.qmax)),
              _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
              a.ldy == a.co && blocks <= 4 && a.yf == nullptr, a.rows};
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

// Requantizes 16 int32 sums; a full mask stores with a plain (unmasked) store.
inline void QuadStore(uint8_t* y, __mmask16 m, __m512i acc, __m512 scale, __m512 lo, __m512 hi,
                      __m512i zp) {
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
  f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
  const __m128i q = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zp));
  if (m == 0xFFFF) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), q);
  } else {
    _mm_mask_storeu_epi8(y, m, q);
  }
}

// The same for 16 exact float sums plus the bias.
inline void DwStore(uint8_t* y, __mmask16 m, __m512 acc, __m512i bias, __m512 scale, __m512 lo,
                    __m512 hi, __m512i zp) {
  QuadStore(y, m, _mm512_add_epi32(_mm512_cvtps_epi32(acc), bias), scale, lo, hi, zp);
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

// ---- Depthwise with kw <= 4 in byte quads (vpdpbusd). Ring slot layout: per output column ow
// and channel c one dword holding the kw input bytes (uint8 domain) that kernel row i reads for
// (ow, c) at columns ow * sw - pad_left + j * dw, padding = the zero point byte; the weights hold
// the matching taps, zero past kw. acc = qoff + sum over kernel rows of one vpdpbusd: exact int32
// (u8 x s8 products, no saturation), and the zero-point term is in qoff (padded bytes equal the
// zero point, so they contribute (xzp - xzp) * w = 0 after it). Each slot is built once per input
// row and read by every output row that uses it.

// Dword of the bytes (b0, b1, b2, b3) of 16 channels: KW widened byte vectors shifted into place.
template <int KW>
inline __m512i Quad(const __m128i* b) {
  __m512i v = _mm512_cvtepu8_epi32(b[0]);
  if (KW > 1) v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(b[1]), 8));
  if (KW > 2) v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(b[KW > 2 ? 2 : 0]), 16));
  if (KW > 3) v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(b[KW > 3 ? 3 : 0]), 24));
  return v;
}

// Builds (once per band) the slot of input row ih for the output columns [ow0, ow1) of a band;
// the slot holds (ow - ow0) * cp dwords.
template <int KW>
const int32_t* RingRowQuads(const NhwcDwArgs& a, int64_t ih, int64_t ow0, int64_t ow1, int64_t band) {
  const int64_t slot = (ih + a.pad_top) % a.ring_rows;
  const int64_t cp = a.cp, nc = a.c, in_w = a.in_w;
  int32_t* row = reinterpret_cast<int32_t*>(a.ring) + slot * band * cp;
  if (a.ring_tag[slot] == ih) return row;
  a.ring_tag[slot] = ih;
  const uint8_t zb = static_cast<uint8_t>(a.x_signed ? a.xzp + 128 : a.xzp);
  const __m128i pad = _mm_set1_epi8(static_cast<char>(zb));
  if (ih < 0 || ih >= a.in_h) {
    const __m512i v = _mm512_set1_epi8(static_cast<char>(zb));
    for (int64_t i = 0; i < (ow1 - ow0) * cp; i += 16) _mm512_storeu_si512(row + i, v);
    return row;
  }
  const __m128i flip = _mm_set1_epi8(a.x_signed ? static_cast<char>(0x80) : 0);
  const uint8_t* src = a.x + ih * in_w * nc;
  const int64_t sw = a.sw, dw = a.dw, pl = a.pad_left;
  // Output columns whose taps are all inside the row: [lo, hi), within the band.
  int64_t lo = (pl + sw - 1) / sw;
  int64_t hi = in_w - 1 - (KW - 1) * dw + pl;
  hi = hi < 0 ? 0 : hi / sw + 1;
  lo = lo < ow0 ? ow0 : lo;
  hi = hi > ow1 ? ow1 : hi;
  if (hi < lo) hi = lo;
  const int64_t full = nc / 16 * 16;
  const __mmask16 tail = Mask16(nc - full);
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    const int64_t iw0 = ow * sw - pl;
    int32_t* d = row + (ow - ow0) * cp;
    __m128i b[4];
    if (ow >= lo && ow < hi) {
      const uint8_t* s0 = src + iw0 * nc;
      for (int64_t c = 0; c < full; c += 16) {
        for (int j = 0; j < KW; ++j)
          b[j] = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + j * dw * nc + c)), flip);
        _mm512_storeu_si512(d + c, Quad<KW>(b));
      }
      if (full < cp) {
        for (int j = 0; j < KW; ++j)
          b[j] = _mm_xor_si128(_mm_maskz_loadu_epi8(tail, s0 + j * dw * nc + full), flip);
        _mm512_storeu_si512(d + full, Quad<KW>(b));
      }
      continue;
    }
    for (int64_t c = 0; c < cp; c += 16) {
      const __mmask16 m = Mask16(nc - c);
      for (int j = 0; j < KW; ++j) {
        const int64_t iw = iw0 + j * dw;
        b[j] = iw < 0 || iw >= in_w
                   ? pad
                   : _mm_xor_si128(_mm_maskz_loadu_epi8(m, src + iw * nc + c), flip);
      }
      _mm512_storeu_si512(d + c, Quad<KW>(b));
    }
  }
  return row;
}

// 4 x 16 channels of one pixel in one 64-byte store, as Store4 (same conditions: every
// |multiplier| < 0.5; qmin < 0 selects the int8 saturation).
struct QuadPack {
  __m512i zp16, qmin8, qmax8, perm;
  bool sg;
};
inline void QuadStore4(uint8_t* y, const QuadPack& p, __m512i a0, __m512i a1, __m512i a2, __m512i a3,
                       __m512 s0, __m512 s1, __m512 s2, __m512 s3) {
  auto q = [](__m512i v, __m512 s) { return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), s)); };
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(q(a0, s0), q(a1, s1)), p.zp16);
  const __m512i b = _mm512_adds_epi16(_mm512_packs_epi32(q(a2, s2), q(a3, s3)), p.zp16);
  __m512i v;
  if (p.sg) {
    v = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, b), p.qmin8), p.qmax8);
  } else {
    v = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, b), p.qmin8), p.qmax8);
  }
  _mm512_storeu_si512(y, _mm512_permutexvar_epi32(p.perm, v));
}

// The same for 2 x 16 channels (one 32-byte store; perm's first 8 entries order the dwords).
inline void QuadStore2(uint8_t* y, const QuadPack& p, __m512i a0, __m512i a1, __m512 s0, __m512 s1) {
  auto q = [](__m512i v, __m512 s) { return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), s)); };
  const __m512i a = _mm512_adds_epi16(_mm512_packs_epi32(q(a0, s0), q(a1, s1)), p.zp16);
  __m512i v;
  if (p.sg) {
    v = _mm512_min_epi8(_mm512_max_epi8(_mm512_packs_epi16(a, a), p.qmin8), p.qmax8);
  } else {
    v = _mm512_min_epu8(_mm512_max_epu8(_mm512_packus_epi16(a, a), p.qmin8), p.qmax8);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y),
                      _mm512_castsi512_si256(_mm512_permutexvar_epi32(p.perm, v)));
}

// 3x3 (any stride / dilation) on NV x 16 channels [c, c + 16 NV) of one output row (NV 4 or 2).
template <int NV>
inline void Quads3x3(const int32_t* const* rows, const int8_t* wq, const int32_t* off_p,
                     const float* scale_p, int64_t cp, int64_t nc, int64_t out_w, int64_t c,
                     uint8_t* y, const QuadPack& p) {
  __m512i w[3][NV], off[NV];
  __m512 sc[NV];
  for (int v = 0; v < NV; ++v) {
    for (int i = 0; i < 3; ++i) w[i][v] = _mm512_loadu_si512(wq + (i * cp + c + 16 * v) * 4);
    off[v] = _mm512_loadu_si512(off_p + c + 16 * v);
    sc[v] = _mm512_loadu_ps(scale_p + c + 16 * v);
  }
  const int32_t* r0 = rows[0] + c;
  const int32_t* r1 = rows[1] + c;
  const int32_t* r2 = rows[2] + c;
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const int64_t o = ow * cp;
    __m512i acc[NV];
    for (int v = 0; v < NV; ++v) {
      acc[v] = _mm512_dpbusd_epi32(off[v], _mm512_loadu_si512(r0 + o + 16 * v), w[0][v]);
      acc[v] = _mm512_dpbusd_epi32(acc[v], _mm512_loadu_si512(r1 + o + 16 * v), w[1][v]);
      acc[v] = _mm512_dpbusd_epi32(acc[v], _mm512_loadu_si512(r2 + o + 16 * v), w[2][v]);
    }
    if constexpr (NV == 4) {
      QuadStore4(y + ow * nc + c, p, acc[0], acc[1], acc[2], acc[3], sc[0], sc[1], sc[2], sc[3]);
    } else {
      QuadStore2(y + ow * nc + c, p, acc[0], acc[1], sc[0], sc[1]);
    }
  }
}

template <int KW>
void DepthwiseQuads(const NhwcDwArgs& a) {
  const int64_t cp = a.cp, nc = a.c, out_w = a.out_w, kh = a.kh;
  const int8_t* const wq = a.wq;
  const int32_t* const off_p = a.qoff;
  const float* const scale_p = a.scale;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.qmin - a.yzp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.qmax - a.yzp));
  const __m512i zp = _mm512_set1_epi32(a.yzp);
  bool pack = KW == 3 && kh == 3;
  for (int64_t c = 0; c < nc && pack; ++c) pack = scale_p[c] < 0.5f && scale_p[c] > -0.5f;
  const QuadPack qp{_mm512_set1_epi16(static_cast<int16_t>(a.yzp)),
                    _mm512_set1_epi8(static_cast<char>(a.qmin)),
                    _mm512_set1_epi8(static_cast<char>(a.qmax)),
                    _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
                    a.qmin < 0};
  // Full 64- and 32-channel groups get the packed stores.
  const int64_t c64 = pack ? nc / 64 * 64 : 0;
  const int64_t c32 = pack ? c64 + (nc - c64) / 32 * 32 : 0;
  // Bands of output columns whose ring slots (4 bytes per channel and column) stay in L1 while
  // the band's output rows are computed; each quad is still built once.
  int64_t band = 24576 / (a.ring_rows * cp * 4);
  band = band < 4 ? 4 : band;
  band = band > out_w ? out_w : band;
  const int32_t* rows[32];
  for (int64_t ow0 = 0; ow0 < out_w; ow0 += band) {
    const int64_t ow1 = ow0 + band < out_w ? ow0 + band : out_w, bw = ow1 - ow0;
    for (int64_t i = 0; i < a.ring_rows; ++i) a.ring_tag[i] = INT64_MIN;
    for (int64_t oh = a.oh_begin; oh < a.oh_end; ++oh) {
      for (int64_t i = 0; i < kh; ++i)
        rows[i] = RingRowQuads<KW>(a, oh * a.sh - a.pad_top + i * a.dh, ow0, ow1, band);
      uint8_t* const y = a.y + (oh * out_w + ow0) * nc;
      for (int64_t c = 0; c < c64; c += 64) Quads3x3<4>(rows, wq, off_p, scale_p, cp, nc, bw, c, y, qp);
      if (c32 > c64) Quads3x3<2>(rows, wq, off_p, scale_p, cp, nc, bw, c64, y, qp);
      for (int64_t c = c32; c < cp; c += 16) {
        const __m512i off = _mm512_loadu_si512(off_p + c);
        const __m512 scale = _mm512_loadu_ps(scale_p + c);
        const __mmask16 m = Mask16(nc - c);
        uint8_t* yc = y + c;
        if (kh == 3) {
          const __m512i w0 = _mm512_loadu_si512(wq + (0 * cp + c) * 4);
          const __m512i w1 = _mm512_loadu_si512(wq + (1 * cp + c) * 4);
          const __m512i w2 = _mm512_loadu_si512(wq + (2 * cp + c) * 4);
          const int32_t* r0 = rows[0] + c;
          const int32_t* r1 = rows[1] + c;
          const int32_t* r2 = rows[2] + c;
          for (int64_t ow = 0; ow < bw; ++ow) {
            const int64_t o = ow * cp;
            __m512i acc = _mm512_dpbusd_epi32(off, _mm512_loadu_si512(r0 + o), w0);
            acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(r1 + o), w1);
            acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(r2 + o), w2);
            QuadStore(yc + ow * nc, m, acc, scale, lo, hi, zp);
          }
          continue;
        }
        for (int64_t ow = 0; ow < bw; ++ow) {
          __m512i acc = off;
          for (int64_t i = 0; i < kh; ++i)
            acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(rows[i] + ow * cp + c),
                                      _mm512_loadu_si512(wq + (i * cp + c) * 4));
          QuadStore(yc + ow * nc, m, acc, scale, lo, hi, zp);
        }
      }
    }
  }
}

void DepthwiseAvx512(const NhwcDwArgs& a) {
  // Byte quads when the driver prepared them (measured 1.5-2x faster than the rings below on
  // every MobileNetV2 depthwise shape; docs/int8.md).
  if (a.wq != nullptr && a.kh <= 32) {
    switch (a.kw) {
      case 1: DepthwiseQuads<1>(a); return;
      case 2: DepthwiseQuads<2>(a); return;
      case 3: DepthwiseQuads<3>(a); return;
      case 4: DepthwiseQuads<4>(a); return;
      default: break;
    }
  }
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
  // 64 values per step with plain loads and one 64-byte store (masked stores are slow on some
  // cores); the saturating packs are exact on the clamped values.
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  int64_t j0 = 0;
  for (; j0 + 64 <= n; j0 += 64) {
    __m512i q[4];
    for (int v = 0; v < 4; ++v) {
      __m512 f = _mm512_div_ps(_mm512_loadu_ps(x + j0 + 16 * v), s);
      f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
      q[v] = _mm512_add_epi32(_mm512_cvtps_epi32(f), z);
    }
    const __m512i a = _mm512_packs_epi32(q[0], q[1]), b = _mm512_packs_epi32(q[2], q[3]);
    const __m512i r = is_signed ? _mm512_packs_epi16(a, b) : _mm512_packus_epi16(a, b);
    _mm512_storeu_si512(out + j0, _mm512_permutexvar_epi32(perm, r));
  }
  for (int64_t j = j0; j < n; j += 16) {
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
  t->nhwc_dw_quads = true;
  t->quantize8 = &Quantize8Avx512;
}

}  // namespace onnxq::kernels::int8
