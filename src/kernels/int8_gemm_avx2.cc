// AVX2 int8 GEMM tile: 4 rows x 8 columns. vpmaddubsw is NOT used: it adds two u8 x s8 products
// into a saturating int16, which is wrong as soon as the pair exceeds 32767 (e.g. 255 * 127 +
// 255 * 127), the error ONNX Runtime avoids only by asking for 7-bit weights ("reduce_range").
// Instead activations are widened to int16 (vpmovzxbw) and weights are pre-packed as int16, and
// vpmaddwd adds two int16 x int16 products into int32: |x * w| <= 255 * 128, so every pair sum is
// exact for all 8-bit inputs, with no restriction on the weights.
#include <immintrin.h>

#include "kernels/int8_depthwise_impl.h"
#include "kernels/int8_internal.h"

namespace onnxq::kernels::int8 {
namespace {

constexpr int kMr = 4, kNr = 8;

// Named accumulators (not arrays): GCC 12 otherwise copies them around on every k step.
void TileAvx2(const Tile& t) {
  __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0;
  const uint8_t* w = static_cast<const uint8_t*>(t.w);  // [kq][MR][4] int16
  const uint8_t* x = t.x;
  for (int64_t q = 0; q < t.kq; ++q) {
    // 8 columns x 4 k bytes; columns 0-3 and 4-7 widened to int16.
    const __m128i xa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    const __m128i xb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16));
    const __m256i x03 = _mm256_cvtepu8_epi16(xa);
    const __m256i x47 = _mm256_cvtepu8_epi16(xb);
#define ONNXQ_I8_ROW(i, lo, hi)                                 \
  {                                                             \
    long long quad;                                             \
    __builtin_memcpy(&quad, w + 8 * (i), 8);                    \
    const __m256i wb = _mm256_set1_epi64x(quad);                \
    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(x03, wb));      \
    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(x47, wb));      \
  }
    ONNXQ_I8_ROW(0, l0, h0)
    ONNXQ_I8_ROW(1, l1, h1)
    ONNXQ_I8_ROW(2, l2, h2)
    ONNXQ_I8_ROW(3, l3, h3)
#undef ONNXQ_I8_ROW
    w += 8 * kMr;
    x += t.x_stride;
  }
  const __m256i lo[kMr] = {l0, l1, l2, l3}, hi[kMr] = {h0, h1, h2, h3};
  alignas(32) int32_t row[kNr];
  for (int i = 0; i < t.m; ++i) {
    // lo = [c0 c0' c1 c1' | c2 c2' c3 c3'], hi likewise for c4..c7: pairwise sums, then reorder.
    __m256i s = _mm256_hadd_epi32(lo[i], hi[i]);  // [c0 c1 c4 c5 | c2 c3 c6 c7]
    s = _mm256_permute4x64_epi64(s, 0xD8);          // [c0 c1 c2 c3 | c4 c5 c6 c7]
    s = _mm256_add_epi32(s, _mm256_set1_epi32(t.row_off[i]));
    _mm256_store_si256(reinterpret_cast<__m256i*>(row), s);
    if (t.wzp != nullptr && t.wzp[i] != 0)
      for (int j = 0; j < t.n; ++j)
        row[j] = static_cast<int32_t>(static_cast<uint32_t>(row[j]) -
                                      static_cast<uint32_t>(t.wzp[i]) *
                                          static_cast<uint32_t>(t.colsum[j]));
    if (t.scale == nullptr) {
      int32_t* y = static_cast<int32_t*>(t.y) + i * t.ldy;
      for (int j = 0; j < t.n; ++j) y[j] = row[j];
    } else {
      RequantRow(row, t.n, t.scale + i, t.yzp, t.qmin, t.qmax, t.out_signed,
                 static_cast<uint8_t*>(t.y) + i * t.ldy);
    }
  }
}

void DepthwiseAvx2(const DepthwiseArgs& a) { DepthwiseImpl(a); }
void AddAvx2(const AddArgs& a) { AddImpl(a); }
void RequantFloatAvx2(const float* acc, int64_t n, int32_t bias, const float* scale, int32_t yzp,
                      int32_t qmin, int32_t qmax, bool out_signed, void* y) {
  RequantFloatImpl(acc, n, bias, scale, yzp, qmin, qmax, out_signed, y);
}

}  // namespace

Table TableAvx2() {
  Table t;
  t.mr = kMr;
  t.nr = kNr;
  t.w16 = true;
  t.tile = &TileAvx2;
  t.depthwise = &DepthwiseAvx2;
  t.add = &AddAvx2;
  t.requant_float = &RequantFloatAvx2;
  return t;
}

}  // namespace onnxq::kernels::int8
