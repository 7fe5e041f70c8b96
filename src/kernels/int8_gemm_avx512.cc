// AVX-512 VNNI int8 GEMM tile: 8 rows x 32 columns, one vpdpbusd (u8 x s8 -> s32, 4 products per
// lane, no intermediate saturation) per row and 16 columns per k quad. The signed operand (the
// weight quad of a row) is broadcast; the unsigned one is the packed activation panel.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own `__Y = __Y` placeholders
// (a known false positive of the compiler headers, not of this code).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/int8_depthwise_impl.h"
#include "kernels/int8_internal.h"

namespace onnxq::kernels::int8 {
namespace {

constexpr int kMr = 8, kNr = 32;

inline __mmask16 Mask(int count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

void StoreRow(const Tile& t, int i, int h, __m512i v) {
  const int j0 = h * 16;
  const __mmask16 m = Mask(t.n - j0);
  if (m == 0) return;
  v = _mm512_add_epi32(v, _mm512_set1_epi32(t.row_off[i]));
  if (t.wzp != nullptr && t.wzp[i] != 0) {
    const __m512i cs = _mm512_maskz_loadu_epi32(m, t.colsum + j0);
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(cs, _mm512_set1_epi32(t.wzp[i])));
  }
  if (t.scale == nullptr) {
    _mm512_mask_storeu_epi32(static_cast<int32_t*>(t.y) + i * t.ldy + j0, m, v);
    return;
  }
  __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(t.scale[i]));
  f = _mm512_max_ps(f, _mm512_set1_ps(static_cast<float>(t.qmin - t.yzp)));
  f = _mm512_min_ps(f, _mm512_set1_ps(static_cast<float>(t.qmax - t.yzp)));
  const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(t.yzp));
  _mm_mask_storeu_epi8(static_cast<uint8_t*>(t.y) + i * t.ldy + j0, m, _mm512_cvtepi32_epi8(q));
}

// Named accumulators (not an array): GCC 12 otherwise shuffles the array through extra register
// copies and stack spills on every k step.
template <int NH>  // number of 16-column halves computed (1 or 2)
void TileImpl(const Tile& t) {
  __m512i a00 = _mm512_setzero_si512(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
          a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00,
          a70 = a00, a71 = a00;
  const uint8_t* w = static_cast<const uint8_t*>(t.w);
  const uint8_t* x = t.x;
  for (int64_t q = 0; q < t.kq; ++q) {
    const __m512i x0 = _mm512_loadu_si512(x);
    const __m512i x1 = NH == 2 ? _mm512_loadu_si512(x + 64) : _mm512_setzero_si512();
#define ONNXQ_I8_ROW(i, c0, c1)                                  \
  {                                                              \
    int32_t quad;                                                \
    __builtin_memcpy(&quad, w + 4 * (i), 4);                     \
    const __m512i wb = _mm512_set1_epi32(quad);                  \
    c0 = _mm512_dpbusd_epi32(c0, x0, wb);                        \
    if (NH == 2) c1 = _mm512_dpbusd_epi32(c1, x1, wb);           \
  }
    ONNXQ_I8_ROW(0, a00, a01)
    ONNXQ_I8_ROW(1, a10, a11)
    ONNXQ_I8_ROW(2, a20, a21)
    ONNXQ_I8_ROW(3, a30, a31)
    ONNXQ_I8_ROW(4, a40, a41)
    ONNXQ_I8_ROW(5, a50, a51)
    ONNXQ_I8_ROW(6, a60, a61)
    ONNXQ_I8_ROW(7, a70, a71)
#undef ONNXQ_I8_ROW
    w += 4 * kMr;
    x += t.x_stride;
  }
  const __m512i acc[kMr][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31},
                               {a40, a41}, {a50, a51}, {a60, a61}, {a70, a71}};
  for (int i = 0; i < t.m; ++i)
    for (int h = 0; h < NH; ++h) StoreRow(t, i, h, acc[i][h]);
}

void TileAvx512(const Tile& t) {
  if (t.n > 16) {
    TileImpl<2>(t);
  } else {
    TileImpl<1>(t);
  }
}

void DepthwiseAvx512(const DepthwiseArgs& a) { DepthwiseImpl(a); }
// QLinearAdd of two full operands, 64 elements per step: widen, the two FMAs of AddTyped, clamp
// to the type's range in float, cvtps2dq (round half to even, as AddTyped's magic-number
// rounding of the clamped value), then saturating packs (exact: already clamped) and one
// 64-byte store. All loads of a step precede its store, so c may be a or b (in place).
template <bool SG>
void AddRow(const uint8_t* a, const uint8_t* b, uint8_t* c, int64_t n, __m512 ra, __m512 rb,
            __m512 k, __m512 lo, __m512 hi, __m512i perm) {
  auto widen = [](const __m128i v) {
    return _mm512_cvtepi32_ps(SG ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v));
  };
  auto one = [&](__m128i av, __m128i bv) {
    const __m512 r = _mm512_fmadd_ps(widen(av), ra, _mm512_fmadd_ps(widen(bv), rb, k));
    return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi));
  };
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i q[4];
    for (int v = 0; v < 4; ++v)
      q[v] = one(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 16 * v)),
                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + 16 * v)));
    const __m512i x = _mm512_packs_epi32(q[0], q[1]), y = _mm512_packs_epi32(q[2], q[3]);
    const __m512i z = SG ? _mm512_packs_epi16(x, y) : _mm512_packus_epi16(x, y);
    _mm512_storeu_si512(c + i, _mm512_permutexvar_epi32(perm, z));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = Mask(static_cast<int>(n - i < 16 ? n - i : 16));
    const __m512i q = one(_mm_maskz_loadu_epi8(m, a + i), _mm_maskz_loadu_epi8(m, b + i));
    _mm_mask_storeu_epi8(c + i, m, _mm512_cvtepi32_epi8(q));
  }
}

void AddAvx512(const AddArgs& p) {
  if (p.a_scalar || p.b_scalar) {
    AddImpl(p);
    return;
  }
  const __m512 ra = _mm512_set1_ps(p.ra), rb = _mm512_set1_ps(p.rb), k = _mm512_set1_ps(p.k);
  const __m512 lo = _mm512_set1_ps(p.is_signed ? -128.f : 0.f);
  const __m512 hi = _mm512_set1_ps(p.is_signed ? 127.f : 255.f);
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const uint8_t* a = static_cast<const uint8_t*>(p.a);
  const uint8_t* b = static_cast<const uint8_t*>(p.b);
  uint8_t* c = static_cast<uint8_t*>(p.c);
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t o = r * p.ld;
    if (p.is_signed) {
      AddRow<true>(a + o, b + o, c + o, p.n, ra, rb, k, lo, hi, perm);
    } else {
      AddRow<false>(a + o, b + o, c + o, p.n, ra, rb, k, lo, hi, perm);
    }
  }
}
void RequantFloatAvx512(const float* acc, int64_t n, int32_t bias, const float* scale, int32_t yzp,
                      int32_t qmin, int32_t qmax, bool out_signed, void* y) {
  RequantFloatImpl(acc, n, bias, scale, yzp, qmin, qmax, out_signed, y);
}

}  // namespace

Table TableAvx512() {
  Table t;
  t.mr = kMr;
  t.nr = kNr;
  t.w16 = false;
  t.tile = &TileAvx512;
  t.depthwise = &DepthwiseAvx512;
  t.add = &AddAvx512;
  t.requant_float = &RequantFloatAvx512;
  return t;
}

}  // namespace onnxq::kernels::int8
