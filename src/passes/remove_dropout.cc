// remove-dropout: at inference Dropout is the identity on its first output. Refused when the node
// may run in training mode (training_mode input not a constant false) or its mask output is used.
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class RemoveDropoutPass : public Pass {
 public:
  const char* name() const override { return "remove-dropout"; }
  const char* description() const override {
    return "Removes inference-mode Dropout (output = input); refuses if the mask is used or "
           "training_mode is not a constant false";
  }
  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    int64_t opset = model.OpsetVersion("");
    bool changed = false;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n)) continue;
      const Node& node = g.node(n);
      if (!node.Is("Dropout")) continue;
      std::string desc = node.Describe();
      auto refuse = [&](const std::string& why) {
        ctx.Count("kept");
        ctx.Note("kept " + desc + ": " + why);
      };
      // Opset < 7 had is_test; is_test = 0 means training behaviour.
      if (opset >= 0 && opset < 7 && AttrInt(node, "is_test", 0) == 0) {
        refuse("is_test is 0 (training mode)");
        continue;
      }
      if (opset >= 12 && node.input(2) != kNoValue) {
        const Tensor* t = ConstantOf(g, node.input(2));
        if (t == nullptr || t->numel() != 1 || t->GetAsDouble(0) != 0.0) {
          refuse("training_mode is not a constant false");
          continue;
        }
      }
      ValueId mask = node.output(1);
      if (mask != kNoValue && IsUsedOrOutput(g, mask)) {
        refuse("its mask output '" + g.value(mask).name() + "' is used");
        continue;
      }
      ValueId in = node.input(0), out = node.output(0);
      std::string why;
      if (!BypassNode(g, n, in, out, &why)) {
        refuse(why);
        continue;
      }
      if (mask != kNoValue) DropIfDangling(g, mask);
      changed = true;
      ctx.Count("removed");
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeRemoveDropoutPass() { return std::make_unique<RemoveDropoutPass>(); }

}  // namespace onnxq::passes
