// Integer convolution driver: chooses depthwise / 1x1 GEMM / im2col + GEMM once at creation.
#include "onnxq/kernels/int8_conv.h"

#include <algorithm>
#include <cstring>

#include "kernels/int8_internal.h"

namespace onnxq::kernels {

namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

Status CheckShape(const Conv2DShape& s) {
  if (s.in_channels <= 0 || s.out_channels <= 0 || s.kernel_h <= 0 || s.kernel_w <= 0)
    return InvalidArgument("int8 conv: empty channels or kernel");
  if (s.group <= 0 || s.in_channels % s.group != 0 || s.out_channels % s.group != 0)
    return InvalidArgument("int8 conv: group ", s.group, " does not divide channels ",
                           s.in_channels, " / ", s.out_channels);
  if (s.stride_h <= 0 || s.stride_w <= 0 || s.dilation_h <= 0 || s.dilation_w <= 0)
    return InvalidArgument("int8 conv: strides and dilations must be positive");
  if (s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0)
    return InvalidArgument("int8 conv: negative padding");
  return Status::Ok();
}

}  // namespace

struct Int8Conv2D::Impl {
  Conv2DShape shape;
  Isa isa = Isa::kReference;
  bool x_signed = false;
  enum class Algo { kDepthwise, kGemm1x1, kIm2col } algo = Algo::kIm2col;
  std::vector<std::unique_ptr<Int8Gemm>> gemms;  // one per group
  int8::Table table;
  std::vector<int16_t> dw_w;  // depthwise taps minus their zero point: [C][kh * kw]
  // Small depthwise planes (UseFpDepthwise): onnxq's fp32 depthwise kernel on x - x_zp (its
  // channel-blocked path has no per-plane overhead), then the requantization. Exact: every product is an integer of
  // magnitude <= 255 * 255 and every partial sum stays below 2^24 (checked at creation), so
  // float arithmetic in any order gives the integer sum. Null on the reference ISA.
  std::unique_ptr<Conv2D> fp_dw;
};

namespace {
// Which depthwise planes take the fp32-kernel path. Measured (thread CPU time, 1 thread, 11:14
// UTC, int8 us hybrid vs direct): AVX-512 144 ch 56x56: 196 vs 217, 960 ch 7x7: 31 vs 104, 96 ch
// 112x112 stride 2: 269 vs 241; AVX2 144 ch 56x56 stride 2: 168 vs 250, stride 1: 241 vs 252,
// 96 ch 112x112 stride 2: 440 vs 359.
bool UseFpDepthwise(Isa isa, int64_t in_plane, int64_t out_plane) {
  return in_plane <= 56 * 56 && out_plane <= (isa == Isa::kAvx512 ? 56 * 56 : 28 * 28);
}
}  // namespace

