// Fake-quant simulation of a QdqPlan in onnxq's float executor. Weights and biases are replaced by
// their dequantized values in a copy of the model (copy-on-write tensors: only the replaced ones
// cost memory); activations are fake-quantized in place by a TensorHook right after their producer
// ran. Every operation is the float32 QuantizeLinear -> DequantizeLinear composition that the
// exported model spells out, so the two compute the same numbers.
#include <cstring>

#include "onnxq/quant/qdq_plan.h"

namespace onnxq::quant {

StatusOr<Model> BuildSimulationModel(const Model& model, const QdqPlan& plan) {
  Model sim = model;
  Graph& g = sim.graph;
  for (const WeightedNode& w : plan.weighted) {
    const Tensor& q = w.qweight.q;
    const Tensor* orig = model.graph.value(w.weight).initializer();
    ONNXQ_ASSIGN_OR_RETURN(Tensor deq, Tensor::Create(DataType::kFloat, orig->dims()));
    std::vector<int32_t> qi(static_cast<size_t>(q.numel()));
    for (int64_t i = 0; i < q.numel(); ++i)
      qi[static_cast<size_t>(i)] = q.dtype() == DataType::kInt8 ? q.data<int8_t>()[i] : q.data<int16_t>()[i];
    ONNXQ_RETURN_IF_ERROR(DequantizeArray(qi, orig->dims(), w.qweight.axis, w.qweight.params,
                                          std::span<float>(deq.mutable_data<float>(),
                                                           static_cast<size_t>(deq.numel()))));
    // Another node may share the float weight: give this node its own dequantized copy.
    ValueId nv = g.AddInitializer(model.graph.value(w.weight).name() + "_fq", std::move(deq));
    g.SetNodeInput(w.node, static_cast<size_t>(w.weight_slot), nv);
    if (w.has_qbias) {
      const Tensor& qb = w.qbias.q;
      ONNXQ_ASSIGN_OR_RETURN(Tensor b, Tensor::Create(DataType::kFloat, qb.dims()));
      for (int64_t i = 0; i < qb.numel(); ++i) {
        float s = w.qbias.scales.size() == 1 ? w.qbias.scales[0] : w.qbias.scales[static_cast<size_t>(i)];
        b.mutable_data<float>()[i] = static_cast<float>(qb.data<int32_t>()[i]) * s;
      }
      ValueId bv = g.AddInitializer(model.graph.value(w.bias).name() + "_fq", std::move(b));
      g.SetNodeInput(w.node, 2, bv);
    }
  }
  return sim;
}

std::vector<ValueId> SimulatedValues(const QdqPlan& plan) {
  std::vector<ValueId> out;
  for (const auto& grp : plan.groups)
    for (ValueId v : grp.simulated) out.push_back(v);
  return out;
}

Status FakeQuantizeTensor(const QdqPlan& plan, ValueId v, Tensor& t) {
  const ActivationGroup* grp = plan.GroupOf(v);
  if (grp == nullptr) return Status::Ok();
  if (!grp->has_params) return Internal("activation group without params");
  if (t.dtype() != DataType::kFloat) return Internal("fake-quantizing a non-float tensor");
  float* x = t.mutable_data<float>();
  FakeQuantize(x, x, t.numel(), grp->params);
  return Status::Ok();
}

Status FakeQuantizeFeeds(const QdqPlan& plan, const Graph& graph, std::map<std::string, Tensor>& feeds) {
  for (ValueId v : graph.RuntimeInputs()) {
    if (!plan.group_of.count(v)) continue;
    auto it = feeds.find(graph.value(v).name());
    if (it == feeds.end()) continue;
    Tensor copy = it->second.Clone();
    ONNXQ_RETURN_IF_ERROR(FakeQuantizeTensor(plan, v, copy));
    it->second = std::move(copy);
  }
  return Status::Ok();
}

}  // namespace onnxq::quant
