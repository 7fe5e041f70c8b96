// upgrade-opset: rewrites a model importing ai.onnx opset 7..12 into opset 13, the first with
// per-channel DequantizeLinear (so older models can be quantized to QDQ). Each node is rewritten
// to the opset-13 form of what it computed at the old opset: attributes that became inputs
// (Squeeze/Unsqueeze/ReduceSum axes, Split sizes, Clip bounds, Pad pads, Slice starts/ends,
// Reshape shape, Upsample/Resize scales), Softmax-family "coerce to 2-D" semantics
// (Flatten -> op -> Reshape), legacy attributes that later opsets dropped. Operators whose
// meaning did not change are kept as they are; any other operator stops the pass with an error
// naming it, so a model is never silently reinterpreted.
#include <algorithm>
#include <set>

#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

constexpr int64_t kTarget = 13;

// Default-domain operators the pass knows: either their meaning at any opset in [7, 12] equals
// the opset-13 one (changes in that range only added types, attributes with backward-compatible
// defaults, or negative axes), or Upgrade() rewrites them.
const std::set<std::string>& Known() {
  static const std::set<std::string> ops = {
      "Abs", "Acos", "Acosh", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
      "AveragePool", "Ceil", "Celu", "Concat", "Constant", "ConstantOfShape", "Conv",
      "ConvInteger", "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear",
      "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike",
      "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool",
      "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "Identity",
      "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LeakyRelu", "Less", "LessOrEqual", "Log",
      "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max", "MaxPool", "MaxRoiPool",
      "MaxUnpool", "Mean", "Min", "Mod", "Mul", "Add", "Sub", "Div", "Neg", "NonZero", "Not",
      "OneHot", "Or", "Pow", "PRelu", "QLinearConv", "QLinearMatMul", "QuantizeLinear", "Range",
      "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
      "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare", "Relu", "Round", "ScatterND",
      "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Softplus", "Softsign",
      "SpaceToDepth", "Sqrt", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "Transpose",
      "Where", "Xor", "BatchNormalization", "Dropout", "Cast", "Resize", "Pad", "Slice", "Clip",
      "Reshape", "Squeeze", "Unsqueeze", "ReduceSum", "Split", "Softmax", "LogSoftmax", "Hardmax",
      "Upsample", "TopK"};
  return ops;
}

Tensor Int64s(const std::vector<int64_t>& v) {
  return *Tensor::FromBytes(DataType::kInt64, {static_cast<int64_t>(v.size())}, v.data(),
                            v.size() * sizeof(int64_t));
}
Tensor FloatScalar(float v) { return *Tensor::FromBytes(DataType::kFloat, {}, &v, sizeof v); }
Tensor Floats(const std::vector<float>& v) {
  return *Tensor::FromBytes(DataType::kFloat, {static_cast<int64_t>(v.size())}, v.data(),
                            v.size() * sizeof(float));
}

