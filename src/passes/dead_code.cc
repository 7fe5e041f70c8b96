// dead-code: removes nodes none of whose outputs is used or a graph output, then initializers and
// values that nothing references. Graph inputs are never removed (they are the model's interface).
#include <algorithm>

#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class DeadCodePass : public Pass {
 public:
  const char* name() const override { return "dead-code"; }
  const char* description() const override {
    return "Removes nodes whose outputs nobody uses, and unused initializers and values";
  }
  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    // Reverse order: removing a consumer can make its producers dead in the same sweep.
    std::vector<NodeId> order = g.order();
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      NodeId n = *it;
      const Node& node = g.node(n);
      bool live = std::any_of(node.outputs().begin(), node.outputs().end(), [&](ValueId v) {
        return v != kNoValue && IsUsedOrOutput(g, v);
      });
      if (live) continue;
      std::vector<ValueId> outs = node.outputs();
      g.RemoveNode(n);
      for (ValueId v : outs) DropIfDangling(g, v);
      ctx.Count("nodes_removed");
      changed = true;
    }
    for (ValueId v : g.value_ids()) {
      const Value& val = g.value(v);
      if (val.producer() != kNoNode || !val.uses().empty() || g.IsGraphInput(v) || g.IsGraphOutput(v))
        continue;
      ctx.Count(val.is_initializer() ? "initializers_removed" : "values_removed");
      g.RemoveValue(v).IgnoreError();  // checked above: nothing produces or uses it
      changed = true;
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeDeadCodePass() { return std::make_unique<DeadCodePass>(); }

}  // namespace onnxq::passes
