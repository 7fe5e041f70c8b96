// Integer GEMM driver: weight packing, activation packing, tiling and threading, plus the portable
// reference tile and the scalar oracle.
#include "onnxq/kernels/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/int8_depthwise_impl.h"
#include "kernels/int8_internal.h"

namespace onnxq::kernels {

namespace {

constexpr int64_t kPackN = 32;  // packed X columns are padded to this (the widest tile)

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

void StoreValue(const int8::Tile& t, int i, int j, int32_t acc) {
  if (t.scale == nullptr) {
    static_cast<int32_t*>(t.y)[i * t.ldy + j] = acc;
    return;
  }
  const int32_t q = Int8Requantize(acc, t.scale[i], t.yzp, t.qmin, t.qmax);
  if (t.out_signed) {
    static_cast<int8_t*>(t.y)[i * t.ldy + j] = static_cast<int8_t>(q);
  } else {
    static_cast<uint8_t*>(t.y)[i * t.ldy + j] = static_cast<uint8_t>(q);
  }
}

constexpr int kRefMr = 4, kRefNr = 16;

void TileReference(const int8::Tile& t) {
  const int8_t* w = static_cast<const int8_t*>(t.w);
  int32_t acc[kRefMr][kRefNr] = {};
  for (int64_t q = 0; q < t.kq; ++q) {
    const uint8_t* x = t.x + q * t.x_stride;
    const int8_t* wq = w + q * kRefMr * 4;
    for (int i = 0; i < kRefMr; ++i)
      for (int j = 0; j < kRefNr; ++j)
        for (int u = 0; u < 4; ++u)
          acc[i][j] += static_cast<int32_t>(wq[i * 4 + u]) * static_cast<int32_t>(x[j * 4 + u]);
  }
  for (int i = 0; i < t.m; ++i)
    for (int j = 0; j < t.n; ++j) {
      int32_t v = WrapAdd(acc[i][j], t.row_off[i]);
      if (t.wzp != nullptr) v = WrapAdd(v, -WrapMul(t.wzp[i], t.colsum[j]));
      StoreValue(t, i, j, v);
    }
}

void DepthwiseReference(const int8::DepthwiseArgs& a) {
  for (int64_t oh = 0; oh < a.out_h; ++oh)
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      int64_t acc = 0;
      for (int64_t i = 0; i < a.kh; ++i) {
        const int64_t ih = oh * a.sh - a.pad_top + i * a.dh;
        if (ih < 0 || ih >= a.in_h) continue;
        for (int64_t j = 0; j < a.kw; ++j) {
          const int64_t iw = ow * a.sw - a.pad_left + j * a.dw;
          if (iw < 0 || iw >= a.in_w) continue;
          acc += (static_cast<int32_t>(a.x[ih * a.in_w + iw]) - a.xzp) * a.w[i * a.kw + j];
        }
      }
      const int32_t sum = WrapAdd(static_cast<int32_t>(acc), a.bias);
      const int64_t o = oh * a.out_w + ow;
      if (a.scale == nullptr) {
        static_cast<int32_t*>(a.y)[o] = sum;
      } else {
        const int32_t q = Int8Requantize(sum, *a.scale, a.yzp, a.qmin, a.qmax);
        if (a.out_signed) {
          static_cast<int8_t*>(a.y)[o] = static_cast<int8_t>(q);
        } else {
          static_cast<uint8_t*>(a.y)[o] = static_cast<uint8_t>(q);
        }
      }
    }
}

}  // namespace

namespace int8 {
Table TableReference() {
  Table t;
  t.mr = kRefMr;
  t.nr = kRefNr;
  t.w16 = false;
  t.tile = &TileReference;
  t.depthwise = &DepthwiseReference;
  t.add = &AddImpl;
  t.requant_float = &RequantFloatImpl;
  return t;
}
Table TableForIsa(int isa) {
  Table t;
  switch (static_cast<Isa>(isa)) {
    case Isa::kAvx512:
      t = TableAvx512();
      NhwcKernelsAvx512(&t);
      break;
    case Isa::kAvx2:
      t = TableAvx2();
      NhwcKernelsAvx2(&t);
      break;
    default:
      t = TableReference();
      NhwcKernelsReference(&t);
  }
  return t;
}
}  // namespace int8

int32_t Int8Requantize(int32_t acc, float scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  float f = static_cast<float>(acc) * scale;
  f = std::max(f, static_cast<float>(qmin - zero_point));
  f = std::min(f, static_cast<float>(qmax - zero_point));
  return static_cast<int32_t>(std::nearbyint(f)) + zero_point;
}

