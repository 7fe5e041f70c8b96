// Mixed-precision bit allocation: per-layer weight bit widths that minimise the summed measured
// sensitivity under one budget (multiple-choice knapsack by dynamic programming). Integer costs
// with a budget up to `resolution`: exact. Otherwise the budget is split into `resolution` units;
// the DP first runs with costs rounded down and its answer is kept if its real cost fits, else it
// runs with costs rounded up (always fits; optimal for the rounded costs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "onnxq/base/status.h"

namespace onnxq::quant {

// items[i][j] = (cost, value) of option j of item i. Minimises the summed value with summed
// cost <= budget, one option per item. Returns the chosen option index per item. Fails when even
// the cheapest choice does not fit.
struct KnapsackOption {
  double cost = 0;
  double value = 0;
};
StatusOr<std::vector<int>> SolveMultipleChoiceKnapsack(
    const std::vector<std::vector<KnapsackOption>>& items, double budget, int64_t resolution = 20000);

// What the budget limits.
enum class BudgetKind {
  kAverageBits,  // sum(bits_l * params_l) / sum(params_l) <= value
  kMemoryBytes,  // sum(bits_l * params_l / 8 + 4 * channels_l) <= value (packed weights + fp32 scales)
  kMemoryFraction,  // the same bytes / float32 weight bytes <= value
  kBops,         // sum(macs_l * bits_l * act_bits) <= value
};
struct Budget {
  BudgetKind kind = BudgetKind::kAverageBits;
  double value = 0;
  std::string ToString() const;
};

// Per-layer facts the budget needs.
struct LayerCost {
  int64_t params = 0;
  int64_t channels = 0;
  int64_t macs = -1;  // per sample; -1 when unknown
};
// Cost of one layer at `bits` under `budget` (in the budget's unit).
StatusOr<double> LayerBudgetCost(const LayerCost& layer, int bits, int act_bits, BudgetKind kind);
// The budget turned into the same unit as LayerBudgetCost.
StatusOr<double> BudgetLimit(const std::vector<LayerCost>& layers, const Budget& budget);

}  // namespace onnxq::quant
