// Channels-last integer convolution driver (int8_nhwc.h): weight packing, im2col, threading, and
// the portable reference kernels (the oracle's twins). The SIMD kernels are in
// int8_nhwc_avx2.cc / int8_nhwc_avx512.cc.
#include "onnxq/kernels/int8_nhwc.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/int8_internal.h"

namespace onnxq::kernels {

namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

// ------------------------------------------------------------------ portable reference kernels

void NhwcGemmReference(const int8::NhwcGemmArgs& a) {
  const int8_t* w = static_cast<const int8_t*>(a.w);
  const int64_t blocks = (a.co + 15) / 16;
  const uint8_t flip = a.x_flip ? 0x80 : 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    const uint8_t* x = a.x + r * a.ldx;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      int32_t acc[16] = {};
      const int8_t* wb = w + cb * a.kq * 64;
      for (int64_t q = 0; q < a.kq; ++q) {
        const int32_t x0 = x[q * 4] ^ flip, x1 = x[q * 4 + 1] ^ flip;
        const int32_t x2 = x[q * 4 + 2] ^ flip, x3 = x[q * 4 + 3] ^ flip;
        const int8_t* wq = wb + q * 64;
        for (int l = 0; l < 16; ++l)
          acc[l] += wq[l * 4] * x0 + wq[l * 4 + 1] * x1 + wq[l * 4 + 2] * x2 + wq[l * 4 + 3] * x3;
      }
      const int64_t n = std::min<int64_t>(16, a.co - cb * 16);
      for (int64_t l = 0; l < n; ++l) {
        const int64_t c = cb * 16 + l;
        int32_t v = WrapAdd(acc[l], a.off[c]);
        if (a.wzp != nullptr) v = WrapAdd(v, -WrapMul(a.wzp[c], a.xsum[r]));
        if (a.yf != nullptr) {
          a.yf[r * a.ldy + c] = static_cast<float>(v) * a.scale[c];
          continue;
        }
        const int32_t q = Int8Requantize(v, a.scale[c], a.yzp, a.qmin, a.qmax);
        a.y[r * a.ldy + c] = static_cast<uint8_t>(q);
      }
    }
  }
}

void NhwcDepthwiseReference(const int8::NhwcDwArgs& a) {
  for (int64_t oh = a.oh_begin; oh < a.oh_end; ++oh)
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      uint8_t* y = a.y + (oh * a.out_w + ow) * a.c;
      for (int64_t c = 0; c < a.c; ++c) {
        int64_t acc = 0;
        for (int64_t i = 0; i < a.kh; ++i) {
          const int64_t ih = oh * a.sh - a.pad_top + i * a.dh;
          if (ih < 0 || ih >= a.in_h) continue;
          for (int64_t j = 0; j < a.kw; ++j) {
            const int64_t iw = ow * a.sw - a.pad_left + j * a.dw;
            if (iw < 0 || iw >= a.in_w) continue;
            const uint8_t raw = a.x[(ih * a.in_w + iw) * a.c + c];
            const int32_t xv = a.x_signed ? static_cast<int8_t>(raw) : raw;
            acc += static_cast<int64_t>(xv - a.xzp) * a.wi[(i * a.kw + j) * a.cp + c];
          }
        }
        const int32_t sum = WrapAdd(static_cast<int32_t>(acc), a.bias[c]);
        y[c] = static_cast<uint8_t>(Int8Requantize(sum, a.scale[c], a.yzp, a.qmin, a.qmax));
      }
    }
}

}  // namespace

namespace int8 {
void NhwcKernelsReference(Table* t) {
  t->nhwc_gemm = &NhwcGemmReference;
  t->nhwc_dw = &NhwcDepthwiseReference;
}
}  // namespace int8

// ------------------------------------------------------------------------------- Int8ConvNhwc

