// QDQ export: rewrites a copy of the optimized float model so that every planned activation goes
// through QuantizeLinear -> DequantizeLinear, and quantized weights / biases are int8 / int32
// initializers behind a (per-channel) DequantizeLinear. This is the "QDQ format" ONNX Runtime's
// quantization tool writes and its QDQ transformer fuses into QLinearConv, QLinearAdd, ... .
#include <set>

#include "onnxq/quant/qdq_plan.h"

namespace onnxq::quant {
namespace {

Tensor ScalarOrVector(const std::vector<float>& v, bool vector) {
  if (!vector) return Tensor::Float({}, std::span<const float>(v.data(), 1));
  return Tensor::Float({static_cast<int64_t>(v.size())}, v);
}

StatusOr<Tensor> ZeroPoints(DataType t, int64_t n, bool vector, int32_t value) {
  std::vector<int64_t> dims;
  if (vector) dims.push_back(n);
  ONNXQ_ASSIGN_OR_RETURN(Tensor z, Tensor::Create(t, dims));
  for (int64_t i = 0; i < z.numel(); ++i) z.SetFromDouble(i, value);
  return z;
}

void CopyShape(Graph& g, ValueId from, ValueId to, DataType dtype) {
  g.value(to).dtype = dtype;
  g.value(to).shape = g.value(from).shape;
}

}  // namespace

StatusOr<Model> ExportQdqModel(const Model& model, const QdqPlan& plan, const ExportQdqOptions& options) {
  Model out = model;
  Graph& g = out.graph;
  if (out.OpsetVersion("") < 13) return Unsupported("QDQ export needs opset 13 or newer");

  // ---- weights and biases
  std::set<ValueId> replaced;
  for (const WeightedNode& w : plan.weighted) {
    const std::string wname = g.value(w.weight).name();
    const bool per_channel = w.qweight.axis >= 0;
    std::vector<float> scales = w.qweight.scales();
    ValueId q = g.AddInitializer(wname + "_quantized", w.qweight.q);
    ValueId s = g.AddInitializer(wname + "_scale", ScalarOrVector(scales, per_channel));
    ONNXQ_ASSIGN_OR_RETURN(Tensor zt, ZeroPoints(w.qweight.q.dtype(), static_cast<int64_t>(scales.size()),
                                                 per_channel, 0));
    ValueId z = g.AddInitializer(wname + "_zero_point", std::move(zt));
    ValueId dq = g.AddUniqueValue(wname + "_dequantized");
    g.value(dq).dtype = DataType::kFloat;
    g.value(dq).shape = Shape::FromDims(w.qweight.q.dims());
    ONNXQ_ASSIGN_OR_RETURN(NodeId n, g.AddNode("DequantizeLinear", {q, s, z}, {dq},
                                               g.UniqueNodeName(wname + "_DequantizeLinear")));
    if (per_channel) g.node(n).attrs.Set(Attribute::Int("axis", w.qweight.axis));
    replaced.insert(g.node(w.node).input(static_cast<size_t>(w.weight_slot)));
    g.SetNodeInput(w.node, static_cast<size_t>(w.weight_slot), dq);

    if (w.has_qbias) {
      const std::string bname = g.value(w.bias).name();
      const bool bvec = w.qbias.scales.size() > 1 || w.qbias.q.rank() == 1;
      std::vector<float> bs = w.qbias.scales;
      if (bs.size() == 1 && w.qbias.q.numel() > 1) bs.assign(1, bs[0]);
      const bool bias_per_channel = bs.size() > 1;
      ValueId bq = g.AddInitializer(bname + "_quantized", w.qbias.q);
      ValueId bsv = g.AddInitializer(bname + "_scale", ScalarOrVector(bs, bias_per_channel));
      ONNXQ_ASSIGN_OR_RETURN(Tensor bz, ZeroPoints(DataType::kInt32, static_cast<int64_t>(bs.size()),
                                                   bias_per_channel, 0));
      ValueId bzv = g.AddInitializer(bname + "_zero_point", std::move(bz));
      ValueId bdq = g.AddUniqueValue(bname + "_dequantized");
      g.value(bdq).dtype = DataType::kFloat;
      g.value(bdq).shape = Shape::FromDims(w.qbias.q.dims());
      ONNXQ_ASSIGN_OR_RETURN(NodeId bn, g.AddNode("DequantizeLinear", {bq, bsv, bzv}, {bdq},
                                                  g.UniqueNodeName(bname + "_DequantizeLinear")));
      if (bias_per_channel) g.node(bn).attrs.Set(Attribute::Int("axis", 0));
      (void)bvec;
      replaced.insert(g.node(w.node).input(2));
      g.SetNodeInput(w.node, 2, bdq);
    }
  }

  // ---- activations
  for (const auto& grp : plan.groups) {
    if (!grp.has_params) return Internal("export: activation group without params");
    const QuantParams& p = grp.params;
    const bool is_signed = p.qmin < 0;
    if (p.qmax - p.qmin != 255)
      return Unsupported("QDQ export writes 8-bit activations only (this plan has ",
                         p.qmax - p.qmin + 1, " levels); sub-8-bit activations are simulation-only");
    const DataType qt = is_signed ? DataType::kInt8 : DataType::kUint8;
    for (ValueId v : grp.members) {
      const std::string name = g.value(v).name();
      ValueId s = g.AddInitializer(name + "_scale", Tensor::Float({}, std::span<const float>(&p.scale, 1)));
      ONNXQ_ASSIGN_OR_RETURN(Tensor zt, ZeroPoints(qt, 1, false, p.zero_point));
      ValueId z = g.AddInitializer(name + "_zero_point", std::move(zt));
      ValueId qv = g.AddUniqueValue(name + "_quantized");
      CopyShape(g, v, qv, qt);
      ValueId dv = g.AddUniqueValue(name + "_dequantized");
      CopyShape(g, v, dv, DataType::kFloat);
      // Rewire consumers first, then add the pair (so the Q node keeps reading v).
      g.ReplaceAllUses(v, dv, /*include_graph_outputs=*/false);
      ONNXQ_RETURN_IF_ERROR(g.AddNode("QuantizeLinear", {v, s, z}, {qv},
                                      g.UniqueNodeName(name + "_QuantizeLinear")).status());
      ONNXQ_RETURN_IF_ERROR(g.AddNode("DequantizeLinear", {qv, s, z}, {dv},
                                      g.UniqueNodeName(name + "_DequantizeLinear")).status());
    }
  }

  // Float weights nobody reads any more.
  for (ValueId v : replaced) {
    if (v == kNoValue || !g.has_value(v) || !g.value(v).uses().empty() || g.IsGraphInput(v) ||
        g.IsGraphOutput(v))
      continue;
    g.ClearInitializer(v);
    ONNXQ_RETURN_IF_ERROR(g.RemoveValue(v));
  }
  for (auto& id : g.order()) g.node(id).meta.clear();
  ONNXQ_RETURN_IF_ERROR(g.TopologicalSort());
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  for (const auto& [k, v] : options.metadata) out.SetMetadata(k, v);
  return out;
}

}  // namespace onnxq::quant
