// 8-bit Add and pooling (see int8_ops.h for the rounding rules and where they come from).
#include "onnxq/kernels/int8_ops.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/int8_internal.h"
#include "onnxq/kernels/int8_gemm.h"

namespace onnxq::kernels {

namespace {

void ForPlanes(ThreadPool* pool, int64_t planes, int64_t cost_per_plane,
               const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(cost_per_plane, 1));
  if (pool == nullptr || pool->num_threads() <= 1 || planes <= grain) {
    fn(0, planes);
  } else {
    pool->ParallelFor(planes, fn, grain);
  }
}

template <typename T>
void MaxPoolTyped(const T* x, int64_t planes, const Int8Pool2DShape& s, T* y, ThreadPool* pool) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  ForPlanes(pool, planes, out_plane * s.kernel_h * s.kernel_w, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* xp = x + p * in_plane;
      T* yp = y + p * out_plane;
      for (int64_t oh = 0; oh < s.out_h; ++oh)
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          T m = std::numeric_limits<T>::lowest();
          for (int64_t i = 0; i < s.kernel_h; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_top + i * s.dilation_h;
            if (ih < 0 || ih >= s.in_h) continue;
            for (int64_t j = 0; j < s.kernel_w; ++j) {
              const int64_t iw = ow * s.stride_w - s.pad_left + j * s.dilation_w;
              if (iw < 0 || iw >= s.in_w) continue;
              m = std::max(m, xp[ih * s.in_w + iw]);
            }
          }
          yp[oh * s.out_w + ow] = m;
        }
    }
  });
}

template <typename T>
void AvgPoolTyped(const T* x, int64_t planes, const Int8Pool2DShape& s, bool count_include_pad,
                  float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, T* y,
                  ThreadPool* pool) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  const float lo = static_cast<float>(std::numeric_limits<T>::lowest());
  const float hi = static_cast<float>(std::numeric_limits<T>::max());
  // The 256 possible dequantized values, each computed exactly as ORT does.
  float deq[256];
  for (int v = 0; v < 256; ++v) {
    const int32_t q = std::is_signed_v<T> ? v - 128 : v;
    deq[v] = x_scale * static_cast<float>(q - x_zp);
  }
  const int off = std::is_signed_v<T> ? 128 : 0;
  ForPlanes(pool, planes, out_plane * s.kernel_h * s.kernel_w, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* xp = x + p * in_plane;
      T* yp = y + p * out_plane;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        int64_t hs = oh * s.stride_h - s.pad_top;
        const int64_t he = std::min(hs + s.kernel_h, s.in_h);
        hs = std::max<int64_t>(hs, 0);
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          int64_t ws = ow * s.stride_w - s.pad_left;
          const int64_t we = std::min(ws + s.kernel_w, s.in_w);
          ws = std::max<int64_t>(ws, 0);
          float sum = 0.f;
          for (int64_t h = hs; h < he; ++h)
            for (int64_t w = ws; w < we; ++w) sum += deq[static_cast<int>(xp[h * s.in_w + w]) + off];
          const int64_t count =
              count_include_pad ? s.kernel_h * s.kernel_w : (he - hs) * (we - ws);
          if (count > 0) sum /= static_cast<float>(count);
          float q = std::nearbyint(sum / y_scale + static_cast<float>(y_zp));
          q = std::min(std::max(q, lo), hi);
          yp[oh * s.out_w + ow] = static_cast<T>(q);
        }
      }
    }
  });
}

template <typename T>
void GapTyped(const T* x, int64_t planes, int64_t size, float x_scale, int32_t x_zp,
              float y_scale, int32_t y_zp, T* y, ThreadPool* pool) {
  const float scale = x_scale / (y_scale * static_cast<float>(size));
  const int32_t bias = -x_zp * static_cast<int32_t>(size);
  const int32_t qmin = std::numeric_limits<T>::lowest(), qmax = std::numeric_limits<T>::max();
  ForPlanes(pool, planes, size, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* xp = x + p * size;
      int32_t acc = bias;
      for (int64_t i = 0; i < size; ++i) acc += xp[i];
      y[p] = static_cast<T>(Int8Requantize(acc, scale, y_zp, qmin, qmax));
    }
  });
}

}  // namespace