class UpgradeOpsetPass : public Pass {
 public:
  const char* name() const override { return "upgrade-opset"; }
  const char* description() const override {
    return "Rewrites a model importing ai.onnx opset 7-12 into opset 13 (the first with "
           "per-channel DequantizeLinear); refuses operators whose meaning it cannot carry over";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    const int64_t from = model.OpsetVersion("");
    if (from < 0 || from >= kTarget) return false;
    Graph& g = model.graph;
    // Everything that blocks the upgrade is found before anything is rewritten: the model then
    // stays as it is (at its opset) and the note says why; consumers that need opset 13 (the QDQ
    // export) refuse it with their own message.
    std::string why;
    if (from < 7) why = "opsets before 7 (legacy broadcasting, consumed_inputs) are not upgraded";
    for (NodeId n : g.order()) {
      if (!why.empty()) break;
      const Node& node = g.node(n);
      if (!node.domain.empty() && node.domain != "ai.onnx") continue;
      if (!Known().count(node.op_type)) {
        why = node.Describe() + " is not an operator the upgrade knows";
      } else if (node.Is("BatchNormalization") && from < 9 && AttrInt(node, "spatial", 1) != 1) {
        why = node.Describe() + " has spatial=0 (per-activation statistics), which opset 9+ cannot express";
      } else if (node.Is("Pad") && from < 11 && !node.attrs.Has("pads")) {
        why = node.Describe() + " has no pads attribute";
      }
    }
    if (!why.empty()) {
      ctx.Count("kept");
      ctx.Note("kept ai.onnx opset " + std::to_string(from) + ": " + why +
               " (convert with onnx.version_converter to quantize)");
      return false;
    }
    from_ = from;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n)) continue;
      Node& node = g.node(n);
      if (!node.domain.empty() && node.domain != "ai.onnx") continue;
      const std::string op = node.op_type;  // Upgrade may replace the node
      ONNXQ_ASSIGN_OR_RETURN(bool rewrote, Upgrade(g, n));
      if (rewrote) ctx.Count("rewritten." + op);
    }
    model.SetOpsetVersion("", kTarget);
    ctx.Note("ai.onnx opset " + std::to_string(from) + " -> 13");
    ONNXQ_RETURN_IF_ERROR(g.TopologicalSort());
    return true;
  }

 private:
  // An attribute that became input `slot` (earlier optional slots are filled with "no value").
  void AttrToInput(Graph& g, NodeId n, size_t slot, Tensor t, const std::string& base) {
    ValueId v = g.AddInitializer(g.node(n).name.empty() ? base : g.node(n).name + "_" + base, std::move(t));
    while (g.node(n).num_inputs() < slot) g.AddNodeInput(n, kNoValue);
    if (g.node(n).num_inputs() == slot) {
      g.AddNodeInput(n, v);
    } else {
      g.SetNodeInput(n, slot, v);
    }
  }

  StatusOr<bool> MoveIntsAttr(Graph& g, NodeId n, const char* attr, size_t slot) {
    Node& node = g.node(n);
    if (!node.attrs.Has(attr)) return false;
    ONNXQ_ASSIGN_OR_RETURN(auto v, node.attrs.GetInts(attr));
    node.attrs.Remove(attr);
    AttrToInput(g, n, slot, Int64s(v), attr);
    return true;
  }

  StatusOr<bool> Upgrade(Graph& g, NodeId n) {
    Node& node = g.node(n);
    const std::string op = node.op_type;
    if (op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") return MoveIntsAttr(g, n, "axes", 1);
    if (op == "Split") return MoveIntsAttr(g, n, "split", 1);
    if (op == "Reshape") return MoveIntsAttr(g, n, "shape", 1);  // opset < 5 only; kept for clarity
    if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") return CoercedSoftmax(g, n);
    if (op == "Clip" && from_ < 11) {
      ONNXQ_ASSIGN_OR_RETURN(float lo, node.attrs.GetFloat("min", -3.4028234663852886e38f));
      ONNXQ_ASSIGN_OR_RETURN(float hi, node.attrs.GetFloat("max", 3.4028234663852886e38f));
      const bool has_lo = node.attrs.Has("min"), has_hi = node.attrs.Has("max");
      node.attrs.Remove("min");
      node.attrs.Remove("max");
      if (has_lo) AttrToInput(g, n, 1, FloatScalar(lo), "min");
      if (has_hi) AttrToInput(g, n, 2, FloatScalar(hi), "max");
      return has_lo || has_hi;
    }
    if (op == "Pad" && from_ < 11) {
      ONNXQ_ASSIGN_OR_RETURN(auto pads, node.attrs.GetInts("pads"));
      ONNXQ_ASSIGN_OR_RETURN(float value, node.attrs.GetFloat("value", 0.f));
      node.attrs.Remove("pads");
      node.attrs.Remove("value");
      AttrToInput(g, n, 1, Int64s(pads), "pads");
      if (value != 0.f) AttrToInput(g, n, 2, FloatScalar(value), "value");
      return true;
    }
    if (op == "Slice" && from_ < 10) {
      ONNXQ_ASSIGN_OR_RETURN(auto starts, node.attrs.GetInts("starts"));
      ONNXQ_ASSIGN_OR_RETURN(auto ends, node.attrs.GetInts("ends"));
      ONNXQ_ASSIGN_OR_RETURN(auto axes, node.attrs.GetInts("axes", {}));
      for (const char* a : {"starts", "ends", "axes"}) node.attrs.Remove(a);
      AttrToInput(g, n, 1, Int64s(starts), "starts");
      AttrToInput(g, n, 2, Int64s(ends), "ends");
      if (!axes.empty()) AttrToInput(g, n, 3, Int64s(axes), "axes");
      return true;
    }
    if (op == "Dropout" && from_ < 12) {
      ONNXQ_ASSIGN_OR_RETURN(float ratio, node.attrs.GetFloat("ratio", 0.5f));
      node.attrs.Remove("ratio");
      AttrToInput(g, n, 1, FloatScalar(ratio), "ratio");
      return true;
    }
    if (op == "BatchNormalization" && from_ < 9) return node.attrs.Remove("spatial");  // spatial=1 (checked)
    if (op == "Resize" && from_ == 10) {
      // Resize-10 = asymmetric coordinates, nearest rounds down; inputs (X, scales).
      node.attrs.Set(Attribute::String("coordinate_transformation_mode", "asymmetric"));
      ONNXQ_ASSIGN_OR_RETURN(std::string mode, node.attrs.GetString("mode", "nearest"));
      if (mode == "nearest") node.attrs.Set(Attribute::String("nearest_mode", "floor"));
      const ValueId scales = node.input(1);
      ValueId roi = g.AddInitializer(node.name.empty() ? "roi" : node.name + "_roi", Floats({}));
      g.SetNodeInputs(n, {node.input(0), roi, scales});
      return true;
    }
    if (op == "Upsample") {
      // Upsample-7 (scales attribute) / -9 (scales input) compute what Resize-10 does.
      ONNXQ_ASSIGN_OR_RETURN(std::string mode, node.attrs.GetString("mode", "nearest"));
      if (mode != "nearest" && mode != "linear" && mode != "bilinear")
        return Unsupported("upgrade-opset: ", node.Describe(), " has mode '", mode, "'");
      ValueId scales = node.input(1);
      if (from_ < 9) {
        ONNXQ_ASSIGN_OR_RETURN(auto s, node.attrs.GetFloats("scales"));
        scales = g.AddInitializer(node.name.empty() ? "scales" : node.name + "_scales", Floats(s));
      }
      ValueId roi = g.AddInitializer(node.name.empty() ? "roi" : node.name + "_roi", Floats({}));
      const std::vector<ValueId> ins = {node.input(0), roi, scales};
      const std::vector<ValueId> outs = {node.output(0)};
      const std::string name = node.name;
      g.RemoveNode(n);
      ONNXQ_ASSIGN_OR_RETURN(NodeId r, g.AddNode("Resize", ins, outs, name));
      Node& rn = g.node(r);
      rn.attrs.Set(Attribute::String("mode", mode == "bilinear" ? "linear" : mode));
      rn.attrs.Set(Attribute::String("coordinate_transformation_mode", "asymmetric"));
      if (mode == "nearest") rn.attrs.Set(Attribute::String("nearest_mode", "floor"));
      return true;
    }
    if (op == "TopK" && from_ < 10) return MoveIntsAttrScalar(g, n, "k", 1);
    return false;
  }

  StatusOr<bool> MoveIntsAttrScalar(Graph& g, NodeId n, const char* attr, size_t slot) {
    Node& node = g.node(n);
    ONNXQ_ASSIGN_OR_RETURN(int64_t k, node.attrs.GetInt(attr));
    node.attrs.Remove(attr);
    AttrToInput(g, n, slot, Int64s({k}), attr);
    return true;
  }

  // Before opset 13 these ops flattened the input to 2-D at `axis` (default 1) and normalised
  // each row; from 13 they work along `axis` alone. The same along the last axis, so only other
  // axes need Flatten -> op(axis=-1) -> Reshape(Shape(x)).
  StatusOr<bool> CoercedSoftmax(Graph& g, NodeId n) {
    Node& node = g.node(n);
    ONNXQ_ASSIGN_OR_RETURN(int64_t axis, node.attrs.GetInt("axis", 1));
    const ValueId x = node.input(0), y = node.output(0);
    const auto& shape = g.value(x).shape;
    if (shape) {
      const int64_t r = static_cast<int64_t>(shape->rank());
      const int64_t a = axis < 0 ? axis + r : axis;
      if (a == r - 1) {
        node.attrs.Set(Attribute::Int("axis", -1));
        return true;
      }
    }
    const std::string base = node.name.empty() ? node.op_type : node.name;
    const ValueId shp = g.AddUniqueValue(base + "_in_shape");
    const ValueId flat = g.AddUniqueValue(base + "_2d");
    const ValueId y2 = g.AddUniqueValue(base + "_2d_out");
    ONNXQ_RETURN_IF_ERROR(g.InsertNodeBefore(n, "Shape", {x}, {shp}, g.UniqueNodeName(base + "_shape")).status());
    ONNXQ_ASSIGN_OR_RETURN(NodeId fl, g.InsertNodeBefore(n, "Flatten", {x}, {flat}, g.UniqueNodeName(base + "_flatten")));
    g.node(fl).attrs.Set(Attribute::Int("axis", axis));
    g.value(flat).dtype = g.value(x).dtype;
    g.value(y2).dtype = g.value(x).dtype;
    g.value(shp).dtype = DataType::kInt64;
    g.SetNodeInput(n, 0, flat);
    ONNXQ_RETURN_IF_ERROR(g.SetNodeOutput(n, 0, y2));
    g.node(n).attrs.Set(Attribute::Int("axis", -1));
    ONNXQ_RETURN_IF_ERROR(g.AddNode("Reshape", {y2, shp}, {y}, g.UniqueNodeName(base + "_reshape")).status());
    return true;
  }

  int64_t from_ = 0;
};

}  // namespace

std::unique_ptr<Pass> MakeUpgradeOpsetPass() { return std::make_unique<UpgradeOpsetPass>(); }

}  // namespace onnxq::passes
