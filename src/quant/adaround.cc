// AdaRound (see rounding.h) on the Gram-matrix form of the layer's output error: with E the
// rounding error in grid units (codes - target / scale) and H the Gram matrix scaled to mean
// diagonal 1, the loss of one output channel is e H e^T + lambda * sum(1 - |2h - 1|^beta). Its
// exact gradient needs one E * H product per step, independent of the number of samples.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "onnxq/kernels/gemm.h"
#include "onnxq/quant/rounding.h"

namespace onnxq::quant {
namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr float kZeta = 1.1f, kGamma = -0.1f;

}  // namespace

// Rows are independent problems (the loss is a sum over output channels), so the optimiser runs
// on all rows of the block at once and the result for a row does not depend on the others.
StatusOr<std::vector<int32_t>> AdaRoundQuantizeMatrix(std::span<const float> w, int64_t rows, int64_t k,
                                                      std::span<const double> h,
                                                      std::span<const QuantParams> params,
                                                      const AdaRoundOptions& o) {
  const bool per_row = rows > 1 && static_cast<int64_t>(h.size()) == rows * k * k;
  if (rows < 1 || k < 1 || static_cast<int64_t>(w.size()) != rows * k ||
      (static_cast<int64_t>(h.size()) != k * k && !per_row))
    return InvalidArgument("AdaRound: matrix sizes do not match (rows ", rows, ", k ", k, ")");
  if (params.size() != 1 && static_cast<int64_t>(params.size()) != rows)
    return InvalidArgument("AdaRound: need 1 or ", rows, " quantization params, got ", params.size());
  if (o.iters < 0 || !(o.lr > 0) || !(o.lambda >= 0) || !(o.warmup >= 0 && o.warmup <= 1) ||
      !(o.beta_start > 0) || !(o.beta_end > 0))
    return InvalidArgument("AdaRound: bad options");
  auto prm = [&](int64_t r) -> const QuantParams& {
    return params[params.size() == 1 ? 0 : static_cast<size_t>(r)];
  };
  // Each H scaled to mean diagonal 1 so that lambda means the same for every layer; inputs that
  // never vary carry no information (their rows/columns are zero and the loss ignores them).
  const int64_t nh = per_row ? rows : 1;
  MatF Hn(nh * k, k);  // nh stacked k x k blocks
  for (int64_t b = 0; b < nh; ++b) {
    const double* hb = h.data() + b * k * k;
    double mean_diag = 0;
    for (int64_t i = 0; i < k; ++i) mean_diag += std::max(hb[i * k + i], 0.0);
    mean_diag /= static_cast<double>(k);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j)
        Hn(b * k + i, j) = mean_diag > 0 ? static_cast<float>(hb[i * k + j] / mean_diag) : 0.0f;
  }
  std::vector<int32_t> codes(static_cast<size_t>(rows * k));
  // Grid-unit targets, the floor codes, and which entries are free to round either way.
  MatF T(rows, k), Base(rows, k), V(rows, k), M(rows, k), S(rows, k), E(rows, k), G(rows, k);
  std::vector<uint8_t> free_(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    const QuantParams& p = prm(r);
    const float lo = static_cast<float>(p.qmin - p.zero_point), hi = static_cast<float>(p.qmax - p.zero_point);
    for (int64_t c = 0; c < k; ++c) {
      const float t = w[static_cast<size_t>(r * k + c)] / p.scale;
      T(r, c) = t;
      float b = std::floor(t);
      // A target exactly on the grid (e.g. weights already stored at this bit width) has nothing
      // to decide: its code is fixed, as nearest rounding would give it.
      const bool fr = b >= lo && b + 1 <= hi && b != t;
      free_[static_cast<size_t>(r * k + c)] = fr;
      if (!fr) b = b < lo ? lo : (b > hi ? hi : b);  // saturated (grid end) or exactly on the grid
      Base(r, c) = b;
      // Start at h = frac(t): the soft weights equal the target.
      const float frac = fr ? t - b : 0.0f;
      const float pr = std::clamp((frac - kGamma) / (kZeta - kGamma), 1e-4f, 1.0f - 1e-4f);
      V(r, c) = std::log(pr / (1.0f - pr));
    }
  }
  M.setZero();
  S.setZero();
  MatF Free(rows, k);
  for (int64_t i = 0; i < rows * k; ++i) Free.data()[i] = free_[static_cast<size_t>(i)] ? 1.0f : 0.0f;
  const bool any_free = std::any_of(free_.begin(), free_.end(), [](uint8_t f) { return f != 0; });
  std::unique_ptr<kernels::PackedGemmB> packed;
  if (!per_row && k >= 16) {
    auto pk = kernels::PackedGemmB::Create(false, k, k, Hn.data(), k);
    if (pk.ok()) packed = std::move(pk).value();
  }
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, lr = static_cast<float>(o.lr);
  const int64_t warm = static_cast<int64_t>(std::llround(o.warmup * static_cast<double>(o.iters)));
  float b1t = 1, b2t = 1;
  MatF Sg(rows, k), Raw(rows, k), Hs(rows, k), U(rows, k);
  // Element-wise work in Eigen array form (vectorised exp/log); the E * H product dominates
  // for wide layers, the element-wise part for narrow ones.
  for (int64_t it = 0; it < o.iters && any_free; ++it) {
    float beta = 0, lam = 0;
    if (it >= warm) {
      const double rel = o.iters > warm ? double(it - warm) / double(o.iters - warm) : 1.0;
      beta = static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * (1.0 - rel));
      lam = static_cast<float>(o.lambda);
    }
    Sg.array() = 1.0f / (1.0f + (-V.array()).exp());
    Raw.array() = Sg.array() * (kZeta - kGamma) + kGamma;
    Hs.array() = Raw.array().max(0.0f).min(1.0f) * Free.array();
    E.array() = Base.array() + Hs.array() - T.array();
    if (packed) {
      packed->Run(false, rows, 2.0f, E.data(), k, 0.0f, G.data(), k);
    } else if (per_row) {
      for (int64_t r = 0; r < rows; ++r)
        G.row(r).noalias() = 2.0f * E.row(r) * Hn.middleRows(r * k, k);
    } else {
      G.noalias() = 2.0f * E * Hn;
    }
    if (lam > 0) {
      // d/dh of lambda (1 - |2h - 1|^beta) = -2 lambda beta |u|^(beta - 1) sign(u), u = 2h - 1.
      U.array() = 2.0f * Hs.array() - 1.0f;
      G.array() -= (2.0f * lam * beta) * U.array().sign() *
                   ((beta - 1.0f) * U.array().abs().max(1e-30f).log()).exp();
    }
    // Through the rectified sigmoid: zero where h is clipped or the entry is fixed.
    G.array() *= (kZeta - kGamma) * Sg.array() * (1.0f - Sg.array()) * Free.array() *
                 (Raw.array() > 0.0f && Raw.array() < 1.0f).cast<float>();
    b1t *= b1;
    b2t *= b2;
    M.array() = b1 * M.array() + (1 - b1) * G.array();
    S.array() = b2 * S.array() + (1 - b2) * G.array().square();
    V.array() -= lr * (M.array() / (1 - b1t)) / ((S.array() / (1 - b2t)).sqrt() + eps);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) {
      int32_t q = static_cast<int32_t>(Base(r, c));
      if (free_[static_cast<size_t>(r * k + c)]) {
        const float sg = 1.0f / (1.0f + std::exp(-V(r, c)));
        if (sg * (kZeta - kGamma) + kGamma >= 0.5f) ++q;
      }
      codes[static_cast<size_t>(r * k + c)] = q + prm(r).zero_point;
    }
  return codes;
}

}  // namespace onnxq::quant