std::vector<float> Int8OutputScales(float x_scale, const float* w_scale, int64_t n_w, float y_scale,
                                    int64_t m) {
  std::vector<float> s(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    const float prod = x_scale * w_scale[n_w == 1 ? 0 : i];
    s[i] = prod / y_scale;
  }
  return s;
}

void Int8ActivationClamp(const Activation& act, float y_scale, int32_t y_zero_point,
                         bool out_signed, int32_t* qmin, int32_t* qmax) {
  const float lo = out_signed ? -128.f : 0.f, hi = out_signed ? 127.f : 255.f;
  auto quantize = [&](float v) {
    float q = std::nearbyint(v / y_scale) + static_cast<float>(y_zero_point);
    return static_cast<int32_t>(std::min(std::max(q, lo), hi));
  };
  *qmin = static_cast<int32_t>(lo);
  *qmax = static_cast<int32_t>(hi);
  if (std::isfinite(act.min)) *qmin = std::max(*qmin, quantize(act.min));
  if (std::isfinite(act.max)) *qmax = std::min(*qmax, quantize(act.max));
  if (*qmax < *qmin) *qmax = *qmin;
}

int64_t Int8PackedXBytes(int64_t k, int64_t n) { return RoundUp(k, 4) * RoundUp(n, kPackN); }

void Int8PackX(const void* x, bool x_signed, int64_t rs, int64_t cs, int64_t k, int64_t n,
               uint8_t* xp, int32_t* colsum) {
  const int64_t np = RoundUp(n, kPackN);
  const int64_t kp = RoundUp(k, 4);
  const uint8_t flip = x_signed ? 0x80 : 0;
  const uint8_t* src = static_cast<const uint8_t*>(x);
  std::memset(xp, 0, static_cast<size_t>(kp * np));
  if (cs == 1) {
    // Rows contiguous in n (NCHW activations): interleave 4 rows at a time.
#if defined(__SSE2__)
    // 16 columns per step: two byte unpacks and two word unpacks give 4 x 16 packed bytes.
    const __m128i fv = _mm_set1_epi8(static_cast<char>(flip));
    const int64_t n16 = n / 16 * 16;
    for (int64_t q = 0; q < k / 4 * 4 && n16 > 0; q += 4) {
      const uint8_t* r0 = src + q * rs;
      uint8_t* dst = xp + (q / 4) * np * 4;
      for (int64_t j = 0; j < n16; j += 16) {
        auto ld = [&](int64_t r) {
          return _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r0 + r * rs + j)), fv);
        };
        const __m128i a = ld(0), b = ld(1), c = ld(2), d = ld(3);
        const __m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
        const __m128i cd_lo = _mm_unpacklo_epi8(c, d), cd_hi = _mm_unpackhi_epi8(c, d);
        __m128i* o = reinterpret_cast<__m128i*>(dst + j * 4);
        _mm_storeu_si128(o + 0, _mm_unpacklo_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(ab_hi, cd_hi));
        _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(ab_hi, cd_hi));
      }
    }
    // What the vector loop left: the column tail of full quads, and the last partial quad.
    for (int64_t kk = 0; kk < k; ++kk) {
      const uint8_t* row = src + kk * rs;
      uint8_t* dst = xp + (kk / 4) * np * 4 + (kk % 4);
      for (int64_t j = kk < k / 4 * 4 ? n16 : 0; j < n; ++j) dst[j * 4] = row[j] ^ flip;
    }
#else
    for (int64_t kk = 0; kk < k; ++kk) {
      const uint8_t* row = src + kk * rs;
      uint8_t* dst = xp + (kk / 4) * np * 4 + (kk % 4);
      for (int64_t j = 0; j < n; ++j) dst[j * 4] = row[j] ^ flip;
    }
#endif
  } else if (rs == 1) {
    // Columns contiguous in k (A of a MatMul read transposed): copy runs of 4 bytes.
    for (int64_t j = 0; j < n; ++j) {
      const uint8_t* col = src + j * cs;
      for (int64_t kk = 0; kk < k; ++kk) xp[(kk / 4) * np * 4 + j * 4 + (kk % 4)] = col[kk] ^ flip;
    }
  } else {
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < n; ++j)
        xp[(kk / 4) * np * 4 + j * 4 + (kk % 4)] = src[kk * rs + j * cs] ^ flip;
  }
  if (colsum != nullptr) {
    std::fill(colsum, colsum + np, 0);
    for (int64_t q = 0; q < kp / 4; ++q) {
      const uint8_t* p = xp + q * np * 4;
      for (int64_t j = 0; j < n; ++j) colsum[j] += p[j * 4] + p[j * 4 + 1] + p[j * 4 + 2] + p[j * 4 + 3];
    }
  }
}

// ------------------------------------------------------------------------------------ Int8Gemm

