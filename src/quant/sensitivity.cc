#include "onnxq/quant/sensitivity.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "onnxq/base/thread_pool.h"
#include "onnxq/quant/evaluate.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/report.h"
#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {

std::string LayerKey(const Graph& g, const WeightedNode& w) {
  const std::string& n = g.node(w.node).name;
  return n.empty() ? "#" + g.value(w.weight).name() : n;
}

std::vector<LayerCost> LayerCosts(const Model& model, const QdqPlan& plan) {
  const Graph& g = model.graph;
  std::vector<LayerCost> out;
  for (const WeightedNode& w : plan.weighted) {
    LayerCost c;
    const Tensor& wt = *g.value(w.weight).initializer();
    c.params = wt.numel();
    c.channels = wt.rank() > 0 ? wt.dims()[static_cast<size_t>(std::max(w.axis, 0))] : 1;
    const int64_t out_ch = c.channels;
    const int64_t per_out = out_ch > 0 ? c.params / out_ch : 0;  // MACs per output element
    const Node& n = g.node(w.node);
    const Value& ov = g.value(n.output(0));
    if (ov.shape && ov.shape->rank() >= 1) {
      int64_t elems = 1;
      bool known = true;
      for (size_t d = 1; d < ov.shape->rank(); ++d) {
        if (!(*ov.shape)[d].is_known()) known = false;
        else elems *= (*ov.shape)[d].value;
      }
      if (known) c.macs = elems * per_out;
    }
    out.push_back(c);
  }
  return out;
}

