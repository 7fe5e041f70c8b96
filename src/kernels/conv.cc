#include "onnxq/kernels/conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/gemm_driver.h"

namespace onnxq::kernels {
namespace {

using internal::AlignedFloats;
using internal::AllocateFloats;
using internal::BMatrix;
using internal::Epilogue;
using internal::KernelTable;

// Per-thread scratch for im2col blocks, grown on demand and kept.
float* ThreadScratch(int64_t floats) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < floats) buf.resize(floats);
  return buf.data();
}

Conv2DShape WithRunSizes(const Conv2DShape& s, int64_t batch, int64_t in_h, int64_t in_w) {
  Conv2DShape r = s;
  r.batch = batch;
  r.in_h = in_h;
  r.in_w = in_w;
  return r;
}

class ConvBase : public Conv2D {
 public:
  ConvBase(const Conv2DShape& shape, const float* bias, Activation act, Isa isa)
      : shape_(shape), act_(act), isa_(isa), table_(internal::GetTable(isa)) {
    bias_.assign(shape.out_channels, 0.f);
    has_bias_ = bias != nullptr;
    if (bias != nullptr) std::copy(bias, bias + shape.out_channels, bias_.begin());
    clamp_ = std::isfinite(act.min) || std::isfinite(act.max);
  }
  Isa isa() const override { return isa_; }

 protected:
  Conv2DShape shape_;
  Activation act_;
  Isa isa_;
  const KernelTable& table_;
  std::vector<float> bias_;
  bool has_bias_ = false;
  bool clamp_ = false;
};

// Direct depthwise convolution. 3x3 / dilation 1 / stride 1 or 2 convolutions run 16 channels at a
// time through the ISA's channel-blocked kernel when it has one (full vectors whatever the plane
// size); other shapes and the last channels % 16 convolve each (image, channel) plane separately.
class DepthwiseConv final : public ConvBase {
 public:
  DepthwiseConv(const Conv2DShape& shape, const float* weights, const float* bias, Activation act,
                Isa isa)
      : ConvBase(shape, bias, act, isa),
        weights_(weights, weights + shape.out_channels * shape.kernel_h * shape.kernel_w) {
    const bool blockable = table_.depthwise_blocked != nullptr && shape.kernel_h == 3 &&
                           shape.kernel_w == 3 && shape.dilation_h == 1 && shape.dilation_w == 1 &&
                           shape.stride_h == shape.stride_w && shape.stride_h <= 2;
    blocks_ = blockable ? shape.in_channels / kBlock : 0;
    if (blocks_ > 0) {
      // [block][tap][16 channels]
      blocked_w_ = AllocateFloats(blocks_ * 9 * kBlock);
      for (int64_t b = 0; b < blocks_; ++b) {
        for (int64_t t = 0; t < 9; ++t) {
          for (int64_t c = 0; c < kBlock; ++c) {
            blocked_w_.get()[(b * 9 + t) * kBlock + c] = weights[(b * kBlock + c) * 9 + t];
          }
        }
      }
    }
  }
  const char* algorithm() const override { return "depthwise"; }

