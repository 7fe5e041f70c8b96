// Activation-channel equalization for linear tensors (see act_equalization.h).
#include "onnxq/quant/act_equalization.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/report.h"
#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {
namespace {

bool IsWeighted(const Node& n) { return n.Is("Conv") || n.Is("Gemm") || n.Is("MatMul"); }
bool IsPassThrough(const Node& n) {
  return n.Is("Relu") || n.Is("MaxPool") || n.Is("AveragePool") || n.Is("GlobalAveragePool");
}

std::string NodeLabel(const Node& n) { return n.Describe(); }

// Attributes already checked by FindActEqualizationGroups.
int64_t IntAttr(const Node& n, const char* name, int64_t fallback) {
  auto v = n.attrs.GetInt(name, fallback);
  return v.ok() ? *v : fallback;
}

// A float initializer only `node` uses (so rewriting it in place changes nothing else).
bool PrivateFloatInit(const Graph& g, ValueId v) {
  if (v == kNoValue || !g.has_value(v)) return false;
  const Value& val = g.value(v);
  const Tensor* t = val.initializer();
  return t != nullptr && t->dtype() == DataType::kFloat && val.uses().size() == 1 && !g.IsGraphInput(v) &&
         !g.IsGraphOutput(v);
}

// Channel count (dim 1) of a tensor, or -1.
int64_t Channels(const Graph& g, ValueId v, size_t* rank) {
  const Value& val = g.value(v);
  if (!val.shape || val.shape->rank() < 2 || !(*val.shape)[1].is_known()) return -1;
  *rank = val.shape->rank();
  return (*val.shape)[1].value;
}

// Why `n` cannot scale its output channels (C of them, rank `rank`); "" if it can.
std::string ProducerProblem(const Graph& g, const Node& n, int64_t C, size_t rank) {
  if (n.Is("Conv")) {
    if (!PrivateFloatInit(g, n.input(1))) return NodeLabel(n) + " has no private float weight initializer";
    const Tensor& w = *g.value(n.input(1)).initializer();
    if (w.rank() < 3 || w.dims()[0] != C) return NodeLabel(n) + " has an unexpected weight shape";
    if (n.input(2) != kNoValue &&
        (!PrivateFloatInit(g, n.input(2)) || g.value(n.input(2)).initializer()->numel() != C))
      return NodeLabel(n) + " has no private float bias initializer";
    return "";
  }
  if (rank != 2) return NodeLabel(n) + " output is not 2-D";
  if (!PrivateFloatInit(g, n.input(1)) || g.value(n.input(1)).initializer()->rank() != 2)
    return NodeLabel(n) + " has no private 2-D float weight initializer";
  const Tensor& b = *g.value(n.input(1)).initializer();
  if (n.Is("Gemm")) {
    auto tb = n.attrs.GetInt("transB", 0);
    if (!tb.ok()) return NodeLabel(n) + " has a bad transB";
    if ((*tb ? b.dims()[0] : b.dims()[1]) != C) return NodeLabel(n) + " has an unexpected weight shape";
    if (n.input(2) != kNoValue &&
        (!PrivateFloatInit(g, n.input(2)) || g.value(n.input(2)).initializer()->numel() != C ||
         g.value(n.input(2)).initializer()->dims().back() != C))
      return NodeLabel(n) + " has a bias that is not one private float value per output column";
    return "";
  }
  // MatMul: constant right operand [K, N].
  if (g.value(n.input(0)).is_initializer()) return NodeLabel(n) + " has a constant left operand";
  if (b.dims()[1] != C) return NodeLabel(n) + " has an unexpected weight shape";
  return "";
}

// Why `n` (reading the group tensor in input slot `slot`) cannot absorb 1/s on its input
// channels; "" if it can.
std::string ConsumerProblem(const Graph& g, const Node& n, uint32_t slot, int64_t C, size_t rank) {
  if (slot != 0) return NodeLabel(n) + " reads the tensor as a weight";
  if (n.Is("Conv")) {
    if (!PrivateFloatInit(g, n.input(1))) return NodeLabel(n) + " has no private float weight initializer";
    const Tensor& w = *g.value(n.input(1)).initializer();
    auto group = n.attrs.GetInt("group", 1);
    if (!group.ok() || *group < 1 || w.rank() < 3 || w.dims()[1] * *group != C || w.dims()[0] % *group != 0)
      return NodeLabel(n) + " has an unexpected weight shape or group";
    return "";
  }
  if (rank != 2) return NodeLabel(n) + " reads a tensor that is not 2-D";
  if (!PrivateFloatInit(g, n.input(1)) || g.value(n.input(1)).initializer()->rank() != 2)
    return NodeLabel(n) + " has no private 2-D float weight initializer";
  const Tensor& b = *g.value(n.input(1)).initializer();
  if (n.Is("Gemm")) {
    auto ta = n.attrs.GetInt("transA", 0);
    auto tb = n.attrs.GetInt("transB", 0);
    if (!ta.ok() || !tb.ok() || *ta != 0) return NodeLabel(n) + " has transA set";
    if ((*tb ? b.dims()[1] : b.dims()[0]) != C) return NodeLabel(n) + " has an unexpected weight shape";
    return "";
  }
  if (b.dims()[0] != C) return NodeLabel(n) + " has an unexpected weight shape";
  return "";
}

// Per-channel (dim 1) max |x| of t into r.
void ChannelMaxAbs(const Tensor& t, std::vector<double>& r) {
  const auto& d = t.dims();
  if (d.size() < 2 || t.dtype() != DataType::kFloat || d[1] != static_cast<int64_t>(r.size())) return;
  const int64_t C = d[1];
  int64_t inner = 1;
  for (size_t k = 2; k < d.size(); ++k) inner *= d[k];
  const float* x = t.data<float>();
  for (int64_t n = 0; n < d[0]; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const float* p = x + (n * C + c) * inner;
      float m = 0;
      for (int64_t i = 0; i < inner; ++i) m = std::max(m, std::fabs(p[i]));
      r[static_cast<size_t>(c)] = std::max(r[static_cast<size_t>(c)], static_cast<double>(m));
    }
}

}  // namespace

