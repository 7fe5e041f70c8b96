// Private interface between the portable kernel drivers (gemm.cc, conv.cc) and the per-ISA files
// (*_avx2.cc, *_avx512.cc). Deliberately self-contained (only <cstdint>): an ISA file compiled with
// -mavx512f must not instantiate inline/template code shared with portable files, or the linker
// could pick its copy for the portable callers.
#pragma once

#include <cstdint>

namespace onnxq::kernels::internal {

// Applied when a microkernel stores its tile:
//   C[i][j] = clamp(alpha * acc[i][j] + beta * C[i][j] + bias[i], lo, hi)
// beta == 0 never reads C (it may hold garbage); bias == nullptr adds nothing; clamp only if set.
struct Epilogue {
  float alpha = 1.f;
  float beta = 0.f;
  const float* bias = nullptr;  // bias of the tile's row 0
  bool clamp = false;
  float lo = 0.f, hi = 0.f;
};

// acc[i][j] = sum_{p<k} a[p*MR + i] * b[p*ldb + j] for an MR x NR tile (`a` is a packed,
// zero-padded A panel; every B row must hold n rounded up to the table's `vec` readable floats),
// then rows i < m and columns j < n are stored to c (row stride ldc) through the epilogue.
using GemmMicroFn = void (*)(int64_t k, const float* a, const float* b, int64_t ldb, float* c,
                             int64_t ldc, int m, int n, const Epilogue& ep);

// One channel of a depthwise convolution, reading the unpadded input plane x [in_h x in_w] with
// implicit zero padding: y[oh][ow] = clamp(bias + sum w[i][j] * x[oh*sh - pad_top + i*dh]
// [ow*sw - pad_left + j*dw], lo, hi). Kernels must never touch memory outside the plane (the SIMD
// variants use fault-suppressing masked loads at the borders).
struct DepthwiseArgs {
  const float* x;
  int64_t in_h, in_w, pad_top, pad_left;
  const float* w;
  int64_t kh, kw, sh, sw, dh, dw;
  int64_t out_h, out_w;
  float bias;
  float lo, hi;  // always applied (infinite bounds when no activation)
  float* y;
  // Optional scratch for a zero-padded copy of the plane (3x3 / dilation 1 / stride <= 2 only):
  // (out_h - 1) * sh + 4 rows of scratch_stride (>= DepthwisePaddedStride()) floats plus 16
  // (the last row stages stride-2 rows); null = none.
  float* scratch = nullptr;
  int64_t scratch_stride = 0;
};
// Row stride of the padded copy: covers pad_left + in_w + pad_right and every vector load of a
// row of out_w outputs (16-wide vectors, 2 extra taps, stride 2 loads 32 columns).
inline int64_t DepthwisePaddedStride(int64_t in_w, int64_t pad_left, int64_t pad_right,
                                     int64_t out_w, int64_t sw) {
  const int64_t need = ((out_w + 15) / 16) * 16 * sw + 48;
  const int64_t cover = pad_left + in_w + pad_right + 16;
  const int64_t s = need > cover ? need : cover;
  return (s + 31) / 32 * 32;  // stride-2 rows are split in two halves of whole 16-float vectors
}
using DepthwiseFn = void (*)(const DepthwiseArgs& args);

// A 3x3 depthwise convolution (dilation 1, equal strides 1 or 2) of 16 channels at once, for planes
// where a row holds too few outputs to fill a vector (MobileNetV2's 28x28 to 7x7 layers) and for
// strided ones: the 16 input planes are transposed band by band into a zero-padded channel-blocked
// scratch ([row][col][16 channels], 64-byte aligned), each output pixel is then 9 full-vector
// FMAs with per-channel weight vectors, and the blocked result is transposed back into the 16 NCHW
// output planes. Each output is computed the same way whatever the band or thread partition
// (bias + even taps and the odd taps as two fixed partial sums, then their sum, then the clamp).
struct DepthwiseBlockedArgs {
  const float* x;  // plane of the block's first channel; the others follow every in_h * in_w
  int64_t in_h, in_w, pad_top, pad_left;
  int64_t stride;  // 1 or 2
  int64_t out_h, out_w;
  const float* w;     // [9][16]: tap t's weights of the 16 channels, 64-byte aligned
  const float* bias;  // [16]
  float lo, hi;
  float* y;  // output plane of the block's first channel; the others follow every out_h * out_w
  // Scratch (64-byte aligned): in_rows * padded_w * 16 floats of padded input band, then
  // band_rows * out_w * 16 + 256 floats of output band.
  float* scratch;
  int64_t padded_w;   // >= pad_left + in_w and >= (out_w - 1) * stride + 3
  int64_t band_rows;  // output rows per band; in_rows = (band_rows - 1) * stride + 3
};
using DepthwiseBlockedFn = void (*)(const DepthwiseBlockedArgs& args);

// out[r] = sum_{p<k} w[r*ldw + p] * x[p] for r < rows (matrix-vector product: 1x1 convolutions on
// a 1x1 input, e.g. a classifier, where a GEMM tile would waste all but one column).
using GemvFn = void (*)(const float* w, int64_t ldw, int64_t rows, const float* x, int64_t k,
                        float* out);

// dst[i] = src[i * stride] for i < n (every source element is inside the buffer): im2col rows of
// strided convolutions.
using StridedCopyFn = void (*)(const float* src, int64_t stride, int64_t n, float* dst);

struct KernelTable {
  int mr = 0, nr = 0;
  int vec = 1;  // the microkernel reads B rows in multiples of vec floats
  GemmMicroFn gemm_micro = nullptr;
  // Optional kernel for tiles of at most narrow_n columns (spatial edges such as 7x7 = 48 + 1),
  // reading exactly n floats of each B row (so row-major B needs no packing): null = none.
  GemmMicroFn gemm_narrow = nullptr;
  int narrow_n = 0;
  DepthwiseFn depthwise = nullptr;
  DepthwiseBlockedFn depthwise_blocked = nullptr;  // null: this ISA has none (per-plane path only)
  GemvFn gemv = nullptr;
  StridedCopyFn strided_copy = nullptr;
};

KernelTable TableReference();
KernelTable TableAvx2();    // src/kernels/kernels_avx2.cc
KernelTable TableAvx512();  // src/kernels/kernels_avx512.cc

}  // namespace onnxq::kernels::internal