  void Run(const float* x, float* y, int64_t batch, int64_t in_h, int64_t in_w,
           ThreadPool* pool) const override {
    const Conv2DShape s = WithRunSizes(shape_, batch, in_h, in_w);
    const int64_t oh = s.out_h(), ow = s.out_w();
    const int64_t channels = s.in_channels;
    // Scratch for the padded-plane 3x3 kernels (the SIMD variants copy each plane once).
    int64_t scratch_floats = 0, scratch_stride = 0;
    if (s.kernel_h == 3 && s.kernel_w == 3 && s.dilation_h == 1 && s.dilation_w == 1 &&
        s.stride_h == s.stride_w && s.stride_h <= 2 && isa_ != Isa::kReference) {
      scratch_stride = internal::DepthwisePaddedStride(in_w, s.pad_left, s.pad_right, ow, s.stride_w);
      scratch_floats = scratch_stride * ((oh - 1) * s.stride_h + 4) + 16;
    }
    // Channel-blocked geometry: bands of output rows whose padded input and output blocks take
    // about 128 KiB at stride 1 (L2) and 48 KiB at stride 2 (about L1: measured 10 % faster on the
    // 112x112 stride-2 layer; at stride 1 a band that small re-transposes too many halo rows).
    const int64_t sd = s.stride_h;
    const int64_t padded_w = std::max(s.pad_left + in_w, (ow - 1) * sd + 3);
    const int64_t per_row = (sd * padded_w + ow) * kBlock;
    const int64_t budget = sd == 1 ? 32 * 1024 : 12 * 1024;  // floats
    const int64_t band_rows =
        std::clamp<int64_t>((budget - 2 * padded_w * kBlock) / std::max<int64_t>(per_row, 1), 1, oh);
    const int64_t blocked_floats =
        ((band_rows - 1) * sd + 3) * padded_w * kBlock + band_rows * ow * kBlock + 256 + 16;
    const int64_t rest = channels - blocks_ * kBlock;
    auto run = [&](int64_t begin, int64_t end) {
      // One per-thread buffer serves both paths (a later ThreadScratch call could move it).
      float* buf = ThreadScratch(std::max(scratch_floats, blocks_ > 0 ? blocked_floats : 0));
      float* scratch = scratch_floats > 0 ? buf : nullptr;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t img = t / (blocks_ + rest), u = t % (blocks_ + rest);
        if (u < blocks_) {
          internal::DepthwiseBlockedArgs a;
          a.x = x + (img * channels + u * kBlock) * in_h * in_w;
          a.in_h = in_h;
          a.in_w = in_w;
          a.pad_top = s.pad_top;
          a.pad_left = s.pad_left;
          a.stride = sd;
          a.out_h = oh;
          a.out_w = ow;
          a.w = blocked_w_.get() + u * 9 * kBlock;
          a.bias = bias_.data() + u * kBlock;
          a.lo = act_.min;
          a.hi = act_.max;
          a.y = y + (img * channels + u * kBlock) * oh * ow;
          // 64-byte aligned (the blocked kernel uses aligned vector loads and stores).
          a.scratch = buf + ((16 - (reinterpret_cast<uintptr_t>(buf) / sizeof(float)) % 16) % 16);
          a.padded_w = padded_w;
          a.band_rows = band_rows;
          table_.depthwise_blocked(a);
          continue;
        }
        const int64_t c = blocks_ * kBlock + (u - blocks_);
        const int64_t plane = img * channels + c;
        internal::DepthwiseArgs a;
        a.x = x + plane * in_h * in_w;
        a.in_h = in_h;
        a.in_w = in_w;
        a.pad_top = s.pad_top;
        a.pad_left = s.pad_left;
        a.w = weights_.data() + c * s.kernel_h * s.kernel_w;
        a.kh = s.kernel_h;
        a.kw = s.kernel_w;
        a.sh = s.stride_h;
        a.sw = s.stride_w;
        a.dh = s.dilation_h;
        a.dw = s.dilation_w;
        a.out_h = oh;
        a.out_w = ow;
        a.bias = bias_[c];
        a.lo = act_.min;
        a.hi = act_.max;
        a.y = y + plane * oh * ow;
        a.scratch = scratch;
        a.scratch_stride = scratch_stride;
        table_.depthwise(a);
      }
    };
    const int64_t tasks = batch * (blocks_ + rest);
    if (pool != nullptr) {
      pool->ParallelFor(tasks, run);
    } else {
      run(0, tasks);
    }
  }

 private:
  static constexpr int64_t kBlock = 16;
  std::vector<float> weights_;
  int64_t blocks_ = 0;  // channel blocks of kBlock run by the blocked kernel
  AlignedFloats blocked_w_;
};