std::vector<ActEqualizationGroup> FindActEqualizationGroups(const Graph& g) {
  std::vector<ActEqualizationGroup> out;
  std::set<ValueId> visited;
  for (NodeId nid : g.order()) {
    const Node& seed = g.node(nid);
    if (!IsWeighted(seed) || seed.num_outputs() < 1 || visited.count(seed.output(0))) continue;
    ActEqualizationGroup grp;
    std::set<NodeId> producers, consumers;
    std::vector<ValueId> queue{seed.output(0)};
    visited.insert(seed.output(0));
    auto fail = [&](const std::string& why) {
      if (grp.skip_reason.empty()) grp.skip_reason = why;
    };
    auto enqueue = [&](ValueId v) {
      if (v == kNoValue || visited.count(v)) return;
      visited.insert(v);
      queue.push_back(v);
    };
    bool only_clip_consumers = true;  // a Conv -> Clip (fused ReLU6) seed: not a linear tensor at all
    for (size_t qi = 0; qi < queue.size(); ++qi) {
      const ValueId v = queue[qi];
      grp.members.push_back(v);
      const Value& val = g.value(v);
      size_t rank = 0;
      const int64_t C = Channels(g, v, &rank);
      if (val.dtype != DataType::kFloat) fail("tensor '" + val.name() + "' is not float");
      if (C < 0) {
        fail("tensor '" + val.name() + "' has no known channel dim");
      } else if (grp.channels == 0) {
        grp.channels = C;
      } else if (grp.channels != C) {
        fail("tensor '" + val.name() + "' has " + std::to_string(C) + " channels, the group " +
             std::to_string(grp.channels));
      }
      if (g.IsGraphOutput(v)) fail("tensor '" + val.name() + "' is a graph output");
      // Producer side.
      const Node* p = g.Producer(v);
      if (p == nullptr) {
        fail("tensor '" + val.name() + "' is a graph input or constant");
      } else if (IsWeighted(*p)) {
        std::string why = C < 0 ? "" : ProducerProblem(g, *p, C, rank);
        if (!why.empty()) fail(why);
        producers.insert(p->id());
      } else if (IsPassThrough(*p) && p->num_outputs() == 1) {
        enqueue(p->input(0));
      } else if (p->Is("Add") && p->num_inputs() == 2) {
        for (ValueId in : p->inputs()) {
          if (g.value(in).is_initializer() || g.Producer(in) == nullptr)
            fail(NodeLabel(*p) + " adds a constant or graph input");
          else
            enqueue(in);
        }
        const Value& a = g.value(p->input(0));
        const Value& b = g.value(p->input(1));
        if (!a.shape || !b.shape || a.shape->dims() != b.shape->dims())
          fail(NodeLabel(*p) + " broadcasts (inputs of different or unknown shapes)");
      } else {
        fail("tensor '" + val.name() + "' is produced by " + NodeLabel(*p));
      }
      // Consumer side.
      for (const Use& u : val.uses()) {
        const Node& n = g.node(u.node);
        if (!n.Is("Clip")) only_clip_consumers = false;
        if (IsWeighted(n)) {
          std::string why = C < 0 ? "" : ConsumerProblem(g, n, u.input_index, C, rank);
          if (!why.empty()) fail(why);
          consumers.insert(n.id());
        } else if (IsPassThrough(n) && n.num_outputs() == 1) {
          enqueue(n.output(0));
        } else if (n.Is("Add") && n.num_inputs() == 2) {
          enqueue(n.input(0));
          enqueue(n.input(1));
          enqueue(n.output(0));
        } else if (n.Is("Clip")) {
          fail("tensor '" + val.name() + "' feeds " + NodeLabel(n) + " (Clip/ReLU6 does not commute with scaling)");
        } else {
          fail("tensor '" + val.name() + "' is consumed by " + NodeLabel(n));
        }
      }
    }
    if (grp.members.size() == 1 && only_clip_consumers && !g.IsGraphOutput(grp.members[0]) &&
        !g.value(grp.members[0]).uses().empty())
      continue;  // Conv -> ReLU6: not a linear tensor, nothing to report
    if (grp.skip_reason.empty() && consumers.empty()) grp.skip_reason = "no weighted consumer";
    grp.producers.assign(producers.begin(), producers.end());
    grp.consumers.assign(consumers.begin(), consumers.end());
    out.push_back(std::move(grp));
  }
  return out;
}

