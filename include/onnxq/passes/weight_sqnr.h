// Signal-to-quantization-noise ratio of symmetric integer weight quantization, used by the
// cross-layer-equalization report (and its tests) to show what equalization buys.
#pragma once

#include <span>

namespace onnxq::passes {

// 10 * log10(sum w^2 / sum (w - q(w))^2) in dB for symmetric max-abs quantization to `bits` bits
// (scale = max|w| / (2^(bits-1) - 1), round half away from zero, clamp to +-(2^(bits-1) - 1)).
// One scale for the whole tensor. +inf when the error is zero (e.g. all-zero weights).
double SymmetricSqnrDb(std::span<const float> w, int bits = 8);

}  // namespace onnxq::passes