struct Int8ConvNhwc::Impl {
  Conv2DShape shape;
  Isa isa = Isa::kReference;
  bool x_signed = false, input_nchw = false;
  enum class Algo { kDepthwise, kPointwise, kIm2col } algo = Algo::kIm2col;
  int8::Table table;
  int64_t k = 0, kq = 0, blocks = 0;  // GEMM: K, K / 4 rounded up, 16-channel blocks
  std::vector<int8_t> w8;
  std::vector<int16_t> w16;
  std::vector<int32_t> rowsum, wzp;  // [blocks * 16], int8 weight domain
  bool any_wzp = false;
  // Depthwise: taps minus their zero point, [taps][cp].
  int64_t cp = 0;
  std::vector<float> dw_f;
  std::vector<int16_t> dw_i;
  int8::NhwcDwFn dw_fn = nullptr;
  // Byte-quad form (int8_internal.h, NhwcDwArgs::wq): [kh][cp][4] and per channel sum of the
  // taps; empty unless kw <= 4 and every w - wzp fits int8.
  std::vector<int8_t> dw_q;
  std::vector<int32_t> dw_qsum;
};

Int8ConvNhwc::Int8ConvNhwc(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8ConvNhwc::~Int8ConvNhwc() = default;
Isa Int8ConvNhwc::isa() const { return impl_->isa; }
const char* Int8ConvNhwc::algorithm() const {
  switch (impl_->algo) {
    case Impl::Algo::kDepthwise: return "depthwise";
    case Impl::Algo::kPointwise: return "pointwise";
    default: return "im2col";
  }
}

bool Int8ConvNhwc::Supports(const Conv2DShape& s, bool input_nchw) {
  if (s.in_channels <= 0 || s.out_channels <= 0 || s.kernel_h <= 0 || s.kernel_w <= 0 ||
      s.stride_h <= 0 || s.stride_w <= 0 || s.dilation_h <= 0 || s.dilation_w <= 0 ||
      s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0)
    return false;
  const bool depthwise = s.group == s.in_channels && s.out_channels == s.in_channels;
  if (depthwise && s.group > 1) return !input_nchw;
  return s.group == 1;
}

StatusOr<std::unique_ptr<Int8ConvNhwc>> Int8ConvNhwc::Create(const Conv2DShape& shape,
                                                             const void* w, bool w_signed,
                                                             const int32_t* w_zero_points,
                                                             int64_t n_wzp, bool x_signed,
                                                             bool input_nchw, Isa isa) {
  if (!Supports(shape, input_nchw))
    return Unsupported("int8 NHWC conv: only group 1 or depthwise (NHWC input) convolutions, got "
                       "group ", shape.group, " with ", shape.in_channels, " -> ",
                       shape.out_channels, " channels");
  if (w_zero_points != nullptr && n_wzp != 1 && n_wzp != shape.out_channels)
    return InvalidArgument("int8 NHWC conv: ", n_wzp, " weight zero points for ",
                           shape.out_channels, " output channels");
  auto impl = std::make_unique<Impl>();
  impl->shape = shape;
  impl->isa = isa;
  impl->x_signed = x_signed;
  impl->input_nchw = input_nchw;
  impl->table = int8::TableForIsa(static_cast<int>(isa));
  const int64_t taps = shape.kernel_h * shape.kernel_w;
  const int64_t co = shape.out_channels, ci = shape.in_channels / shape.group;
  auto wval = [&](int64_t i) -> int32_t {
    return w_signed ? static_cast<const int8_t*>(w)[i] : static_cast<const uint8_t*>(w)[i];
  };
  auto zp_of = [&](int64_t c) -> int32_t {
    return w_zero_points ? w_zero_points[n_wzp == 1 ? 0 : c] : 0;
  };

  if (shape.group > 1) {  // depthwise
    impl->algo = Impl::Algo::kDepthwise;
    impl->cp = RoundUp(co, 16);
    impl->dw_f.assign(static_cast<size_t>(taps * impl->cp), 0.f);
    impl->dw_i.assign(static_cast<size_t>(taps * impl->cp), 0);
    for (int64_t c = 0; c < co; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t v = wval(c * taps + t) - zp_of(c);
        impl->dw_i[t * impl->cp + c] = static_cast<int16_t>(v);
        impl->dw_f[t * impl->cp + c] = static_cast<float>(v);
      }
    // The vector kernels sum in float: exact while every partial sum of products (each at most
    // 255 * 255 in magnitude) stays below 2^24 (and they keep at most 32 row pointers).
    const bool exact = taps * 255 * 255 < (int64_t{1} << 24) && shape.kernel_h <= 32;
    impl->dw_fn = exact && impl->table.nhwc_dw ? impl->table.nhwc_dw : &NhwcDepthwiseReference;
    bool fits = shape.kernel_w <= 4 && impl->dw_fn != &NhwcDepthwiseReference &&
                impl->table.nhwc_dw_quads;
    for (size_t i = 0; i < impl->dw_i.size() && fits; ++i)
      fits = impl->dw_i[i] >= -128 && impl->dw_i[i] <= 127;
    if (fits) {
      const int64_t kw = shape.kernel_w;
      impl->dw_q.assign(static_cast<size_t>(shape.kernel_h * impl->cp * 4), 0);
      impl->dw_qsum.assign(static_cast<size_t>(impl->cp), 0);
      for (int64_t i = 0; i < shape.kernel_h; ++i)
        for (int64_t j = 0; j < kw; ++j)
          for (int64_t c = 0; c < co; ++c) {
            const int16_t v = impl->dw_i[(i * kw + j) * impl->cp + c];
            impl->dw_q[static_cast<size_t>((i * impl->cp + c) * 4 + j)] = static_cast<int8_t>(v);
            impl->dw_qsum[c] += v;
          }
    }
    return std::unique_ptr<Int8ConvNhwc>(new Int8ConvNhwc(std::move(impl)));
  }

  const bool pointwise = taps == 1 && shape.stride_h == 1 && shape.stride_w == 1 &&
                         shape.pad_top == 0 && shape.pad_left == 0 && shape.pad_bottom == 0 &&
                         shape.pad_right == 0 && !input_nchw && ci % 4 == 0;
  impl->algo = pointwise ? Impl::Algo::kPointwise : Impl::Algo::kIm2col;
  const int64_t k = ci * taps;
  if (k > (int64_t{1} << 31) / (255 * 256))
    return Unsupported("int8 NHWC conv: K = ", k, " could overflow the int32 accumulator");
  impl->k = k;
  impl->kq = RoundUp(k, 4) / 4;
  impl->blocks = (co + 15) / 16;
  const int64_t rows = impl->blocks * 16;
  impl->rowsum.assign(static_cast<size_t>(rows), 0);
  impl->wzp.assign(static_cast<size_t>(rows), 0);
  const size_t packed = static_cast<size_t>(impl->blocks * impl->kq * 64);
  if (impl->table.w16) {
    impl->w16.assign(packed, 0);
  } else {
    impl->w8.assign(packed, 0);
  }
  for (int64_t m = 0; m < co; ++m) {
    int32_t zp = zp_of(m);
    if (!w_signed) zp -= 128;  // uint8 weights become int8 by subtracting 128
    if (zp < -128 || zp > 127)
      return InvalidArgument("int8 NHWC conv: weight zero point ", zp_of(m), " out of range");
    impl->wzp[m] = zp;
    impl->any_wzp = impl->any_wzp || zp != 0;
    const int64_t cb = m / 16, l = m % 16;
    int32_t sum = 0;
    for (int64_t c = 0; c < ci; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t v = wval((m * ci + c) * taps + t) - (w_signed ? 0 : 128);
        sum += v;
        // K order: (c, i, j) for an NCHW input (im2col reads planes), (i, j, c) for NHWC.
        const int64_t kk = input_nchw ? c * taps + t : t * ci + c;
        const int64_t q = kk / 4, e = kk % 4;
        if (impl->table.w16) {
          impl->w16[static_cast<size_t>((((cb * impl->kq + q) * 2 + e / 2) * 16 + l) * 2 + e % 2)] =
              static_cast<int16_t>(v);
        } else {
          impl->w8[static_cast<size_t>(((cb * impl->kq + q) * 16 + l) * 4 + e)] =
              static_cast<int8_t>(v);
        }
      }
    impl->rowsum[m] = sum;
  }
  return std::unique_ptr<Int8ConvNhwc>(new Int8ConvNhwc(std::move(impl)));
}

namespace {

// Splits [0, n) over the pool (inline without one).
// Runs fn over pieces of [0, n) (at least `grain` long, about pieces_per_thread per thread),
// claimed dynamically: every participant takes the next unclaimed piece. On a shared machine a
// preempted thread then holds up the others by one piece at most, not by a whole half of the
// layer (ThreadPool::ParallelFor makes at most one chunk per thread). The kernels are exact, so
// the partition never changes the result.
template <typename F>
void Split(ThreadPool* pool, int64_t n, int64_t grain, int64_t pieces_per_thread, F&& fn) {
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  if (threads <= 1 || n <= grain) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t want = threads * pieces_per_thread;
  const int64_t piece = std::max(grain, (n + want - 1) / want);
  const int64_t pieces = (n + piece - 1) / piece;
  std::atomic<int64_t> next{0};
  pool->ParallelFor(
      threads,
      [&](int64_t, int64_t) {
        for (;;) {
          const int64_t p = next.fetch_add(1, std::memory_order_relaxed);
          if (p >= pieces) return;
          fn(p * piece, std::min(n, (p + 1) * piece));
        }
      },
      1);
}

}  // namespace

void Int8ConvNhwc::Run(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y,
                       int64_t batch, int64_t in_h, int64_t in_w, ThreadPool* pool) const {
  RunImpl(x, x_zp, out, y, nullptr, nullptr, batch, in_h, in_w, pool);
}

bool Int8ConvNhwc::RunWithAdd(const void* x, int32_t x_zp, const Int8OutputStage& out,
                              const Int8FusedAdd& add, void* y, int64_t batch, int64_t in_h,
                              int64_t in_w, ThreadPool* pool) const {
  if (impl_->algo == Impl::Algo::kDepthwise || add.other == nullptr) return false;
  RunImpl(x, x_zp, out, y, nullptr, &add, batch, in_h, in_w, pool);
  return true;
}

void Int8ConvNhwc::RunFloat(const void* x, int32_t x_zp, const int32_t* bias,
                            const float* multiplier, float* y, int64_t batch, int64_t in_h,
                            int64_t in_w, ThreadPool* pool) const {
  if (impl_->algo == Impl::Algo::kDepthwise) return;
  Int8OutputStage out;
  out.bias = bias;
  out.scale = multiplier;
  RunImpl(x, x_zp, out, y, y, nullptr, batch, in_h, in_w, pool);
}

void Int8ConvNhwc::RunImpl(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y,
                           float* yf, const Int8FusedAdd* add, int64_t batch, int64_t in_h,
                           int64_t in_w, ThreadPool* pool) const {
  const Impl& im = *impl_;
  Conv2DShape s = im.shape;
  s.in_h = in_h;
  s.in_w = in_w;
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (oh <= 0 || ow <= 0 || batch <= 0 || out.scale == nullptr) return;
  const int64_t ci = s.in_channels, co = s.out_channels;
  const int64_t in_img = in_h * in_w * ci, out_pix = oh * ow;
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  uint8_t* yb = static_cast<uint8_t*>(y);

  if (im.algo == Impl::Algo::kDepthwise) {
    const int64_t cp = im.cp;
    std::vector<int32_t> bias(static_cast<size_t>(cp), 0);
    std::vector<float> scale(static_cast<size_t>(cp), 0.f);
    for (int64_t c = 0; c < co; ++c) {
      bias[c] = out.bias ? out.bias[c] : 0;
      scale[c] = out.scale[c];
    }
    const int64_t ring_rows = int8::NhwcDwRingRows(s.kernel_h, s.dilation_h);
    const int64_t ring_w = int8::NhwcDwRingWidth(ow, s.stride_w, s.kernel_w, s.dilation_w);
    const bool vec = im.dw_fn != &NhwcDepthwiseReference;
    std::vector<int32_t> qoff;
    if (!im.dw_q.empty()) {
      const int32_t zu = im.x_signed ? x_zp + 128 : x_zp;
      qoff.assign(static_cast<size_t>(cp), 0);
      for (int64_t c = 0; c < co; ++c) qoff[c] = WrapAdd(bias[c], -WrapMul(zu, im.dw_qsum[c]));
    }
    for (int64_t b = 0; b < batch; ++b) {
      auto body = [&](int64_t begin, int64_t end) {
        // Per-thread scratch kept across calls (no allocation per run).
        thread_local std::vector<float> ring;
        thread_local std::vector<int64_t> tags;
        int8::NhwcDwArgs a;
        if (vec) {
          const size_t need = static_cast<size_t>(ring_rows * ring_w * cp);
          if (ring.size() < need) ring.resize(need);
          tags.assign(static_cast<size_t>(ring_rows), std::numeric_limits<int64_t>::min());
          a.ring = ring.data();
          a.ring_tag = tags.data();
          a.ring_rows = ring_rows;
          a.ring_w = ring_w;
        }
        a.x = xb + b * in_img;
        a.in_h = in_h;
        a.in_w = in_w;
        a.c = co;
        a.cp = cp;
        a.xzp = x_zp;
        a.x_signed = im.x_signed;
        a.kh = s.kernel_h;
        a.kw = s.kernel_w;
        a.sh = s.stride_h;
        a.sw = s.stride_w;
        a.dh = s.dilation_h;
        a.dw = s.dilation_w;
        a.pad_top = s.pad_top;
        a.pad_left = s.pad_left;
        a.out_h = oh;
        a.out_w = ow;
        a.oh_begin = begin;
        a.oh_end = end;
        a.wf = im.dw_f.data();
        a.wi = im.dw_i.data();
        a.bias = bias.data();
        a.scale = scale.data();
        a.yzp = out.zero_point;
        a.qmin = out.qmin;
        a.qmax = out.qmax;
        a.y = yb + b * out_pix * co;
        if (!qoff.empty()) {
          a.wq = im.dw_q.data();
          a.qoff = qoff.data();
        }
        im.dw_fn(a);
      };
      const int64_t row_work = ow * co * s.kernel_h * s.kernel_w;
      // Few pieces: each one refills the ring rows it starts with.
      Split(pool, oh, std::max<int64_t>(1, 32768 / std::max<int64_t>(row_work, 1)), 2, body);
    }
    return;
  }

  // GEMM paths: per-channel constants (wrapping int32 as MLAS).
  const int32_t xzp_u8 = im.x_signed ? x_zp + 128 : x_zp;
  const int64_t rows16 = im.blocks * 16;
  std::vector<int32_t> off(static_cast<size_t>(rows16), 0);
  std::vector<float> scale(static_cast<size_t>(rows16), 0.f);
  bool small = true;
  for (int64_t m = 0; m < co; ++m) {
    int32_t v = out.bias ? out.bias[m] : 0;
    v = WrapAdd(v, -WrapMul(xzp_u8, im.rowsum[m]));
    v = WrapAdd(v, WrapMul(static_cast<int32_t>(im.k), WrapMul(xzp_u8, im.wzp[m])));
    off[m] = v;
    scale[m] = out.scale[m];
    small = small && scale[m] < 0.5f && scale[m] > -0.5f;
  }
  int8::NhwcGemmArgs base;
  base.kq = im.kq;
  base.x_flip = im.x_signed;
  base.w = im.table.w16 ? static_cast<const void*>(im.w16.data())
                        : static_cast<const void*>(im.w8.data());
  base.co = co;
  base.off = off.data();
  base.wzp = im.any_wzp ? im.wzp.data() : nullptr;
  base.scale = scale.data();
  base.yzp = out.zero_point;
  base.qmin = out.qmin;
  base.qmax = out.qmax;
  base.ldy = co;
  base.yf = yf;
  base.small_scales = small ? 1 : 0;  // also true of every channel chunk
  const uint8_t flip = im.x_signed ? 0x80 : 0;
  auto row_sums = [&](const uint8_t* rows, int64_t ld, int64_t n, std::vector<int32_t>& sums) {
    sums.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      int32_t acc = 0;
      for (int64_t kk = 0; kk < im.k; ++kk) acc += rows[r * ld + kk] ^ flip;
      sums[r] = acc;
    }
  };
  // The fused Add on the rows [r0, r1) x channels [c0, c0 + n) of image b, just written (still
  // in cache): the ISA's QLinearAdd loop, in place on y.
  auto fused_add = [&](int64_t b, int64_t r0, int64_t r1, int64_t c0, int64_t n) {
    const int64_t img = b * out_pix * co;
    const uint8_t* other = static_cast<const uint8_t*>(add->other) + img;
    uint8_t* yy = yb + img;
    auto one = [&](int64_t off, int64_t len, int64_t rows) {
      int8::AddArgs aa;
      aa.rows = rows;
      aa.ld = co;
      aa.a = add->conv_is_a ? yy + off : other + off;
      aa.b = add->conv_is_a ? other + off : yy + off;
      aa.ra = add->ra;
      aa.rb = add->rb;
      aa.k = add->k;
      aa.is_signed = out.out_signed;
      aa.c = yy + off;
      aa.n = len;
      im.table.add(aa);
    };
    if (n == co) {
      one(r0 * co, (r1 - r0) * co, 1);
    } else {
      one(r0 * co + c0, n, r1 - r0);
    }
  };
  // Row blocks: a multiple of every tile height (6 on AVX-512, 4 on AVX2 / reference).
  constexpr int64_t kRowBlock = 96;
  const int64_t nblk = (out_pix + kRowBlock - 1) / kRowBlock;
  const int64_t blk_work = kRowBlock * im.kq * 4 * co;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(blk_work, 1));

  if (im.algo == Impl::Algo::kPointwise) {
    // Tasks: row blocks x output-channel chunks. Small planes (14x14, 7x7: one to three row
    // blocks) are split over the channels too, so that every thread gets work.
    const int threads = pool == nullptr ? 1 : pool->num_threads();
    const int64_t total = out_pix * im.kq * 4 * co;
    int64_t nco = 1, chunk = im.blocks;
    if (threads > 1 && total >= (int64_t{1} << 17) && nblk < 4 * threads) {
      nco = std::min<int64_t>(im.blocks, 2 * threads);
      chunk = (im.blocks + nco - 1) / nco;
      nco = (im.blocks + chunk - 1) / chunk;
    }
    const int64_t tasks = nblk * nco;
    const int64_t tgrain = total < (int64_t{1} << 17) ? tasks : std::max<int64_t>(1, grain / nco);
    for (int64_t b = 0; b < batch; ++b) {
      const uint8_t* xi = xb + b * in_img;
      uint8_t* yi = yb + b * out_pix * co;
      Split(pool, tasks, tgrain, 8, [&](int64_t begin, int64_t end) {
        thread_local std::vector<int32_t> sums_tls;
        std::vector<int32_t>& sums = sums_tls;
        for (int64_t t = begin; t < end;) {
          // Consecutive tasks of one row block share its row sums.
          const int64_t blk = t / nco;
          const int64_t r0 = blk * kRowBlock, r1 = std::min(out_pix, r0 + kRowBlock);
          int8::NhwcGemmArgs a = base;
          a.x = xi + r0 * ci;
          a.ldx = ci;
          a.rows = r1 - r0;
          if (im.any_wzp) {
            row_sums(a.x, ci, a.rows, sums);
            a.xsum = sums.data();
          }
          for (; t < end && t / nco == blk; ++t) {
            const int64_t cb0 = (t % nco) * chunk;
            const int64_t c0 = cb0 * 16;
            int8::NhwcGemmArgs at = a;
            // A channel chunk: its packed weight blocks, parameters and output columns.
            at.w = im.table.w16 ? static_cast<const void*>(im.w16.data() + cb0 * im.kq * 64)
                                : static_cast<const void*>(im.w8.data() + cb0 * im.kq * 64);
            at.co = std::min(co, (cb0 + chunk) * 16) - c0;
            at.off = base.off + c0;
            at.scale = base.scale + c0;
            if (base.wzp != nullptr) at.wzp = base.wzp + c0;
            at.y = yi + r0 * co + c0;
            if (yf != nullptr) at.yf = yf + b * out_pix * co + r0 * co + c0;
            im.table.nhwc_gemm(at);
            if (add != nullptr) fused_add(b, r0, r1, c0, at.co);
          }
        }
      });
    }
    return;
  }

  // im2col: each row block is gathered into per-thread scratch ([rows][K rounded to 4], padding
  // reading as the input zero point), then multiplied.
  const int64_t kp = im.kq * 4;
  const int64_t kh = s.kernel_h, kw = s.kernel_w;
  const uint8_t pad = static_cast<uint8_t>(x_zp);  // the zero point's stored byte
  for (int64_t b = 0; b < batch; ++b) {
    const uint8_t* xi = xb + b * in_img;
    uint8_t* yi = yb + b * out_pix * co;
    Split(pool, nblk, grain, 8, [&](int64_t begin, int64_t end) {
      // Per-thread scratch kept across calls. Taken by reference once: in a shared library every
      // thread_local access is a __tls_get_addr call.
      thread_local std::vector<uint8_t> cols_tls;
      thread_local std::vector<int32_t> sums_tls;
      thread_local std::vector<uint8_t> pad_tls;
      thread_local std::vector<const uint8_t*> rp_tls;
      std::vector<uint8_t>& cols = cols_tls;
      std::vector<int32_t>& sums = sums_tls;
      std::vector<uint8_t>& pad_row = pad_tls;
      std::vector<const uint8_t*>& rps = rp_tls;
      // 8 bytes of slack: the fast copy below writes 8 bytes for up to 8 taps of a row.
      const size_t need = static_cast<size_t>(kRowBlock * kp + 8);
      if (cols.size() < need) cols.assign(need, 0);
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t r0 = blk * kRowBlock, r1 = std::min(out_pix, r0 + kRowBlock);
        if (im.input_nchw) {
          // K order (c, i, j): the kw taps of one input row are one run of bytes. Rows outside
          // the image read a row of padding bytes, so interior pixels need no branches.
          if (pad_row.size() < static_cast<size_t>(in_w + 16)) pad_row.resize(static_cast<size_t>(in_w + 16));
          std::fill(pad_row.begin(), pad_row.end(), pad);
          rps.resize(static_cast<size_t>(ci * kh));
          const uint8_t** rp = rps.data();
          const int64_t nrow = ci * kh;
          const int64_t ow_l = ow, sw_l = s.stride_w, pl_l = s.pad_left;
          // Columns whose kw taps (read as 8 bytes) are all inside the row: [ox_lo, ox_hi).
          const bool fast = s.dilation_w == 1 && kw <= 8 && in_w >= 8;
          const int64_t ox_lo = fast ? (s.pad_left + s.stride_w - 1) / s.stride_w : 0;
          const int64_t ox_hi = fast ? std::max<int64_t>(ox_lo, (in_w - 8 + s.pad_left) / s.stride_w + 1) : 0;
          int64_t r = r0;
          while (r < r1) {
            const int64_t oy = r / ow;
            for (int64_t c = 0; c < ci; ++c)
              for (int64_t i = 0; i < kh; ++i) {
                const int64_t ih = oy * s.stride_h - s.pad_top + i * s.dilation_h;
                rp[c * kh + i] = ih < 0 || ih >= in_h ? pad_row.data() + 8
                                                     : xi + (c * in_h + ih) * in_w;
              }
            const int64_t row_end = std::min(r1, (oy + 1) * ow_l);
            uint8_t* const cbase = cols.data();
            for (; r < row_end; ++r) {
              const int64_t ox = r - oy * ow_l;  // no division per pixel
              const int64_t iw0 = ox * sw_l - pl_l;
              uint8_t* d = cbase + (r - r0) * kp;
              if (ox >= ox_lo && ox < ox_hi) {
                // 8-byte copies: the bytes past kw are overwritten by the next run, or land in
                // the K padding / the next row (written later) / the slack. Locals only: the
                // byte stores could alias anything read through a reference.
                const int64_t kwl = kw, nl = nrow;
                for (int64_t t = 0; t < nl; ++t) {
                  uint64_t v;
                  std::memcpy(&v, rp[t] + iw0, 8);
                  std::memcpy(d + t * kwl, &v, 8);
                }
              } else {
                for (int64_t t = 0; t < nrow; ++t)
                  for (int64_t j = 0; j < kw; ++j) {
                    const int64_t iw = iw0 + j * s.dilation_w;
                    d[t * kw + j] = iw < 0 || iw >= in_w ? pad : rp[t][iw];
                  }
              }
            }
          }
        } else {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t oy = r / ow, ox = r % ow;
            uint8_t* d = cols.data() + (r - r0) * kp;
            // K order (i, j, c): each tap is one run of ci channel bytes.
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t ih = oy * s.stride_h - s.pad_top + i * s.dilation_h;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iw = ox * s.stride_w - s.pad_left + j * s.dilation_w;
                uint8_t* dd = d + (i * kw + j) * ci;
                if (ih < 0 || ih >= in_h || iw < 0 || iw >= in_w) {
                  std::memset(dd, pad, static_cast<size_t>(ci));
                } else {
                  std::memcpy(dd, xi + (ih * in_w + iw) * ci, static_cast<size_t>(ci));
                }
              }
            }
          }
        }
        int8::NhwcGemmArgs a = base;
        a.x = cols.data();
        a.ldx = kp;
        a.rows = r1 - r0;
        a.y = yi + r0 * co;
        if (yf != nullptr) a.yf = yf + b * out_pix * co + r0 * co;
        if (im.any_wzp) {
          row_sums(a.x, kp, a.rows, sums);
          a.xsum = sums.data();
        }
        im.table.nhwc_gemm(a);
        if (add != nullptr) fused_add(b, r0, r1, 0, co);
      }
    });
  }
}