namespace {

// Calls fn(row, channel, flat index) for every element of a consumer's weight: row = the output
// channel (the per-channel weight-scale axis), channel = the input channel it multiplies.
template <typename Fn>
void ForEachConsumerWeight(const Node& n, const std::vector<int64_t>& d, Fn&& fn) {
  if (n.Is("Conv")) {
    const int64_t G = IntAttr(n, "group", 1), M = d[0], Cg = d[1];
    int64_t K = 1;
    for (size_t k = 2; k < d.size(); ++k) K *= d[k];
    for (int64_t o = 0; o < M; ++o)
      for (int64_t ci = 0; ci < Cg; ++ci)
        for (int64_t k = 0; k < K; ++k) fn(o, (o / (M / G)) * Cg + ci, (o * Cg + ci) * K + k);
    return;
  }
  const bool tb = n.Is("Gemm") && IntAttr(n, "transB", 0) != 0;  // B [N, K] instead of [K, N]
  for (int64_t i = 0; i < d[0]; ++i)
    for (int64_t j = 0; j < d[1]; ++j) fn(tb ? i : j, tb ? j : i, i * d[1] + j);
}
// Calls fn(channel, flat index) for every element of a producer's weight.
template <typename Fn>
void ForEachProducerWeight(const Node& n, const std::vector<int64_t>& d, Fn&& fn) {
  if (n.Is("Conv")) {
    int64_t per = 1;
    for (size_t k = 1; k < d.size(); ++k) per *= d[k];
    for (int64_t c = 0; c < d[0]; ++c)
      for (int64_t k = 0; k < per; ++k) fn(c, c * per + k);
    return;
  }
  const bool tb = n.Is("Gemm") && IntAttr(n, "transB", 0) != 0;
  for (int64_t i = 0; i < d[0]; ++i)
    for (int64_t j = 0; j < d[1]; ++j) fn(tb ? i : j, i * d[1] + j);
}

}  // namespace