// Convolution as GEMM per (image, group): Y_g [M_g x OH*OW] = W_g [M_g x K_g] * X_g, with W_g
// pre-packed into microkernel panels. 1x1 / stride 1 / no pad reads X_g [C_g x H*W] directly;
// otherwise blocks of im2col columns are built per task in thread-local scratch.
class GemmConv final : public ConvBase {
 public:
  GemmConv(const Conv2DShape& shape, const float* weights, const float* bias, Activation act,
           Isa isa, bool direct)
      : ConvBase(shape, bias, act, isa), direct_(direct) {
    mg_ = shape.out_channels / shape.group;
    kg_ = shape.in_channels / shape.group * shape.kernel_h * shape.kernel_w;
    group_stride_ = internal::PackedASize(mg_, kg_, table_.mr);
    packed_ = AllocateFloats(group_stride_ * shape.group);
    for (int64_t g = 0; g < shape.group; ++g) {
      internal::PackAPanels(false, weights + g * mg_ * kg_, kg_, mg_, kg_, table_.mr,
                            packed_.get() + g * group_stride_);
    }
    // A 1x1 convolution created for a 1x1 input (a classifier) also keeps its row-major weights
    // for the matrix-vector path.
    if (direct && shape.in_h * shape.in_w == 1) {
      rows_.assign(weights, weights + shape.out_channels * kg_);
    }
  }
  const char* algorithm() const override { return direct_ ? "gemm1x1" : "im2col"; }

  void Run(const float* x, float* y, int64_t batch, int64_t in_h, int64_t in_w,
           ThreadPool* pool) const override {
    const Conv2DShape s = WithRunSizes(shape_, batch, in_h, in_w);
    const int64_t oh = s.out_h(), ow = s.out_w();
    const int64_t n = oh * ow;
    const int64_t groups = s.group;
    if (n == 1 && !rows_.empty()) {
      RunGemv(x, y, batch, pool);
      return;
    }
    const int64_t cg = s.in_channels / groups;
    const int64_t threads = pool != nullptr ? pool->num_threads() : 1;
    const int nr = table_.nr, mr = table_.mr;
    // Column block: the im2col block (K_g x nb) should stay L2-resident.
    int64_t nb = internal::kNc;
    if (!direct_) nb = std::clamp<int64_t>((64 * 1024 / std::max<int64_t>(kg_, 1)) / nr * nr, nr, internal::kNc);
    const int64_t n_blocks = (n + nb - 1) / nb;
    const int64_t panels = (mg_ + mr - 1) / mr;
    const int64_t outer = batch * groups * n_blocks;
    // Split output channels too when columns alone give the threads too little to share.
    int64_t m_blocks = std::min<int64_t>(panels, std::max<int64_t>(1, (2 * threads + outer - 1) / outer));
    if (!direct_) m_blocks = 1;  // an im2col block is built once and used for all output channels
    int64_t panels_per_block = (panels + m_blocks - 1) / m_blocks;
    // Whole storage blocks of packed A per task, so each task streams it sequentially.
    if (panels_per_block > internal::kMcPanels) {
      panels_per_block = (panels_per_block + internal::kMcPanels - 1) / internal::kMcPanels * internal::kMcPanels;
    }
    m_blocks = (panels + panels_per_block - 1) / panels_per_block;
    const int64_t tasks = outer * m_blocks;

    Epilogue ep;
    ep.clamp = clamp_;
    ep.lo = act_.min;
    ep.hi = act_.max;
    auto run = [&](int64_t begin, int64_t end) {
      AlignedFloats strip = AllocateFloats(internal::GemmScratchFloats(table_));
      for (int64_t t = begin; t < end; ++t) {
        int64_t rest = t;
        const int64_t mb = rest % m_blocks;
        rest /= m_blocks;
        const int64_t jb = rest % n_blocks;
        rest /= n_blocks;
        const int64_t g = rest % groups;
        const int64_t img = rest / groups;
        const int64_t j0 = jb * nb, j1 = std::min(n, j0 + nb);
        const int64_t i0 = mb * panels_per_block * mr;
        const int64_t i1 = std::min(mg_, i0 + panels_per_block * mr);
        const float* xg = x + (img * s.in_channels + g * cg) * in_h * in_w;
        float* yg = y + (img * s.out_channels + g * mg_) * n;
        Epilogue e = ep;
        e.bias = has_bias_ ? bias_.data() + g * mg_ : nullptr;
        const float* a = packed_.get() + g * group_stride_;
        BMatrix b;
        if (direct_) {
          b.data = xg;
          b.ld = n;
          internal::GemmBlock(table_, kg_, a, i0, i1, mg_, b, j0, j1, yg, n, e, strip.get());
        } else {
          float* col = ThreadScratch(kg_ * (j1 - j0));
          Im2colBlock(table_, s, xg, ow, j0, j1, col);
          b.data = col;
          b.ld = j1 - j0;
          internal::GemmBlock(table_, kg_, a, i0, i1, mg_, b, 0, j1 - j0, yg + j0, n, e, strip.get());
        }
      }
    };
    if (pool != nullptr && tasks > 1) {
      pool->ParallelFor(tasks, run);
    } else {
      run(0, tasks);
    }
  }

