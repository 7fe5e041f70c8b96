// AVX2 channels-last kernels (int8_nhwc.h). Internal linkage except the table hook; no std::
// templates (see kernels_internal.h for why).
//
// Pointwise GEMM without vpmaddubsw's int16 saturation: weights packed as int16 k pairs, the
// pixel's activation quad widened to int16 and broadcast pair by pair, vpmaddwd (exact: every
// product is at most 255 x 128). Tiles of 4 pixels x 16 channels.
// Depthwise: as the AVX-512 kernel with 8-channel vectors.
#include <immintrin.h>

#include <cstring>

#include "kernels/int8_internal.h"

namespace onnxq::kernels::int8 {
namespace {

// Requantizes 8 int32 sums of channels [c0, c0 + n) (n <= 8) and stores their low bytes.
inline void Store8(__m256i v, const float* scale, int32_t yzp, int32_t qmin, int32_t qmax,
                   uint8_t* y, int64_t n) {
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale));
  f = _mm256_max_ps(f, _mm256_set1_ps(static_cast<float>(qmin - yzp)));
  f = _mm256_min_ps(f, _mm256_set1_ps(static_cast<float>(qmax - yzp)));
  const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(yzp));
  // Values are within [qmin, qmax]: the low byte of each lane is the result.
  const __m256i shuf = _mm256_shuffle_epi8(
      q, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  const uint32_t lo4 = static_cast<uint32_t>(_mm256_extract_epi32(shuf, 0));
  const uint32_t hi4 = static_cast<uint32_t>(_mm256_extract_epi32(shuf, 4));
  const uint64_t both = lo4 | (static_cast<uint64_t>(hi4) << 32);
  if (n >= 8) {
    std::memcpy(y, &both, 8);
  } else {
    for (int64_t j = 0; j < n; ++j) y[j] = static_cast<uint8_t>(both >> (8 * j));
  }
}

inline void StoreOut(const NhwcGemmArgs& a, int64_t r, int64_t c0, __m256i v) {
  const int64_t n = a.co - c0;
  if (n <= 0) return;
  v = _mm256_add_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.off + c0)));
  if (a.wzp != nullptr)
    v = _mm256_sub_epi32(
        v, _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.wzp + c0)),
                              _mm256_set1_epi32(a.xsum[r])));
  if (a.yf != nullptr) {
    alignas(32) float f[8];
    _mm256_store_ps(f, _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(a.scale + c0)));
    for (int64_t j = 0; j < (n < 8 ? n : 8); ++j) a.yf[r * a.ldy + c0 + j] = f[j];
    return;
  }
  Store8(v, a.scale + c0, a.yzp, a.qmin, a.qmax, a.y + r * a.ldy + c0, n);
}

template <int MR, bool FLIP>
void Tile(const NhwcGemmArgs& a, int64_t r0, int64_t cb) {
  __m256i acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  const uint8_t* x = a.x + r0 * a.ldx;
  const int16_t* w = static_cast<const int16_t*>(a.w) + cb * a.kq * 64;
  for (int64_t q = 0; q < a.kq; ++q) {
    const __m256i* wq = reinterpret_cast<const __m256i*>(w + q * 64);
    const __m256i w00 = _mm256_loadu_si256(wq), w01 = _mm256_loadu_si256(wq + 1);
    const __m256i w10 = _mm256_loadu_si256(wq + 2), w11 = _mm256_loadu_si256(wq + 3);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      int32_t quad;
      std::memcpy(&quad, x + i * a.ldx + q * 4, 4);
      if (FLIP) quad ^= static_cast<int32_t>(0x80808080u);
      const __m128i x16 = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(quad));  // x0 x1 x2 x3 as int16
      const __m256i p0 = _mm256_broadcastd_epi32(x16);
      const __m256i p1 = _mm256_broadcastd_epi32(_mm_srli_epi64(x16, 32));
      acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_add_epi32(_mm256_madd_epi16(p0, w00),
                                                               _mm256_madd_epi16(p1, w10)));
      acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_add_epi32(_mm256_madd_epi16(p0, w01),
                                                               _mm256_madd_epi16(p1, w11)));
    }
  }
  for (int i = 0; i < MR; ++i) {
    StoreOut(a, r0 + i, cb * 16, acc[i][0]);
    StoreOut(a, r0 + i, cb * 16 + 8, acc[i][1]);
  }
}

template <bool FLIP>
void GemmImpl(const NhwcGemmArgs& a) {
  const int64_t blocks = (a.co + 15) / 16;
  int64_t rc = 16384 / (a.kq * 4 > 0 ? a.kq * 4 : 1);
  rc = rc < 4 ? 4 : rc > 96 ? 96 : rc / 4 * 4;
  for (int64_t c0 = 0; c0 < a.rows; c0 += rc) {
    const int64_t c1 = c0 + rc < a.rows ? c0 + rc : a.rows;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      int64_t r = c0;
      for (; r + 4 <= c1; r += 4) Tile<4, FLIP>(a, r, cb);
      switch (c1 - r) {
        case 1: Tile<1, FLIP>(a, r, cb); break;
        case 2: Tile<2, FLIP>(a, r, cb); break;
        case 3: Tile<3, FLIP>(a, r, cb); break;
        default: break;
      }
    }
  }
}

