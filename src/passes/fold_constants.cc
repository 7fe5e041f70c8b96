// fold-constants: a node whose inputs are all constants is computed once, through the float
// executor on a one-node model, and replaced by initializers. Constant nodes become initializers,
// and Shape / Size of a value whose shape is fully static become constants, which lets the
// Shape -> Gather -> Unsqueeze -> Concat -> Reshape chains exporters emit collapse to a constant
// Reshape target. Never folded: random ops, Quantize/DequantizeLinear (they are the quantized
// model's structure), ops with subgraphs, non-default domains, and results much larger than
// their inputs (folding would bloat the file).
#include <algorithm>
#include <set>

#include "onnxq/runtime/session.h"
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

constexpr size_t kMaxGrowthBytes = size_t{1} << 20;

bool NeverFold(const Node& n) {
  static const std::set<std::string> kOps = {
      "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
      "Bernoulli",    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "If", "Loop",
      "Scan",         "Dropout"};
  if (!n.domain.empty() && n.domain != "ai.onnx") return true;
  if (kOps.count(n.op_type)) return true;
  for (const Attribute& a : n.attrs.all())
    if (a.type == AttrType::kGraph || a.type == AttrType::kGraphs) return true;
  return false;
}

// Constant node -> tensor (value, value_float(s), value_int(s)); sparse/string forms are refused.
StatusOr<Tensor> ConstantNodeValue(const Node& n) {
  if (const Attribute* a = n.attrs.Find("value"); a && a->type == AttrType::kTensor) return a->t;
  if (const Attribute* a = n.attrs.Find("value_float"); a && a->type == AttrType::kFloat)
    return Tensor::Float({}, std::vector<float>{a->f});
  if (const Attribute* a = n.attrs.Find("value_floats"); a && a->type == AttrType::kFloats)
    return Tensor::Float({static_cast<int64_t>(a->floats.size())}, a->floats);
  if (const Attribute* a = n.attrs.Find("value_int"); a && a->type == AttrType::kInt)
    return Tensor::Int64({}, std::vector<int64_t>{a->i});
  if (const Attribute* a = n.attrs.Find("value_ints"); a && a->type == AttrType::kInts)
    return Tensor::Int64({static_cast<int64_t>(a->ints.size())}, a->ints);
  return Unsupported("Constant form not folded");
}

// Shape / Size of a statically shaped value.
bool StaticShapeValue(const Graph& g, const Node& n, Tensor* out) {
  ValueId in = n.input(0);
  if (in == kNoValue) return false;
  const Value& v = g.value(in);
  if (!v.shape || !v.shape->is_static()) return false;
  std::vector<int64_t> dims = v.shape->static_dims();
  if (n.Is("Size")) {
    int64_t numel = 1;
    for (int64_t d : dims) numel *= d;
    *out = Tensor::Int64({}, std::vector<int64_t>{numel});
    return true;
  }
  int64_t r = static_cast<int64_t>(dims.size());
  int64_t start = AttrInt(n, "start", 0), end = AttrInt(n, "end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  std::vector<int64_t> sl(dims.begin() + start, dims.begin() + std::max(start, end));
  *out = Tensor::Int64({static_cast<int64_t>(sl.size())}, sl);
  return true;
}

// Runs one node through the executor with its constant inputs.
StatusOr<std::vector<Tensor>> Evaluate(const Model& model, const Node& n) {
  const Graph& g = model.graph;
  Model sub;
  sub.ir_version = model.ir_version;
  sub.opset_imports = model.opset_imports;
  std::vector<ValueId> ins, outs;
  for (ValueId v : n.inputs()) {
    if (v == kNoValue) {
      ins.push_back(kNoValue);
      continue;
    }
    ValueId sv = sub.graph.FindValue(g.value(v).name());
    if (sv == kNoValue) {
      ONNXQ_ASSIGN_OR_RETURN(sv, sub.graph.AddValue(g.value(v).name()));
      ONNXQ_RETURN_IF_ERROR(sub.graph.SetInitializer(sv, *g.value(v).initializer()));
    }
    ins.push_back(sv);
  }
  for (ValueId v : n.outputs()) {
    if (v == kNoValue) {
      outs.push_back(kNoValue);
      continue;
    }
    ONNXQ_ASSIGN_OR_RETURN(ValueId sv, sub.graph.AddValue(g.value(v).name()));
    sub.graph.value(sv).dtype = g.value(v).dtype;
    sub.graph.value(sv).shape = g.value(v).shape;
    sub.graph.AddOutput(sv);
    outs.push_back(sv);
  }
  ONNXQ_ASSIGN_OR_RETURN(NodeId sn, sub.graph.AddNode(n.op_type, ins, outs, n.name, n.domain));
  sub.graph.node(sn).attrs = n.attrs;
  SessionOptions so;
  so.num_threads = 1;
  ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(sub, so));
  ONNXQ_ASSIGN_OR_RETURN(auto results, session->Run({}));
  std::vector<Tensor> r;
  for (ValueId v : n.outputs()) {
    if (v == kNoValue) {
      r.emplace_back();
      continue;
    }
    auto it = results.find(g.value(v).name());
    if (it == results.end()) return Internal("executor did not return '", g.value(v).name(), "'");
    r.push_back(std::move(it->second));
  }
  return r;
}