struct Int8Gemm::Impl {
  int64_t m = 0, k = 0, kq = 0, panels = 0;
  Isa isa = Isa::kReference;
  int8::Table table;
  std::vector<int8_t> w8;     // [panels][kq][MR][4]
  std::vector<int16_t> w16;   // same layout, int16 (AVX2)
  std::vector<int32_t> rowsum;  // [panels * MR] sum_k W (int8 domain)
  std::vector<int32_t> wzp;     // [panels * MR] zero points (int8 domain)
  bool any_wzp = false;
};

Int8Gemm::Int8Gemm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8Gemm::~Int8Gemm() = default;
int64_t Int8Gemm::m() const { return impl_->m; }
int64_t Int8Gemm::k() const { return impl_->k; }
Isa Int8Gemm::isa() const { return impl_->isa; }
bool Int8Gemm::NeedsColumnSums() const { return impl_->any_wzp; }

StatusOr<std::unique_ptr<Int8Gemm>> Int8Gemm::Create(int64_t m, int64_t k, const void* w,
                                                     int64_t ldw, bool w_signed,
                                                     const int32_t* w_zero_points, int64_t n_wzp,
                                                     Isa isa) {
  if (m <= 0 || k <= 0) return InvalidArgument("int8 GEMM: empty weight matrix ", m, "x", k);
  if (ldw < k) return InvalidArgument("int8 GEMM: weight row stride ", ldw, " < K ", k);
  if (w_zero_points != nullptr && n_wzp != 1 && n_wzp != m)
    return InvalidArgument("int8 GEMM: ", n_wzp, " weight zero points for ", m, " rows");
  // Products must stay exact in int32 for any input.
  if (k > (int64_t{1} << 31) / (255 * 256))
    return Unsupported("int8 GEMM: K = ", k, " could overflow the int32 accumulator");
  auto impl = std::make_unique<Impl>();
  impl->m = m;
  impl->k = k;
  impl->kq = RoundUp(k, 4) / 4;
  impl->isa = isa;
  impl->table = int8::TableForIsa(static_cast<int>(isa));
  const int mr = impl->table.mr;
  impl->panels = (m + mr - 1) / mr;
  const int64_t rows = impl->panels * mr;
  impl->rowsum.assign(static_cast<size_t>(rows), 0);
  impl->wzp.assign(static_cast<size_t>(rows), 0);
  const size_t packed = static_cast<size_t>(impl->panels * impl->kq * mr * 4);
  if (impl->table.w16) {
    impl->w16.assign(packed, 0);
  } else {
    impl->w8.assign(packed, 0);
  }
  for (int64_t r = 0; r < m; ++r) {
    // uint8 weights become int8 by subtracting 128 (and so does their zero point).
    int32_t zp = w_zero_points ? w_zero_points[n_wzp == 1 ? 0 : r] : 0;
    if (!w_signed) zp -= 128;
    if (w_signed && (zp < -128 || zp > 127))
      return InvalidArgument("int8 GEMM: weight zero point ", zp, " out of int8 range");
    impl->wzp[r] = zp;
    impl->any_wzp = impl->any_wzp || zp != 0;
    const int64_t p = r / mr, i = r % mr;
    int32_t sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      const int32_t v = w_signed ? static_cast<const int8_t*>(w)[r * ldw + c]
                                 : static_cast<int32_t>(static_cast<const uint8_t*>(w)[r * ldw + c]) - 128;
      sum += v;
      const size_t idx = static_cast<size_t>(((p * impl->kq + c / 4) * mr + i) * 4 + c % 4);
      if (impl->table.w16) {
        impl->w16[idx] = static_cast<int16_t>(v);
      } else {
        impl->w8[idx] = static_cast<int8_t>(v);
      }
    }
    impl->rowsum[r] = sum;
  }
  return std::unique_ptr<Int8Gemm>(new Int8Gemm(std::move(impl)));
}

void Int8Gemm::Run(const void* x, bool x_signed, int64_t x_row_stride, int64_t x_col_stride,
                   int32_t x_zp, int64_t n, const Int8OutputStage& out, void* y, int64_t ldy,
                   ThreadPool* pool) const {
  if (n <= 0) return;
  std::vector<uint8_t> xp(static_cast<size_t>(Int8PackedXBytes(impl_->k, n)));
  std::vector<int32_t> colsum;
  if (impl_->any_wzp) colsum.resize(static_cast<size_t>(RoundUp(n, kPackN)));
  Int8PackX(x, x_signed, x_row_stride, x_col_stride, impl_->k, n, xp.data(),
            impl_->any_wzp ? colsum.data() : nullptr);
  RunPacked(xp.data(), x_signed ? x_zp + 128 : x_zp, impl_->any_wzp ? colsum.data() : nullptr, n,
            out, y, ldy, pool);
}