void GemmAvx2(const NhwcGemmArgs& a) {
  if (a.x_flip) {
    GemmImpl<true>(a);
  } else {
    GemmImpl<false>(a);
  }
}

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
  const __m256 zp = _mm256_set1_ps(static_cast<float>(a.xzp));
  const uint8_t* src = a.x + ih * a.in_w * a.c;
  for (int64_t px = 0; px < a.ring_w; ++px) {
    const int64_t iw = px - a.pad_left;
    float* d = row + px * cp;
    if (iw < 0 || iw >= a.in_w) {
      std::memset(d, 0, static_cast<size_t>(cp) * sizeof(float));
      continue;
    }
    const uint8_t* s = src + iw * a.c;
    int64_t c = 0;
    for (; c + 8 <= a.c; c += 8) {
      int64_t b8;
      std::memcpy(&b8, s + c, 8);
      const __m128i b = _mm_cvtsi64_si128(b8);
      const __m256i v = a.x_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
      _mm256_storeu_ps(d + c, _mm256_sub_ps(_mm256_cvtepi32_ps(v), zp));
    }
    for (; c < a.c; ++c)
      d[c] = static_cast<float>((a.x_signed ? static_cast<int8_t>(s[c]) : s[c]) - a.xzp);
    for (; c < cp; ++c) d[c] = 0.f;
  }
  return row;
}

inline void DwStore(const NhwcDwArgs& a, uint8_t* y, int64_t c, __m256 acc) {
  const __m256i s = _mm256_add_epi32(_mm256_cvtps_epi32(acc),
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bias + c)));
  Store8(s, a.scale + c, a.yzp, a.qmin, a.qmax, y + c, a.c - c);
}

void DepthwiseAvx2(const NhwcDwArgs& a) {
  const int64_t cp = a.cp;
  const float* rows[32];
  for (int64_t oh = a.oh_begin; oh < a.oh_end; ++oh) {
    for (int64_t i = 0; i < a.kh; ++i) rows[i] = RingRow(a, oh * a.sh - a.pad_top + i * a.dh);
    uint8_t* y = a.y + oh * a.out_w * a.c;
    for (int64_t c = 0; c < a.c; c += 8) {
      if (a.kh == 3 && a.kw == 3) {
        const int64_t sx = a.sw * cp, dx = a.dw * cp;
        __m256 w[9];
        for (int t = 0; t < 9; ++t) w[t] = _mm256_loadu_ps(a.wf + t * cp + c);
        const float* r0 = rows[0] + c;
        const float* r1 = rows[1] + c;
        const float* r2 = rows[2] + c;
        for (int64_t ow = 0; ow < a.out_w; ++ow) {
          const int64_t o = ow * sx;
          __m256 s0 = _mm256_mul_ps(_mm256_loadu_ps(r0 + o), w[0]);
          __m256 s1 = _mm256_mul_ps(_mm256_loadu_ps(r1 + o), w[3]);
          __m256 s2 = _mm256_mul_ps(_mm256_loadu_ps(r2 + o), w[6]);
          s0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + o + dx), w[1], s0);
          s1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + o + dx), w[4], s1);
          s2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + o + dx), w[7], s2);
          s0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + o + 2 * dx), w[2], s0);
          s1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + o + 2 * dx), w[5], s1);
          s2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + o + 2 * dx), w[8], s2);
          DwStore(a, y + ow * a.c, c, _mm256_add_ps(_mm256_add_ps(s0, s1), s2));
        }
        continue;
      }
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < a.kh; ++i)
          for (int64_t j = 0; j < a.kw; ++j)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(rows[i] + (ow * a.sw + j * a.dw) * cp + c),
                                  _mm256_loadu_ps(a.wf + (i * a.kw + j) * cp + c), acc);
        DwStore(a, y + ow * a.c, c, acc);
      }
    }
  }
}

bool MinMaxAvx2(const float* x, int64_t n, float* lo, float* hi) {
  __m256 vlo = _mm256_set1_ps(x[0]), vhi = vlo, nan = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    vlo = _mm256_min_ps(vlo, v);
    vhi = _mm256_max_ps(vhi, v);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, vlo);
  _mm256_store_ps(h, vhi);
  bool ok = _mm256_movemask_ps(nan) == 0;
  float a = l[0], b = h[0];
  for (int k = 1; k < 8; ++k) {
    a = l[k] < a ? l[k] : a;
    b = h[k] > b ? h[k] : b;
  }
  for (; j < n; ++j) {
    ok = ok && x[j] == x[j];
    a = x[j] < a ? x[j] : a;
    b = x[j] > b ? x[j] : b;
  }
  *lo = a;
  *hi = b;
  return ok;
}

}  // namespace

void NhwcKernelsAvx2(Table* t) {
  t->minmax = &MinMaxAvx2;
  t->nhwc_gemm = &GemmAvx2;
  t->nhwc_dw = &DepthwiseAvx2;
}

}  // namespace onnxq::kernels::int8