class FoldConstantsPass : public Pass {
 public:
  const char* name() const override { return "fold-constants"; }
  const char* description() const override {
    return "Evaluates nodes whose inputs are all constant (and Shape/Size of static shapes) and "
           "replaces them by initializers";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    bool changed = false;
    std::vector<NodeId> order = g.order();
    for (NodeId n : order) {
      if (!g.has_node(n)) continue;
      const Node& node = g.node(n);
      if (NeverFold(node)) continue;
      // A graph output stays produced by a node (some consumers refuse initializer outputs).
      if (std::any_of(node.outputs().begin(), node.outputs().end(),
                      [&](ValueId v) { return v != kNoValue && g.IsGraphOutput(v); }))
        continue;
      std::vector<Tensor> results;
      std::string kind;
      if (node.Is("Constant")) {
        auto t = ConstantNodeValue(node);
        if (!t.ok()) {
          ctx.Note("kept " + node.Describe() + ": " + t.status().message());
          continue;
        }
        results.push_back(std::move(*t));
        kind = "constant_nodes";
      } else if ((node.Is("Shape") || node.Is("Size")) && node.num_outputs() == 1) {
        Tensor t;
        if (!StaticShapeValue(g, node, &t)) {
          ctx.Count("shape_not_static");
          continue;
        }
        results.push_back(std::move(t));
        kind = "shape_ops";
      } else {
        if (node.num_inputs() == 0) continue;
        bool all_const = true;
        size_t in_bytes = 0;
        for (ValueId v : node.inputs()) {
          if (v == kNoValue) continue;
          const Tensor* t = ConstantOf(g, v);
          if (!t) {
            all_const = false;
            break;
          }
          in_bytes += t->nbytes();
        }
        if (!all_const) continue;
        auto r = Evaluate(model, node);
        if (!r.ok()) {
          ctx.Count("evaluation_failed");
          ctx.Note("kept " + node.Describe() + ": " + r.status().ToString());
          continue;
        }
        size_t out_bytes = 0;
        for (const Tensor& t : *r) out_bytes += t.nbytes();
        if (out_bytes > in_bytes + kMaxGrowthBytes) {
          ctx.Count("too_large");
          ctx.Note("kept " + node.Describe() + ": folding would add " + std::to_string(out_bytes) +
                   " bytes of constants");
          continue;
        }
        results = std::move(*r);
        kind = "evaluated";
      }
      std::vector<ValueId> ins = node.inputs(), outs = node.outputs();
      if (results.size() != outs.size()) continue;
      ctx.Count(kind);
      ctx.Count("folded." + node.op_type);
      g.RemoveNode(n);
      for (size_t k = 0; k < outs.size(); ++k) {
        if (outs[k] == kNoValue) continue;
        if (!IsUsedOrOutput(g, outs[k])) {
          DropIfDangling(g, outs[k]);
          continue;
        }
        ONNXQ_RETURN_IF_ERROR(g.SetInitializer(outs[k], std::move(results[k])));
      }
      for (ValueId v : ins) DropIfDangling(g, v);
      changed = true;
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> MakeFoldConstantsPass() { return std::make_unique<FoldConstantsPass>(); }

}  // namespace onnxq::passes
