// cle: cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
// Equalization and Bias Correction"), with high-bias absorption.
//
// For conv1 -> act -> conv2 with a positively homogeneous act (none, Relu, LeakyRelu), scaling
// output channel i of conv1 by 1/s_i and input channel i of conv2 by s_i leaves the function
// unchanged. s_i = sqrt(r1_i / r2_i) (r = per-channel max |w|) gives both the same range, which is
// what per-tensor weight quantization wants. Works for any group count: for a depthwise conv2 the
// scale of channel i lands on its single filter; for a depthwise conv1 it passes through to the
// next conv's input channel i.
//
// Clip(0, M) (ReLU6) is not homogeneous: channel i's bound becomes M / s_i. See ClipPolicy in
// pass.h: kExact scales only channels whose pre-activation provably (sound interval arithmetic
// from the bounded input of conv1) never reaches M, and lists the rest; kPerChannelMin scales
// everything and rewrites the Clip into Relu -> Min(c) with a per-channel constant c.
//
// High-bias absorption moves a constant c_i out of conv1's bias into conv2's bias when the
// pre-activation provably stays >= c_i (so the activation is linear there) and conv2 has no
// padding (padded borders would not see the constant). The paper's version estimates the bound
// from batch-norm statistics and is approximate; here only provable bounds are used, so it fires
// rarely, and never changes the function.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "onnxq/passes/weight_sqnr.h"
#include "passes/pass_util.h"

namespace onnxq::passes {

double SymmetricSqnrDb(std::span<const float> w, int bits) {
  double maxabs = 0.0;
  for (float v : w) maxabs = std::max(maxabs, std::fabs(static_cast<double>(v)));
  if (maxabs == 0.0) return std::numeric_limits<double>::infinity();
  double qmax = std::ldexp(1.0, bits - 1) - 1.0;
  double scale = maxabs / qmax;
  double sig = 0.0, err = 0.0;
  for (float v : w) {
    double q = std::clamp(std::round(v / scale), -qmax, qmax) * scale;
    sig += static_cast<double>(v) * v;
    err += (v - q) * (v - q);
  }
  if (err == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sig / err);
}

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

enum class ActKind { kNone, kRelu, kLeakyRelu, kClip };

// Working copy of a conv's weight and bias while sweeps run.
struct ConvState {
  std::vector<int64_t> dims;  // [Cout, Cin/group, k...]
  int64_t group = 1;
  std::vector<float> w, b;
  bool had_bias = false;
  double sqnr_before = 0.0;
  int64_t cout() const { return dims[0]; }
  int64_t cin_per_group() const { return dims[1]; }
  int64_t cin() const { return dims[1] * group; }
  int64_t spatial() const {
    int64_t s = 1;
    for (size_t k = 2; k < dims.size(); ++k) s *= dims[k];
    return s;
  }
  int64_t cout_per_group() const { return dims[0] / group; }
};

struct PairState {
  NodeId conv1 = kNoNode, act = kNoNode, conv2 = kNoNode;
  ActKind kind = ActKind::kNone;
  float clip_hi = kInf;              // original bound M
  std::vector<float> upper;          // current per-channel bound (kPerChannelMin)
  std::vector<uint8_t> blocked;      // kExact: channel may reach the bound, keep s = 1 (last sweep)
  std::vector<uint8_t> touched;      // scaled in some sweep
  int64_t dead = 0, absorbed = 0;
  std::string absorb_note;
};

class EqualizePass : public Pass {
 public:
  const char* name() const override { return "cle"; }
  const char* description() const override {
    return "Cross-layer equalization of Conv -> (Relu|LeakyRelu|Clip|none) -> Conv pairs, with "
           "high-bias absorption; never changes the function (Clip handling per ClipPolicy)";
  }

