// fold-batchnorm: BatchNormalization(y) after Conv / ConvTranspose / Gemm becomes part of that
// node's weight and bias: y = a * (x - mean) + B with a = scale / sqrt(var + eps), so
// W'[o] = a[o] * W[o] and b'[o] = a[o] * (b[o] - mean[o]) + B[o].
#include <cmath>
#include <functional>

#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

class FoldBatchNormPass : public Pass {
 public:
  const char* name() const override { return "fold-batchnorm"; }
  const char* description() const override {
    return "Folds inference BatchNormalization into the preceding Conv, ConvTranspose or Gemm "
           "(when that node's output has no other use and its weights are constant)";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n) || !g.node(n).Is("BatchNormalization")) continue;
      std::string why;
      if (TryFold(model, n, &why)) {
        changed = true;
        ctx.Count("folded");
      } else {
        ctx.Count("kept");
        ctx.Note("kept " + (g.has_node(n) ? g.node(n).Describe() : std::string("BatchNormalization")) +
                 ": " + why);
      }
    }
    return changed;
  }

 private:
  static bool TryFold(Model& model, NodeId bn_id, std::string* why) {
    Graph& g = model.graph;
    const Node& bn = g.node(bn_id);
    if (AttrInt(bn, "training_mode", 0) != 0) return *why = "training_mode is set", false;
    for (size_t k = 1; k < bn.num_outputs(); ++k)
      if (bn.output(k) != kNoValue && IsUsedOrOutput(g, bn.output(k)))
        return *why = "its running mean/var outputs are used (training)", false;
    const Tensor* scale = FloatConstantOf(g, bn.input(1));
    const Tensor* bias = FloatConstantOf(g, bn.input(2));
    const Tensor* mean = FloatConstantOf(g, bn.input(3));
    const Tensor* var = FloatConstantOf(g, bn.input(4));
    if (!scale || !bias || !mean || !var) return *why = "its parameters are not float32 constants", false;
    int64_t c = scale->numel();
    if (bias->numel() != c || mean->numel() != c || var->numel() != c)
      return *why = "its parameters have different lengths", false;
    float eps = 1e-5f;
    if (auto e = bn.attrs.GetFloat("epsilon", 1e-5f); e.ok()) eps = *e;

    ValueId x = bn.input(0);
    const Node* prod = g.Producer(x);
    if (prod == nullptr) return *why = "its input is not produced by a node", false;
    bool conv = prod->Is("Conv"), convt = prod->Is("ConvTranspose"), gemm = prod->Is("Gemm");
    if (!conv && !convt && !gemm) return *why = "its input comes from " + prod->op_type, false;
    if (!HasSingleUse(g, x)) return *why = "the " + prod->op_type + " output has other uses", false;
    if (prod->num_outputs() != 1) return *why = "unexpected producer outputs", false;
    NodeId p = prod->id();
    const Tensor* w = FloatConstantOf(g, prod->input(1));
    if (!w) return *why = "the " + prod->op_type + " weight is not a float32 constant", false;
    if (w->rank() < 2) return *why = "unexpected weight rank", false;

    // Output channel o's weight elements, and the number of output channels.
    int64_t cout = 0;
    std::function<void(float*, const std::vector<float>&)> scale_weight;
    const std::vector<int64_t>& wd = w->dims();
    if (conv) {
      cout = wd[0];
      int64_t per = w->numel() / cout;
      scale_weight = [cout, per](float* d, const std::vector<float>& a) {
        for (int64_t o = 0; o < cout; ++o)
          for (int64_t k = 0; k < per; ++k) d[o * per + k] *= a[o];
      };
    } else if (convt) {
      // ConvTranspose weight: [C_in, C_out / group, k...]; output channel o = grp * (C_out/group) + j.
      int64_t group = AttrInt(*prod, "group", 1);
      int64_t cin = wd[0], cpg = wd[1];
      if (group <= 0 || cin % group != 0) return *why = "inconsistent ConvTranspose group", false;
      cout = cpg * group;
      int64_t spatial = w->numel() / (cin * cpg);
      int64_t cin_pg = cin / group;
      scale_weight = [=](float* d, const std::vector<float>& a) {
        for (int64_t ci = 0; ci < cin; ++ci) {
          int64_t grp = ci / cin_pg;
          for (int64_t j = 0; j < cpg; ++j)
            for (int64_t k = 0; k < spatial; ++k) d[(ci * cpg + j) * spatial + k] *= a[grp * cpg + j];
        }
      };
    } else {
      if (w->rank() != 2) return *why = "Gemm weight is not 2-D", false;
      bool transb = AttrInt(*prod, "transB", 0) != 0;
      int64_t rows = wd[0], cols = wd[1];
      cout = transb ? rows : cols;
      scale_weight = [=](float* d, const std::vector<float>& a) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t q = 0; q < cols; ++q) d[r * cols + q] *= a[transb ? r : q];
      };
    }
    if (cout != c) return *why = "channel count mismatch with the " + prod->op_type, false;

    // Existing bias as a per-channel vector (Gemm: beta * C, C broadcastable to [N]).
    std::vector<float> b(c, 0.f);
    if (prod->input(2) != kNoValue) {
      const Tensor* cb = FloatConstantOf(g, prod->input(2));
      if (!cb) return *why = "the " + prod->op_type + " bias is not a float32 constant", false;
      float beta = 1.f;
      if (gemm) {
        auto bt = prod->attrs.GetFloat("beta", 1.f);
        beta = bt.ok() ? *bt : 1.f;
        bool vec = cb->numel() == c && (cb->rank() == 1 || (cb->rank() == 2 && cb->dims()[0] == 1));
        bool scalar = cb->numel() == 1;
        if (!vec && !scalar) return *why = "Gemm C is not a per-column vector", false;
        for (int64_t o = 0; o < c; ++o) b[o] = beta * cb->data<float>()[scalar ? 0 : o];
      } else {
        if (cb->numel() != c) return *why = "bias length mismatch", false;
        for (int64_t o = 0; o < c; ++o) b[o] = cb->data<float>()[o];
      }
    }
    if (gemm) {
      // Gemm's bias broadcasts against [M, N]; only fold when the output is known to be 2-D.
      const Value& out = g.value(x);
      if (out.shape && out.shape->rank() != 2) return *why = "Gemm output is not 2-D", false;
    }

    std::vector<float> a(c), nb(c);
    for (int64_t o = 0; o < c; ++o) {
      double ao = scale->data<float>()[o] / std::sqrt(static_cast<double>(var->data<float>()[o]) + eps);
      a[o] = static_cast<float>(ao);
      nb[o] = static_cast<float>(ao * (static_cast<double>(b[o]) - mean->data<float>()[o]) +
                                 bias->data<float>()[o]);
    }
    Tensor* wm = ExclusiveConstant(g, p, 1);
    scale_weight(wm->mutable_data<float>(), a);
    ValueId nbv = g.AddInitializer(g.value(g.node(p).input(1)).name() + "_bias",
                                   Tensor::Float({c}, nb));
    ValueId old_bias = g.node(p).input(2);
    g.SetNodeInput(p, 2, nbv);
    if (gemm) g.node(p).attrs.Set(Attribute::Float("beta", 1.f));
    DropIfDangling(g, old_bias);

    // The producer now writes BN's output (keeps the name consumers and graph outputs know).
    ValueId y = bn.output(0);
    std::vector<ValueId> bn_inputs = bn.inputs();
    std::vector<ValueId> bn_outputs = bn.outputs();
    g.RemoveNode(bn_id);
    if (!g.SetNodeOutput(p, 0, y).ok()) return *why = "internal: output relink failed", false;
    DropIfDangling(g, x);
    for (ValueId v : bn_inputs) DropIfDangling(g, v);
    for (ValueId v : bn_outputs) DropIfDangling(g, v);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeFoldBatchNormPass() { return std::make_unique<FoldBatchNormPass>(); }

}  // namespace onnxq::passes
