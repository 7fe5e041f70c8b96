// matmul-add-to-gemm: MatMul(A, B) + bias becomes Gemm(A, B, bias) when A is known to be 2-D,
// B is a 2-D constant and the bias is a constant that broadcasts over the last dim only ([N],
// [1, N] or a single value), so the result shape is unchanged.
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class MatMulAddToGemmPass : public Pass {
 public:
  const char* name() const override { return "matmul-add-to-gemm"; }
  const char* description() const override {
    return "Fuses MatMul + constant Add into Gemm (2-D input, constant 2-D weight, per-column bias)";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n) || !g.node(n).Is("MatMul")) continue;
      std::string why;
      std::string desc = g.node(n).Describe();
      if (TryFuse(g, n, &why)) {
        changed = true;
        ctx.Count("fused");
      } else if (!why.empty()) {
        ctx.Note("kept " + desc + ": " + why);
      }
    }
    return changed;
  }

 private:
  static bool TryFuse(Graph& g, NodeId mm, std::string* why) {
    const Node& matmul = g.node(mm);
    ValueId y = matmul.output(0);
    if (!HasSingleUse(g, y)) return false;
    NodeId add = g.value(y).uses()[0].node;
    const Node& addn = g.node(add);
    if (!addn.Is("Add")) return false;
    const Value& a = g.value(matmul.input(0));
    if (!a.shape || a.shape->rank() != 2) return *why = "its input is not known to be 2-D", false;
    const Tensor* b = FloatConstantOf(g, matmul.input(1));
    if (!b || b->rank() != 2) return *why = "its weight is not a 2-D float32 constant", false;
    if (a.dtype != DataType::kFloat) return *why = "its input is not float32", false;
    int64_t n = b->dims()[1];
    ValueId bias_v = addn.input(0) == y ? addn.input(1) : addn.input(0);
    const Tensor* c = FloatConstantOf(g, bias_v);
    if (!c) return *why = "the Add operand is not a float32 constant", false;
    bool ok = c->numel() == 1 ? c->rank() <= 2
                              : c->numel() == n && (c->rank() == 1 || (c->rank() == 2 && c->dims()[0] == 1));
    if (!ok) return *why = "the bias of dims " + DimsToString(c->dims()) + " does not broadcast over the last dim only", false;
    std::vector<float> bias(n);
    for (int64_t k = 0; k < n; ++k) bias[k] = c->data<float>()[c->numel() == 1 ? 0 : k];

    ValueId out = addn.output(0);
    ValueId in_a = matmul.input(0), in_b = matmul.input(1);
    std::string name = matmul.name.empty() ? g.UniqueNodeName("gemm") : matmul.name;
    g.RemoveNode(add);
    ValueId cv = g.AddInitializer(g.value(in_b).name() + "_bias", Tensor::Float({n}, bias));
    // At the MatMul's place: its inputs are defined before it, and the Add came after it.
    auto gemm = g.InsertNodeBefore(mm, "Gemm", {in_a, in_b, cv}, {out}, name);
    if (!gemm.ok()) return *why = gemm.status().message(), false;
    g.RemoveNode(mm);
    DropIfDangling(g, y);
    DropIfDangling(g, bias_v);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeMatMulAddToGemmPass() { return std::make_unique<MatMulAddToGemmPass>(); }

}  // namespace onnxq::passes