  StatusOr<bool> Run(Model& model, PassContext& ctx) override {
    Graph& g = model.graph;
    const EqualizationOptions& opt = ctx.equalization;
    std::vector<PairState> pairs = FindPairs(model, ctx);
    if (pairs.empty()) return false;
    std::map<NodeId, ConvState> convs;
    for (const PairState& p : pairs)
      for (NodeId c : {p.conv1, p.conv2})
        if (!convs.count(c)) convs[c] = LoadConv(g, c);
    for (PairState& p : pairs) {
      int64_t c = convs[p.conv1].cout();
      p.upper.assign(c, p.clip_hi);
      p.blocked.assign(c, 0);
      p.touched.assign(c, 0);
    }
    std::map<NodeId, const PairState*> pair_of_act;
    for (const PairState& p : pairs)
      if (p.act != kNoNode) pair_of_act[p.act] = &p;

    int sweeps = 0;
    for (; sweeps < opt.max_iterations; ++sweeps) {
      double max_change = 0.0;
      for (PairState& p : pairs)
        max_change = std::max(max_change, EqualizePair(g, model, p, convs, pair_of_act, opt));
      if (max_change < opt.convergence) {
        ++sweeps;
        break;
      }
    }
    ctx.Count("sweeps", sweeps);
    if (opt.absorb_high_bias)
      for (PairState& p : pairs) AbsorbHighBias(g, model, p, convs, pair_of_act, opt);

    bool changed = false;
    for (const PairState& p : pairs)
      changed |= p.absorbed > 0 || std::any_of(p.touched.begin(), p.touched.end(), [](uint8_t t) { return t != 0; });
    // Report per pair and write back.
    for (const PairState& p : pairs) {
      const ConvState& c1 = convs[p.conv1];
      int64_t blocked = 0, scaled = 0;
      for (size_t i = 0; i < p.blocked.size(); ++i) {
        blocked += p.blocked[i] && !p.touched[i];
        scaled += p.touched[i];
      }
      std::string act = p.act == kNoNode ? std::string("->") : "-> " + g.node(p.act).op_type + " ->";
      std::string note = g.node(p.conv1).Describe() + " " + act + " " + g.node(p.conv2).Describe() +
                         ": " + std::to_string(scaled) + "/" + std::to_string(c1.cout()) +
                         " channels scaled, " + std::to_string(p.dead) + " dead (zero range)";
      if (p.kind == ActKind::kClip && ctx.equalization.clip_policy == ClipPolicy::kExact) {
        char bound[32];
        std::snprintf(bound, sizeof bound, "%g", p.clip_hi);
        note += ", " + std::to_string(blocked) + " kept at s=1 because the Clip bound " + bound +
                " may be reached";
      }
      if (p.absorbed) note += ", high bias absorbed on " + std::to_string(p.absorbed) + " channels";
      if (!p.absorb_note.empty()) note += "; " + p.absorb_note;
      ctx.Note(note);
      ctx.Count("channels_scaled", scaled);
      ctx.Count("channels_dead", p.dead);
      ctx.Count("channels_kept_clip_bound", blocked);
      ctx.Count("channels_bias_absorbed", p.absorbed);
    }
    double gain_sum = 0.0;
    int64_t gain_n = 0;
    for (auto& [id, c] : convs) {
      double after = SymmetricSqnrDb(c.w, 8);
      char buf[256];
      std::snprintf(buf, sizeof buf, "per-tensor int8 weight SQNR of %s%s: %.2f dB -> %.2f dB",
                    g.node(id).Describe().c_str(), c.group > 1 && c.cin_per_group() == 1 ? " (depthwise)" : "",
                    c.sqnr_before, after);
      ctx.Note(buf);
      if (std::isfinite(after) && std::isfinite(c.sqnr_before)) {
        gain_sum += after - c.sqnr_before;
        ++gain_n;
      }
      if (changed) StoreConv(g, id, c);
    }
    if (gain_n) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "mean per-tensor int8 weight SQNR change over %lld convs: %+.2f dB",
                    static_cast<long long>(gain_n), gain_sum / gain_n);
      ctx.Note(buf);
    }
    for (const PairState& p : pairs) WriteActivation(model, p, convs, ctx);
    return changed;
  }

 private:
  static std::vector<PairState> FindPairs(const Model& model, PassContext& ctx) {
    const Graph& g = model.graph;
    std::vector<PairState> pairs;
    auto plain_conv = [&](const Node& n) {
      if (!n.Is("Conv") || n.num_outputs() != 1) return false;
      const Tensor* w = FloatConstantOf(g, n.input(1));
      if (!w || w->rank() < 3) return false;
      if (n.input(2) == kNoValue) return true;
      const Tensor* b = FloatConstantOf(g, n.input(2));
      return b != nullptr && b->numel() == w->dims()[0];
    };
    for (NodeId n : g.order()) {
      const Node& conv2 = g.node(n);
      if (!plain_conv(conv2)) continue;
      ValueId x = conv2.input(0);
      const Node* prod = g.Producer(x);
      if (!prod || !HasSingleUse(g, x)) continue;
      PairState p;
      p.conv2 = n;
      const Node* c1 = prod;
      if (!prod->Is("Conv")) {
        if (prod->num_outputs() != 1 || !prod->domain.empty()) continue;
        if (prod->Is("Relu")) {
          p.kind = ActKind::kRelu;
        } else if (prod->Is("LeakyRelu")) {
          p.kind = ActKind::kLeakyRelu;
        } else if (prod->Is("Clip")) {
          float lo, hi;
          if (!GetClipBounds(model, *prod, &lo, &hi)) {
            ctx.Note("skipped pair at " + prod->Describe() + ": Clip bounds are not constants");
            continue;
          }
          if (lo != 0.f) {
            ctx.Note("skipped pair at " + prod->Describe() + ": Clip lower bound is not 0");
            continue;
          }
          p.kind = ActKind::kClip;
          p.clip_hi = hi;
        } else {
          continue;
        }
        p.act = prod->id();
        c1 = g.Producer(prod->input(0));
        if (!c1 || !HasSingleUse(g, prod->input(0))) continue;
      }
      if (!plain_conv(*c1)) continue;
      const Tensor* w1 = FloatConstantOf(g, c1->input(1));
      const Tensor* w2 = FloatConstantOf(g, conv2.input(1));
      int64_t g2 = AttrInt(conv2, "group", 1);
      if (w1->dims()[0] != w2->dims()[1] * g2) {
        ctx.Note("skipped " + c1->Describe() + " -> " + conv2.Describe() + ": channel counts differ");
        continue;
      }
      p.conv1 = c1->id();
      pairs.push_back(std::move(p));
    }
    // Keep graph order of conv1 so sweeps walk the network front to back.
    return pairs;
  }

  static ConvState LoadConv(const Graph& g, NodeId id) {
    const Node& n = g.node(id);
    const Tensor* w = FloatConstantOf(g, n.input(1));
    ConvState c;
    c.dims = w->dims();
    c.group = AttrInt(n, "group", 1);
    c.w.assign(w->data<float>(), w->data<float>() + w->numel());
    c.b.assign(c.cout(), 0.f);
    if (const Tensor* b = FloatConstantOf(g, n.input(2)); b && b->numel() == c.cout()) {
      c.b.assign(b->data<float>(), b->data<float>() + b->numel());
      c.had_bias = true;
    }
    c.sqnr_before = SymmetricSqnrDb(c.w, 8);
    return c;
  }

  static void StoreConv(Graph& g, NodeId id, const ConvState& c) {
    Tensor* w = ExclusiveConstant(g, id, 1);
    std::copy(c.w.begin(), c.w.end(), w->mutable_data<float>());
    bool bias_nonzero = std::any_of(c.b.begin(), c.b.end(), [](float v) { return v != 0.f; });
    if (c.had_bias) {
      Tensor* b = ExclusiveConstant(g, id, 2);
      std::copy(c.b.begin(), c.b.end(), b->mutable_data<float>());
    } else if (bias_nonzero) {
      ValueId bv = g.AddInitializer(g.value(g.node(id).input(1)).name() + "_bias",
                                    Tensor::Float({c.cout()}, c.b));
      g.SetNodeInput(id, 2, bv);
    }
  }

  // Interval of each input channel of `conv` from what produces its input (always contains 0, as
  // zero padding feeds zeros).
  static void InputBounds(const Graph& g, const Model& model, NodeId conv, int64_t cin,
                          const std::map<NodeId, const PairState*>& pair_of_act,
                          const EqualizationOptions& opt, std::vector<float>* lo,
                          std::vector<float>* hi) {
    lo->assign(cin, -kInf);
    hi->assign(cin, kInf);
    ValueId x = g.node(conv).input(0);
    const Node* p = g.Producer(x);
    if (p == nullptr) {
      if (g.IsGraphInput(x) && opt.input_min <= opt.input_max) {
        lo->assign(cin, std::min(opt.input_min, 0.f));
        hi->assign(cin, std::max(opt.input_max, 0.f));
      }
      return;
    }
    if (p->Is("Relu")) {
      lo->assign(cin, 0.f);
    } else if (p->Is("Clip")) {
      float a, b;
      if (!GetClipBounds(model, *p, &a, &b)) return;
      lo->assign(cin, std::min(a, 0.f));
      hi->assign(cin, std::max(b, 0.f));
      auto it = pair_of_act.find(p->id());
      if (it != pair_of_act.end() && it->second->upper.size() == static_cast<size_t>(cin))
        for (int64_t c = 0; c < cin; ++c) (*hi)[c] = std::max(it->second->upper[c], 0.f);
    }
  }

  // Sound bounds of conv's pre-activation per output channel.
  static void PreActivationBounds(const ConvState& c, const std::vector<float>& lo,
                                  const std::vector<float>& hi, std::vector<float>* umin,
                                  std::vector<float>* umax) {
    int64_t cout = c.cout(), cpg = c.cin_per_group(), sp = c.spatial(), opg = c.cout_per_group();
    umin->assign(cout, 0.f);
    umax->assign(cout, 0.f);
    for (int64_t o = 0; o < cout; ++o) {
      double mn = c.b[o], mx = c.b[o];
      int64_t grp = o / opg;
      for (int64_t j = 0; j < cpg; ++j) {
        int64_t ci = grp * cpg + j;
        double l = lo[ci], h = hi[ci];
        for (int64_t k = 0; k < sp; ++k) {
          double w = c.w[(o * cpg + j) * sp + k];
          if (w > 0) {
            mn += w * l;
            mx += w * h;
          } else if (w < 0) {
            mn += w * h;
            mx += w * l;
          }
        }
      }
      (*umin)[o] = static_cast<float>(mn);
      (*umax)[o] = static_cast<float>(mx);
    }
  }

  // One equalization step of a pair; returns max |s_i - 1|.
  static double EqualizePair(const Graph& g, const Model& model, PairState& p,
                             std::map<NodeId, ConvState>& convs,
                             const std::map<NodeId, const PairState*>& pair_of_act,
                             const EqualizationOptions& opt) {
    ConvState& c1 = convs[p.conv1];
    ConvState& c2 = convs[p.conv2];
    int64_t C = c1.cout(), per1 = c1.w.size() / C;
    int64_t cpg2 = c2.cin_per_group(), opg2 = c2.cout_per_group(), sp2 = c2.spatial();
    std::vector<float> umin, umax;
    bool need_bounds = p.kind == ActKind::kClip && opt.clip_policy == ClipPolicy::kExact;
    if (need_bounds) {
      std::vector<float> lo, hi;
      InputBounds(g, model, p.conv1, c1.cin(), pair_of_act, opt, &lo, &hi);
      PreActivationBounds(c1, lo, hi, &umin, &umax);
    }
    double max_change = 0.0;
    int64_t dead = 0;
    std::fill(p.blocked.begin(), p.blocked.end(), 0);
    for (int64_t i = 0; i < C; ++i) {
      double r1 = 0.0, r2 = 0.0;
      for (int64_t k = 0; k < per1; ++k) r1 = std::max(r1, std::fabs(double(c1.w[i * per1 + k])));
      int64_t grp = i / cpg2, j = i % cpg2;
      for (int64_t o = grp * opg2; o < (grp + 1) * opg2; ++o)
        for (int64_t k = 0; k < sp2; ++k) r2 = std::max(r2, std::fabs(double(c2.w[(o * cpg2 + j) * sp2 + k])));
      if (r1 == 0.0 || r2 == 0.0) {
        ++dead;
        continue;
      }
      double s = std::sqrt(r1 / r2);
      if (need_bounds) {
        double m = p.clip_hi;
        if (umax[i] > m) {  // may saturate: only s = 1 is exact
          p.blocked[i] = 1;
          continue;
        }
        if (umax[i] > 0) s = std::max(s, double(umax[i]) / m);  // stays below the bound after scaling
      }
      if (std::fabs(s - 1.0) < 1e-7) continue;
      p.touched[i] = 1;
      max_change = std::max(max_change, std::fabs(s - 1.0));
      float inv = static_cast<float>(1.0 / s), sf = static_cast<float>(s);
      for (int64_t k = 0; k < per1; ++k) c1.w[i * per1 + k] *= inv;
      c1.b[i] *= inv;
      for (int64_t o = grp * opg2; o < (grp + 1) * opg2; ++o)
        for (int64_t k = 0; k < sp2; ++k) c2.w[(o * cpg2 + j) * sp2 + k] *= sf;
      if (p.kind == ActKind::kClip && opt.clip_policy == ClipPolicy::kPerChannelMin)
        p.upper[i] = static_cast<float>(p.upper[i] / s);
    }
    p.dead = dead;
    return max_change;
  }

  static void AbsorbHighBias(const Graph& g, const Model& model, PairState& p,
                             std::map<NodeId, ConvState>& convs,
                             const std::map<NodeId, const PairState*>& pair_of_act,
                             const EqualizationOptions& opt) {
    if (p.kind != ActKind::kRelu && p.kind != ActKind::kClip) return;
    const Node& conv2 = g.node(p.conv2);
    std::vector<int64_t> pads = conv2.attrs.GetInts("pads", {}).ok() ? *conv2.attrs.GetInts("pads", {})
                                                                    : std::vector<int64_t>{1};
    std::string auto_pad = conv2.attrs.GetString("auto_pad", "NOTSET").ok()
                               ? *conv2.attrs.GetString("auto_pad", "NOTSET")
                               : "?";
    bool padded = std::any_of(pads.begin(), pads.end(), [](int64_t v) { return v != 0; }) ||
                  (auto_pad != "NOTSET" && auto_pad != "VALID");
    ConvState& c1 = convs[p.conv1];
    ConvState& c2 = convs[p.conv2];
    std::vector<float> lo, hi, umin, umax;
    InputBounds(g, model, p.conv1, c1.cin(), pair_of_act, opt, &lo, &hi);
    PreActivationBounds(c1, lo, hi, &umin, &umax);
    int64_t C = c1.cout(), cpg2 = c2.cin_per_group(), opg2 = c2.cout_per_group(), sp2 = c2.spatial();
    int64_t candidates = 0;
    for (int64_t i = 0; i < C; ++i) {
      if (!(umin[i] > 0.f) || !std::isfinite(umin[i])) continue;
      if (p.kind == ActKind::kClip) {
        bool exact_mode = opt.clip_policy == ClipPolicy::kExact;
        if (exact_mode && !(umax[i] <= p.upper[i])) continue;
      }
      ++candidates;
      if (padded) continue;
      float ci = umin[i];
      c1.b[i] -= ci;
      if (p.kind == ActKind::kClip && opt.clip_policy == ClipPolicy::kPerChannelMin) p.upper[i] -= ci;
      int64_t grp = i / cpg2, j = i % cpg2;
      for (int64_t o = grp * opg2; o < (grp + 1) * opg2; ++o) {
        double add = 0.0;
        for (int64_t k = 0; k < sp2; ++k) add += double(c2.w[(o * cpg2 + j) * sp2 + k]) * ci;
        c2.b[o] += static_cast<float>(add);
      }
      ++p.absorbed;
    }
    if (padded && candidates)
      p.absorb_note = std::to_string(candidates) +
                      " channels could absorb their bias but the second conv pads its input";
  }

  // Writes the Clip bound back: unchanged, a new scalar bound, or Relu -> Min(per-channel).
  static void WriteActivation(Model& model, const PairState& p, std::map<NodeId, ConvState>& convs,
                              PassContext& ctx) {
    if (p.kind != ActKind::kClip || ctx.equalization.clip_policy != ClipPolicy::kPerChannelMin) return;
    Graph& g = model.graph;
    bool all_same = std::all_of(p.upper.begin(), p.upper.end(), [&](float u) { return u == p.upper[0]; });
    if (all_same && p.upper[0] == p.clip_hi) return;
    const Node& clip = g.node(p.act);
    std::string desc = clip.Describe();
    ValueId x = clip.input(0), y = clip.output(0);
    std::string base = clip.name.empty() ? g.value(y).name() : clip.name;
    std::vector<ValueId> old_inputs = clip.inputs();
    g.RemoveNode(p.act);
    ValueId mid = g.AddUniqueValue(g.value(y).name() + "_relu");
    g.value(mid).dtype = g.value(y).dtype;
    g.value(mid).shape = g.value(y).shape;
    std::vector<int64_t> cdims(convs[p.conv1].dims.size() - 1, 1);
    cdims[0] = static_cast<int64_t>(p.upper.size());
    ValueId cv = g.AddInitializer(base + "_max", Tensor::Float(cdims, p.upper));
    // Before conv2, which is the only consumer of y; x is defined earlier.
    auto r = g.InsertNodeBefore(p.conv2, "Relu", {x}, {mid}, g.UniqueNodeName(base + "_relu"));
    auto m = g.InsertNodeBefore(p.conv2, "Min", {mid, cv}, {y}, g.UniqueNodeName(base + "_min"));
    (void)r;
    (void)m;
    for (ValueId v : old_inputs) DropIfDangling(g, v);
    ctx.Count("clips_rewritten_per_channel");
    ctx.Note("rewrote " + desc + " as Relu -> Min(per-channel bound) to keep it exact");
  }
};

}  // namespace

std::unique_ptr<Pass> MakeEqualizePass() { return std::make_unique<EqualizePass>(); }

}  // namespace onnxq::passes
