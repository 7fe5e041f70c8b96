#include "passes/pass_util.h"

#include <limits>

namespace onnxq::passes {

const Tensor* ConstantOf(const Graph& g, ValueId v) {
  if (v == kNoValue || !g.has_value(v)) return nullptr;
  const Value& val = g.value(v);
  if (!val.is_initializer() || g.IsGraphInput(v)) return nullptr;
  return val.initializer();
}

const Tensor* FloatConstantOf(const Graph& g, ValueId v) {
  const Tensor* t = ConstantOf(g, v);
  return t && t->dtype() == DataType::kFloat ? t : nullptr;
}

bool HasSingleUse(const Graph& g, ValueId v) {
  return g.value(v).uses().size() == 1 && !g.IsGraphOutput(v);
}

bool IsUsedOrOutput(const Graph& g, ValueId v) {
  return !g.value(v).uses().empty() || g.IsGraphOutput(v);
}

Tensor* ExclusiveConstant(Graph& g, NodeId n, size_t index) {
  ValueId v = g.node(n).input(index);
  Value& val = g.value(v);
  bool shared = false;
  for (const Use& u : val.uses())
    if (u.node != n || u.input_index != index) shared = true;
  if (!shared) return val.mutable_initializer();
  Tensor copy = val.initializer()->Clone();
  ValueId fresh = g.AddInitializer(val.name(), std::move(copy));
  g.SetNodeInput(n, index, fresh);
  return g.value(fresh).mutable_initializer();
}

void DropIfDangling(Graph& g, ValueId v) {
  if (v == kNoValue || !g.has_value(v)) return;
  const Value& val = g.value(v);
  if (val.producer() != kNoNode || !val.uses().empty() || g.IsGraphInput(v) || g.IsGraphOutput(v))
    return;
  g.RemoveValue(v).IgnoreError();  // cannot fail: checked above
}

bool BypassNode(Graph& g, NodeId n, ValueId in, ValueId out, std::string* why) {
  if (in == kNoValue) {
    *why = "its input is omitted";
    return false;
  }
  if (!g.IsGraphOutput(out)) {
    g.ReplaceAllUses(out, in, /*include_graph_outputs=*/false);
    g.RemoveNode(n);
    DropIfDangling(g, out);
    return true;
  }
  // `out` is a graph output: its name is part of the model's interface, so keep it and make the
  // producer of `in` write it. Only possible when `in` is an ordinary intermediate value.
  const Node* p = g.Producer(in);
  if (p == nullptr) {
    *why = "its output '" + g.value(out).name() + "' is a graph output and its input '" +
           g.value(in).name() + "' is a graph input or initializer";
    return false;
  }
  if (g.IsGraphOutput(in)) {
    *why = "both its input and output are graph outputs";
    return false;
  }
  NodeId producer = p->id();
  uint32_t slot = g.value(in).producer_output_index();
  g.RemoveNode(n);
  // `in` may have other consumers: they now read `out` (same tensor).
  if (!g.SetNodeOutput(producer, slot, out).ok()) return false;  // out has no producer now
  g.ReplaceAllUses(in, out, /*include_graph_outputs=*/false);
  DropIfDangling(g, in);
  return true;
}

bool GetClipBounds(const Model& model, const Node& clip, float* lo, float* hi) {
  *lo = -std::numeric_limits<float>::infinity();
  *hi = std::numeric_limits<float>::infinity();
  int64_t opset = model.OpsetVersion("");
  if (opset >= 0 && opset < 11) {
    auto mn = clip.attrs.GetFloat("min", *lo);
    auto mx = clip.attrs.GetFloat("max", *hi);
    if (!mn.ok() || !mx.ok()) return false;
    *lo = *mn;
    *hi = *mx;
    return true;
  }
  const Graph& g = model.graph;
  for (size_t k = 1; k <= 2; ++k) {
    ValueId v = clip.input(k);
    if (v == kNoValue) continue;
    const Tensor* t = FloatConstantOf(g, v);
    if (t == nullptr || t->numel() != 1) return false;
    (k == 1 ? *lo : *hi) = t->data<float>()[0];
  }
  return true;
}

int64_t AttrInt(const Node& n, const char* name, int64_t fallback) {
  auto v = n.attrs.GetInt(name, fallback);
  return v.ok() ? *v : fallback;
}

}  // namespace onnxq::passes
