// fp32 2-D convolution (NCHW), created once per Conv node with its weights pre-packed:
// depthwise convolutions run a direct SIMD kernel, 1x1 stride-1 convolutions run as GEMM, the rest
// through im2col + GEMM. An optional fused activation (Relu / Clip) is applied in the epilogue.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>

#include "onnxq/base/status.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq::kernels {

struct Conv2DShape {
  int64_t batch = 1, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t group = 1;
  int64_t out_h() const { return (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
};

// Clamp applied to every output after the bias: Relu is [0, inf), ReLU6 is [0, 6].
struct Activation {
  float min = -std::numeric_limits<float>::infinity();
  float max = std::numeric_limits<float>::infinity();
};

class Conv2D {
 public:
  virtual ~Conv2D() = default;
  // weights: [out_channels, in_channels / group, kernel_h, kernel_w]; bias: [out_channels] or null.
  // The batch and spatial sizes in `shape` are those of the first run; Run accepts any batch and
  // spatial size (the kernel re-derives output sizes).
  static StatusOr<std::unique_ptr<Conv2D>> Create(const Conv2DShape& shape, const float* weights,
                                                  const float* bias, Activation act, Isa isa);
  // x: [batch, in_channels, in_h, in_w] -> y: [batch, out_channels, out_h, out_w].
  virtual void Run(const float* x, float* y, int64_t batch, int64_t in_h, int64_t in_w,
                   ThreadPool* pool) const = 0;
  virtual const char* algorithm() const = 0;  // "depthwise", "gemm1x1", "im2col"
  virtual Isa isa() const = 0;
};

// Straightforward loops; the oracle for every Conv2D variant.
void Conv2DReference(const Conv2DShape& shape, const float* x, const float* weights,
                     const float* bias, Activation act, float* y);

}  // namespace onnxq::kernels
