// mark-activation-groups: a Conv / ConvTranspose / Gemm / MatMul whose output feeds only an
// activation (Relu, Clip with constant bounds, HardSwish, HardSigmoid, LeakyRelu, Sigmoid, and the
// Relu -> Min(constant) pair that per-channel CLE writes) is marked as one quantization group in
// Node::meta, so the quantizer puts no Q/DQ pair between them:
//   meta["onnxq.group"] = "<id>" on every member
//   meta["onnxq.group_role"] = "anchor" | "activation"
//   meta["onnxq.group_activation"] = "Relu" / "Clip" / "Relu+Min" ... on the anchor
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

const char* const kKeys[] = {"onnxq.group", "onnxq.group_role", "onnxq.group_activation"};

bool IsActivation(const Model& model, const Node& n) {
  if (n.num_outputs() != 1 || !n.domain.empty()) return false;
  if (n.Is("Relu") || n.Is("HardSwish") || n.Is("HardSigmoid") || n.Is("LeakyRelu") || n.Is("Sigmoid"))
    return true;
  if (n.Is("Clip")) {
    float lo, hi;
    return GetClipBounds(model, n, &lo, &hi);
  }
  return false;
}

class MarkActivationGroupsPass : public Pass {
 public:
  const char* name() const override { return "mark-activation-groups"; }
  const char* description() const override {
    return "Marks Conv/Gemm + activation as one quantization group (Node::meta onnxq.group*)";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    std::map<NodeId, std::map<std::string, std::string>> before;
    for (NodeId n : g.order()) {
      Node& node = g.node(n);
      for (const char* k : kKeys) {
        auto it = node.meta.find(k);
        if (it != node.meta.end()) {
          before[n][k] = it->second;
          node.meta.erase(it);
        }
      }
    }
    int next = 0;
    for (NodeId n : g.order()) {
      Node& anchor = g.node(n);
      if (!(anchor.Is("Conv") || anchor.Is("ConvTranspose") || anchor.Is("Gemm") || anchor.Is("MatMul")))
        continue;
      if (anchor.num_outputs() != 1) continue;
      ValueId out = anchor.output(0);
      if (!HasSingleUse(g, out)) continue;
      NodeId act = g.value(out).uses()[0].node;
      if (!IsActivation(model, g.node(act))) continue;
      std::vector<NodeId> members = {act};
      std::string kinds = g.node(act).op_type;
      // Relu -> Min(per-channel constant): the exact form of a per-channel Clip (see cle).
      ValueId a_out = g.node(act).output(0);
      if (g.node(act).Is("Relu") && HasSingleUse(g, a_out)) {
        const Node& next_node = g.node(g.value(a_out).uses()[0].node);
        if (next_node.Is("Min") && next_node.num_inputs() == 2) {
          ValueId other = next_node.input(0) == a_out ? next_node.input(1) : next_node.input(0);
          if (FloatConstantOf(g, other)) {
            members.push_back(next_node.id());
            kinds += "+Min";
          }
        }
      }
      std::string id = std::to_string(next++);
      anchor.meta["onnxq.group"] = id;
      anchor.meta["onnxq.group_role"] = "anchor";
      anchor.meta["onnxq.group_activation"] = kinds;
      for (NodeId m : members) {
        g.node(m).meta["onnxq.group"] = id;
        g.node(m).meta["onnxq.group_role"] = "activation";
      }
      ctx.Count("groups." + anchor.op_type + "+" + kinds);
    }
    ctx.Count("groups", next);
    bool changed = false;
    for (NodeId n : g.order()) {
      std::map<std::string, std::string> now;
      for (const char* k : kKeys) {
        auto it = g.node(n).meta.find(k);
        if (it != g.node(n).meta.end()) now[k] = it->second;
      }
      auto it = before.find(n);
      if (now != (it == before.end() ? std::map<std::string, std::string>{} : it->second)) changed = true;
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeMarkActivationGroupsPass() {
  return std::make_unique<MarkActivationGroupsPass>();
}

}  // namespace onnxq::passes