std::string SensitivityResult::ToJson() const {
  JsonWriter j;
  j.BeginObject();
  j.Field("metric", metric).Field("rounding", rounding).Field("weight_scale", weight_scale);
  if (!weight_grid.empty()) j.Field("weight_grid", weight_grid);
  j.Field("samples", samples).Field("seconds", seconds);
  j.Key("layers").BeginArray();
  for (const auto& l : layers) {
    j.BeginObject();
    j.Field("node", l.node).Field("op", l.op).Field("weight", l.weight);
    j.Field("params", l.cost.params).Field("channels", l.cost.channels).Field("macs", l.cost.macs);
    j.Key("damage").BeginObject();
    for (const auto& [b, d] : l.damage) j.Field(std::to_string(b), d);
    j.EndObject();
    j.EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

namespace {

// The graph from a weighted node on: every tensor produced before it (or a graph input) that it or
// a later node reads becomes a graph input (`cut`), and its weight becomes a graph input too, so
// one session runs every bit width of the layer without re-running the unchanged prefix.
struct SuffixModel {
  Model model;
  std::vector<ValueId> cut;   // ids in the original graph (same ids in model)
  std::string weight_input;
};

StatusOr<SuffixModel> BuildSuffix(const Model& model, const WeightedNode& w,
                                  const std::map<NodeId, size_t>& pos) {
  SuffixModel sm;
  sm.model = model;
  Graph& g = sm.model.graph;
  const size_t p = pos.at(w.node);
  const std::vector<NodeId> order = g.order();
  std::set<ValueId> cut;
  for (size_t k = p; k < order.size(); ++k)
    for (ValueId v : g.node(order[k]).inputs()) {
      if (v == kNoValue || g.value(v).is_initializer()) continue;
      const Node* prod = g.Producer(v);
      if (prod == nullptr || pos.at(prod->id()) < p) cut.insert(v);
    }
  for (size_t k = p; k-- > 0;) g.RemoveNode(order[k]);
  sm.cut.assign(cut.begin(), cut.end());
  std::vector<ValueId> inputs = sm.cut;
  const ValueId wv = g.AddUniqueValue("onnxq_sensitivity_weight");
  const Tensor& wt = *g.value(w.weight).initializer();
  g.value(wv).dtype = DataType::kFloat;
  g.value(wv).shape = Shape::FromDims(wt.dims());
  g.SetNodeInput(w.node, static_cast<size_t>(w.weight_slot), wv);
  sm.weight_input = g.value(wv).name();
  inputs.push_back(wv);
  g.SetInputs(inputs);
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  return sm;
}

std::vector<std::string> InputNames(const Graph& g, const std::vector<ValueId>& ins) {
  std::vector<std::string> names;
  for (ValueId v : ins) names.push_back(g.value(v).name());
  return names;
}

// Graph inputs are fed, not produced, so the run's hook never sees them: suffixes that read one
// take it from the feeds.
void CaptureInputs(const Graph& g, const std::vector<ValueId>& ins, const std::map<std::string, Tensor>& feeds,
                   std::map<ValueId, Tensor>& captured) {
  for (ValueId v : ins) captured[v] = feeds.at(g.value(v).name());
}

// The samples split into the runs a model that fixes its batch size needs (one part otherwise).
StatusOr<std::vector<std::map<std::string, Tensor>>> SplitParts(const std::map<std::string, Tensor>& feeds,
                                                                int64_t n, int64_t batch) {
  std::vector<std::map<std::string, Tensor>> parts;
  if (batch <= 0 || batch >= n) {
    parts.push_back(feeds);
    return parts;
  }
  for (int64_t b = 0; b < n; b += batch) {
    std::map<std::string, Tensor>& part = parts.emplace_back();
    for (const auto& [name, t] : feeds) {
      ONNXQ_ASSIGN_OR_RETURN(Tensor sl, SliceBatch(t, b, batch));
      part.emplace(name, std::move(sl));
    }
  }
  return parts;
}

// Per part, the tensors in `needed` after a run of `s` (graph inputs come from the feeds). They are
// fetched as extra outputs, which include values folded at plan time (shape arithmetic) that a hook
// never sees. Parts stay separate: an intermediate tensor need not be batch-major (a transformer's
// [L, N * heads, d]), so each suffix runs on its own part's tensors and only outputs are joined.
StatusOr<std::vector<std::map<ValueId, Tensor>>> CaptureParts(Session& s, const Graph& g, const std::vector<ValueId>& ins,
                                                               const std::vector<std::map<std::string, Tensor>>& parts,
                                                               const std::set<ValueId>& needed, RunOptions ro) {
  std::vector<ValueId> produced;
  for (ValueId v : needed)
    if (std::find(ins.begin(), ins.end(), v) == ins.end()) {
      produced.push_back(v);
      ro.extra_outputs.push_back(g.value(v).name());
    }
  std::vector<std::map<ValueId, Tensor>> out(parts.size());
  for (size_t p = 0; p < parts.size(); ++p) {
    ONNXQ_ASSIGN_OR_RETURN(auto res, s.Run(parts[p], ro));
    for (ValueId v : produced) out[p][v] = std::move(res.at(g.value(v).name()));
    CaptureInputs(g, ins, parts[p], out[p]);
  }
  return out;
}

// `output` of the suffix with `weight` as its layer's weight, every part run on its own tensors,
// joined along the batch.
StatusOr<Tensor> RunSuffix(Session& s, const SuffixModel& sm, const Graph& g,
                           const std::vector<std::map<ValueId, Tensor>>& captured, const Tensor& weight,
                           const std::string& output, const RunOptions& ro, const char* what) {
  std::vector<Tensor> outs;
  for (const auto& part : captured) {
    std::map<std::string, Tensor> feeds;
    for (ValueId v : sm.cut) {
      auto it = part.find(v);
      if (it == part.end()) return Internal(what, ": tensor '", g.value(v).name(), "' was not captured");
      feeds[g.value(v).name()] = it->second;
    }
    feeds[sm.weight_input] = weight;
    ONNXQ_ASSIGN_OR_RETURN(auto res, s.Run(feeds, ro));
    outs.push_back(std::move(res.at(output)));
  }
  return ConcatBatch(outs);
}

}  // namespace

double OutputDamage(const std::string& metric, const Tensor& ref, const Tensor& q) {
  const int64_t n = ref.dims()[0];
  const int64_t per = n > 0 ? ref.numel() / n : 0;
  double d = 0;
  if (metric == "kl") {
    for (int64_t i = 0; i < n; ++i)
      d += SoftmaxKl(std::span<const float>(ref.data<float>() + i * per, static_cast<size_t>(per)),
                     std::span<const float>(q.data<float>() + i * per, static_cast<size_t>(per)));
    return d / static_cast<double>(std::max<int64_t>(n, 1));
  }
  double ref_ms = 0;
  for (float v : ref.span<float>()) ref_ms += double(v) * v;
  ref_ms /= static_cast<double>(std::max<int64_t>(ref.numel(), 1));
  for (int64_t i = 0; i < ref.numel(); ++i) {
    double e = double(ref.data<float>()[i]) - q.data<float>()[i];
    d += e * e;
  }
  return d / static_cast<double>(std::max<int64_t>(ref.numel(), 1)) / std::max(ref_ms, 1e-30);
}

// The reference both measurements compare against: the last `samples` calibration samples (the
// rounding's Gram matrices come from the first ones), every runtime input fed, and the float
// model's first output on them with the damage metric it calls for.
struct Reference {
  std::vector<ValueId> inputs;
  std::map<std::string, Tensor> feeds;
  std::string output, metric;
  Tensor logits;
  int64_t batch = 0;  // the model's fixed batch size (0: any); every run is split into runs of it
  std::vector<std::map<std::string, Tensor>> parts;  // `feeds` in runs of `batch` (or whole)
};

StatusOr<Reference> FloatReference(const Model& model, CalibrationSource& calibration, const SensitivityOptions& options,
                                   const std::string& what) {
  const Graph& g = model.graph;
  Reference r;
  r.inputs = g.RuntimeInputs();
  if (r.inputs.empty()) return InvalidArgument(what, ": the model has no runtime input");
  if (g.outputs().empty()) return InvalidArgument("the model has no output");
  r.output = g.value(g.outputs()[0]).name();
  ONNXQ_ASSIGN_OR_RETURN(r.batch, FixedBatchSize(model));
  int64_t n = std::min(options.samples, calibration.size());
  if (r.batch > 0) n = n / r.batch * r.batch;
  if (n < 1)
    return InvalidArgument(what, " needs calibration samples",
                           r.batch > 1 ? " (at least " + std::to_string(r.batch) + ": the model fixes its batch size)" : "");
  ONNXQ_ASSIGN_OR_RETURN(r.feeds, calibration.Feeds(calibration.size() - n, n, InputNames(g, r.inputs)));
  SessionOptions so;
  so.num_threads = options.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto s, Session::Create(model, so));
  RunOptions ro;
  ro.batch_chunk = r.batch;
  ONNXQ_ASSIGN_OR_RETURN(auto out, s->Run(r.feeds, ro));
  r.logits = out.at(r.output);
  if (r.logits.dtype() != DataType::kFloat || r.logits.rank() < 1 || r.logits.dims()[0] != n)
    return Unsupported(what, ": the first output '", r.output, "' is not a float [N, ...] tensor");
  ONNXQ_ASSIGN_OR_RETURN(r.parts, SplitParts(r.feeds, n, r.batch));
  r.metric = options.metric;
  if (r.metric == "auto") r.metric = r.logits.rank() == 2 && r.logits.dims()[1] > 1 ? "kl" : "mse";
  if (r.metric != "kl" && r.metric != "mse") return InvalidArgument("sensitivity metric must be kl, mse or auto");
  return r;
}

StatusOr<SensitivityResult> MeasureSensitivity(const Model& model, const QdqPlan& plan,
                                               CalibrationSource& calibration, const WeightOptions& base,
                                               RoundingMethod rounding,
                                               const std::vector<LayerHessian>* hessians,
                                               const RoundingOptions& rounding_options,
                                               const SensitivityOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const Graph& g = model.graph;
  if (options.bits.empty()) return InvalidArgument("sensitivity: no candidate bit widths");
  std::set<int> bitset(options.bits.begin(), options.bits.end());
  for (int b : bitset)
    if (b < 2 || b > 8) return InvalidArgument("sensitivity: bit width ", b, " is not in 2..8");
  if (rounding != RoundingMethod::kNearest && hessians == nullptr)
    return InvalidArgument("sensitivity with ", RoundingName(rounding), " rounding needs the Hessians");
  RoundingOptions ro = rounding_options;
  ro.method = rounding;
  // The last samples: GPTQ's Hessians come from the first ones, and rounding fitted to a sample
  // would look better on it than it is.
  ONNXQ_ASSIGN_OR_RETURN(Reference rf, FloatReference(model, calibration, options, "sensitivity"));
  const std::vector<ValueId>& ins = rf.inputs;
  const std::string& output = rf.output;
  const std::string& metric = rf.metric;
  const Tensor& ref = rf.logits;
  const int64_t n = ref.dims()[0];
  SessionOptions so;
  so.num_threads = options.threads;
  auto damage = [&](const Tensor& q) -> double { return OutputDamage(metric, ref, q); };

  SensitivityResult res;
  res.metric = metric;
  res.rounding = RoundingName(rounding);
  res.weight_scale = base.method == WeightScaleMethod::kMse ? "mse" : "minmax";
  res.weight_grid = !ro.full_grid ? "narrow" : !ro.oriented_grid ? "full" : ro.oriented_max_bits == 2 ? "auto" : "oriented";
  res.samples = n;
  const std::vector<LayerCost> costs = LayerCosts(model, plan);
  const std::vector<int> bits(bitset.begin(), bitset.end());
  ThreadPool pool(options.threads);
  std::map<NodeId, size_t> pos;
  for (size_t k = 0; k < g.order().size(); ++k) pos[g.order()[k]] = k;
  std::vector<size_t> layer_order(plan.weighted.size());
  for (size_t i = 0; i < layer_order.size(); ++i) layer_order[i] = i;
  std::stable_sort(layer_order.begin(), layer_order.end(), [&](size_t a, size_t b) {
    return pos[plan.weighted[a].node] < pos[plan.weighted[b].node];
  });
  std::vector<LayerSensitivity> layers(plan.weighted.size());
  // Layers in chunks: one float run captures the tensors every suffix of the chunk starts from.
  constexpr size_t kChunk = 8;
  for (size_t c0 = 0; c0 < layer_order.size(); c0 += kChunk) {
    const size_t c1 = std::min(layer_order.size(), c0 + kChunk);
    std::vector<SuffixModel> suffixes;
    std::set<ValueId> needed;
    for (size_t c = c0; c < c1; ++c) {
      ONNXQ_ASSIGN_OR_RETURN(SuffixModel sm, BuildSuffix(model, plan.weighted[layer_order[c]], pos));
      for (ValueId v : sm.cut) needed.insert(v);
      suffixes.push_back(std::move(sm));
    }
    std::vector<std::map<ValueId, Tensor>> captured;
    {
      ONNXQ_ASSIGN_OR_RETURN(auto fs, Session::Create(model, so));
      ONNXQ_ASSIGN_OR_RETURN(captured, CaptureParts(*fs, g, ins, rf.parts, needed, RunOptions{}));
    }
    for (size_t c = c0; c < c1; ++c) {
      const size_t li = layer_order[c];
      const WeightedNode& w = plan.weighted[li];
      SuffixModel& sm = suffixes[c - c0];
      LayerSensitivity& ls = layers[li];
      ls.node = LayerKey(g, w);
      ls.op = g.node(w.node).op_type;
      ls.weight = g.value(w.weight).name();
      ls.cost = costs[li];
      // All bit widths of this layer quantized in parallel (the rounding dominates for big layers).
      std::vector<QdqPlan> subs(bits.size());
      std::vector<Status> errs(bits.size());
      std::vector<LayerHessian> one;
      if (hessians) one.push_back((*hessians)[li]);
      RoundingOptions lro = ro;
      lro.gptq.factors = NewGptqFactorCache();  // every width rounds on the same H: factorize it once
      pool.ParallelFor(static_cast<int64_t>(bits.size()), [&](int64_t b0, int64_t b1) {
        for (int64_t bi = b0; bi < b1; ++bi) {
          QdqPlan& sub = subs[static_cast<size_t>(bi)];
          sub.weighted.push_back(w);
          sub.weighted[0].has_qbias = false;
          errs[static_cast<size_t>(bi)] = QuantizeWeightsMixed(
              model, sub, {bits[static_cast<size_t>(bi)]}, base,
              rounding != RoundingMethod::kNearest ? &one : nullptr, lro, nullptr);
        }
      });
      ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(sm.model, so));
      for (size_t bi = 0; bi < bits.size(); ++bi) {
        if (!errs[bi].ok()) {
          Status s = errs[bi];
          return s.Prepend("sensitivity of '" + ls.node + "'");
        }
        const QuantizedWeight& qw = subs[bi].weighted[0].qweight;
        ONNXQ_ASSIGN_OR_RETURN(Tensor deq, Tensor::Create(DataType::kFloat, qw.q.dims()));
        std::vector<int32_t> qi(static_cast<size_t>(qw.q.numel()));
        for (int64_t k = 0; k < qw.q.numel(); ++k) qi[static_cast<size_t>(k)] = qw.q.data<int8_t>()[k];
        ONNXQ_RETURN_IF_ERROR(DequantizeArray(qi, qw.q.dims(), qw.axis, qw.params,
                                              std::span<float>(deq.mutable_data<float>(), static_cast<size_t>(deq.numel()))));
        ONNXQ_ASSIGN_OR_RETURN(Tensor out, RunSuffix(*session, sm, g, captured, deq, output, RunOptions{}, "sensitivity"));
        ls.damage.emplace_back(bits[bi], damage(out));
      }
    }
  }
  res.layers = std::move(layers);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

StatusOr<std::vector<int>> AllocateBits(const Model& model, const QdqPlan& plan,
                                        const SensitivityResult& sens, const Budget& budget, int act_bits,
                                        const std::vector<int>& allowed) {
  const Graph& g = model.graph;
  std::map<std::string, const LayerSensitivity*> by_key;
  for (const auto& l : sens.layers) by_key[l.node] = &l;
  const std::vector<LayerCost> costs = LayerCosts(model, plan);
  std::vector<std::vector<KnapsackOption>> items;
  std::vector<std::vector<int>> item_bits;
  for (size_t i = 0; i < plan.weighted.size(); ++i) {
    const std::string key = LayerKey(g, plan.weighted[i]);
    auto it = by_key.find(key);
    if (it == by_key.end())
      return InvalidArgument("the sensitivity data has no entry for layer '", key,
                             "' (was it measured on another model or with other exclusions?)");
    if (it->second->cost.params != costs[i].params)
      return InvalidArgument("the sensitivity data for layer '", key, "' is for a weight of ",
                             it->second->cost.params, " parameters, this one has ", costs[i].params);
    std::vector<KnapsackOption> opts;
    std::vector<int> ob;
    for (const auto& [b, d] : it->second->damage) {
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), b) == allowed.end()) continue;
      ONNXQ_ASSIGN_OR_RETURN(double c, LayerBudgetCost(costs[i], b, act_bits, budget.kind));
      opts.push_back({c, d});
      ob.push_back(b);
    }
    if (opts.empty()) return InvalidArgument("the sensitivity data for layer '", key, "' is empty");
    items.push_back(std::move(opts));
    item_bits.push_back(std::move(ob));
  }
  ONNXQ_ASSIGN_OR_RETURN(double limit, BudgetLimit(costs, budget));
  auto sol = SolveMultipleChoiceKnapsack(items, limit);
  if (!sol.ok()) {
    Status s = sol.status();
    return s.Prepend("bit allocation for " + budget.ToString());
  }
  std::vector<int> bits(plan.weighted.size());
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = item_bits[i][static_cast<size_t>((*sol)[i])];
  return bits;
}