// ------------------------------------------------------------------- global average pooling

void Int8GlobalAveragePoolNhwc(const void* x, int64_t batch, int64_t pixels, int64_t channels,
                               float x_scale, int32_t x_zp, float y_scale, int32_t y_zp,
                               bool is_signed, void* y, ThreadPool* pool) {
  (void)pool;  // one pass over a small tensor (7 x 7 x 1280 in MobileNetV2)
  const float scale = x_scale / (y_scale * static_cast<float>(pixels));
  const int32_t bias = -x_zp * static_cast<int32_t>(pixels);
  const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
  std::vector<int32_t> acc(static_cast<size_t>(channels));
  for (int64_t b = 0; b < batch; ++b) {
    std::fill(acc.begin(), acc.end(), bias);
    if (is_signed) {
      const int8_t* xs = static_cast<const int8_t*>(x) + b * pixels * channels;
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < channels; ++c) acc[c] += xs[p * channels + c];
    } else {
      const uint8_t* xs = static_cast<const uint8_t*>(x) + b * pixels * channels;
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = 0; c < channels; ++c) acc[c] += xs[p * channels + c];
    }
    uint8_t* yo = static_cast<uint8_t*>(y) + b * channels;
    for (int64_t c = 0; c < channels; ++c)
      yo[c] = static_cast<uint8_t>(Int8Requantize(acc[c], scale, y_zp, qmin, qmax));
  }
}

}  // namespace onnxq::kernels
