// Session: creation (support check, one kernel per node, fusion candidates), planning per input
// signature (shape propagation, plan-time folding of integer shape arithmetic, liveness-based
// memory plan) and runs (hooks, outputs).
#include "onnxq/runtime/session.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <unordered_map>

#include "onnxq/runtime/batch.h"
#include "runtime/memory_plan.h"
#include "runtime/op_kernel.h"
#include "runtime/qdq_lowering.h"

namespace onnxq {

namespace {

using runtime::InferContext;
using runtime::OpKernel;
using runtime::RunContext;
using runtime::TensorRef;
using runtime::ValueInfo;

// Integer feeds up to this many elements key the plan by content, so shape-like inputs
// (Reshape's shape, Slice's starts, ...) are known when planning.
constexpr int64_t kMaxKeyedFeedElements = 64;
// Integer results of at most this many elements whose inputs are all known are computed at plan
// time (shape arithmetic: Shape -> Gather -> Concat -> Reshape).
constexpr int64_t kMaxFoldElements = int64_t{1} << 16;
constexpr size_t kMaxCachedPlans = 8;

struct AlignedFree {
  void operator()(std::byte* p) const { std::free(p); }
};

// kHooked: a value the hook sees lives in its own Tensor (outside the arena), so the hook gets
// that tensor itself, with no copy in or out.
enum class Loc : uint8_t { kNone, kFeed, kConst, kArena, kHooked };

struct Step {
  NodeId node = kNoNode;
  OpKernel* kernel = nullptr;
  RunContext ctx;
  std::vector<ValueId> outputs;  // values this step writes (after fusion)
  std::vector<size_t> hooked;    // indices into outputs the hook sees
};

struct FeedPatch {
  size_t step, input;
  ValueId value;
};

// Where a hooked tensor's buffer is referenced: re-pointed whenever the buffer changes (copy on
// write after the hook or the caller kept a copy).
struct BufferUse {
  size_t step, slot;
  bool output;
};

struct HookedBuffer {
  ValueId value;
  std::unique_ptr<Tensor> tensor;
  std::byte* bound = nullptr;  // the pointer the steps currently use
  std::vector<BufferUse> uses;
};

struct Plan {
  std::vector<ValueInfo> info;  // per value id
  std::vector<Loc> loc;
  std::vector<int64_t> offset;  // arena offset per value
  std::vector<std::unique_ptr<Tensor>> folded_values;
  std::vector<Step> steps;
  std::vector<FeedPatch> feed_patches;
  std::vector<HookedBuffer> hooked_buffers;
  std::vector<int32_t> hooked_index;  // per value: index into hooked_buffers or -1
  std::unique_ptr<std::byte, AlignedFree> arena;
  int64_t arena_bytes = 0;
  int64_t fused = 0, folded = 0;
};

}  // namespace

struct Session::Impl {
  Model model;
  SessionOptions options;
  kernels::Isa isa = kernels::Isa::kReference;
  std::unique_ptr<ThreadPool> pool;
  int64_t opset = 0;
  std::vector<std::unique_ptr<OpKernel>> kernels;  // by node id
  std::vector<NodeId> fuse_next;                   // by node id: activation fused into it
  std::vector<bool> fused_away;                    // scratch per plan
  std::unordered_map<std::string, std::unique_ptr<Plan>> plans;
  std::deque<std::string> plan_order;
  RunStats stats;
  int64_t lowered = 0;
  std::mutex mu;

