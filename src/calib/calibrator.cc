#include "onnxq/calib/calibrator.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace onnxq::calib {

using quant::ComputeQuantParams;
using quant::QuantParams;

StatusOr<CalibrationMethod> ParseCalibrationMethod(const std::string& name) {
  if (name == "minmax") return CalibrationMethod::kMinMax;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "mse") return CalibrationMethod::kMse;
  if (name == "kl" || name == "entropy") return CalibrationMethod::kKl;
  return InvalidArgument("unknown calibrator '", name, "' (expected minmax, percentile, mse or kl)");
}

const char* CalibrationMethodName(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kMinMax: return "minmax";
    case CalibrationMethod::kPercentile: return "percentile";
    case CalibrationMethod::kMse: return "mse";
    case CalibrationMethod::kKl: return "kl";
  }
  return "?";
}

namespace {

// Nonzero bins as (lower edge, upper edge, count) for the O(nonzero) error sums.
struct Bin {
  double a, b, c;
};
std::vector<Bin> NonzeroBins(const HistogramObserver& obs) {
  std::vector<Bin> bins;
  auto counts = obs.counts();
  double w = obs.bin_width();
  for (size_t j = 0; j < counts.size(); ++j) {
    if (!counts[j]) continue;
    double a = obs.bin_edge(static_cast<int64_t>(j));
    // The data never leaves [min, max]: shrink the end bins to it so the uniform-density model
    // does not invent values beyond the observed extremes.
    double lo = std::max(a, double(obs.min())), hi = std::min(a + w, double(obs.max()));
    if (hi < lo) hi = lo;
    bins.push_back({lo, hi, double(counts[j])});
  }
  return bins;
}

// Integral of (u - round(u))^2 from 0 to u.
inline double RoundErrIntegral(double u) {
  double fl = std::floor(u), f = u - fl;
  double g = f <= 0.5 ? f * f * f / 3.0 : 1.0 / 24.0 + ((f - 1.0) * (f - 1.0) * (f - 1.0) + 0.125) / 3.0;
  return fl / 12.0 + g;
}

// Sum over bins of count * mean squared error in the bin (not yet divided by the total count).
double ErrorSum(const std::vector<Bin>& bins, const QuantParams& p) {
  const double s = p.scale;
  const double lo = (double(p.qmin) - p.zero_point) * s, hi = (double(p.qmax) - p.zero_point) * s;
  double total = 0;
  for (const Bin& bin : bins) {
    double a = bin.a, b = bin.b, w = b - a;
    if (w <= 0) {  // a point mass (e.g. all values equal): exact error of that value
      double x = a, q = std::clamp(std::nearbyint(x / s) * s, lo, hi);
      total += bin.c * (x - q) * (x - q);
      continue;
    }
    double e = 0;
    if (a < lo) {  // clipped below
      double t = std::min(b, lo);
      e += ((lo - a) * (lo - a) * (lo - a) - (lo - t) * (lo - t) * (lo - t)) / 3.0;
    }
    if (b > hi) {  // clipped above
      double t = std::max(a, hi);
      e += ((b - hi) * (b - hi) * (b - hi) - (t - hi) * (t - hi) * (t - hi)) / 3.0;
    }
    double ia = std::max(a, lo), ib = std::min(b, hi);
    if (ib > ia) e += s * s * s * (RoundErrIntegral(ib / s) - RoundErrIntegral(ia / s));
    total += bin.c * e / w;
  }
  return total;
}

double Quantile(const std::vector<double>& counts, double edge0, double w, double total, double q) {
  double target = q * total, cum = 0;
  for (size_t j = 0; j < counts.size(); ++j) {
    double c = counts[j];
    if (c > 0 && cum + c >= target) {
      double frac = std::clamp((target - cum) / c, 0.0, 1.0);
      return edge0 + w * (double(j) + frac);
    }
    cum += c;
  }
  return edge0 + w * double(counts.size());
}

// |x| histogram on the same grid: abs bin k covers [k w, (k + 1) w); negative bin g folds onto
// -g - 1 (exact up to which side of a bin edge the value sits).
std::vector<double> AbsHistogram(const HistogramObserver& obs) {
  auto counts = obs.counts();
  int64_t first = obs.first_index(), n = static_cast<int64_t>(counts.size());
  int64_t kmax = std::max<int64_t>(first + n, -first) + 1;
  std::vector<double> abs(static_cast<size_t>(std::max<int64_t>(kmax, 1)), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    if (!counts[j]) continue;
    int64_t g = first + j;
    int64_t k = g >= 0 ? g : -g - 1;
    abs[static_cast<size_t>(k)] += double(counts[j]);
  }
  while (abs.size() > 1 && abs.back() == 0) abs.pop_back();
  return abs;
}

Status NeedHistogram(const HistogramObserver& obs, CalibrationMethod m) {
  if (!obs.has_histogram())
    return InvalidArgument("the ", CalibrationMethodName(m),
                           " calibrator needs a histogram, but the observer kept only min/max");
  return Status::Ok();
}

StatusOr<CalibrationResult> Finish(const HistogramObserver& obs, double lo, double hi,
                                   const quant::QuantSpec& spec) {
  CalibrationResult r;
  r.lo = lo;
  r.hi = hi;
  ONNXQ_ASSIGN_OR_RETURN(r.params, ComputeQuantParams(lo, hi, spec));
  r.expected_mse = obs.has_histogram() ? HistogramQuantError(obs, r.params)
                                       : std::numeric_limits<double>::quiet_NaN();
  return r;
}

// Smooths zero entries of a distribution with eps taken from the nonzero ones (TensorRT/MXNet).
bool Smooth(std::vector<double>& p) {
  constexpr double eps = 1e-4;
  size_t zeros = 0;
  for (double v : p) zeros += v == 0;
  size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  double eps1 = eps * double(zeros) / double(nonzeros);
  if (eps1 >= 1.0) return false;
  // A nonzero entry smaller than eps1 would turn negative: the candidate is then unusable (the
  // reference implementations produce NaN there and skip it too).
  for (double v : p)
    if (v != 0 && v <= eps1) return false;
  for (double& v : p) v = v == 0 ? eps : v - eps1;
  return true;
}

// TensorRT's entropy calibration on a magnitude histogram h (bin width w, starting at 0) for
// `nq` (>= 2) quantization levels, with the zero bin kept as its own level. Returns the threshold.
double KlThreshold(const std::vector<double>& h_in, double w, int nq, int max_candidates) {
  // At most 2048 bins (TensorRT's resolution): merge pairs, which is exact on our grid.
  std::vector<double> h = h_in;
  while (h.size() > 2048) {
    std::vector<double> m((h.size() + 1) / 2, 0.0);
    for (size_t j = 0; j < h.size(); ++j) m[j / 2] += h[j];
    h.swap(m);
    w *= 2;
  }
  const int64_t M = static_cast<int64_t>(h.size());
  if (nq >= M) return w * double(M);
  std::vector<double> suffix(static_cast<size_t>(M) + 1, 0.0);
  for (int64_t j = M - 1; j >= 0; --j) suffix[j] = suffix[j + 1] + h[j];
  int64_t stride = std::max<int64_t>(1, (M - nq + max_candidates - 1) / max_candidates);
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = M;
  std::vector<double> p, q;
  for (int64_t i = nq;; i += stride) {
    if (i > M) i = M;
    p.assign(h.begin(), h.begin() + i);
    p[i - 1] += suffix[i];  // outliers clipped into the last bin
    // Quantize h[0, i) into nq bins and expand back over the nonzero entries. Bin 0 (which holds
    // the exact zeros, e.g. half of a ReLU output) is a level of its own: 0 is always exactly
    // representable (integer zero point), so merging it with its neighbours, as TensorRT's
    // floor-aligned bins do, models an error real quantization never makes; that phantom error
    // dominated the KL and clipped ReLU6 outputs to ~nq bins. The other nq - 1 levels split
    // [1, i) as TensorRT does (the remainder goes to the last level).
    q.assign(static_cast<size_t>(i), 0.0);
    int64_t merged = (i - 1) / (nq - 1);
    for (int j = 0; j < nq; ++j) {
      int64_t start = j == 0 ? 0 : 1 + (j - 1) * merged;
      int64_t stop = j == 0 ? 1 : (j == nq - 1 ? i : start + merged);
      double sum = 0;
      int64_t nonzero = 0;
      for (int64_t k = start; k < stop; ++k) {
        sum += h[k];
        nonzero += p[k] != 0;
      }
      if (nonzero == 0) continue;
      double v = sum / double(nonzero);
      for (int64_t k = start; k < stop; ++k)
        if (p[k] != 0) q[k] = v;
    }
    double psum = 0, qsum = 0;
    for (int64_t k = 0; k < i; ++k) {
      psum += p[k];
      qsum += q[k];
    }
    double kl = std::numeric_limits<double>::infinity();
    if (psum > 0 && qsum > 0) {
      for (int64_t k = 0; k < i; ++k) {
        p[k] /= psum;
        q[k] /= qsum;
      }
      if (Smooth(p) && Smooth(q)) {
        kl = 0;
        for (int64_t k = 0; k < i; ++k)
          if (p[k] > 0) kl += p[k] * std::log(p[k] / q[k]);
      }
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
    if (i == M) break;
  }
  return w * double(best_i);
}

}  // namespace

double HistogramQuantError(const HistogramObserver& obs, const QuantParams& params) {
  if (!obs.has_histogram() || obs.count() == 0) return std::numeric_limits<double>::quiet_NaN();
  return ErrorSum(NonzeroBins(obs), params) / double(obs.count());
}

double HistogramQuantile(const HistogramObserver& obs, double q) {
  auto c = obs.counts();
  std::vector<double> counts(c.begin(), c.end());
  double v = Quantile(counts, obs.bin_edge(0), obs.bin_width(), double(obs.count()), q);
  return std::clamp(v, double(obs.min()), double(obs.max()));
}

double HistogramAbsQuantile(const HistogramObserver& obs, double q) {
  std::vector<double> abs = AbsHistogram(obs);
  double v = Quantile(abs, 0.0, obs.bin_width(), double(obs.count()), q);
  double amax = std::max(std::fabs(double(obs.min())), std::fabs(double(obs.max())));
  return std::min(v, amax);
}

StatusOr<CalibrationResult> Calibrate(const HistogramObserver& obs, const CalibratorOptions& opt) {
  ONNXQ_RETURN_IF_ERROR(opt.spec.Validate());
  if (obs.empty()) return InvalidArgument("cannot calibrate: the observer saw no data");
  const double mn = obs.min(), mx = obs.max();
  const quant::QuantSpec& spec = opt.spec;
  switch (opt.method) {
    case CalibrationMethod::kMinMax:
      return Finish(obs, mn, mx, spec);

    case CalibrationMethod::kPercentile: {
      ONNXQ_RETURN_IF_ERROR(NeedHistogram(obs, opt.method));
      if (!(opt.percentile > 0 && opt.percentile <= 100))
        return InvalidArgument("percentile ", opt.percentile, " is not in (0, 100]");
      double q = opt.percentile / 100.0;
      if (spec.symmetric) {
        double t = HistogramAbsQuantile(obs, q);
        return Finish(obs, std::max(mn, -t), std::min(mx, t), spec);
      }
      double hi = HistogramQuantile(obs, q), lo = HistogramQuantile(obs, 1.0 - q);
      return Finish(obs, std::min(lo, hi), std::max(lo, hi), spec);
    }

    case CalibrationMethod::kMse: {
      ONNXQ_RETURN_IF_ERROR(NeedHistogram(obs, opt.method));
      if (opt.mse_coarse < 2 || opt.mse_fine < 1 || !(opt.mse_min_ratio > 0 && opt.mse_min_ratio < 1))
        return InvalidArgument("bad MSE calibrator search settings");
      const std::vector<Bin> bins = NonzeroBins(obs);
      const double lo0 = std::min(0.0, mn), hi0 = std::max(0.0, mx);
      auto eval = [&](double lo, double hi, QuantParams* p) {
        auto r = ComputeQuantParams(lo, hi, spec);
        if (!r.ok()) return std::numeric_limits<double>::infinity();
        *p = *r;
        return ErrorSum(bins, *p);
      };
      // 1-D search of a ratio r in [min_ratio, 1] applied by `apply`: geometric coarse grid, then
      // a fine linear grid between the neighbours of the best coarse point.
      auto search = [&](auto apply) {
        const int K = opt.mse_coarse;
        const double log_min = std::log(opt.mse_min_ratio);
        auto ratio = [&](int k) { return std::exp(log_min * (1.0 - double(k) / (K - 1))); };
        double best = std::numeric_limits<double>::infinity(), best_r = 1.0;
        int best_k = K - 1;
        QuantParams p;
        for (int k = 0; k < K; ++k) {
          double r = ratio(k);
          double e = apply(r, &p);
          if (e < best) best = e, best_r = r, best_k = k;
        }
        double a = ratio(std::max(0, best_k - 1)), b = ratio(std::min(K - 1, best_k + 1));
        for (int k = 1; k < 2 * opt.mse_fine; ++k) {
          double r = a + (b - a) * k / (2.0 * opt.mse_fine);
          double e = apply(r, &p);
          if (e < best) best = e, best_r = r;
        }
        return best_r;
      };
      double r = search([&](double r, QuantParams* p) { return eval(r * lo0, r * hi0, p); });
      double lo = r * lo0, hi = r * hi0;
      if (!spec.symmetric && lo0 < 0 && hi0 > 0) {
        // The two tails of an asymmetric range are independent: refine each alone.
        for (int round = 0; round < 2; ++round) {
          double rh = search([&](double r, QuantParams* p) { return eval(lo, r * hi0, p); });
          hi = rh * hi0;
          double rl = search([&](double r, QuantParams* p) { return eval(r * lo0, hi, p); });
          lo = rl * lo0;
        }
      }
      return Finish(obs, std::max(mn, lo), std::min(mx, hi), spec);
    }

    case CalibrationMethod::kKl: {
      ONNXQ_RETURN_IF_ERROR(NeedHistogram(obs, opt.method));
      if (opt.kl_max_candidates < 1) return InvalidArgument("kl_max_candidates must be positive");
      // Levels across [0, T]: half the integer range for data with both signs (or a signed
      // container), the whole range for non-negative data in an unsigned container.
      bool nonneg = mn >= 0;
      int nq = (nonneg && !spec.is_signed) ? (spec.qmax() - spec.qmin() + 1) : (1 << (spec.bits - 1));
      std::vector<double> mag = nonneg ? std::vector<double>() : AbsHistogram(obs);
      if (nonneg) {
        auto c = obs.counts();
        // first_index() is 0 for non-negative data (the grid starts at 0).
        mag.assign(c.begin(), c.end());
        while (mag.size() > 1 && mag.back() == 0) mag.pop_back();
      }
      double t = KlThreshold(mag, obs.bin_width(), nq, opt.kl_max_candidates);
      return Finish(obs, std::max(mn, -t), std::min(mx, t), spec);
    }
  }
  return Internal("unknown calibration method");
}

}  // namespace onnxq::calib
