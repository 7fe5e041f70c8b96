// 8-bit element-wise and pooling kernels with ONNX Runtime's CPU rounding (see docs/int8.md):
//   - Int8Add: QLinearAdd as MLAS computes it on x86 (AVX2 "XNNFloatMultiply" path, the default):
//       rA = sA / sC, rB = sB / sC, K = float(zC) - (rA * zA + rB * zB)
//       c  = saturate(round_half_even(fma(a, rA, fma(b, rB, K))))
//   - Int8GlobalAveragePool: int32 sum - zX * size, times float(sX / (sY * size)), clamp, round
//     half to even, plus zY (MlasQLinearGlobalAveragePool / MlasRequantizeOutput).
//   - Int8AveragePool2D: QLinearAveragePool: dequantize each input (sX * (x - zX)), float sum in
//     window order, divide by the count, then saturate(round_half_even(avg / sY + zY)).
//   - Int8MaxPool2D: max of the raw 8-bit values (input and output share scale / zero point).
#pragma once

#include <cstdint>

#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq::kernels {

struct Int8AddParams {
  float a_scale = 1.f, b_scale = 1.f, c_scale = 1.f;
  int32_t a_zp = 0, b_zp = 0, c_zp = 0;
  bool is_signed = false;  // int8 tensors (else uint8)
};

// The float constants of QLinearAdd as ONNX Runtime computes them: rA = sA / sC, rB = sB / sC,
// K = float(zC) - fma(rA, zA, rB * zB); c = saturate(round_half_even(fma(a, rA, fma(b, rB, K)))).
struct Int8AddConstants {
  float ra = 1.f, rb = 1.f, k = 0.f;
};
Int8AddConstants Int8AddRatios(const Int8AddParams& p);

// c[i] = QLinearAdd(a[a_scalar ? 0 : i], b[b_scalar ? 0 : i]) for i < n.
void Int8Add(const Int8AddParams& p, const void* a, bool a_scalar, const void* b, bool b_scalar,
             void* c, int64_t n, Isa isa);

// x: planes x image_size values (NCHW: planes = N * C); y: one value per plane.
void Int8GlobalAveragePool(const void* x, int64_t planes, int64_t image_size, float x_scale,
                           int32_t x_zp, float y_scale, int32_t y_zp, bool is_signed, void* y,
                           ThreadPool* pool);

struct Int8Pool2DShape {
  int64_t in_h = 0, in_w = 0, kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t out_h = 0, out_w = 0;  // computed by the caller (floor or ceil mode)
};

void Int8MaxPool2D(const void* x, int64_t planes, const Int8Pool2DShape& s, bool is_signed,
                   void* y, ThreadPool* pool);

// Dilation must be 1 (as in QLinearAveragePool).
void Int8AveragePool2D(const void* x, int64_t planes, const Int8Pool2DShape& s,
                       bool count_include_pad, float x_scale, int32_t x_zp, float y_scale,
                       int32_t y_zp, bool is_signed, void* y, ThreadPool* pool);

}  // namespace onnxq::kernels