  StatusOr<Plan*> GetPlan(const std::map<std::string, Tensor>& feeds, const RunOptions& options,
                          const std::vector<ValueId>& extra);
  StatusOr<std::unique_ptr<Plan>> BuildPlan(const std::map<std::string, Tensor>& feeds,
                                            const RunOptions& options,
                                            const std::vector<ValueId>& extra);
};

namespace {
// Why a value of a QDQ model may be missing from a session that lowered it to integer kernels.
std::string LoweredValueHint() {
  return " as this session runs it: the integer lowering computes some values inside fused kernels "
         "(e.g. a projection conv's output inside its residual Add) and names channels-last ones "
         "NAME_nhwc; a session without integer lowering (SessionOptions::integer_qdq = false, Python "
         "integer=False) computes every value";
}
}  // namespace

Session::Session() : impl_(std::make_unique<Impl>()) {}
Session::~Session() = default;

StatusOr<std::unique_ptr<Session>> Session::Create(const Model& model,
                                                   const SessionOptions& options) {
  std::unique_ptr<Session> s(new Session());
  Impl& im = *s->impl_;
  im.model = model;
  im.options = options;
  im.opset = im.model.OpsetVersion("");
  if (options.integer_qdq && runtime::HasQdqNodes(im.model.graph)) {
    ONNXQ_RETURN_IF_ERROR(im.model.graph.Verify());
    auto lowered = runtime::LowerQdqToInteger(im.model, options.int8_channels_last);
    if (!lowered.ok()) {
      Status st = lowered.status();
      return st.Prepend("integer lowering of the QDQ model");
    }
    im.lowered = lowered->groups();
  }
  if (options.isa) {
    auto supported = kernels::SupportedIsas();
    if (std::find(supported.begin(), supported.end(), *options.isa) == supported.end())
      return Unsupported("this CPU cannot run ISA ", kernels::IsaName(*options.isa));
    im.isa = *options.isa;
  } else {
    im.isa = kernels::ActiveIsa();
  }
  const Graph& g = im.model.graph;
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  // Every op is checked before any kernel is built, so the first error is the support error.
  ONNXQ_RETURN_IF_ERROR(CheckSupported(im.model));
  im.kernels.resize(g.node_capacity());
  im.fuse_next.assign(g.node_capacity(), kNoNode);
  for (NodeId id : g.order()) {
    const Node& n = g.node(id);
    ONNXQ_ASSIGN_OR_RETURN(const runtime::OpRegistration* reg, runtime::FindOp(n, im.opset));
    runtime::OpInfo info{&n, im.opset, &g, im.isa};
    auto k = reg->factory(info);
    if (!k.ok()) {
      Status st = k.status();
      return st;
    }
    im.kernels[id] = std::move(k).value();
  }
  // Conv -> Relu/Clip pairs whose intermediate nobody else sees.
  for (NodeId id : g.order()) {
    const Node& n = g.node(id);
    if (!im.kernels[id]->SupportsFusedActivation() || n.num_outputs() != 1) continue;
    ValueId v = n.output(0);
    const Value& val = g.value(v);
    if (g.IsGraphOutput(v) || val.uses().size() != 1) continue;
    const Node& next = g.node(val.uses()[0].node);
    if (next.input(0) != v || val.uses()[0].input_index != 0) continue;
    auto act = runtime::FusableActivation(next, im.opset, g);
    if (!act) continue;
    im.kernels[id]->SetFusedActivation(*act);
    im.fuse_next[id] = next.id();
  }
  im.pool = std::make_unique<ThreadPool>(options.num_threads);
  return s;
}

namespace {

// Feeds whose contents planning may use: small integer tensors (shape arithmetic) and small
// tensors consumed directly as a shape-like input (Resize's float scales, Dropout's
// training_mode, ...).
bool KeyedFeed(const Graph& g, ValueId v, const Tensor& t) {
  if (t.numel() > kMaxKeyedFeedElements) return false;
  if (IsInteger(t.dtype())) return true;
  for (const Use& u : g.value(v).uses())
    if (runtime::IsShapeInput(g.node(u.node), u.input_index)) return true;
  return false;
}

std::string PlanKey(const Graph& g, const std::map<std::string, Tensor>& feeds,
                    const RunOptions& options, const std::vector<ValueId>& extra) {
  std::ostringstream k;
  k.precision(17);
  for (ValueId v : g.RuntimeInputs()) {
    auto it = feeds.find(g.value(v).name());
    if (it == feeds.end()) continue;
    const Tensor& t = it->second;
    k << static_cast<int>(t.dtype()) << DimsToString(t.dims());
    if (KeyedFeed(g, v, t)) {
      k << "=";
      for (int64_t i = 0; i < t.numel(); ++i) k << t.GetAsDouble(i) << ",";
    }
    k << ";";
  }
  if (options.hook) {
    k << "|hook:";
    if (options.hooked_values.empty()) {
      k << "*";
    } else {
      std::vector<ValueId> h = options.hooked_values;
      std::sort(h.begin(), h.end());
      for (ValueId v : h) k << v << ",";
    }
  }
  k << "|extra:";
  for (ValueId v : extra) k << v << ",";
  return k.str();
}

}  // namespace

StatusOr<Plan*> Session::Impl::GetPlan(const std::map<std::string, Tensor>& feeds,
                                       const RunOptions& options,
                                       const std::vector<ValueId>& extra) {
  std::string key = PlanKey(model.graph, feeds, options, extra);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second.get();
  ONNXQ_ASSIGN_OR_RETURN(auto plan, BuildPlan(feeds, options, extra));
  if (plans.size() >= kMaxCachedPlans) {
    plans.erase(plan_order.front());
    plan_order.pop_front();
  }
  Plan* p = plan.get();
  plans.emplace(key, std::move(plan));
  plan_order.push_back(key);
  return p;
}

StatusOr<std::unique_ptr<Plan>> Session::Impl::BuildPlan(
    const std::map<std::string, Tensor>& feeds, const RunOptions& options,
    const std::vector<ValueId>& extra) {
  const Graph& g = model.graph;
  auto plan = std::make_unique<Plan>();
  const size_t nv = g.value_capacity();
  plan->info.resize(nv);
  plan->loc.assign(nv, Loc::kNone);
  plan->offset.assign(nv, -1);

  for (ValueId v : g.initializer_order()) {
    const Tensor* t = g.value(v).initializer();
    plan->info[v] = {t->dtype(), t->dims(), t};
    plan->loc[v] = Loc::kConst;
  }
  for (ValueId v : g.RuntimeInputs()) {
    const Tensor& t = feeds.at(g.value(v).name());
    const bool keyed = KeyedFeed(g, v, t);
    plan->info[v] = {t.dtype(), t.dims(), keyed ? &t : nullptr};
    plan->loc[v] = Loc::kFeed;
  }

  std::set<ValueId> hooked(options.hooked_values.begin(), options.hooked_values.end());
  const bool hook_all = options.hook && options.hooked_values.empty();
  std::set<ValueId> keep(extra.begin(), extra.end());
  for (ValueId v : g.outputs()) keep.insert(v);
  auto observed = [&](ValueId v) {
    return keep.count(v) > 0 || (options.hook && (hook_all || hooked.count(v) > 0));
  };

  std::vector<bool> skip(g.node_capacity(), false);
  for (NodeId id : g.order()) {
    if (skip[id]) continue;
    const Node& n = g.node(id);
    OpKernel* k = kernels[id].get();
    InferContext ictx;
    ictx.node = &n;
    ictx.isa = isa;
    const NodeId act = fuse_next[id];
    const bool fuse = act != kNoNode && !observed(n.output(0));
    ictx.fused = fuse;
    for (ValueId v : n.inputs()) {
      if (v == kNoValue) {
        ictx.in.push_back(nullptr);
        continue;
      }
      if (!plan->info[v].present())
        return Internal("input '", g.value(v).name(), "' of ", n.Describe(),
                        " has no value when planning");
      ictx.in.push_back(&plan->info[v]);
    }
    ictx.out.resize(n.num_outputs());
    Status st = k->Infer(ictx);
    if (!st.ok()) return st.Prepend("while planning " + n.Describe());
    bool all_known = true, non_float = true;
    int64_t out_elems = 0;
    for (size_t i = 0; i < n.num_outputs(); ++i) {
      ValueId v = n.output(i);
      if (v == kNoValue) continue;
      const ValueInfo& o = ictx.out[i];
      if (!o.present())
        return Internal(n.Describe(), " did not infer output ", i);
      if (o.dtype == DataType::kString)
        return Unsupported(n.Describe(), ": string tensors are not supported");
      plan->info[v] = o;
      non_float = non_float && !IsFloatingPoint(o.dtype);
      out_elems += runtime::NumElements(o.dims);
    }
    for (size_t i = 0; i < ictx.in.size(); ++i)
      if (ictx.in[i] != nullptr && ictx.in[i]->value == nullptr) all_known = false;
    const bool shape_only = n.Is("Shape");
    if (non_float && (all_known || shape_only) && out_elems <= kMaxFoldElements) {
      // Shape arithmetic: evaluate now; the run never sees this node.
      RunContext rctx;
      for (size_t i = 0; i < ictx.in.size(); ++i) {
        TensorRef r;
        if (ictx.in[i] != nullptr) {
          r.dtype = ictx.in[i]->dtype;
          r.dims = ictx.in[i]->dims;
          r.numel = runtime::NumElements(r.dims);
          r.data = ictx.in[i]->value ? const_cast<std::byte*>(ictx.in[i]->value->raw()) : nullptr;
        }
        rctx.in.push_back(std::move(r));
      }
      std::vector<Tensor*> outs;
      for (size_t i = 0; i < n.num_outputs(); ++i) {
        TensorRef r;
        ValueId v = n.output(i);
        if (v != kNoValue) {
          ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(ictx.out[i].dtype, ictx.out[i].dims));
          plan->folded_values.push_back(std::make_unique<Tensor>(std::move(t)));
          Tensor* tp = plan->folded_values.back().get();
          r.dtype = tp->dtype();
          r.dims = tp->dims();
          r.numel = tp->numel();
          r.data = tp->mutable_raw();
          plan->info[v].value = tp;
          plan->loc[v] = Loc::kConst;
        }
        rctx.out.push_back(std::move(r));
      }
      rctx.isa = isa;
      Status rs = k->Run(rctx);
      if (!rs.ok()) return rs.Prepend("while planning " + n.Describe());
      ++plan->folded;
      continue;
    }

    Step step;
    step.node = id;
    step.kernel = k;
    step.ctx.isa = isa;
    step.ctx.pool = pool.get();
    for (ValueId v : n.outputs()) step.outputs.push_back(v);
    if (fuse) {
      // The activation node's output is written by the Conv; the activation never runs.
      const Node& an = g.node(act);
      ValueInfo ai = plan->info[n.output(0)];
      plan->info[an.output(0)] = ai;
      step.outputs = {an.output(0)};
      step.ctx.fused = true;
      skip[act] = true;
      ++plan->fused;
      plan->loc[n.output(0)] = Loc::kNone;
    }
    for (ValueId v : step.outputs)
      if (v != kNoValue)
        plan->loc[v] = options.hook && (hook_all || hooked.count(v) > 0) ? Loc::kHooked : Loc::kArena;
    plan->steps.push_back(std::move(step));
  }

