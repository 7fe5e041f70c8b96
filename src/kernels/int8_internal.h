// Private interface between the portable int8 drivers (int8_gemm.cc, int8_conv.cc, int8_ops.cc)
// and the per-ISA files (int8_*_avx2.cc, int8_*_avx512.cc). Only <cstdint>, no shared inline code
// with external linkage (see kernels_internal.h for why).
#pragma once

#include <cstdint>

namespace onnxq::kernels::int8 {

// One MR x NR tile of the integer GEMM (see int8_gemm.h for the formula):
//   acc[i][j] = sum_q sum_{t<4} W(i, 4q+t) * X(4q+t, j)          (W int8 / X uint8 domains)
//   acc      += row_off[i] - (wzp ? wzp[i] * colsum[j] : 0)
// then stored as int32 (scale == null) or requantized to 8 bits. Rows i < m and columns j < n
// are stored; the packed panels are zero-padded so reading all MR rows / NR columns is safe.
struct Tile {
  int64_t kq = 0;              // number of k quads (K rounded up to 4, divided by 4)
  const void* w = nullptr;     // packed W panel: [kq][MR][4] int8 (or int16 when Table::w16)
  const uint8_t* x = nullptr;  // packed X at column j = 0 of the tile
  int64_t x_stride = 0;        // bytes between consecutive k quads of X (Np * 4)
  int m = 0, n = 0;
  const int32_t* row_off = nullptr;  // [MR]
  const int32_t* wzp = nullptr;      // [MR] or null
  const int32_t* colsum = nullptr;   // [n] (with wzp)
  const float* scale = nullptr;      // [MR] or null: int32 output
  int32_t yzp = 0, qmin = 0, qmax = 255;
  bool out_signed = false;
  void* y = nullptr;  // element (0, 0) of the tile
  int64_t ldy = 0;    // elements
};
using GemmTileFn = void (*)(const Tile& t);

// Direct depthwise convolution of one channel in the uint8 domain: padded positions read as xzp.
//   acc = bias + sum_{i,j} (x[..] - xzp) * (w[i][j] - wzp)  then store as in Tile.
struct DepthwiseArgs {
  const uint8_t* x = nullptr;
  int64_t in_h = 0, in_w = 0, pad_top = 0, pad_left = 0;
  int32_t xzp = 0;
  const int16_t* w = nullptr;  // kh * kw taps, already minus the weight zero point
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t out_h = 0, out_w = 0;
  int32_t bias = 0;
  const float* scale = nullptr;  // one value, or null: int32 output
  int32_t yzp = 0, qmin = 0, qmax = 255;
  bool out_signed = false;
  void* y = nullptr;
  int32_t* scratch = nullptr;  // out_h * max(out_w, row_len) int32 accumulators
  // Scratch: the int16 plane, in_h rows of row_len (integer path); the float plane,
  // DepthwisePlaneRows rows of row_len, and out_h * row_len float accumulators (float path).
  int16_t* row = nullptr;
  float* fplane = nullptr;
  float* facc = nullptr;
  int64_t row_len = 0;
  // Vector path (AVX2 / AVX-512 tables): DepthwiseVecPlaneFloats floats.
  float* vplane = nullptr;
};
using DepthwiseFn = void (*)(const DepthwiseArgs& a);

// Scratch sizes (elements) of the float depthwise path: a fully padded plane with row length
// DepthwiseRowLen, read as one flat array per tap (so every tap is one long vector loop).
inline int64_t DepthwiseRowLen(int64_t in_w, int64_t pad_left, int64_t out_w, int64_t sw,
                               int64_t kw, int64_t dw) {
  const int64_t need = (out_w - 1) * sw + (kw - 1) * dw + 1;
  return pad_left + in_w > need ? pad_left + in_w : need;
}
inline int64_t DepthwisePlaneRows(int64_t out_h, int64_t sh, int64_t kh, int64_t dh) {
  return sh * out_h + (kh - 1) * dh + 2;
}

// Scratch of the vector depthwise path: the padded plane (x - xzp, 0 in the padding) with every
// row split into sw phase rows (phase p holds padded columns p, p + sw, ...), each of length
// DepthwiseVecRowLen, so that 16 consecutive outputs of any tap are 16 consecutive floats for
// any stride. Rows: the (out_h - 1) * sh + (kh - 1) * dh + 1 padded rows the outputs read.
// The row length is a multiple of 16 and leaves room for a whole 16-column block past the last
// input column (the fill converts whole blocks).
inline int64_t DepthwiseVecRowLen(int64_t out_w, int64_t sw, int64_t kw, int64_t dw, int64_t in_w,
                                  int64_t pad_left) {
  const int64_t reads = (out_w + 15) / 16 * 16 + ((kw - 1) * dw) / sw + 1;
  const int64_t fill = (in_w + pad_left + sw - 1) / sw + 16;
  return ((reads > fill ? reads : fill) + 15) / 16 * 16;
}
inline int64_t DepthwiseVecPlaneFloats(int64_t out_h, int64_t out_w, int64_t sh, int64_t sw,
                                       int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                                       int64_t in_w, int64_t pad_left) {
  const int64_t rows = (out_h - 1) * sh + (kh - 1) * dh + 1;
  return rows * sw * DepthwiseVecRowLen(out_w, sw, kw, dw, in_w, pad_left) + 16;
}

// QLinearAdd over n elements (see int8_ops.h for the formula); a / b may be one broadcast value.
struct AddArgs {
  const void* a = nullptr;
  const void* b = nullptr;
  bool a_scalar = false, b_scalar = false;
  float ra = 1.f, rb = 1.f, k = 0.f;  // a_scale / c_scale, b_scale / c_scale, the constant term
  bool is_signed = false;
  void* c = nullptr;
  int64_t n = 0;
  // rows runs of n elements, ld elements apart in a, b and c (a fused Add on a channel chunk);
  // a broadcast operand does not move.
  int64_t rows = 1, ld = 0;
};
using AddFn = void (*)(const AddArgs& a);

// y[j] = output stage of (int32(acc[j]) + bias) for j < n, where every acc[j] is an integer of
// magnitude below 2^24 held in a float (exact sums of 8-bit products); int32 output if scale is
// null. Used after the fp32 depthwise kernel computed such sums (int8_conv.cc).
using RequantFloatFn = void (*)(const float* acc, int64_t n, int32_t bias, const float* scale,
                                int32_t yzp, int32_t qmin, int32_t qmax, bool out_signed, void* y);

// ---- Channels-last (NHWC) kernels (int8_nhwc.cc drives them; see int8_nhwc.h).

// Pointwise GEMM: y[r][co] = requant(sum_k (x[r][k] - xzp) (W[co][k] - wzp[co]) + bias[co]) for
// r < rows, co < co. Rows of x hold kq * 4 readable bytes (K rounded up to 4; the weights are zero
// past K). Weights packed per 16 output channels: [co16][kq][16][4] int8, or (Table::w16, the
// AVX2 vpmaddwd path) [co16][kq][2][16][2] int16 (the two k pairs of a quad).
struct NhwcGemmArgs {
  const uint8_t* x = nullptr;
  int64_t ldx = 0;  // bytes between pixel rows
  int64_t rows = 0, kq = 0;
  bool x_flip = false;  // int8 activations: XOR 0x80 moves them into the uint8 domain
  const void* w = nullptr;
  int64_t co = 0;
  const int32_t* off = nullptr;   // [co16 * 16]: bias - xzp * sum_k W + K * xzp * wzp
  const int32_t* wzp = nullptr;   // [co16 * 16] or null (all zero)
  const int32_t* xsum = nullptr;  // [rows] sum_k x (uint8 domain), with wzp
  const float* scale = nullptr;   // [co16 * 16]
  int32_t yzp = 0, qmin = 0, qmax = 255;
  uint8_t* y = nullptr;
  int64_t ldy = 0;  // elements between output pixel rows
  // Float output instead (a float island's Conv after DequantizeLinear): yf[r][co] =
  // float(acc) * scale[co], no rounding or clamp; y, yzp, qmin, qmax unused.
  float* yf = nullptr;
  // 1 if every |scale[c]| < 0.5 for c < co, 0 if not, -1 unknown (the kernel checks).
  int8_t small_scales = -1;
};
using NhwcGemmFn = void (*)(const NhwcGemmArgs& a);

// Depthwise convolution of output rows [oh_begin, oh_end) of one NHWC image with c channels.
// Weights and per-channel parameters are padded to cp = c rounded up to 16 (zero weights there).
struct NhwcDwArgs {
  const uint8_t* x = nullptr;  // [in_h][in_w][c]
  int64_t in_h = 0, in_w = 0, c = 0, cp = 0;
  int32_t xzp = 0;  // zero point as the stored type's value
  bool x_signed = false;
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, dh = 1, dw = 1, pad_top = 0, pad_left = 0;
  int64_t out_h = 0, out_w = 0, oh_begin = 0, oh_end = 0;
  const float* wf = nullptr;      // [kh * kw][cp]: w - wzp (vector variants)
  const int16_t* wi = nullptr;    // [kh * kw][cp]: the same as integers (reference)
  const int32_t* bias = nullptr;  // [cp]
  const float* scale = nullptr;   // [cp]
  int32_t yzp = 0, qmin = 0, qmax = 255;
  uint8_t* y = nullptr;  // [out_h][out_w][c]
  // Vector variants: ring of ring_rows padded input rows, each ring_w pixels x cp floats of
  // x - xzp (0 in the padding); ring_tag[slot] = the input row a slot holds.
  float* ring = nullptr;
  int64_t* ring_tag = nullptr;
  int64_t ring_rows = 0, ring_w = 0;
  // Byte-quad form (AVX-512 VNNI, kw <= 4 and every w - wzp within int8; else null): wq
  // [kh][cp / 16][16][4] holds per channel the kw taps of kernel row i as int8 (zero past kw), and
  // qoff[c] = bias[c] - xzp_u8 * sum_taps(w - wzp), xzp_u8 the zero point in the uint8 domain
  // (int8 inputs are XORed with 0x80). The ring then holds, per output column and channel, the
  // kw input bytes a kernel row reads (padding = xzp_u8) as one dword: one vpdpbusd per kernel row.
  const int8_t* wq = nullptr;
  const int32_t* qoff = nullptr;
};
using NhwcDwFn = void (*)(const NhwcDwArgs& a);
inline int64_t NhwcDwRingRows(int64_t kh, int64_t dh) { return (kh - 1) * dh + 1; }
inline int64_t NhwcDwRingWidth(int64_t out_w, int64_t sw, int64_t kw, int64_t dw) {
  return (out_w - 1) * sw + (kw - 1) * dw + 1;
}

// QuantizeLinear of n floats, per tensor, to 8 bits: y = clamp(round_half_even(x / scale) + zp)
// (division, as ONNX Runtime), NaN giving the lower bound.
using Quantize8Fn = void (*)(const float* x, int64_t n, float scale, int32_t zp, bool is_signed,
                             void* y);

// min and max of n floats (n > 0) into *lo / *hi; false if any value is NaN (the result is then
// meaningless). Infinities are ordinary values here.
using MinMaxFn = bool (*)(const float* x, int64_t n, float* lo, float* hi);

struct Table {
  int mr = 0, nr = 0;
  bool w16 = false;  // W packed as int16 (the AVX2 vpmaddwd path)
  GemmTileFn tile = nullptr;
  DepthwiseFn depthwise = nullptr;
  AddFn add = nullptr;
  RequantFloatFn requant_float = nullptr;
  NhwcGemmFn nhwc_gemm = nullptr;
  NhwcDwFn nhwc_dw = nullptr;  // null: only the integer reference (large kernels)
  bool nhwc_dw_quads = false;  // nhwc_dw takes the byte-quad form (NhwcDwArgs::wq) when given
  Quantize8Fn quantize8 = nullptr;  // null: the caller's portable loop
  MinMaxFn minmax = nullptr;        // null: the caller's portable loop
};

Table TableReference();
Table TableAvx2();    // int8_gemm_avx2.cc
Table TableAvx512();  // int8_gemm_avx512.cc
Table TableForIsa(int isa);  // a kernels::Isa value
// Channels-last kernels of each ISA file (int8_nhwc.cc, int8_nhwc_avx2.cc, int8_nhwc_avx512.cc).
void NhwcKernelsReference(Table* t);
void NhwcKernelsAvx2(Table* t);
void NhwcKernelsAvx512(Table* t);

}  // namespace onnxq::kernels::int8