Int8Conv2D::Int8Conv2D(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8Conv2D::~Int8Conv2D() = default;
Isa Int8Conv2D::isa() const { return impl_->isa; }
const char* Int8Conv2D::algorithm() const {
  switch (impl_->algo) {
    case Impl::Algo::kDepthwise: return "depthwise";
    case Impl::Algo::kGemm1x1: return "gemm1x1";
    default: return "im2col";
  }
}

StatusOr<std::unique_ptr<Int8Conv2D>> Int8Conv2D::Create(const Conv2DShape& shape, const void* w,
                                                         bool w_signed,
                                                         const int32_t* w_zero_points,
                                                         int64_t n_wzp, bool x_signed, Isa isa) {
  ONNXQ_RETURN_IF_ERROR(CheckShape(shape));
  if (w_zero_points != nullptr && n_wzp != 1 && n_wzp != shape.out_channels)
    return InvalidArgument("int8 conv: ", n_wzp, " weight zero points for ", shape.out_channels,
                           " output channels");
  auto impl = std::make_unique<Impl>();
  impl->shape = shape;
  impl->isa = isa;
  impl->x_signed = x_signed;
  impl->table = int8::TableForIsa(static_cast<int>(isa));
  const int64_t taps = shape.kernel_h * shape.kernel_w;
  const int64_t cig = shape.in_channels / shape.group, cog = shape.out_channels / shape.group;
  if (shape.group == shape.in_channels && shape.out_channels == shape.in_channels) {
    impl->algo = Impl::Algo::kDepthwise;
    impl->dw_w.resize(static_cast<size_t>(shape.out_channels * taps));
    for (int64_t c = 0; c < shape.out_channels; ++c) {
      const int32_t zp = w_zero_points ? w_zero_points[n_wzp == 1 ? 0 : c] : 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t v = w_signed ? static_cast<const int8_t*>(w)[c * taps + t]
                                   : static_cast<const uint8_t*>(w)[c * taps + t];
        impl->dw_w[c * taps + t] = static_cast<int16_t>(v - zp);
      }
    }
    if (isa != Isa::kReference && taps * 255 * 255 < (int64_t{1} << 24)) {
      std::vector<float> wf(impl->dw_w.begin(), impl->dw_w.end());
      Conv2DShape fs = shape;
      ONNXQ_ASSIGN_OR_RETURN(impl->fp_dw, Conv2D::Create(fs, wf.data(), nullptr, Activation{}, isa));
    }
    return std::unique_ptr<Int8Conv2D>(new Int8Conv2D(std::move(impl)));
  }
  const bool is1x1 = shape.kernel_h == 1 && shape.kernel_w == 1 && shape.stride_h == 1 &&
                     shape.stride_w == 1 && shape.pad_top == 0 && shape.pad_left == 0 &&
                     shape.pad_bottom == 0 && shape.pad_right == 0;
  impl->algo = is1x1 ? Impl::Algo::kGemm1x1 : Impl::Algo::kIm2col;
  const int64_t k = cig * taps;
  for (int64_t g = 0; g < shape.group; ++g) {
    const uint8_t* wg = static_cast<const uint8_t*>(w) + g * cog * k;
    const int32_t* zg = w_zero_points == nullptr ? nullptr
                        : n_wzp == 1             ? w_zero_points
                                                 : w_zero_points + g * cog;
    ONNXQ_ASSIGN_OR_RETURN(auto gemm, Int8Gemm::Create(cog, k, wg, k, w_signed, zg,
                                                       n_wzp == 1 ? 1 : cog, isa));
    impl->gemms.push_back(std::move(gemm));
  }
  return std::unique_ptr<Int8Conv2D>(new Int8Conv2D(std::move(impl)));
}