  // Liveness over steps; kept values live to the end.
  const size_t ns = plan->steps.size();
  std::vector<int64_t> def(nv, -1), last(nv, -1);
  for (size_t s = 0; s < ns; ++s) {
    const Step& st = plan->steps[s];
    for (ValueId v : g.node(st.node).inputs())
      if (v != kNoValue && plan->loc[v] == Loc::kArena) last[v] = static_cast<int64_t>(s);
    for (ValueId v : st.outputs)
      if (v != kNoValue) {
        def[v] = static_cast<int64_t>(s);
        last[v] = std::max<int64_t>(last[v], static_cast<int64_t>(s));
      }
  }
  for (ValueId v : keep)
    if (v < nv && plan->loc[v] == Loc::kArena) last[v] = static_cast<int64_t>(ns);
  std::vector<runtime::BufferRequest> reqs;
  for (ValueId v = 0; v < nv; ++v) {
    if (plan->loc[v] != Loc::kArena) continue;
    size_t bytes = 0;
    if (!StorageBytes(plan->info[v].dtype, runtime::NumElements(plan->info[v].dims), &bytes))
      return Unsupported("cannot size value '", g.value(v).name(), "' of type ",
                         DataTypeName(plan->info[v].dtype));
    reqs.push_back({v, static_cast<int64_t>(bytes), def[v], last[v]});
  }
  runtime::MemoryPlan mp = runtime::PlanMemory(reqs);
  plan->arena_bytes = mp.total_bytes;
  for (const auto& [v, off] : mp.offsets) plan->offset[v] = off;
  void* mem = std::aligned_alloc(64, static_cast<size_t>(std::max<int64_t>(64, (mp.total_bytes + 63) / 64 * 64)));
  if (mem == nullptr) return OutOfRange("cannot allocate ", mp.total_bytes, " bytes for the run");
  plan->arena.reset(static_cast<std::byte*>(mem));
  plan->hooked_index.assign(nv, -1);
  for (ValueId v = 0; v < nv; ++v) {
    if (plan->loc[v] != Loc::kHooked) continue;
    ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(plan->info[v].dtype, plan->info[v].dims));
    HookedBuffer hb;
    hb.value = v;
    hb.tensor = std::make_unique<Tensor>(std::move(t));
    hb.bound = hb.tensor->mutable_raw();
    plan->arena_bytes += static_cast<int64_t>(hb.tensor->nbytes());
    plan->hooked_index[v] = static_cast<int32_t>(plan->hooked_buffers.size());
    plan->hooked_buffers.push_back(std::move(hb));
  }

  // Resolve every step's buffers (feeds are patched per run).
  auto ref = [&](ValueId v) {
    TensorRef r;
    if (v == kNoValue) return r;
    const ValueInfo& in = plan->info[v];
    r.dtype = in.dtype;
    r.dims = in.dims;
    r.numel = runtime::NumElements(in.dims);
    switch (plan->loc[v]) {
      case Loc::kConst: r.data = const_cast<std::byte*>(in.value->raw()); break;
      case Loc::kArena: r.data = plan->arena.get() + plan->offset[v]; break;
      case Loc::kHooked: r.data = plan->hooked_buffers[plan->hooked_index[v]].bound; break;
      default: break;
    }
    return r;
  };
  for (size_t s = 0; s < ns; ++s) {
    Step& st = plan->steps[s];
    const Node& n = g.node(st.node);
    for (size_t i = 0; i < n.num_inputs(); ++i) {
      ValueId v = n.input(i);
      st.ctx.in.push_back(ref(v));
      if (v != kNoValue && plan->loc[v] == Loc::kFeed) plan->feed_patches.push_back({s, i, v});
      if (v != kNoValue && plan->loc[v] == Loc::kHooked)
        plan->hooked_buffers[plan->hooked_index[v]].uses.push_back({s, i, false});
    }
    for (size_t i = 0; i < st.outputs.size(); ++i) {
      st.ctx.out.push_back(ref(st.outputs[i]));
      ValueId v = st.outputs[i];
      if (v != kNoValue && plan->loc[v] == Loc::kHooked) {
        st.hooked.push_back(i);
        plan->hooked_buffers[plan->hooked_index[v]].uses.push_back({s, i, true});
      }
    }
  }
  return plan;
}