 private:
  // col[r][j - j0] for r = (c, ki, kj) over the group's channels and output positions j in [j0, j1).
  static void Im2colBlock(const KernelTable& t, const Conv2DShape& s, const float* xg, int64_t ow,
                          int64_t j0, int64_t j1, float* col) {
    const int64_t cg = s.in_channels / s.group;
    const int64_t width = j1 - j0;
    int64_t r = 0;
    for (int64_t c = 0; c < cg; ++c) {
      const float* xc = xg + c * s.in_h * s.in_w;
      for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
        for (int64_t kj = 0; kj < s.kernel_w; ++kj, ++r) {
          float* dst = col + r * width;
          int64_t j = j0;
          while (j < j1) {
            const int64_t orow = j / ow;
            const int64_t ocol0 = j % ow;
            const int64_t ocol1 = std::min<int64_t>(ow, ocol0 + (j1 - j));
            const int64_t ih = orow * s.stride_h - s.pad_top + ki * s.dilation_h;
            float* d = dst + (j - j0);
            if (ih < 0 || ih >= s.in_h) {
              std::fill(d, d + (ocol1 - ocol0), 0.f);
            } else {
              const float* xrow = xc + ih * s.in_w;
              const int64_t iw_off = kj * s.dilation_w - s.pad_left;
              const int64_t sw = s.stride_w;
              // Output columns [lo, hi) read inside the row; the rest are padding zeros.
              int64_t lo = iw_off >= 0 ? 0 : (-iw_off + sw - 1) / sw;
              int64_t hi = s.in_w - 1 - iw_off < 0 ? 0 : (s.in_w - 1 - iw_off) / sw + 1;
              lo = std::clamp(lo, ocol0, ocol1);
              hi = std::clamp(hi, lo, ocol1);
              std::fill(d, d + (lo - ocol0), 0.f);
              if (sw == 1) {
                std::memcpy(d + (lo - ocol0), xrow + lo + iw_off, (hi - lo) * sizeof(float));
              } else if (t.strided_copy != nullptr) {
                t.strided_copy(xrow + lo * sw + iw_off, sw, hi - lo, d + (lo - ocol0));
              } else {
                for (int64_t oc = lo; oc < hi; ++oc) d[oc - ocol0] = xrow[oc * sw + iw_off];
              }
              std::fill(d + (hi - ocol0), d + (ocol1 - ocol0), 0.f);
            }
            j += ocol1 - ocol0;
          }
        }
      }
    }
  }

  // Matrix-vector path for a 1x1 spatial size: blocks of output channels over the pool.
  void RunGemv(const float* x, float* y, int64_t batch, ThreadPool* pool) const {
    const int64_t groups = shape_.group, cg = shape_.in_channels / groups;
    constexpr int64_t kRows = 64;
    const int64_t blocks_per_group = (mg_ + kRows - 1) / kRows;
    const int64_t tasks = batch * groups * blocks_per_group;
    auto run = [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t blk = t % blocks_per_group, g = (t / blocks_per_group) % groups;
        const int64_t img = t / (blocks_per_group * groups);
        const int64_t r0 = blk * kRows, r1 = std::min(mg_, r0 + kRows);
        const int64_t m0 = g * mg_ + r0;
        float* out = y + img * shape_.out_channels + m0;
        table_.gemv(rows_.data() + m0 * kg_, kg_, r1 - r0, x + img * shape_.in_channels + g * cg, kg_, out);
        for (int64_t r = 0; r < r1 - r0; ++r) {
          float v = out[r] + bias_[m0 + r];
          if (clamp_) v = std::min(std::max(v, act_.min), act_.max);
          out[r] = v;
        }
      }
    };
    if (pool != nullptr && tasks > 1) {
      pool->ParallelFor(tasks, run);
    } else {
      run(0, tasks);
    }
  }

  bool direct_;
  int64_t mg_ = 0, kg_ = 0, group_stride_ = 0;
  std::vector<float> rows_;
  AlignedFloats packed_;
};

