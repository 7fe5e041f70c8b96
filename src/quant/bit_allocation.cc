#include "onnxq/quant/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace onnxq::quant {

StatusOr<std::vector<int>> SolveMultipleChoiceKnapsack(const std::vector<std::vector<KnapsackOption>>& items,
                                                      double budget, int64_t resolution) {
  if (resolution < 1 || resolution > 50'000'000) return InvalidArgument("knapsack resolution out of range");
  if (!std::isfinite(budget) || budget < 0) return InvalidArgument("budget must be finite and >= 0");
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].empty()) return InvalidArgument("knapsack item ", i, " has no option");
    for (const auto& o : items[i])
      if (!(o.cost >= 0) || !std::isfinite(o.cost) || !std::isfinite(o.value))
        return InvalidArgument("knapsack item ", i, " has a bad cost or value");
  }
  // Unit: 1 when every cost is an integer and the budget is small enough (then the DP is exact),
  // else budget / resolution.
  bool integral = budget <= static_cast<double>(resolution);
  for (const auto& it : items)
    for (const auto& o : it) integral = integral && o.cost == std::floor(o.cost);
  if (std::any_of(items.begin(), items.end(), [](const auto& it) { return it.size() > 255; }))
    return InvalidArgument("knapsack items have at most 255 options");
  const double unit = integral ? 1.0 : std::max(budget, 1e-300) / static_cast<double>(resolution);
  const int64_t cap = integral ? static_cast<int64_t>(std::floor(budget)) : resolution;
  const double inf = std::numeric_limits<double>::infinity();
  const size_t S = static_cast<size_t>(cap + 1);
  // round_up: costs rounded up (every solution fits the real budget); otherwise down (a solution may
  // not fit, e.g. "all layers at 8 bits" under an 8-bit average, which rounding up would exclude).
  auto solve = [&](bool round_up) -> std::vector<int> {
    auto units = [&](double cost) -> size_t {
      const double c = cost / unit;
      const double r = round_up ? std::ceil(c - 1e-9 * std::max(1.0, c)) : std::floor(c + 1e-9 * std::max(1.0, c));
      return static_cast<size_t>(std::max(0.0, r));
    };
    std::vector<double> best(S, 0.0), next(S);
    std::vector<std::vector<uint8_t>> choice(items.size(), std::vector<uint8_t>(S, 0));
    // best[s] = least value of the items so far with total (rounded) cost <= s.
    for (size_t i = 0; i < items.size(); ++i) {
      std::fill(next.begin(), next.end(), inf);
      for (size_t j = 0; j < items[i].size(); ++j) {
        const size_t w = units(items[i][j].cost);
        if (w >= S) continue;
        const double v = items[i][j].value;
        for (size_t s = w; s < S; ++s) {
          const double cand = best[s - w] + v;
          if (cand < next[s]) {
            next[s] = cand;
            choice[i][s] = static_cast<uint8_t>(j);
          }
        }
      }
      best.swap(next);
    }
    if (!std::isfinite(best[S - 1])) return {};
    std::vector<int> out(items.size());
    size_t s = S - 1;
    for (size_t i = items.size(); i-- > 0;) {
      const int j = choice[i][s];
      out[i] = j;
      s -= units(items[i][static_cast<size_t>(j)].cost);
    }
    return out;
  };
  auto cost_of = [&](const std::vector<int>& sol) {
    double total = 0;
    for (size_t i = 0; i < items.size(); ++i) total += items[i][static_cast<size_t>(sol[i])].cost;
    return total;
  };
  auto value_of = [&](const std::vector<int>& sol) {
    double total = 0;
    for (size_t i = 0; i < items.size(); ++i) total += items[i][static_cast<size_t>(sol[i])].value;
    return total;
  };
  std::vector<int> repaired;
  if (!integral) {
    std::vector<int> down = solve(false);
    if (!down.empty()) {
      if (cost_of(down) <= budget) return down;
      // Rounded-down costs overspend by at most the rounding slack. When the budget is (nearly)
      // the cheapest choice, rounding every cost up finds nothing, so also repair the down answer:
      // move items to cheaper options, least value added per cost saved first, until it fits.
      double cheapest = 0;
      for (const auto& it : items) {
        double c = it[0].cost;
        for (const auto& o : it) c = std::min(c, o.cost);
        cheapest += c;
      }
      if (cheapest <= budget) {
        repaired = down;
        double total = cost_of(repaired);
        while (total > budget) {
          double best_ratio = inf;
          size_t bi = 0, bj = 0;
          for (size_t i = 0; i < items.size(); ++i) {
            const KnapsackOption& cur = items[i][static_cast<size_t>(repaired[i])];
            for (size_t j = 0; j < items[i].size(); ++j) {
              const double saved = cur.cost - items[i][j].cost;
              if (!(saved > 0)) continue;
              const double ratio = (items[i][j].value - cur.value) / saved;
              if (ratio < best_ratio) best_ratio = ratio, bi = i, bj = j;
            }
          }
          if (!std::isfinite(best_ratio)) break;
          repaired[bi] = static_cast<int>(bj);
          total = cost_of(repaired);
        }
        if (total > budget) repaired.clear();
      }
    }
  }
  std::vector<int> out = solve(true);
  if (!repaired.empty() && (out.empty() || value_of(repaired) < value_of(out))) return repaired;
  if (out.empty()) {
    std::ostringstream os;
    os << "the budget " << budget << " is too small: even the cheapest choice per layer does not fit";
    return OutOfRange(os.str());
  }
  return out;
}

std::string Budget::ToString() const {
  std::ostringstream os;
  switch (kind) {
    case BudgetKind::kAverageBits: os << "average weight bits <= " << value; break;
    case BudgetKind::kMemoryBytes: os << "weight memory <= " << value << " bytes"; break;
    case BudgetKind::kMemoryFraction: os << "weight memory <= " << value << " of float32"; break;
    case BudgetKind::kBops: os << "BOPs <= " << value; break;
  }
  return os.str();
}

StatusOr<double> LayerBudgetCost(const LayerCost& l, int bits, int act_bits, BudgetKind kind) {
  switch (kind) {
    case BudgetKind::kAverageBits: return static_cast<double>(l.params) * bits;
    case BudgetKind::kMemoryBytes:
    case BudgetKind::kMemoryFraction:
      return static_cast<double>(l.params) * bits / 8.0 + 4.0 * static_cast<double>(l.channels);
    case BudgetKind::kBops:
      if (l.macs < 0) return Unsupported("a BOPs budget needs every layer's MAC count (unknown output shape)");
      return static_cast<double>(l.macs) * bits * act_bits;
  }
  return Internal("bad budget kind");
}

StatusOr<double> BudgetLimit(const std::vector<LayerCost>& layers, const Budget& b) {
  if (!(b.value > 0) || !std::isfinite(b.value)) return InvalidArgument("budget must be positive: ", b.ToString());
  double params = 0;
  for (const auto& l : layers) params += static_cast<double>(l.params);
  switch (b.kind) {
    case BudgetKind::kAverageBits: return b.value * params;
    case BudgetKind::kMemoryBytes: return b.value;
    case BudgetKind::kMemoryFraction: return b.value * 4.0 * params;
    case BudgetKind::kBops: return b.value;
  }
  return Internal("bad budget kind");
}

}  // namespace onnxq::quant