StatusOr<std::map<std::string, Tensor>> Session::Run(const std::map<std::string, Tensor>& feeds,
                                                     const RunOptions& options) {
  if (options.batch_chunk > 0 && !feeds.empty()) {
    const int64_t chunk = options.batch_chunk;
    const auto& whole = options.unbatched_inputs;
    auto batched = [&](const std::string& name) { return std::find(whole.begin(), whole.end(), name) == whole.end(); };
    int64_t rows = -1;
    for (const auto& [name, t] : feeds) {
      if (!batched(name)) continue;
      const int64_t r = t.rank() == 0 ? -1 : t.dims()[0];
      if (r < 0 || (rows >= 0 && r != rows))
        return InvalidArgument("input '", name, "' has shape ", DimsToString(t.dims()),
                               ": a run split into batches of ", chunk,
                               " needs every input to have the same first (batch) dimension");
      rows = r;
    }
    if (rows > chunk) {
      if (rows % chunk != 0)
        return InvalidArgument("a batch of ", rows, " samples cannot be split into runs of ", chunk,
                               " (the model fixes its batch size at ", chunk, ")");
      RunOptions one = options;
      one.batch_chunk = 0;
      std::map<std::string, std::vector<Tensor>> parts;
      for (int64_t b = 0; b < rows; b += chunk) {
        std::map<std::string, Tensor> sub;
        for (const auto& [name, t] : feeds) {
          if (!batched(name)) {
            sub.emplace(name, t);
            continue;
          }
          ONNXQ_ASSIGN_OR_RETURN(Tensor s, SliceBatch(t, b, chunk));
          sub.emplace(name, std::move(s));
        }
        ONNXQ_ASSIGN_OR_RETURN(auto out, Run(sub, one));
        for (auto& [name, t] : out) {
          if (t.rank() == 0 || t.dims()[0] != chunk)
            return InvalidArgument("output '", name, "' has shape ", DimsToString(t.dims()), " in a run of ", chunk,
                                   " samples: it has no batch dimension, so the samples cannot be run in batches of ",
                                   chunk, " and joined");
          parts[name].push_back(std::move(t));
        }
      }
      std::map<std::string, Tensor> joined;
      for (auto& [name, ts] : parts) {
        ONNXQ_ASSIGN_OR_RETURN(Tensor t, ConcatBatch(ts));
        joined.emplace(name, std::move(t));
      }
      return joined;
    }
  }
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mu);
  const Graph& g = im.model.graph;
  std::vector<ValueId> inputs = g.RuntimeInputs();
  for (const auto& [name, t] : feeds) {
    ValueId v = g.FindValue(name);
    if (v == kNoValue || std::find(inputs.begin(), inputs.end(), v) == inputs.end())
      return InvalidArgument("'", name, "' is not an input of the model");
  }
  for (ValueId v : inputs) {
    const Value& val = g.value(v);
    auto it = feeds.find(val.name());
    if (it == feeds.end()) return InvalidArgument("missing input '", val.name(), "'");
    const Tensor& t = it->second;
    if (val.dtype != DataType::kUndefined && t.dtype() != val.dtype)
      return InvalidArgument("input '", val.name(), "' is ", DataTypeName(t.dtype()),
                             ", the model expects ", DataTypeName(val.dtype));
    if (t.dtype() == DataType::kString)
      return Unsupported("input '", val.name(), "': string tensors are not supported");
    if (val.shape) {
      // The first (batch) dim may differ from a fixed declared size: shapes are propagated from
      // the feeds, and models exported with batch 1 are routinely run on larger batches.
      bool ok = val.shape->rank() == t.rank();
      for (size_t i = 1; ok && i < t.rank(); ++i)
        ok = !(*val.shape)[i].is_known() || (*val.shape)[i].value == t.dims()[i];
      if (!ok)
        return InvalidArgument("input '", val.name(), "' has shape ", DimsToString(t.dims()),
                               ", the model expects ", val.shape->ToString());
    }
  }
  std::vector<ValueId> extra;
  for (const auto& name : options.extra_outputs) {
    ValueId v = g.FindValue(name);
    if (v == kNoValue)
      return NotFound("extra output '", name, "' is not a value of the model",
                      im.lowered > 0 ? LoweredValueHint() : std::string());
    extra.push_back(v);
  }
  ONNXQ_ASSIGN_OR_RETURN(Plan * plan, im.GetPlan(feeds, options, extra));

  for (const auto& p : plan->feed_patches) {
    const Tensor& t = feeds.at(g.value(p.value).name());
    plan->steps[p.step].ctx.in[p.input].data = const_cast<std::byte*>(t.raw());
  }
  // A hooked tensor shared with someone (a hook or caller kept a copy) is cloned before it is
  // written again, and every step that uses it is re-pointed.
  auto rebind = [&](HookedBuffer& hb) {
    std::byte* p = hb.tensor->mutable_raw();
    if (p == hb.bound) return;
    hb.bound = p;
    for (const BufferUse& u : hb.uses)
      (u.output ? plan->steps[u.step].ctx.out[u.slot] : plan->steps[u.step].ctx.in[u.slot]).data = p;
  };
  for (HookedBuffer& hb : plan->hooked_buffers) rebind(hb);
  im.stats.profile.clear();
  if (options.profile) im.stats.profile.reserve(plan->steps.size());
  for (Step& st : plan->steps) {
    const auto t0 = options.profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    Status s = st.kernel->Run(st.ctx);
    if (!s.ok()) return s.Prepend("while running " + g.node(st.node).Describe());
    if (options.profile) {
      const auto t1 = std::chrono::steady_clock::now();
      const Node& n = g.node(st.node);
      StepTime t;
      t.node = n.name.empty() ? "#" + std::to_string(n.id()) : n.name;
      t.op_type = n.domain.empty() || n.domain == "ai.onnx" ? n.op_type : n.domain + "." + n.op_type;
      if (!st.outputs.empty()) {
        t.output = g.value(st.outputs[0]).name();
        t.output_dims = st.ctx.out[0].dims;
      }
      t.micros = std::chrono::duration<double, std::micro>(t1 - t0).count();
      im.stats.profile.push_back(std::move(t));
    }
    for (size_t i : st.hooked) {
      ValueId v = st.outputs[i];
      HookedBuffer& hb = plan->hooked_buffers[plan->hooked_index[v]];
      Tensor& t = *hb.tensor;
      Status hs = options.hook(v, g.value(v).name(), t);
      const TensorRef& r = st.ctx.out[i];
      if (t.dtype() != r.dtype || t.dims() != r.dims) {
        // Restore a buffer of the planned shape so the cached plan stays usable.
        ONNXQ_ASSIGN_OR_RETURN(t, Tensor::Create(r.dtype, r.dims));
        rebind(hb);
        return InvalidArgument("the hook changed the type or shape of '", g.value(v).name(),
                               "' (hooks may only change values in place)");
      }
      rebind(hb);
      ONNXQ_RETURN_IF_ERROR(hs);
    }
  }

  std::map<std::string, Tensor> result;
  auto fetch = [&](ValueId v) -> Status {
    const std::string& name = g.value(v).name();
    if (result.count(name)) return Status::Ok();
    switch (plan->loc[v]) {
      case Loc::kFeed: result[name] = feeds.at(name); break;
      case Loc::kConst: result[name] = *plan->info[v].value; break;
      case Loc::kArena: {
        const ValueInfo& in = plan->info[v];
        size_t bytes = 0;
        StorageBytes(in.dtype, runtime::NumElements(in.dims), &bytes);
        ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::FromBytes(in.dtype, in.dims,
                                                           plan->arena.get() + plan->offset[v],
                                                           bytes));
        result[name] = std::move(t);
        break;
      }
      case Loc::kHooked:
        // Shared copy on write: the next run clones before writing.
        result[name] = *plan->hooked_buffers[plan->hooked_index[v]].tensor;
        break;
      case Loc::kNone:
        if (im.lowered > 0) return NotFound("value '", name, "' is not computed", LoweredValueHint());
        return Internal("value '", name, "' was not computed");
    }
    return Status::Ok();
  };
  for (ValueId v : g.outputs()) ONNXQ_RETURN_IF_ERROR(fetch(v));
  for (ValueId v : extra) ONNXQ_RETURN_IF_ERROR(fetch(v));
  im.stats.peak_bytes = plan->arena_bytes;
  im.stats.steps = static_cast<int64_t>(plan->steps.size());
  im.stats.fused = plan->fused;
  im.stats.folded = plan->folded;
  return result;
}

const Model& Session::model() const { return impl_->model; }
const RunStats& Session::last_stats() const { return impl_->stats; }
int64_t Session::lowered_qdq_groups() const { return impl_->lowered; }
int Session::num_threads() const { return impl_->pool->num_threads(); }

std::vector<std::string> Session::input_names() const {
  std::vector<std::string> names;
  for (ValueId v : impl_->model.graph.RuntimeInputs()) names.push_back(impl_->model.graph.value(v).name());
  return names;
}

std::vector<std::string> Session::output_names() const {
  std::vector<std::string> names;
  for (ValueId v : impl_->model.graph.outputs()) names.push_back(impl_->model.graph.value(v).name());
  return names;
}

}  // namespace onnxq