Status ApplyActEqualization(Model& model, std::vector<ActEqualizationGroup>& groups,
                            const ActEqualizationOptions& options) {
  Graph& g = model.graph;
  auto rewrite = [&](ValueId v, auto&& edit) -> Status {
    Tensor t = g.value(v).initializer()->Clone();
    edit(t.mutable_data<float>(), t.dims());
    return g.SetInitializer(v, std::move(t));
  };
  for (ActEqualizationGroup& grp : groups) {
    if (!grp.skip_reason.empty() || static_cast<int64_t>(grp.range.size()) != grp.channels) continue;
    const int64_t C = grp.channels;
    double R = 0;
    for (double r : grp.range) R = std::max(R, r);
    if (!(R > 0)) {
      grp.skip_reason = "all channels are zero on the calibration samples";
      continue;
    }
    // Channel c is multiplied by s_c, the consumers' input channel c divided by it.
    std::vector<float> s(static_cast<size_t>(C), 1.0f);
    grp.scale.assign(static_cast<size_t>(C), 1.0);
    for (int64_t c = 0; c < C; ++c) {
      const double r = grp.range[static_cast<size_t>(c)];
      const double sc = std::clamp(r > 0 ? std::pow(R / r, options.alpha) : 1.0, 1.0, options.max_scale);
      s[static_cast<size_t>(c)] = static_cast<float>(sc);
      grp.scale[static_cast<size_t>(c)] = static_cast<double>(s[static_cast<size_t>(c)]);
    }
    bool identity = true;
    for (double sc : grp.scale) identity = identity && sc == 1.0;
    if (identity) {
      grp.skip_reason = "the channels' ranges are already equal";
      continue;
    }
    for (NodeId pid : grp.producers) {
      const Node& n = g.node(pid);
      ONNXQ_RETURN_IF_ERROR(rewrite(n.input(1), [&](float* w, const std::vector<int64_t>& d) {
        ForEachProducerWeight(n, d, [&](int64_t c, int64_t i) { w[i] *= s[static_cast<size_t>(c)]; });
      }));
      if (n.input(2) != kNoValue) {  // one value per output channel (checked when grouping)
        ONNXQ_RETURN_IF_ERROR(rewrite(n.input(2), [&](float* b, const std::vector<int64_t>&) {
          for (int64_t c = 0; c < C; ++c) b[c] *= s[static_cast<size_t>(c)];
        }));
      }
    }
    for (NodeId cid : grp.consumers) {
      const Node& n = g.node(cid);
      ONNXQ_RETURN_IF_ERROR(rewrite(n.input(1), [&](float* w, const std::vector<int64_t>& d) {
        ForEachConsumerWeight(n, d, [&](int64_t, int64_t c, int64_t i) {
          w[i] /= s[static_cast<size_t>(c)];
        });
      }));
    }
    grp.applied = true;
  }
  return Status::Ok();
}