Status ValidateShape(const Conv2DShape& s) {
  if (s.batch < 1 || s.in_channels < 1 || s.in_h < 1 || s.in_w < 1 || s.out_channels < 1 ||
      s.kernel_h < 1 || s.kernel_w < 1) {
    return InvalidArgument("Conv2D: sizes must be positive (batch ", s.batch, ", in_channels ",
                           s.in_channels, ", input ", s.in_h, "x", s.in_w, ", out_channels ",
                           s.out_channels, ", kernel ", s.kernel_h, "x", s.kernel_w, ")");
  }
  if (s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1) {
    return InvalidArgument("Conv2D: strides and dilations must be >= 1");
  }
  if (s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0) {
    return InvalidArgument("Conv2D: pads must be >= 0");
  }
  if (s.group < 1 || s.in_channels % s.group != 0 || s.out_channels % s.group != 0) {
    return InvalidArgument("Conv2D: group ", s.group, " must divide in_channels ", s.in_channels,
                           " and out_channels ", s.out_channels);
  }
  if (s.out_h() < 1 || s.out_w() < 1) {
    return InvalidArgument("Conv2D: empty output (", s.out_h(), "x", s.out_w(),
                           "): kernel larger than the padded input");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Conv2D>> Conv2D::Create(const Conv2DShape& shape, const float* weights,
                                                 const float* bias, Activation act, Isa isa) {
  ONNXQ_RETURN_IF_ERROR(ValidateShape(shape));
  if (weights == nullptr) return InvalidArgument("Conv2D: weights are null");
  if (!(act.min <= act.max)) return InvalidArgument("Conv2D: activation min > max");
  if (!internal::IsaSupported(isa)) {
    return Unsupported("Conv2D: this CPU cannot run ISA ", IsaName(isa));
  }
  std::unique_ptr<Conv2D> conv;
  if (shape.group == shape.in_channels && shape.group == shape.out_channels) {
    conv = std::make_unique<DepthwiseConv>(shape, weights, bias, act, isa);
  } else {
    const bool direct = shape.kernel_h == 1 && shape.kernel_w == 1 && shape.stride_h == 1 &&
                        shape.stride_w == 1 && shape.pad_top == 0 && shape.pad_left == 0 &&
                        shape.pad_bottom == 0 && shape.pad_right == 0;
    conv = std::make_unique<GemmConv>(shape, weights, bias, act, isa, direct);
  }
  return conv;
}

void Conv2DReference(const Conv2DShape& s, const float* x, const float* weights, const float* bias,
                     Activation act, float* y) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t cg = s.in_channels / s.group, mg = s.out_channels / s.group;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t m = 0; m < s.out_channels; ++m) {
      const int64_t g = m / mg;
      for (int64_t r = 0; r < oh; ++r) {
        for (int64_t q = 0; q < ow; ++q) {
          double acc = bias != nullptr ? bias[m] : 0.0;
          for (int64_t c = 0; c < cg; ++c) {
            const float* xc = x + ((b * s.in_channels) + g * cg + c) * s.in_h * s.in_w;
            const float* wc = weights + (m * cg + c) * s.kernel_h * s.kernel_w;
            for (int64_t i = 0; i < s.kernel_h; ++i) {
              const int64_t ih = r * s.stride_h - s.pad_top + i * s.dilation_h;
              if (ih < 0 || ih >= s.in_h) continue;
              for (int64_t j = 0; j < s.kernel_w; ++j) {
                const int64_t iw = q * s.stride_w - s.pad_left + j * s.dilation_w;
                if (iw < 0 || iw >= s.in_w) continue;
                acc += static_cast<double>(wc[i * s.kernel_w + j]) * xc[ih * s.in_w + iw];
              }
            }
          }
          float v = static_cast<float>(acc);
          v = std::min(std::max(v, act.min), act.max);
          y[((b * s.out_channels) + m) * oh * ow + r * ow + q] = v;
        }
      }
    }
  }
}

}  // namespace onnxq::kernels