void Int8Conv2D::Run(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y,
                     int64_t batch, int64_t in_h, int64_t in_w, ThreadPool* pool) const {
  const Impl& im = *impl_;
  Conv2DShape s = im.shape;
  s.in_h = in_h;
  s.in_w = in_w;
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (oh <= 0 || ow <= 0 || batch <= 0) return;
  const int64_t hw = in_h * in_w, ohw = oh * ow;
  const int64_t ci = s.in_channels, co = s.out_channels;
  const int64_t cig = ci / s.group, cog = co / s.group;
  const size_t esize = out.scale ? 1 : 4;
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  uint8_t* yb = static_cast<uint8_t*>(y);
  const int32_t xzp_u8 = im.x_signed ? x_zp + 128 : x_zp;
  const uint8_t flip = im.x_signed ? 0x80 : 0;

  if (im.algo == Impl::Algo::kDepthwise && im.fp_dw && UseFpDepthwise(im.isa, hw, ohw)) {
    const int64_t planes_in = batch * ci, planes_out = batch * co;
    // Per-thread scratch kept across calls: fresh multi-megabyte allocations come from mmap and
    // page-fault on every call (measured: 1.5 ms instead of 0.18 ms for 144 x 56 x 56).
    thread_local std::vector<float> xs, ys;
    if (xs.size() < static_cast<size_t>(planes_in * hw)) xs.resize(static_cast<size_t>(planes_in * hw));
    if (ys.size() < static_cast<size_t>(planes_out * ohw)) ys.resize(static_cast<size_t>(planes_out * ohw));
    float* const xfp = xs.data();
    float* const yfp = ys.data();
    auto widen = [&](int64_t b, int64_t e) {
      float* dst = xfp;
      if (im.x_signed) {
        const int8_t* src = reinterpret_cast<const int8_t*>(xb);
        for (int64_t i = b * hw; i < e * hw; ++i) dst[i] = static_cast<float>(int32_t{src[i]} - x_zp);
      } else {
        for (int64_t i = b * hw; i < e * hw; ++i) dst[i] = static_cast<float>(int32_t{xb[i]} - x_zp);
      }
    };
    auto requant = [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t c = t % co;
        im.table.requant_float(yfp + t * ohw, ohw, out.bias ? out.bias[c] : 0,
                               out.scale ? out.scale + c : nullptr, out.zero_point, out.qmin,
                               out.qmax, out.out_signed, yb + t * ohw * esize);
      }
    };
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(hw, 1));
    if (pool == nullptr || pool->num_threads() <= 1) {
      widen(0, planes_in);
    } else {
      pool->ParallelFor(planes_in, widen, grain);
    }
    im.fp_dw->Run(xfp, yfp, batch, in_h, in_w, pool);
    if (pool == nullptr || pool->num_threads() <= 1) {
      requant(0, planes_out);
    } else {
      pool->ParallelFor(planes_out, requant, std::max<int64_t>(1, 16384 / std::max<int64_t>(ohw, 1)));
    }
    return;
  }

  if (im.algo == Impl::Algo::kDepthwise) {
    const int64_t taps = s.kernel_h * s.kernel_w;
    const int64_t row_len = int8::DepthwiseRowLen(in_w, s.pad_left, ow, s.stride_w, s.kernel_w,
                                                  s.dilation_w);
    const int64_t plane_rows = int8::DepthwisePlaneRows(oh, s.stride_h, s.kernel_h, s.dilation_h);
    // The SIMD tables take the vector path whenever the sums are exact in float (int8_depthwise_impl.h);
    // only the scratch of the path that runs is allocated.
    const bool vec = im.isa != Isa::kReference && taps * 255 * 255 < (int64_t{1} << 24);
    auto body = [&](int64_t begin, int64_t end) {
      std::vector<int16_t> plane(vec ? 0 : static_cast<size_t>(in_h * row_len));
      std::vector<float> fplane(vec ? 0 : static_cast<size_t>(plane_rows * row_len));
      std::vector<float> facc(vec ? 0 : static_cast<size_t>(oh * row_len));
      std::vector<int32_t> acc(vec ? 0 : static_cast<size_t>(oh * std::max(ow, row_len)));
      std::vector<float> vplane(!vec ? 0
                                     : static_cast<size_t>(int8::DepthwiseVecPlaneFloats(
                                           oh, ow, s.stride_h, s.stride_w, s.kernel_h, s.kernel_w,
                                           s.dilation_h, s.dilation_w, in_w, s.pad_left)));
      std::vector<uint8_t> flipped(im.x_signed ? static_cast<size_t>(hw) : 0);
      for (int64_t t = begin; t < end; ++t) {
        const int64_t c = t % co;
        int8::DepthwiseArgs a;
        a.x = xb + t * hw;
        if (im.x_signed) {
          for (int64_t i = 0; i < hw; ++i) flipped[i] = a.x[i] ^ flip;
          a.x = flipped.data();
        }
        a.in_h = in_h;
        a.in_w = in_w;
        a.pad_top = s.pad_top;
        a.pad_left = s.pad_left;
        a.xzp = xzp_u8;
        a.w = im.dw_w.data() + c * taps;
        a.kh = s.kernel_h;
        a.kw = s.kernel_w;
        a.sh = s.stride_h;
        a.sw = s.stride_w;
        a.dh = s.dilation_h;
        a.dw = s.dilation_w;
        a.out_h = oh;
        a.out_w = ow;
        a.bias = out.bias ? out.bias[c] : 0;
        a.scale = out.scale ? out.scale + c : nullptr;
        a.yzp = out.zero_point;
        a.qmin = out.qmin;
        a.qmax = out.qmax;
        a.out_signed = out.out_signed;
        a.y = yb + t * ohw * esize;
        a.scratch = acc.empty() ? nullptr : acc.data();
        a.row = plane.empty() ? nullptr : plane.data();
        a.fplane = fplane.empty() ? nullptr : fplane.data();
        a.facc = facc.empty() ? nullptr : facc.data();
        a.vplane = vplane.empty() ? nullptr : vplane.data();
        a.row_len = row_len;
        im.table.depthwise(a);
      }
    };
    const int64_t n = batch * co;
    if (pool == nullptr || pool->num_threads() <= 1) {
      body(0, n);
    } else {
      pool->ParallelFor(n, body, 1);
    }
    return;
  }

  std::vector<uint8_t> xp;
  std::vector<int32_t> colsum;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < s.group; ++g) {
      const Int8Gemm& gemm = *im.gemms[g];
      Int8OutputStage og = out;
      if (out.bias) og.bias = out.bias + g * cog;
      if (out.scale) og.scale = out.scale + g * cog;
      const uint8_t* xg = xb + (b * ci + g * cig) * hw;
      uint8_t* yg = yb + (b * co + g * cog) * ohw * esize;
      if (im.algo == Impl::Algo::kGemm1x1) {
        gemm.Run(xg, im.x_signed, hw, 1, x_zp, ohw, og, yg, ohw, pool);
        continue;
      }
      const int64_t k = gemm.k();
      const int64_t np = RoundUp(ohw, 32);
      xp.assign(static_cast<size_t>(Int8PackedXBytes(k, ohw)), 0);
      const uint8_t pad = static_cast<uint8_t>(xzp_u8);
      auto im2col = [&](int64_t begin, int64_t end) {
        for (int64_t kk = begin; kk < end; ++kk) {
          const int64_t c = kk / (s.kernel_h * s.kernel_w);
          const int64_t i = (kk / s.kernel_w) % s.kernel_h, j = kk % s.kernel_w;
          const uint8_t* plane = xg + c * hw;
          uint8_t* dst = xp.data() + (kk / 4) * np * 4 + (kk % 4);
          for (int64_t r = 0; r < oh; ++r) {
            const int64_t ih = r * s.stride_h - s.pad_top + i * s.dilation_h;
            uint8_t* d = dst + r * ow * 4;
            if (ih < 0 || ih >= in_h) {
              for (int64_t q = 0; q < ow; ++q) d[q * 4] = pad;
              continue;
            }
            const uint8_t* src = plane + ih * in_w;
            for (int64_t q = 0; q < ow; ++q) {
              const int64_t iw = q * s.stride_w - s.pad_left + j * s.dilation_w;
              d[q * 4] = (iw < 0 || iw >= in_w) ? pad : static_cast<uint8_t>(src[iw] ^ flip);
            }
          }
        }
      };
      if (pool == nullptr || pool->num_threads() <= 1) {
        im2col(0, k);
      } else {
        pool->ParallelFor(k, im2col, 8);
      }
      const int32_t* cs = nullptr;
      if (gemm.NeedsColumnSums()) {
        colsum.assign(static_cast<size_t>(np), 0);
        for (int64_t q = 0; q < RoundUp(k, 4) / 4; ++q) {
          const uint8_t* p = xp.data() + q * np * 4;
          for (int64_t n = 0; n < ohw; ++n)
            colsum[n] += p[n * 4] + p[n * 4 + 1] + p[n * 4 + 2] + p[n * 4 + 3];
        }
        cs = colsum.data();
      }
      gemm.RunPacked(xp.data(), xzp_u8, cs, ohw, og, yg, ohw, pool);
    }
  }
}

