// fold-conv-mul-add: Conv followed by Mul / Add / Sub with a constant that is per output channel
// (every dim 1 except the channel dim, right-aligned against the conv output) folds into the conv:
// Mul scales W[o] and b[o], Add/Sub shifts b[o]. Anything that would broadcast the output to a
// bigger shape, mix channels, or a Sub of the form (c - conv) is left alone.
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class FoldConvMulAddPass : public Pass {
 public:
  const char* name() const override { return "fold-conv-mul-add"; }
  const char* description() const override {
    return "Folds a constant per-channel Mul, Add or Sub after a Conv into its weight and bias";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    bool again = true;
    while (again) {  // Conv -> Mul -> Add chains fold one step per sweep
      again = false;
      std::vector<NodeId> order = g.order();
      for (NodeId n : order) {
        if (!g.has_node(n)) continue;
        const Node& node = g.node(n);
        if (!(node.Is("Mul") || node.Is("Add") || node.Is("Sub")) || node.num_inputs() != 2) continue;
        if (TryFold(g, n, ctx)) {
          again = changed = true;
        }
      }
    }
    return changed;
  }

 private:
  static bool TryFold(Graph& g, NodeId n, PassContext& ctx) {
    const Node& node = g.node(n);
    int conv_slot = -1;
    for (int k = 0; k < 2; ++k) {
      const Node* p = g.Producer(node.input(k));
      if (p && p->Is("Conv")) conv_slot = k;
    }
    if (conv_slot < 0) return false;
    if (node.Is("Sub") && conv_slot != 0) return false;  // c - conv would negate W
    ValueId x = node.input(conv_slot);
    const Tensor* c = FloatConstantOf(g, node.input(1 - conv_slot));
    if (!c) return false;
    NodeId conv = g.Producer(x)->id();
    std::string what = node.Describe() + " into " + g.node(conv).Describe();
    if (!HasSingleUse(g, x)) {
      ctx.Note("not folding " + what + ": the Conv output has other uses");
      return false;
    }
    const Tensor* w = FloatConstantOf(g, g.node(conv).input(1));
    if (!w || w->rank() < 3) {
      ctx.Note("not folding " + what + ": the Conv weight is not a float32 constant");
      return false;
    }
    ValueId bias_v = g.node(conv).input(2);
    if (bias_v != kNoValue && !FloatConstantOf(g, bias_v)) {
      ctx.Note("not folding " + what + ": the Conv bias is not a float32 constant");
      return false;
    }
    int64_t cout = w->dims()[0];
    size_t rank = w->rank();
    // Per-channel check: right-align c against [N, C, spatial...].
    if (c->rank() > rank) return false;
    int64_t per_channel = 1;  // 1: scalar-like, cout: one value per channel
    for (size_t k = 0; k < c->rank(); ++k) {
      size_t out_dim = rank - c->rank() + k;
      int64_t d = c->dims()[k];
      if (d == 1) continue;
      if (out_dim == 1 && d == cout) {
        per_channel = cout;
        continue;
      }
      ctx.Note("not folding " + what + ": constant of dims " + DimsToString(c->dims()) +
               " is not per output channel");
      return false;
    }
    std::vector<float> v(cout);
    for (int64_t o = 0; o < cout; ++o) v[o] = c->data<float>()[per_channel == 1 ? 0 : o];

    std::vector<float> b(cout, 0.f);
    if (bias_v != kNoValue) {
      const Tensor* bt = FloatConstantOf(g, bias_v);
      if (bt->numel() != cout) return false;
      for (int64_t o = 0; o < cout; ++o) b[o] = bt->data<float>()[o];
    }
    if (node.Is("Mul")) {
      Tensor* wm = ExclusiveConstant(g, conv, 1);
      float* d = wm->mutable_data<float>();
      int64_t per = wm->numel() / cout;
      for (int64_t o = 0; o < cout; ++o)
        for (int64_t k = 0; k < per; ++k) d[o * per + k] *= v[o];
      for (int64_t o = 0; o < cout; ++o) b[o] *= v[o];
      ctx.Count("mul_folded");
    } else {
      float sign = node.Is("Sub") ? -1.f : 1.f;
      for (int64_t o = 0; o < cout; ++o) b[o] += sign * v[o];
      ctx.Count(node.Is("Sub") ? "sub_folded" : "add_folded");
    }
    if (bias_v != kNoValue || !node.Is("Mul")) {  // a Mul on a bias-less conv needs no bias
      ValueId nb = g.AddInitializer(g.value(g.node(conv).input(1)).name() + "_bias", Tensor::Float({cout}, b));
      g.SetNodeInput(conv, 2, nb);
      DropIfDangling(g, bias_v);
    }
    ValueId y = node.output(0);
    std::vector<ValueId> ins = node.inputs();
    g.RemoveNode(n);
    if (!g.SetNodeOutput(conv, 0, y).ok()) return false;
    for (ValueId in : ins) DropIfDangling(g, in);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeFoldConvMulAddPass() { return std::make_unique<FoldConvMulAddPass>(); }

}  // namespace onnxq::passes