void Int8Gemm::RunPacked(const uint8_t* xp, int32_t xzp_u8, const int32_t* colsum, int64_t n,
                         const Int8OutputStage& out, void* y, int64_t ldy, ThreadPool* pool) const {
  if (n <= 0) return;
  const Impl& im = *impl_;
  const int mr = im.table.mr, nr = im.table.nr;
  const int64_t rows = im.panels * mr;
  // Per-row constant: bias - x_zp * sum_k W + K * x_zp * w_zp (wrapping int32, as MLAS).
  std::vector<int32_t> row_off(static_cast<size_t>(rows), 0);
  std::vector<float> scale(static_cast<size_t>(rows), 0.f);
  for (int64_t r = 0; r < im.m; ++r) {
    int32_t v = out.bias ? out.bias[r] : 0;
    v = WrapAdd(v, -WrapMul(xzp_u8, im.rowsum[r]));
    v = WrapAdd(v, WrapMul(static_cast<int32_t>(im.k), WrapMul(xzp_u8, im.wzp[r])));
    row_off[r] = v;
    if (out.scale) scale[r] = out.scale[r];
  }
  const int64_t np = RoundUp(n, kPackN);
  const int64_t nblocks = (n + nr - 1) / nr;
  const int64_t tasks = nblocks * im.panels;
  const size_t esize = out.scale ? 1 : 4;
  const int64_t work_per_task = int64_t{mr} * nr * im.kq * 4;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(work_per_task, 1));
  const void* wbase = im.table.w16 ? static_cast<const void*>(im.w16.data())
                                   : static_cast<const void*>(im.w8.data());
  const size_t wpanel_bytes = static_cast<size_t>(im.kq * mr * 4) * (im.table.w16 ? 2 : 1);
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nb = task / im.panels, p = task % im.panels;
      int8::Tile t;
      t.kq = im.kq;
      t.w = static_cast<const uint8_t*>(wbase) + p * wpanel_bytes;
      t.x = xp + nb * nr * 4;
      t.x_stride = np * 4;
      t.m = static_cast<int>(std::min<int64_t>(mr, im.m - p * mr));
      t.n = static_cast<int>(std::min<int64_t>(nr, n - nb * nr));
      t.row_off = row_off.data() + p * mr;
      t.wzp = im.any_wzp ? im.wzp.data() + p * mr : nullptr;
      t.colsum = im.any_wzp ? colsum + nb * nr : nullptr;
      t.scale = out.scale ? scale.data() + p * mr : nullptr;
      t.yzp = out.zero_point;
      t.qmin = out.qmin;
      t.qmax = out.qmax;
      t.out_signed = out.out_signed;
      t.y = static_cast<uint8_t*>(y) + (p * mr * ldy + nb * nr) * esize;
      t.ldy = ldy;
      im.table.tile(t);
    }
  };
  if (pool == nullptr || pool->num_threads() <= 1 || tasks <= grain) {
    body(0, tasks);
  } else {
    pool->ParallelFor(tasks, body, grain);
  }
}

void Int8GemmReference(int64_t m, int64_t n, int64_t k, const void* w, bool w_signed,
                       const int32_t* w_zero_points, int64_t n_wzp, const void* x, bool x_signed,
                       int64_t x_row_stride, int64_t x_col_stride, int32_t x_zp,
                       const Int8OutputStage& out, void* y) {
  for (int64_t i = 0; i < m; ++i) {
    const int32_t wz = w_zero_points ? w_zero_points[n_wzp == 1 ? 0 : i] : 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t c = 0; c < k; ++c) {
        const int32_t wv = w_signed ? static_cast<const int8_t*>(w)[i * k + c]
                                    : static_cast<const uint8_t*>(w)[i * k + c];
        const int64_t xi = c * x_row_stride + j * x_col_stride;
        const int32_t xv = x_signed ? static_cast<const int8_t*>(x)[xi]
                                    : static_cast<const uint8_t*>(x)[xi];
        acc += static_cast<int64_t>(wv - wz) * (xv - x_zp);
      }
      if (out.bias) acc += out.bias[i];
      const int32_t a32 = static_cast<int32_t>(acc);
      if (out.scale == nullptr) {
        static_cast<int32_t*>(y)[i * n + j] = a32;
      } else {
        const int32_t q = Int8Requantize(a32, out.scale[i], out.zero_point, out.qmin, out.qmax);
        if (out.out_signed) {
          static_cast<int8_t*>(y)[i * n + j] = static_cast<int8_t>(q);
        } else {
          static_cast<uint8_t*>(y)[i * n + j] = static_cast<uint8_t>(q);
        }
      }
    }
  }
}

}  // namespace onnxq::kernels