Int8AddConstants Int8AddRatios(const Int8AddParams& p) {
  Int8AddConstants r;
  r.ra = p.a_scale / p.c_scale;
  r.rb = p.b_scale / p.c_scale;
  // MLAS writes ratio_a * za + ratio_b * zb, which the compiler ORT is built with contracts to
  // fma(ratio_a, za, ratio_b * zb): checked against onnxruntime 1.32 on every (a, b) pair for
  // scales where the contracted and uncontracted constants round differently.
  r.k = static_cast<float>(p.c_zp) -
        std::fma(r.ra, static_cast<float>(p.a_zp), r.rb * static_cast<float>(p.b_zp));
  return r;
}

void Int8Add(const Int8AddParams& p, const void* a, bool a_scalar, const void* b, bool b_scalar,
             void* c, int64_t n, Isa isa) {
  int8::AddArgs args;
  args.a = a;
  args.b = b;
  args.a_scalar = a_scalar;
  args.b_scalar = b_scalar;
  const Int8AddConstants r = Int8AddRatios(p);
  args.ra = r.ra;
  args.rb = r.rb;
  args.k = r.k;
  // A broadcast operand joins the constant with a separate multiply and add (explicit intrinsics
  // in MLAS, no fma); done here, in a file compiled without FMA contraction.
  auto first = [&](const void* v) {
    return p.is_signed ? static_cast<float>(*static_cast<const int8_t*>(v))
                       : static_cast<float>(*static_cast<const uint8_t*>(v));
  };
  if (a_scalar) args.k = args.k + first(a) * args.ra;
  if (b_scalar) args.k = args.k + first(b) * args.rb;
  args.is_signed = p.is_signed;
  args.c = c;
  args.n = n;
  int8::TableForIsa(static_cast<int>(isa)).add(args);
}

void Int8GlobalAveragePool(const void* x, int64_t planes, int64_t image_size, float x_scale,
                           int32_t x_zp, float y_scale, int32_t y_zp, bool is_signed, void* y,
                           ThreadPool* pool) {
  if (is_signed) {
    GapTyped(static_cast<const int8_t*>(x), planes, image_size, x_scale, x_zp, y_scale, y_zp,
             static_cast<int8_t*>(y), pool);
  } else {
    GapTyped(static_cast<const uint8_t*>(x), planes, image_size, x_scale, x_zp, y_scale, y_zp,
             static_cast<uint8_t*>(y), pool);
  }
}

void Int8MaxPool2D(const void* x, int64_t planes, const Int8Pool2DShape& s, bool is_signed,
                   void* y, ThreadPool* pool) {
  if (is_signed) {
    MaxPoolTyped(static_cast<const int8_t*>(x), planes, s, static_cast<int8_t*>(y), pool);
  } else {
    MaxPoolTyped(static_cast<const uint8_t*>(x), planes, s, static_cast<uint8_t*>(y), pool);
  }
}

void Int8AveragePool2D(const void* x, int64_t planes, const Int8Pool2DShape& s,
                       bool count_include_pad, float x_scale, int32_t x_zp, float y_scale,
                       int32_t y_zp, bool is_signed, void* y, ThreadPool* pool) {
  if (is_signed) {
    AvgPoolTyped(static_cast<const int8_t*>(x), planes, s, count_include_pad, x_scale, x_zp,
                 y_scale, y_zp, static_cast<int8_t*>(y), pool);
  } else {
    AvgPoolTyped(static_cast<const uint8_t*>(x), planes, s, count_include_pad, x_scale, x_zp,
                 y_scale, y_zp, static_cast<uint8_t*>(y), pool);
  }
}

}  // namespace onnxq::kernels