std::string ActEqualizationResult::ToJson(const Graph& g) const {
  JsonWriter j;
  j.BeginObject();
  int64_t applied = 0;
  for (const auto& grp : groups) applied += grp.applied;
  j.Field("samples", samples).Field("groups_equalized", applied);
  j.Field("groups_skipped", static_cast<int64_t>(groups.size()) - applied);
  j.Field("ms", ms);
  j.Key("groups").BeginArray();
  for (const auto& grp : groups) {
    j.BeginObject();
    j.Key("tensors").BeginArray();
    for (ValueId v : grp.members) j.String(g.value(v).name());
    j.EndArray();
    j.Field("channels", grp.channels).Field("applied", grp.applied);
    if (!grp.applied) j.Field("skipped", grp.skip_reason);
    if (grp.applied && !grp.scale.empty()) {
      const auto [lo, hi] = std::minmax_element(grp.scale.begin(), grp.scale.end());
      const auto [rlo, rhi] = std::minmax_element(grp.range.begin(), grp.range.end());
      int64_t scaled = 0;
      for (double s : grp.scale) scaled += s > 1.0;
      j.Field("range_min", *rlo).Field("range_max", *rhi);
      j.Field("scale_min", *lo).Field("scale_max", *hi).Field("channels_scaled", scaled);
      // Mean of 1/s_c^2: the tensor's quantization MSE after / before for the same range and
      // uniform rounding error (what the rewrite can gain at most, before the weights' cost).
      double inv = 0;
      for (double sc : grp.scale) inv += 1.0 / (sc * sc);
      j.Field("activation_mse_ratio_estimate", inv / static_cast<double>(grp.scale.size()));
    }
    j.EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

StatusOr<ActEqualizationResult> EqualizeActivations(Model& model, CalibrationSource& calibration,
                                                    const ActEqualizationOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!(options.alpha >= 0) || !(options.max_scale >= 1) || options.samples < 1 || options.batch_size < 1)
    return InvalidArgument("activation equalization: alpha must be >= 0, the scale cap >= 1 and the "
                           "sample and batch counts >= 1");
  ActEqualizationResult res;
  res.groups = FindActEqualizationGroups(model.graph);
  const Graph& g = model.graph;
  // Observe the tensors a weighted node or an Add writes; pass-through outputs never exceed their
  // input's per-channel max-abs.
  std::map<ValueId, size_t> group_of;
  for (size_t gi = 0; gi < res.groups.size(); ++gi) {
    auto& grp = res.groups[gi];
    if (!grp.skip_reason.empty()) continue;
    grp.range.assign(static_cast<size_t>(grp.channels), 0.0);
    for (ValueId v : grp.members) {
      const Node* p = g.Producer(v);
      if (p != nullptr && !IsPassThrough(*p)) group_of[v] = gi;
    }
  }
  if (!group_of.empty()) {
    std::vector<std::string> inputs;
    for (ValueId v : g.RuntimeInputs()) inputs.push_back(g.value(v).name());
    if (inputs.empty()) return InvalidArgument("activation equalization: the model has no runtime input");
    // A fixed batch size must be used as is: batches of a multiple of it, run in parts of it.
    ONNXQ_ASSIGN_OR_RETURN(const int64_t fixed, FixedBatchSize(model));
    const int64_t bs = AlignToBatch(options.batch_size, fixed);
    int64_t n = std::min(options.samples, calibration.size());
    if (fixed > 0) n = n / fixed * fixed;
    if (n < 1) return InvalidArgument("activation equalization: not enough calibration samples");
    SessionOptions so;
    so.num_threads = options.threads;
    ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(model, so));
    RunOptions ro;
    ro.batch_chunk = fixed;
    for (const auto& [v, gi] : group_of) ro.hooked_values.push_back(v);
    ro.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
      auto it = group_of.find(v);
      if (it != group_of.end()) ChannelMaxAbs(t, res.groups[it->second].range);
      return Status::Ok();
    };
    for (int64_t b = 0; b < n; b += bs) {
      const int64_t m = std::min(bs, n - b);
      ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, m, inputs));
      auto r = session->Run(feeds, ro);
      if (!r.ok()) {
        Status s = r.status();
        return s.Prepend("activation equalization, calibration batch at sample " + std::to_string(b));
      }
    }
    res.samples = n;
    ONNXQ_RETURN_IF_ERROR(ApplyActEqualization(model, res.groups, options));
  }
  res.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace onnxq::quant