void Int8Conv2DReference(const Conv2DShape& s, const void* x, bool x_signed, int32_t x_zp,
                         const void* w, bool w_signed, const int32_t* w_zero_points, int64_t n_wzp,
                         const Int8OutputStage& out, void* y) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t cig = s.in_channels / s.group, cog = s.out_channels / s.group;
  auto xv = [&](int64_t i) -> int32_t {
    return x_signed ? static_cast<const int8_t*>(x)[i] : static_cast<const uint8_t*>(x)[i];
  };
  auto wv = [&](int64_t i) -> int32_t {
    return w_signed ? static_cast<const int8_t*>(w)[i] : static_cast<const uint8_t*>(w)[i];
  };
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t m = 0; m < s.out_channels; ++m) {
      const int64_t g = m / cog;
      const int32_t wz = w_zero_points ? w_zero_points[n_wzp == 1 ? 0 : m] : 0;
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t q = 0; q < ow; ++q) {
          int64_t acc = 0;
          for (int64_t c = 0; c < cig; ++c)
            for (int64_t i = 0; i < s.kernel_h; ++i)
              for (int64_t j = 0; j < s.kernel_w; ++j) {
                const int64_t ih = r * s.stride_h - s.pad_top + i * s.dilation_h;
                const int64_t iw = q * s.stride_w - s.pad_left + j * s.dilation_w;
                if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
                const int64_t xi = ((b * s.in_channels + g * cig + c) * s.in_h + ih) * s.in_w + iw;
                const int64_t wi = ((m * cig + c) * s.kernel_h + i) * s.kernel_w + j;
                acc += static_cast<int64_t>(xv(xi) - x_zp) * (wv(wi) - wz);
              }
          if (out.bias) acc += out.bias[m];
          const int64_t o = ((b * s.out_channels + m) * oh + r) * ow + q;
          const int32_t a32 = static_cast<int32_t>(acc);
          if (out.scale == nullptr) {
            static_cast<int32_t*>(y)[o] = a32;
          } else {
            const int32_t v = Int8Requantize(a32, out.scale[m], out.zero_point, out.qmin, out.qmax);
            if (out.out_signed) {
              static_cast<int8_t*>(y)[o] = static_cast<int8_t>(v);
            } else {
              static_cast<uint8_t*>(y)[o] = static_cast<uint8_t>(v);
            }
          }
        }
    }
}

}  // namespace onnxq::kernels
