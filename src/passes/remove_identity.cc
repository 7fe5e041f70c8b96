// remove-identity: Identity nodes forward their input unchanged; consumers read the input directly.
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class RemoveIdentityPass : public Pass {
 public:
  const char* name() const override { return "remove-identity"; }
  const char* description() const override {
    return "Removes Identity nodes (consumers read the input directly; graph output names are kept)";
  }
  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n)) continue;
      const Node& node = g.node(n);
      if (!node.Is("Identity") || node.num_outputs() != 1) continue;
      std::string why;
      std::string desc = node.Describe();
      if (BypassNode(g, n, node.input(0), node.output(0), &why)) {
        changed = true;
        ctx.Count("removed");
      } else {
        ctx.Count("kept");
        ctx.Note("kept " + desc + ": " + why);
      }
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeRemoveIdentityPass() { return std::make_unique<RemoveIdentityPass>(); }

}  // namespace onnxq::passes
