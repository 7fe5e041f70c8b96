// Integer GEMM: 8-bit weights (pre-packed once) times 8-bit activations with exact int32
// accumulation, then either the int32 result (MatMulInteger / ConvInteger) or a requantization to
// 8 bits that reproduces ONNX Runtime's CPU kernels (MLAS) bit for bit:
//
//   acc   = sum_k (W[m][k] - w_zp[m]) * (X[k][n] - x_zp) + bias[m]          (int32)
//   f     = float(acc) * scale[m]                                          (one float multiply)
//   f     = min(max(f, qmin - y_zp), qmax - y_zp)                          (clamp in float)
//   y     = round_half_to_even(f) + y_zp                                   (cvtps2dq)
//
// scale[m] is computed by the caller as ORT does: (x_scale * w_scale[m]) / y_scale in float
// (Int8OutputScales). A fused Relu / Clip only narrows [qmin, qmax] (Int8ActivationClamp), which
// is exact because quantization is monotonic.
//
// The GEMM is laid out for NCHW convolution: W is [M = output channels] x [K], X is [K] x [N =
// output pixels] and Y is M x N row-major, so a 1x1 convolution needs no transposes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/kernels/conv.h"
#include "onnxq/kernels/cpu.h"

namespace onnxq::kernels {

// Output stage of an integer GEMM / convolution. With scale == nullptr the int32 accumulator
// (plus bias) is stored; otherwise it is requantized to uint8 (out_signed false) or int8.
struct Int8OutputStage {
  const int32_t* bias = nullptr;   // [M] or null
  const float* scale = nullptr;    // [M] requantization multipliers, or null for int32 output
  int32_t zero_point = 0;          // output zero point
  int32_t qmin = 0, qmax = 255;    // clamp of the stored value (after adding the zero point)
  bool out_signed = false;
};

// (x_scale * w_scale[i]) / y_scale for each of n weight scales (n_w == 1: one per-tensor value
// broadcast to m rows), the exact float expression ORT's QLinearConv / QLinearMatMul use.
std::vector<float> Int8OutputScales(float x_scale, const float* w_scale, int64_t n_w, float y_scale,
                                    int64_t m);

// Quantized clamp bounds for a fused Relu / Clip on an output with (y_scale, y_zero_point):
// Q(clamp(v, lo, hi)) == clamp(Q(v), Q(lo), Q(hi)) because Q is monotonic, with Q the
// QuantizeLinear formula (round half to even of v / y_scale, plus zero point, saturated).
void Int8ActivationClamp(const Activation& act, float y_scale, int32_t y_zero_point,
                         bool out_signed, int32_t* qmin, int32_t* qmax);

// Byte size of an activation panel in the packed layout (K rounded up to 4, N rounded up to 16).
int64_t Int8PackedXBytes(int64_t k, int64_t n);

class Int8Gemm {
 public:
  // w: M x K row-major (row stride ldw elements), int8 (w_signed) or uint8; w_zero_points: one per
  // row, or a single value for all rows (n_wzp == 1), or null (all zero).
  static StatusOr<std::unique_ptr<Int8Gemm>> Create(int64_t m, int64_t k, const void* w, int64_t ldw,
                                                    bool w_signed, const int32_t* w_zero_points,
                                                    int64_t n_wzp, Isa isa);
  ~Int8Gemm();

  // X element (k, n) is x[k * x_row_stride + n * x_col_stride] (uint8, or int8 if x_signed), with
  // one zero point. y: M x N with row stride ldy elements (int32 / uint8 / int8 per `out`).
  void Run(const void* x, bool x_signed, int64_t x_row_stride, int64_t x_col_stride, int32_t x_zp,
           int64_t n, const Int8OutputStage& out, void* y, int64_t ldy, ThreadPool* pool) const;

  // Packed-activation entry point (im2col writes this layout directly). xp: Int8PackedXBytes(K, N)
  // bytes, element (k, n) at (k / 4) * Np * 4 + n * 4 + k % 4 with Np = N rounded up to 16, all
  // padding bytes zero; values are uint8 with zero point xzp_u8 (int8 inputs are stored XOR 0x80
  // with zero point + 128). colsum[n] = sum_k xp(k, n) is needed only if NeedsColumnSums().
  void RunPacked(const uint8_t* xp, int32_t xzp_u8, const int32_t* colsum, int64_t n,
                 const Int8OutputStage& out, void* y, int64_t ldy, ThreadPool* pool) const;
  bool NeedsColumnSums() const;

  int64_t m() const;
  int64_t k() const;
  Isa isa() const;

  struct Impl;

 private:
  explicit Int8Gemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Packs X (element (k, n) at x[k * rs + n * cs], int8 inputs flipped to uint8) into the
// RunPacked layout; fills colsum[n] if it is non-null.
void Int8PackX(const void* x, bool x_signed, int64_t rs, int64_t cs, int64_t k, int64_t n,
               uint8_t* xp, int32_t* colsum);

// The plain triple loop: the oracle every variant is tested against. x/w/y as in Int8Gemm::Run
// with W row-major M x K (ldw = K), Y row stride n.
void Int8GemmReference(int64_t m, int64_t n, int64_t k, const void* w, bool w_signed,
                       const int32_t* w_zero_points, int64_t n_wzp, const void* x, bool x_signed,
                       int64_t x_row_stride, int64_t x_col_stride, int32_t x_zp,
                       const Int8OutputStage& out, void* y);

// The requantization of one int32 accumulator (bias already added), exactly as MLAS does it.
int32_t Int8Requantize(int32_t acc, float scale, int32_t zero_point, int32_t qmin, int32_t qmax);

}  // namespace onnxq::kernels
