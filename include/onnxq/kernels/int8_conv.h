// Integer 2-D convolution (NCHW), created once per node with its weights pre-packed. Maps directly
// onto QLinearConv, ConvInteger and a lowered QDQ Conv (uint8/int8 input with one zero point, int8
// or uint8 weights with per-output-channel zero points, int32 bias, requantized 8-bit output with
// per-channel multipliers and a fused Relu/Clip as a narrower [qmin, qmax]):
//   - depthwise (group == in_channels == out_channels): direct kernel;
//   - 1x1, stride 1, no padding: one integer GEMM per group on the input as is;
//   - everything else: im2col straight into the packed GEMM layout, padding reading as x_zp.
// Output stage and rounding: see int8_gemm.h (bit-exact with ONNX Runtime's MLAS requantization).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/kernels/int8_gemm.h"

namespace onnxq::kernels {

class Int8Conv2D {
 public:
  // w: [out_channels, in_channels / group, kernel_h, kernel_w], int8 (w_signed) or uint8;
  // w_zero_points: per output channel (n_wzp == out_channels), one value (n_wzp == 1) or null.
  // x_signed: the input is int8 (else uint8).
  static StatusOr<std::unique_ptr<Int8Conv2D>> Create(const Conv2DShape& shape, const void* w,
                                                      bool w_signed, const int32_t* w_zero_points,
                                                      int64_t n_wzp, bool x_signed, Isa isa);
  ~Int8Conv2D();
  // x: [batch, in_channels, in_h, in_w] with zero point x_zp; out.bias / out.scale have
  // out_channels entries; y: [batch, out_channels, out_h, out_w] (int32 when out.scale is null).
  void Run(const void* x, int32_t x_zp, const Int8OutputStage& out, void* y, int64_t batch,
           int64_t in_h, int64_t in_w, ThreadPool* pool) const;
  const char* algorithm() const;  // "depthwise", "gemm1x1", "im2col"
  Isa isa() const;

  struct Impl;

 private:
  explicit Int8Conv2D(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Straightforward loops (int64 accumulation, then the int32 output stage): the oracle.
void Int8Conv2DReference(const Conv2DShape& shape, const void* x, bool x_signed, int32_t x_zp,
                         const void* w, bool w_signed, const int32_t* w_zero_points, int64_t n_wzp,
                         const Int8OutputStage& out, void* y);

}  // namespace onnxq::kernels