std::string AllocationRefineResult::ToJson() const {
  JsonWriter j;
  j.BeginObject();
  j.Field("initial_loss", initial_loss).Field("final_loss", final_loss);
  j.Field("evaluations", static_cast<int64_t>(evaluations)).Field("accepted", static_cast<int64_t>(accepted));
  j.Field("changed_layers", static_cast<int64_t>(changed_layers)).Field("seconds", seconds);
  j.Key("candidates").BeginArray();
  for (const Candidate& c : candidates) {
    j.BeginObject();
    j.Field("round", static_cast<int64_t>(c.round));
    j.Field("changed", static_cast<int64_t>(c.changed)).Field("predicted", c.predicted);
    j.Field("measured", c.measured).Field("accepted", c.accepted);
    j.EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

StatusOr<AllocationRefineResult> RefineAllocation(const Model& model, const QdqPlan& plan,
                                                  CalibrationSource& calibration, const WeightOptions& base,
                                                  RoundingMethod rounding,
                                                  const std::vector<LayerHessian>* hessians,
                                                  const RoundingOptions& rounding_options,
                                                  const SensitivityOptions& options, const Budget& budget,
                                                  int act_bits, const std::vector<int>& bits0,
                                                  const std::vector<int>& allowed,
                                                  const AllocationRefineOptions& ropt) {
  const auto t0 = std::chrono::steady_clock::now();
  const Graph& g = model.graph;
  const size_t L = plan.weighted.size();
  AllocationRefineResult res;
  res.bits = bits0;
  if (bits0.size() != L) return InvalidArgument("allocation refinement: ", bits0.size(), " widths for ", L, " layers");
  if (ropt.evaluations < 1) return InvalidArgument("allocation refinement: evaluations must be at least 1");
  if (rounding != RoundingMethod::kNearest && hessians == nullptr)
    return InvalidArgument("allocation refinement with ", RoundingName(rounding), " rounding needs the Hessians");
  if (ropt.rounds <= 0 || L == 0) return res;
  RoundingOptions ro = rounding_options;
  ro.method = rounding;
  ONNXQ_ASSIGN_OR_RETURN(Reference rf, FloatReference(model, calibration, options, "allocation refinement"));
  const std::vector<ValueId>& ins = rf.inputs;
  const auto& feeds = rf.feeds;
  const std::string& output = rf.output;
  const std::string& metric = rf.metric;
  const Tensor& ref = rf.logits;
  const int64_t n = ref.dims()[0];
  SessionOptions so;
  so.num_threads = options.threads;

  // Candidate widths, and every layer's dequantized weight at each (rounded as the sensitivity does).
  std::set<int> wset;
  for (int b : options.bits)
    if (allowed.empty() || std::find(allowed.begin(), allowed.end(), b) != allowed.end()) wset.insert(b);
  for (int b : bits0) wset.insert(b);
  const std::vector<int> widths(wset.begin(), wset.end());
  const size_t W = widths.size();
  auto width_index = [&](int b) {
    return static_cast<size_t>(std::lower_bound(widths.begin(), widths.end(), b) - widths.begin());
  };
  std::vector<Tensor> deq(L * W);
  std::vector<Status> errs(L * W);
  std::vector<std::vector<LayerHessian>> ones(L);
  if (hessians)
    for (size_t i = 0; i < L; ++i) ones[i].push_back((*hessians)[i]);
  ThreadPool pool(options.threads);
  pool.ParallelFor(static_cast<int64_t>(L * W), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const size_t i = static_cast<size_t>(k) / W, wi = static_cast<size_t>(k) % W;
      errs[static_cast<size_t>(k)] = [&]() -> Status {
        QdqPlan sub;
        sub.weighted.push_back(plan.weighted[i]);
        sub.weighted[0].has_qbias = false;
        ONNXQ_RETURN_IF_ERROR(QuantizeWeightsMixed(model, sub, {widths[wi]}, base,
                                                   hessians ? &ones[i] : nullptr, ro, nullptr));
        const QuantizedWeight& qw = sub.weighted[0].qweight;
        ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DataType::kFloat, qw.q.dims()));
        std::vector<int32_t> qi(static_cast<size_t>(qw.q.numel()));
        for (int64_t e = 0; e < qw.q.numel(); ++e) qi[static_cast<size_t>(e)] = qw.q.data<int8_t>()[e];
        ONNXQ_RETURN_IF_ERROR(DequantizeArray(qi, qw.q.dims(), qw.axis, qw.params,
                                              std::span<float>(t.mutable_data<float>(), static_cast<size_t>(t.numel()))));
        deq[static_cast<size_t>(k)] = std::move(t);
        return Status::Ok();
      }();
    }
  });
  for (const Status& e : errs)
    if (!e.ok()) {
      Status s = e;
      return s.Prepend("allocation refinement");
    }

  // Activations fake-quantized as the exported model does.
  std::vector<ValueId> simulated;
  for (ValueId v : SimulatedValues(plan)) {
    const ActivationGroup* grp = plan.GroupOf(v);
    if (grp != nullptr && grp->has_params) simulated.push_back(v);
  }
  std::map<std::string, Tensor> qfeeds = feeds;  // FakeQuantizeFeeds replaces, never writes into, a tensor
  ONNXQ_RETURN_IF_ERROR(FakeQuantizeFeeds(plan, g, qfeeds));
  ONNXQ_ASSIGN_OR_RETURN(const auto qparts, SplitParts(qfeeds, n, rf.batch));
  auto build = [&](const std::vector<int>& b) -> Model {
    Model q = model;
    for (size_t i = 0; i < L; ++i) {
      const WeightedNode& w = plan.weighted[i];
      ValueId nv = q.graph.AddInitializer(g.value(w.weight).name() + "_refine", deq[i * W + width_index(b[i])]);
      q.graph.SetNodeInput(w.node, static_cast<size_t>(w.weight_slot), nv);
    }
    return q;
  };
  // The loss, and (in `halves`) the same loss on the first and the second half of the samples.
  const int64_t per = ref.numel() / n, half = n / 2;
  double ref_ms = 0;
  for (float v : ref.span<float>()) ref_ms += double(v) * v;
  ref_ms /= static_cast<double>(std::max<int64_t>(ref.numel(), 1));
  auto loss_of = [&](const std::vector<int>& b, std::array<double, 2>& halves) -> StatusOr<double> {
    const Model q = build(b);
    RunOptions rr;
    rr.batch_chunk = rf.batch;
    rr.hooked_values = simulated;
    rr.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status { return FakeQuantizeTensor(plan, v, t); };
    ONNXQ_ASSIGN_OR_RETURN(auto s, Session::Create(q, so));
    ONNXQ_ASSIGN_OR_RETURN(auto out, s->Run(qfeeds, rr));
    const Tensor& qo = out.at(output);
    halves = {0, 0};
    for (int64_t i = 0; i < n; ++i) {
      const float* r = ref.data<float>() + i * per;
      const float* y = qo.data<float>() + i * per;
      double d = 0;
      if (metric == "kl") {
        d = SoftmaxKl(std::span<const float>(r, static_cast<size_t>(per)), std::span<const float>(y, static_cast<size_t>(per)));
      } else {
        for (int64_t k = 0; k < per; ++k) d += (double(r[k]) - y[k]) * (double(r[k]) - y[k]);
        d /= static_cast<double>(std::max<int64_t>(per, 1)) * std::max(ref_ms, 1e-30);
      }
      halves[i < half ? 0 : 1] += d;
    }
    halves[0] /= static_cast<double>(std::max<int64_t>(half, 1));
    halves[1] /= static_cast<double>(std::max<int64_t>(n - half, 1));
    return OutputDamage(metric, ref, qo);
  };
  std::array<double, 2> cur_halves{0, 0}, halves{0, 0};
  const std::vector<LayerCost> costs = LayerCosts(model, plan);
  ONNXQ_ASSIGN_OR_RETURN(const double limit, BudgetLimit(costs, budget));
  auto total_cost = [&](const std::vector<int>& b) -> StatusOr<double> {
    double c = 0;
    for (size_t i = 0; i < L; ++i) {
      ONNXQ_ASSIGN_OR_RETURN(double ci, LayerBudgetCost(costs[i], b[i], act_bits, budget.kind));
      c += ci;
    }
    return c;
  };
  {
    ONNXQ_ASSIGN_OR_RETURN(double c, total_cost(bits0));
    if (c > limit) return InvalidArgument("allocation refinement: the allocation does not fit ", budget.ToString());
  }
  std::map<NodeId, size_t> pos;
  for (size_t k = 0; k < g.order().size(); ++k) pos[g.order()[k]] = k;
  std::vector<size_t> layer_order(L);
  for (size_t i = 0; i < L; ++i) layer_order[i] = i;
  std::stable_sort(layer_order.begin(), layer_order.end(), [&](size_t a, size_t b) {
    return pos[plan.weighted[a].node] < pos[plan.weighted[b].node];
  });

  std::vector<int> cur = bits0;
  ONNXQ_ASSIGN_OR_RETURN(double cur_loss, loss_of(cur, cur_halves));
  res.initial_loss = cur_loss;
  for (int round = 0; round < ropt.rounds; ++round) {
    // damage[i][w]: whole-model loss with layer i at widths[w] and the others at `cur`.
    std::vector<std::vector<double>> dmg(L, std::vector<double>(W, std::numeric_limits<double>::quiet_NaN()));
    const Model qm = build(cur);
    const Graph& qg = qm.graph;
    constexpr size_t kChunk = 8;
    for (size_t c0 = 0; c0 < L; c0 += kChunk) {
      const size_t c1 = std::min(L, c0 + kChunk);
      std::vector<SuffixModel> suffixes;
      std::set<ValueId> needed;
      for (size_t c = c0; c < c1; ++c) {
        ONNXQ_ASSIGN_OR_RETURN(SuffixModel sm, BuildSuffix(qm, plan.weighted[layer_order[c]], pos));
        for (ValueId v : sm.cut) needed.insert(v);
        suffixes.push_back(std::move(sm));
      }
      std::vector<std::map<ValueId, Tensor>> captured;
      {
        RunOptions rr;
        rr.hooked_values = simulated;
        rr.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status { return FakeQuantizeTensor(plan, v, t); };
        ONNXQ_ASSIGN_OR_RETURN(auto fs, Session::Create(qm, so));
        ONNXQ_ASSIGN_OR_RETURN(captured, CaptureParts(*fs, qg, ins, qparts, needed, rr));
      }
      for (size_t c = c0; c < c1; ++c) {
        const size_t i = layer_order[c];
        SuffixModel& sm = suffixes[c - c0];
        RunOptions rr;
        for (ValueId v : simulated)
          if (sm.model.graph.Producer(v) != nullptr) rr.hooked_values.push_back(v);
        rr.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status { return FakeQuantizeTensor(plan, v, t); };
        ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(sm.model, so));
        const size_t ci = width_index(cur[i]);
        dmg[i][ci] = cur_loss;
        for (size_t wi = 0; wi < W; ++wi) {
          if (wi == ci || (wi > ci ? wi - ci : ci - wi) > 1) continue;
          ONNXQ_ASSIGN_OR_RETURN(Tensor out, RunSuffix(*session, sm, g, captured, deq[i * W + wi], output, rr,
                                                       "allocation refinement"));
          dmg[i][wi] = OutputDamage(metric, ref, out);
        }
      }
    }
    // Swaps: one layer up one width, the budget made up by moving other layers down one width
    // (least measured damage per unit of cost saved first). Ranked by the summed in-context
    // changes; each is then measured on the whole model and kept only if the loss drops. Layers
    // changed in this round are left alone until the next round re-measures them in context.
    auto neighbour = [&](int b, int dir) -> int {
      const size_t k = width_index(b);
      if (dir > 0) return k + 1 < W ? widths[k + 1] : 0;
      return k > 0 ? widths[k - 1] : 0;
    };
    std::vector<bool> frozen(L, false);
    struct Move {
      std::vector<int> bits;
      double predicted = 0;
      int changed = 0;
    };
    auto make_move = [&](size_t up) -> StatusOr<std::optional<Move>> {
      const int u = neighbour(cur[up], +1);
      if (u == 0 || frozen[up] || std::isnan(dmg[up][width_index(u)])) return std::optional<Move>();
      Move m;
      m.bits = cur;
      m.bits[up] = u;
      m.predicted = dmg[up][width_index(u)] - cur_loss;
      m.changed = 1;
      ONNXQ_ASSIGN_OR_RETURN(double cost, total_cost(m.bits));
      if (cost > limit) {
        std::vector<std::pair<double, size_t>> downs;  // damage per cost saved
        for (size_t j = 0; j < L; ++j) {
          const int d = neighbour(cur[j], -1);
          if (j == up || frozen[j] || d == 0 || std::isnan(dmg[j][width_index(d)])) continue;
          ONNXQ_ASSIGN_OR_RETURN(double c_hi, LayerBudgetCost(costs[j], cur[j], act_bits, budget.kind));
          ONNXQ_ASSIGN_OR_RETURN(double c_lo, LayerBudgetCost(costs[j], d, act_bits, budget.kind));
          if (c_hi <= c_lo) continue;
          downs.emplace_back((dmg[j][width_index(d)] - cur_loss) / (c_hi - c_lo), j);
        }
        std::sort(downs.begin(), downs.end());
        for (const auto& [ratio, j] : downs) {
          if (cost <= limit || m.changed > ropt.max_down) break;
          const int d = neighbour(cur[j], -1);
          ONNXQ_ASSIGN_OR_RETURN(double c_hi, LayerBudgetCost(costs[j], cur[j], act_bits, budget.kind));
          ONNXQ_ASSIGN_OR_RETURN(double c_lo, LayerBudgetCost(costs[j], d, act_bits, budget.kind));
          m.bits[j] = d;
          cost -= c_hi - c_lo;
          m.predicted += dmg[j][width_index(d)] - cur_loss;
          ++m.changed;
        }
        ONNXQ_ASSIGN_OR_RETURN(cost, total_cost(m.bits));  // exact, not the running sum
        if (cost > limit) return std::optional<Move>();
      }
      if (!(m.predicted < 0)) return std::optional<Move>();
      return std::optional<Move>(std::move(m));
    };
    std::vector<std::pair<double, size_t>> ranked;
    for (size_t i = 0; i < L; ++i) {
      ONNXQ_ASSIGN_OR_RETURN(std::optional<Move> m, make_move(i));
      if (m) ranked.emplace_back(m->predicted, i);
    }
    std::stable_sort(ranked.begin(), ranked.end());
    bool improved = false;
    int tried = 0;
    for (const auto& [p0, up] : ranked) {
      if (tried >= ropt.evaluations) break;
      ONNXQ_ASSIGN_OR_RETURN(std::optional<Move> m, make_move(up));  // against the current allocation
      if (!m) continue;
      ++tried;
      ONNXQ_ASSIGN_OR_RETURN(double l, loss_of(m->bits, halves));
      ++res.evaluations;
      AllocationRefineResult::Candidate rec;
      rec.round = round;
      rec.changed = m->changed;
      rec.predicted = cur_loss + m->predicted;
      rec.measured = l;
      // Kept only if both halves of the samples agree: a gain on one half alone is a fit to it.
      rec.accepted = l < cur_loss * (1 - ropt.min_gain) &&
                     (!ropt.both_halves || n < 2 || (halves[0] < cur_halves[0] && halves[1] < cur_halves[1]));
      res.candidates.push_back(rec);
      if (rec.accepted) {
        for (size_t i = 0; i < L; ++i)
          if (m->bits[i] != cur[i]) frozen[i] = true;
        cur = std::move(m->bits);
        cur_loss = l;
        cur_halves = halves;
        ++res.accepted;
        improved = true;
      }
    }
    if (!improved) break;
  }
  res.bits = cur;
  res.final_loss = cur_loss;
  for (size_t i = 0; i < L; ++i) res.changed_layers += cur[i] != bits0[i];
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace onnxq::quant
