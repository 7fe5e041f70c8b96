// Channels-last (NHWC) integer convolution and global average pooling: the layout the QDQ lowering
// runs quantized convolution chains in (docs/int8.md). Channels are contiguous, so the depthwise
// kernel vectorises over channels and a 1x1 convolution is a GEMM on the activations as they are
// (no packing). Weights keep ONNX's OIHW layout at creation; outputs are always requantized to
// 8 bits with the same arithmetic and rounding as Int8Conv2D (int8_gemm.h), so both layouts give
// identical bytes.
//
// Algorithms (chosen in Create):
//   - "depthwise": group == in_channels == out_channels, NHWC input;
//   - "pointwise": 1x1, stride 1, no padding, group 1, NHWC input with in_channels % 4 == 0;
//   - "im2col":    any other group-1 convolution; the input may be NCHW (input_nchw: the first
//                  convolution of a channels-last chain reads the NCHW tensor directly).
#pragma once

#include <cstdint>
#include <memory>

#include "onnxq/base/status.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_gemm.h"

namespace onnxq::kernels {

// A QLinearAdd fused into a (non-depthwise) convolution's output stage: the convolution's
// requantized 8-bit output q (with its own scale, zero point and clamp, as Run writes it) is added
// to `other` ([batch, out_h, out_w, out_channels], the output's 8-bit type) with QLinearAdd's
// arithmetic (Int8AddRatios: the constants of the Add, A = the convolution if conv_is_a):
// y = saturate(round_half_even(fma(A, ra, fma(B, rb, k)))), block by block while q is in cache.
// Bit-identical to Run followed by Int8Add; it saves the Add's pass over memory and its launch.
struct Int8FusedAdd {
  const void* other = nullptr;
  float ra = 1.f, rb = 1.f, k = 0.f;
  bool conv_is_a = true;
};

class Int8ConvNhwc {
 public:
  // True if Create accepts this shape (group 1, or depthwise with an NHWC input).
  static bool Supports(const Conv2DShape& shape, bool input_nchw);

  // w: [out_channels, in_channels / group, kernel_h, kernel_w], int8 (w_signed) or uint8;
  // w_zero_points: per output channel (n_wzp == out_channels), one value (n_wzp == 1) or null.
  static StatusOr<std::unique_ptr<Int8ConvNhwc>> Create(const Conv2DShape& shape, const void* w,
                                                        bool w_signed,
                                                        const int32_t* w_zero_points,
                                                        int64_t n_wzp, bool x_signed,
                                                        bool input_nchw, Isa isa);
  ~Int8ConvNhwc();

  // x: [batch, in_h, in_w, in_channels] (or NCHW with input_nchw) with zero point x_zp;
  // y: [batch, out_h, out_w, out_channels]. out.scale is required (8-bit output only).
  void Run(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y, int64_t batch,
           int64_t in_h, int64_t in_w, ThreadPool* pool) const;
  // Run with a fused QLinearAdd (see Int8FusedAdd); not for depthwise (returns false, y untouched).
  bool RunWithAdd(const void* x, int32_t x_zp, const Int8OutputStage& out, const Int8FusedAdd& add,
                  void* y, int64_t batch, int64_t in_h, int64_t in_w, ThreadPool* pool) const;
  // Float output (a float island's Conv after DequantizeLinear, run on the integers): y
  // [batch, out_h, out_w, out_channels] = float(accumulator + bias[c]) * multiplier[c], with
  // multiplier[c] = x_scale * w_scale[c]. Not for depthwise.
  void RunFloat(const void* x, int32_t x_zp, const int32_t* bias, const float* multiplier,
                float* y, int64_t batch, int64_t in_h, int64_t in_w, ThreadPool* pool) const;
  const char* algorithm() const;  // "depthwise", "pointwise", "im2col"
  Isa isa() const;

  struct Impl;

 private:
  explicit Int8ConvNhwc(std::unique_ptr<Impl> impl);
  void RunImpl(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y, float* yf,
               const Int8FusedAdd* add, int64_t batch, int64_t in_h, int64_t in_w,
               ThreadPool* pool) const;
  std::unique_ptr<Impl> impl_;
};

// QLinearGlobalAveragePool on x [batch, pixels, channels] (NHWC) into y [batch, channels], the
// same arithmetic as Int8GlobalAveragePool (int8_ops.h).
void Int8GlobalAveragePoolNhwc(const void* x, int64_t batch, int64_t pixels, int64_t channels,
                               float x_scale, int32_t x_zp, float y_scale, int32_t y_zp,
                               bool is_signed, void* y, ThreadPool* pool);

}  // namespace onnxq::kernels
