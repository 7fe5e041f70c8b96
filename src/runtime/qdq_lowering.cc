// QDQ lowering (see qdq_lowering.h). Each pattern is matched on the node that computes in float
// (Conv, Add, ...): its inputs must come from DequantizeLinear nodes with constant parameters and
// its output must go only to one QuantizeLinear (through a Relu / Clip for Conv). The group is
// replaced by one integer node that reads the DequantizeLinear inputs and writes the
// QuantizeLinear output value, so everything downstream keeps its value ids. DequantizeLinear
// nodes left without consumers are removed; those of constants still feeding float islands are
// folded into float initializers (what they would compute on every run).
#include "runtime/qdq_lowering.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "onnxq/kernels/int8_gemm.h"
#include "onnxq/kernels/int8_nhwc.h"

namespace onnxq::runtime {
namespace {

bool Is8Bit(DataType t) { return t == DataType::kUint8 || t == DataType::kInt8; }

const Tensor* Init(const Graph& g, ValueId v) {
  return v == kNoValue ? nullptr : g.value(v).initializer();
}

// A DequantizeLinear feeding the pattern: x (quantized value), scale and zero point (constants).
struct Dq {
  NodeId node = kNoNode;
  ValueId x = kNoValue, scale = kNoValue, zp = kNoValue;  // zp: kNoValue if omitted
  DataType type = DataType::kUndefined;                   // x's element type
  int64_t axis = 1;                                       // as written (per-axis scales)
  int64_t n_scale = 1;
};

// The DequantizeLinear producing v, if its scale (and zero point) are constant float / same-type
// tensors and x's type is known.
std::optional<Dq> DqOf(const Graph& g, ValueId v) {
  if (v == kNoValue) return std::nullopt;
  const Node* n = g.Producer(v);
  if (n == nullptr || !n->Is("DequantizeLinear") || n->num_outputs() != 1) return std::nullopt;
  Dq d;
  d.node = n->id();
  d.x = n->input(0);
  d.scale = n->input(1);
  d.zp = n->input(2);
  if (d.x == kNoValue || d.scale == kNoValue) return std::nullopt;
  const Tensor* s = Init(g, d.scale);
  if (s == nullptr || s->dtype() != DataType::kFloat || s->numel() < 1) return std::nullopt;
  d.n_scale = s->numel();
  const Tensor* xi = Init(g, d.x);
  d.type = xi ? xi->dtype() : g.value(d.x).dtype;
  if (d.zp != kNoValue) {
    const Tensor* z = Init(g, d.zp);
    if (z == nullptr || z->dtype() != d.type || z->numel() != d.n_scale) return std::nullopt;
  }
  auto axis = n->attrs.GetInt("axis", 1);
  auto block = n->attrs.GetInt("block_size", 0);
  if (!axis.ok() || !block.ok() || *block != 0) return std::nullopt;
  d.axis = *axis;
  return d;
}

bool PerTensor(const Dq& d) { return d.n_scale == 1; }

// An activation input: 8-bit, per tensor.
std::optional<Dq> ActDq(const Graph& g, ValueId v) {
  auto d = DqOf(g, v);
  if (!d || !Is8Bit(d->type) || !PerTensor(*d)) return std::nullopt;
  return d;
}

// The single QuantizeLinear consuming v (v used once, not a graph output), per tensor, 8-bit.
struct Q {
  NodeId node = kNoNode;
  ValueId y = kNoValue, scale = kNoValue, zp = kNoValue;
  DataType type = DataType::kUndefined;
};

std::optional<Q> SoleQ(const Graph& g, ValueId v) {
  if (v == kNoValue || g.IsGraphOutput(v)) return std::nullopt;
  const auto& uses = g.value(v).uses();
  if (uses.size() != 1 || uses[0].input_index != 0) return std::nullopt;
  const Node& n = g.node(uses[0].node);
  if (!n.Is("QuantizeLinear") || n.num_outputs() != 1) return std::nullopt;
  Q q;
  q.node = n.id();
  q.y = n.output(0);
  q.scale = n.input(1);
  q.zp = n.input(2);
  const Tensor* s = Init(g, q.scale);
  if (s == nullptr || s->dtype() != DataType::kFloat || s->numel() != 1) return std::nullopt;
  if (q.zp != kNoValue) {
    const Tensor* z = Init(g, q.zp);
    if (z == nullptr || z->numel() != 1 || !Is8Bit(z->dtype())) return std::nullopt;
    q.type = z->dtype();
  } else {
    // Without a zero point the output is uint8 unless output_dtype says otherwise.
    auto od = n.attrs.GetInt("output_dtype", 0);
    if (!od.ok() || (*od != 0 && *od != 2)) return std::nullopt;
    q.type = DataType::kUint8;
  }
  if (g.value(q.y).dtype != DataType::kUndefined && g.value(q.y).dtype != q.type)
    return std::nullopt;
  auto sat = n.attrs.GetInt("saturate", 1);
  auto block = n.attrs.GetInt("block_size", 0);
  if (!sat.ok() || !block.ok() || *block != 0) return std::nullopt;
  return q;
}

float ScalarOf(const Graph& g, ValueId v) { return Init(g, v)->data<float>()[0]; }
int32_t ZpOf(const Graph& g, ValueId v) {
  if (v == kNoValue) return 0;
  const Tensor* t = Init(g, v);
  switch (t->dtype()) {
    case DataType::kUint8: return t->data<uint8_t>()[0];
    case DataType::kInt8: return t->data<int8_t>()[0];
    case DataType::kInt32: return t->data<int32_t>()[0];
    default: return 0;
  }
}

class Lowering {
 public:
  Lowering(Model& m, bool channels_last, bool fuse_add)
      : m_(m), g_(m.graph), channels_last_(channels_last), fuse_add_(fuse_add) {}

  StatusOr<QdqLoweringStats> Run() {
    const std::vector<NodeId> order = g_.order();
    for (NodeId id : order) {
      if (!g_.has_node(id)) continue;
      const Node& n = g_.node(id);
      if (!n.domain.empty() && n.domain != "ai.onnx") continue;
      if (n.Is("Conv")) {
        ONNXQ_RETURN_IF_ERROR(TryConv(id));
      } else if (n.Is("MatMul")) {
        ONNXQ_RETURN_IF_ERROR(TryMatMul(id));
      } else if (n.Is("Gemm")) {
        ONNXQ_RETURN_IF_ERROR(TryGemm(id));
      } else if (n.Is("Add")) {
        ONNXQ_RETURN_IF_ERROR(TryAdd(id));
      } else if (n.Is("GlobalAveragePool") || n.Is("AveragePool") || n.Is("MaxPool")) {
        ONNXQ_RETURN_IF_ERROR(TryPool(id));
      } else if (n.Is("Reshape") || n.Is("Flatten")) {
        ONNXQ_RETURN_IF_ERROR(TryPassThrough(id));
      }
    }
    RemoveDeadDq();
    ONNXQ_RETURN_IF_ERROR(FoldConstantDq());
    if (stats_.groups() > 0 || stats_.float_out_conv > 0) {
      ONNXQ_RETURN_IF_ERROR(g_.TopologicalSort());
      if (channels_last_) {
        ONNXQ_RETURN_IF_ERROR(ChannelsLast());
        ONNXQ_RETURN_IF_ERROR(g_.TopologicalSort());
      }
      ONNXQ_RETURN_IF_ERROR(g_.Verify());
    }
    return stats_;
  }

 private:
  // A zero point input for the integer node: the DQ/Q's own, or a new zero of `type`.
  ValueId ZpValue(ValueId zp, DataType type) {
    if (zp != kNoValue) return zp;
    auto t = Tensor::Create(type, {});
    if (!t.ok()) return kNoValue;
    std::memset(t->mutable_raw(), 0, t->nbytes());
    return g_.AddInitializer("onnxq_zero_point", std::move(*t));
  }

  // Replaces `removed` (the float op, an optional activation, the Q) by one node writing q.y.
  Status Emit(NodeId anchor, const std::string& op, const std::string& domain,
              const std::vector<ValueId>& inputs, const Q& q, const std::vector<NodeId>& removed,
              const Attributes* attrs, std::vector<Attribute> extra = {}) {
    const std::string name = g_.node(anchor).name;
    for (NodeId r : removed)
      if (r != anchor) g_.RemoveNode(r);
    Attributes keep = attrs ? *attrs : Attributes{};
    g_.RemoveNode(anchor);
    // Inputs are produced before the anchor and consumers of q.y come after the Q, so appending
    // and re-sorting at the end keeps a valid order.
    ONNXQ_ASSIGN_OR_RETURN(NodeId nn, g_.AddNode(op, inputs, {q.y}, name, domain));
    Node& node = g_.node(nn);
    node.attrs = std::move(keep);
    for (auto& a : extra) node.attrs.Set(std::move(a));
    if (g_.value(q.y).dtype == DataType::kUndefined) g_.value(q.y).dtype = q.type;
    return Status::Ok();
  }

  Status TryConv(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1 || n.num_inputs() < 2) return Status::Ok();
    auto x = ActDq(g_, n.input(0));
    auto w = DqOf(g_, n.input(1));
    if (!x || !w || !Is8Bit(w->type) || Init(g_, w->x) == nullptr) return Status::Ok();
    const Tensor* wt = Init(g_, w->x);
    if (wt->rank() != 4) return Status::Ok();
    const int64_t m = wt->dims()[0];
    if (!PerTensor(*w)) {
      const int64_t axis = w->axis < 0 ? w->axis + 4 : w->axis;
      if (axis != 0 || w->n_scale != m) return Status::Ok();
    }
    std::optional<Dq> b;
    if (n.input(2) != kNoValue) {
      b = DqOf(g_, n.input(2));
      // ONNX Runtime takes the int32 bias as is (its scale is x_scale * w_scale by construction).
      if (!b || b->type != DataType::kInt32 || Init(g_, b->x) == nullptr ||
          Init(g_, b->x)->numel() != m)
        return Status::Ok();
    }
    // Conv -> [Relu | Clip] -> Q
    ValueId y = n.output(0);
    std::optional<Q> q = SoleQ(g_, y);
    std::vector<NodeId> removed = {id};
    std::optional<kernels::Activation> act;
    if (!q && !Quantized(y)) return TryFloatOutConv(id, *x, *w, b);
    if (!q) {
      if (g_.IsGraphOutput(y) || g_.value(y).uses().size() != 1) return Status::Ok();
      const Node& a = g_.node(g_.value(y).uses()[0].node);
      if (a.input(0) != y || a.num_outputs() != 1) return Status::Ok();
      act = FusableActivation(a, m_.OpsetVersion(""), g_);
      if (!act) return Status::Ok();
      q = SoleQ(g_, a.output(0));
      if (!q) return Status::Ok();
      removed.push_back(a.id());
    }
    std::vector<Attribute> extra;
    if (act) {
      int32_t lo = 0, hi = 0;
      kernels::Int8ActivationClamp(*act, ScalarOf(g_, q->scale), ZpOf(g_, q->zp),
                                   q->type == DataType::kInt8, &lo, &hi);
      const int32_t tlo = q->type == DataType::kInt8 ? -128 : 0, thi = tlo + 255;
      if (lo > tlo || hi < thi) extra.push_back(Attribute::Ints("onnxq_clamp", {lo, hi}));
    }
    std::vector<ValueId> in = {x->x, x->scale, ZpValue(x->zp, x->type),
                               w->x, w->scale, ZpValue(w->zp, w->type),
                               q->scale, ZpValue(q->zp, q->type)};
    if (b) in.push_back(b->x);
    removed.push_back(q->node);
    const Attributes attrs = n.attrs;
    ONNXQ_RETURN_IF_ERROR(Emit(id, "QLinearConv", "", in, *q, removed, &attrs, std::move(extra)));
    ++stats_.conv;
    return Status::Ok();
  }

  // v reaches a QuantizeLinear directly or through Relu / Clip.
  bool Quantized(ValueId v) const {
    for (const auto& u : g_.value(v).uses()) {
      const Node& c = g_.node(u.node);
      if (c.Is("QuantizeLinear")) return true;
      if ((c.Is("Relu") || c.Is("Clip")) && c.num_outputs() == 1 && Quantized(c.output(0)))
        return true;
    }
    return false;
  }

  // DQ(x) + DQ(w) [+ DQ(int32 b with scale x_scale * w_scale)] -> 1x1 Conv whose output stays
  // float (a classifier): ai.onnxq Int8ConvFloat, the integer dot products scaled to float.
  Status TryFloatOutConv(NodeId id, const Dq& x, const Dq& w, const std::optional<Dq>& b) {
    const Node& n = g_.node(id);
    const Tensor* wt = Init(g_, w.x);
    if (wt->dims()[2] != 1 || wt->dims()[3] != 1) return Status::Ok();
    auto group = n.attrs.GetInt("group", 1);
    auto strides = n.attrs.GetInts("strides", {});
    auto pads = n.attrs.GetInts("pads", {});
    auto dil = n.attrs.GetInts("dilations", {});
    auto pad = n.attrs.GetString("auto_pad", "NOTSET");
    if (!group.ok() || !strides.ok() || !pads.ok() || !dil.ok() || !pad.ok() || *group != 1)
      return Status::Ok();
    for (int64_t v : *strides)
      if (v != 1) return Status::Ok();
    for (int64_t v : *pads)
      if (v != 0) return Status::Ok();
    if (*pad != "NOTSET" && *pad != "VALID" && !pad->empty()) return Status::Ok();
    const int64_t m = wt->dims()[0];
    if (b) {
      // The bias joins the int32 accumulator only if it is on the accumulator's scale.
      const Tensor* bs = Init(g_, b->scale);
      const Tensor* bz = Init(g_, b->zp);
      const float xs = ScalarOf(g_, x.scale);
      const float* ws = Init(g_, w.scale)->data<float>();
      const int64_t nw = Init(g_, w.scale)->numel();
      for (int64_t i = 0; i < m; ++i) {
        const float want = xs * ws[nw == 1 ? 0 : i];
        if (bs->data<float>()[bs->numel() == 1 ? 0 : i] != want) return Status::Ok();
        if (bz != nullptr && bz->data<int32_t>()[bz->numel() == 1 ? 0 : i] != 0) return Status::Ok();
      }
    }
    const ValueId y = n.output(0);
    const std::string name = n.name;
    Attributes attrs = n.attrs;
    std::vector<ValueId> in = {x.x, x.scale, ZpValue(x.zp, x.type), w.x, w.scale, ZpValue(w.zp, w.type)};
    if (b) in.push_back(b->x);
    g_.RemoveNode(id);
    ONNXQ_ASSIGN_OR_RETURN(NodeId nn, g_.AddNode("Int8ConvFloat", in, {y}, name, "ai.onnxq"));
    g_.node(nn).attrs = std::move(attrs);
    ++stats_.float_out_conv;
    return Status::Ok();
  }

  Status TryMatMul(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1 || n.num_inputs() != 2) return Status::Ok();
    auto a = ActDq(g_, n.input(0));
    auto b = DqOf(g_, n.input(1));
    if (!a || !b || !Is8Bit(b->type) || Init(g_, b->x) == nullptr) return Status::Ok();
    const Tensor* bt = Init(g_, b->x);
    if (bt->rank() != 2) return Status::Ok();
    if (!PerTensor(*b)) {
      const int64_t axis = b->axis < 0 ? b->axis + 2 : b->axis;
      if (axis != 1 || b->n_scale != bt->dims()[1]) return Status::Ok();
    }
    auto q = SoleQ(g_, n.output(0));
    if (!q) return Status::Ok();
    std::vector<ValueId> in = {a->x, a->scale, ZpValue(a->zp, a->type),
                               b->x, b->scale, ZpValue(b->zp, b->type),
                               q->scale, ZpValue(q->zp, q->type)};
    ONNXQ_RETURN_IF_ERROR(Emit(id, "QLinearMatMul", "", in, *q, {id, q->node}, nullptr));
    ++stats_.matmul;
    return Status::Ok();
  }

  // DQ(a) + DQ(b constant) [+ DQ(c int32 constant)] -> Gemm (transA 0, alpha 1, beta 1) -> Q.
  Status TryGemm(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1 || n.num_inputs() < 2) return Status::Ok();
    auto ta = n.attrs.GetInt("transA", 0);
    auto tb = n.attrs.GetInt("transB", 0);
    auto alpha = n.attrs.GetFloat("alpha", 1.f);
    auto beta = n.attrs.GetFloat("beta", 1.f);
    if (!ta.ok() || !tb.ok() || !alpha.ok() || !beta.ok() || *ta != 0 || *alpha != 1.f ||
        *beta != 1.f)
      return Status::Ok();
    auto a = ActDq(g_, n.input(0));
    auto b = DqOf(g_, n.input(1));
    if (!a || !b || !Is8Bit(b->type) || Init(g_, b->x) == nullptr) return Status::Ok();
    const Tensor* bt = Init(g_, b->x);
    if (bt->rank() != 2) return Status::Ok();
    const int64_t cols = *tb ? bt->dims()[0] : bt->dims()[1];
    if (!PerTensor(*b)) {
      const int64_t axis = b->axis < 0 ? b->axis + 2 : b->axis;
      if (axis != (*tb ? 0 : 1) || b->n_scale != cols) return Status::Ok();
    }
    std::optional<Dq> c;
    if (n.input(2) != kNoValue) {
      c = DqOf(g_, n.input(2));
      if (!c || c->type != DataType::kInt32 || Init(g_, c->x) == nullptr ||
          Init(g_, c->x)->numel() != cols)
        return Status::Ok();
    }
    auto q = SoleQ(g_, n.output(0));
    if (!q) return Status::Ok();
    std::vector<ValueId> in = {a->x, a->scale, ZpValue(a->zp, a->type),
                               b->x, b->scale, ZpValue(b->zp, b->type),
                               c ? c->x : kNoValue, q->scale, ZpValue(q->zp, q->type)};
    std::vector<Attribute> extra = {Attribute::Int("transB", *tb)};
    ONNXQ_RETURN_IF_ERROR(
        Emit(id, "QGemm", "com.microsoft", in, *q, {id, q->node}, nullptr, std::move(extra)));
    ++stats_.gemm;
    return Status::Ok();
  }

  // Static element count of v, or -1.
  int64_t KnownNumel(ValueId v) const {
    const auto& s = g_.value(v).shape;
    if (!s) return -1;
    int64_t n = 1;
    for (const Dim& d : s->dims()) {
      if (!d.is_known()) return -1;
      n *= d.value;
    }
    return n;
  }
  bool SameShape(ValueId a, ValueId b) const {
    const auto& sa = g_.value(a).shape;
    const auto& sb = g_.value(b).shape;
    if (!sa || !sb || sa->rank() != sb->rank()) return false;
    for (size_t i = 0; i < sa->rank(); ++i) {
      const Dim& da = (*sa)[i];
      const Dim& db = (*sb)[i];
      if (da.is_known() ? da != db : !(da.is_symbolic() && da == db)) return false;
    }
    return true;
  }

  Status TryAdd(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1 || n.num_inputs() != 2) return Status::Ok();
    auto a = ActDq(g_, n.input(0));
    auto b = ActDq(g_, n.input(1));
    if (!a || !b || a->type != b->type) return Status::Ok();
    // The int8 Add handles equal shapes and single-element operands only: decided here, where a
    // float fallback is still possible.
    if (!SameShape(n.input(0), n.input(1)) && KnownNumel(n.input(0)) != 1 &&
        KnownNumel(n.input(1)) != 1)
      return Status::Ok();
    auto q = SoleQ(g_, n.output(0));
    if (!q || q->type != a->type) return Status::Ok();
    std::vector<ValueId> in = {a->x, a->scale, ZpValue(a->zp, a->type),
                               b->x, b->scale, ZpValue(b->zp, b->type),
                               q->scale, ZpValue(q->zp, q->type)};
    ONNXQ_RETURN_IF_ERROR(Emit(id, "QLinearAdd", "com.microsoft", in, *q, {id, q->node}, nullptr));
    ++stats_.add;
    return Status::Ok();
  }

  Status TryPool(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1 || n.num_inputs() != 1) return Status::Ok();
    auto x = ActDq(g_, n.input(0));
    if (!x) return Status::Ok();
    auto q = SoleQ(g_, n.output(0));
    if (!q || q->type != x->type) return Status::Ok();
    const auto& shape = g_.value(n.input(0)).shape;
    if (!shape || shape->rank() != 4) return Status::Ok();
    if (n.Is("MaxPool")) {
      // Max commutes with quantization only when input and output share scale and zero point.
      if (ScalarOf(g_, x->scale) != ScalarOf(g_, q->scale) || ZpOf(g_, x->zp) != ZpOf(g_, q->zp))
        return Status::Ok();
      const Attributes attrs = n.attrs;
      ONNXQ_RETURN_IF_ERROR(Emit(id, "Int8MaxPool", "ai.onnxq", {x->x}, *q, {id, q->node}, &attrs));
    } else {
      std::vector<ValueId> in = {x->x, x->scale, ZpValue(x->zp, x->type), q->scale,
                                 ZpValue(q->zp, q->type)};
      const bool global = n.Is("GlobalAveragePool");
      const Attributes attrs = n.attrs;
      ONNXQ_RETURN_IF_ERROR(Emit(id, global ? "QLinearGlobalAveragePool" : "QLinearAveragePool",
                                 "com.microsoft", in, *q, {id, q->node}, global ? nullptr : &attrs));
    }
    ++stats_.pool;
    return Status::Ok();
  }

  Status TryPassThrough(NodeId id) {
    const Node& n = g_.node(id);
    if (n.num_outputs() != 1) return Status::Ok();
    auto x = ActDq(g_, n.input(0));
    if (!x) return Status::Ok();
    auto q = SoleQ(g_, n.output(0));
    if (!q || q->type != x->type || ScalarOf(g_, x->scale) != ScalarOf(g_, q->scale) ||
        ZpOf(g_, x->zp) != ZpOf(g_, q->zp))
      return Status::Ok();
    std::vector<ValueId> in = n.inputs();
    in[0] = x->x;
    const Attributes attrs = n.attrs;
    const std::string op = n.op_type;
    ONNXQ_RETURN_IF_ERROR(Emit(id, op, "", in, *q, {id, q->node}, &attrs));
    ++stats_.passthrough;
    return Status::Ok();
  }

  // The NHWC shape a lowered QLinearConv would have, if Int8ConvNhwc runs it (constant 4-D
  // weights and zero point, explicit pads).
  std::optional<kernels::Conv2DShape> NhwcConvShape(const Node& n, bool input_nchw) const {
    if (n.num_inputs() < 8 || n.num_outputs() != 1) return std::nullopt;
    const Tensor* w = Init(g_, n.input(3));
    if (w == nullptr || w->rank() != 4 || Init(g_, n.input(5)) == nullptr) return std::nullopt;
    for (size_t i : {1, 4, 6})
      if (Init(g_, n.input(i)) == nullptr) return std::nullopt;
    auto pad = n.attrs.GetString("auto_pad", "NOTSET");
    auto group = n.attrs.GetInt("group", 1);
    auto strides = n.attrs.GetInts("strides", {});
    auto dil = n.attrs.GetInts("dilations", {});
    auto pads = n.attrs.GetInts("pads", {});
    if (!pad.ok() || !group.ok() || !strides.ok() || !dil.ok() || !pads.ok()) return std::nullopt;
    if ((*pad != "NOTSET" && !pad->empty() && *pad != "VALID") ||
        (!strides->empty() && strides->size() != 2) || (!dil->empty() && dil->size() != 2) ||
        (!pads->empty() && (pads->size() != 4 || *pad == "VALID")))
      return std::nullopt;
    kernels::Conv2DShape s;
    s.group = *group;
    s.out_channels = w->dims()[0];
    s.in_channels = w->dims()[1] * s.group;
    s.kernel_h = w->dims()[2];
    s.kernel_w = w->dims()[3];
    if (!strides->empty()) s.stride_h = (*strides)[0], s.stride_w = (*strides)[1];
    if (!dil->empty()) s.dilation_h = (*dil)[0], s.dilation_w = (*dil)[1];
    if (!pads->empty())
      s.pad_top = (*pads)[0], s.pad_left = (*pads)[1], s.pad_bottom = (*pads)[2], s.pad_right = (*pads)[3];
    if (!kernels::Int8ConvNhwc::Supports(s, input_nchw)) return std::nullopt;
    return s;
  }

  // Moves chains of lowered convolutions (and the Adds / global pools between them) to NHWC.
  Status ChannelsLast() {
    std::map<ValueId, ValueId> twin;  // value -> its NHWC twin
    std::set<ValueId> pending;        // values only their twin computes so far
    auto transpose = [&](ValueId from, ValueId to, std::vector<int64_t> perm) -> Status {
      ONNXQ_ASSIGN_OR_RETURN(NodeId t, g_.AddNode("Transpose", {from}, {to},
                                                  g_.UniqueNodeName("onnxq_layout"), ""));
      g_.node(t).attrs.Set(Attribute::Ints("perm", std::move(perm)));
      ++stats_.layout_transposes;
      return Status::Ok();
    };
    auto materialize = [&](ValueId v) -> Status {
      if (!pending.erase(v)) return Status::Ok();
      return transpose(twin.at(v), v, {0, 3, 1, 2});
    };
    auto new_twin = [&](ValueId v) {
      const ValueId t = g_.AddUniqueValue(g_.value(v).name() + "_nhwc");
      g_.value(t).dtype = g_.value(v).dtype;
      twin[v] = t;
      return t;
    };
    // Replaces node id by the same op on `inputs` writing the twin of its output.
    auto rewrite = [&](NodeId id, const std::string& op, std::vector<ValueId> inputs,
                       std::vector<Attribute> extra) -> Status {
      const Node& n = g_.node(id);
      const ValueId y = n.output(0);
      const std::string name = n.name;
      Attributes attrs = n.attrs;
      const ValueId yt = new_twin(y);
      g_.RemoveNode(id);
      ONNXQ_ASSIGN_OR_RETURN(NodeId nn, g_.AddNode(op, inputs, {yt}, name, "com.microsoft"));
      g_.node(nn).attrs = std::move(attrs);
      for (auto& a : extra) g_.node(nn).attrs.Set(std::move(a));
      pending.insert(y);
      ++stats_.channels_last;
      return Status::Ok();
    };
    const std::vector<NodeId> order = g_.order();
    for (NodeId id : order) {
      if (!g_.has_node(id)) continue;
      const Node& n = g_.node(id);
      const bool onnx = n.domain.empty() || n.domain == "ai.onnx";
      const bool ms = n.domain == "com.microsoft";
      if (onnx && n.Is("QLinearConv")) {
        const ValueId x = n.input(0);
        const bool have = twin.count(x) > 0;
        auto shape = NhwcConvShape(n, !have);
        if (!shape && !have) shape = NhwcConvShape(n, false);  // depthwise: transpose the input
        if (shape) {
          const bool nchw_in = !have && shape->group == 1;
          std::vector<ValueId> in = n.inputs();
          if (!nchw_in && !have) {
            const ValueId t = new_twin(x);
            ONNXQ_RETURN_IF_ERROR(transpose(x, t, {0, 2, 3, 1}));
          }
          if (!nchw_in) in[0] = twin.at(x);
          std::vector<Attribute> extra = {Attribute::Int("channels_last", 1)};
          if (nchw_in) extra.push_back(Attribute::Int("onnxq_nchw_input", 1));
          ONNXQ_RETURN_IF_ERROR(rewrite(id, "QLinearConv", std::move(in), std::move(extra)));
          continue;
        }
      } else if (ms && n.Is("QLinearAdd", "com.microsoft") && n.num_inputs() >= 8 && twin.count(n.input(0)) &&
                 twin.count(n.input(3))) {
        if (fuse_add_) {
          ONNXQ_ASSIGN_OR_RETURN(bool fused, FuseAdd(id, twin, pending, new_twin));
          if (fused) continue;
        }
        std::vector<ValueId> in = n.inputs();
        in[0] = twin.at(in[0]);
        in[3] = twin.at(in[3]);
        ONNXQ_RETURN_IF_ERROR(rewrite(id, "QLinearAdd", std::move(in), {}));
        continue;
      } else if (ms && n.Is("QLinearGlobalAveragePool", "com.microsoft") && twin.count(n.input(0)) &&
                 !n.attrs.Has("channels_last")) {
        // Reads the chain's NHWC value; the pooled [N, 1, 1, C] bytes are the NCHW [N, C, 1, 1]
        // bytes, so it writes its own NCHW value (onnxq_nchw_output) and no Transpose follows it
        // (a channels-last consumer after it starts a new chain from that NCHW value).
        g_.SetNodeInput(id, 0, twin.at(n.input(0)));
        g_.node(id).attrs.Set(Attribute::Int("channels_last", 1));
        g_.node(id).attrs.Set(Attribute::Int("onnxq_nchw_output", 1));
        ++stats_.channels_last;
        continue;
      }
      for (ValueId v : g_.node(id).inputs())
        if (v != kNoValue) ONNXQ_RETURN_IF_ERROR(materialize(v));
    }
    for (ValueId v : g_.outputs()) ONNXQ_RETURN_IF_ERROR(materialize(v));
    // What no one reads in NCHW any more.
    for (ValueId v : pending) ONNXQ_RETURN_IF_ERROR(g_.RemoveValue(v));
    return Status::Ok();
  }

  // The residual Add of a channels-last chain folded into the convolution that computes one of
  // its operands, when that convolution (group 1) feeds nothing else: ai.onnxq QLinearConvAdd
  // (ops_integer.cc) writes the Add's output. Same arithmetic as the two nodes (the convolution
  // requantized to 8 bits, then QLinearAdd), without the round trip of its output through memory.
  template <typename NewTwin>
  StatusOr<bool> FuseAdd(NodeId add_id, std::map<ValueId, ValueId>& twin, std::set<ValueId>& pending,
                         NewTwin&& new_twin) {
    const Node& add = g_.node(add_id);
    if (add.input(0) == add.input(3) || !SameShape(add.input(0), add.input(3))) return false;
    for (int operand = 0; operand < 2; ++operand) {
      const ValueId v = add.input(operand == 0 ? 0 : 3);
      const ValueId other = add.input(operand == 0 ? 3 : 0);
      const ValueId tv = twin.at(v);
      if (!pending.count(v) || g_.IsGraphOutput(v) || g_.value(v).uses().size() != 1 ||
          !g_.value(tv).uses().empty())
        continue;
      const Node* conv = g_.Producer(tv);
      if (conv == nullptr || !conv->Is("QLinearConv", "com.microsoft") || conv->num_inputs() < 8)
        continue;
      auto group = conv->attrs.GetInt("group", 1);
      if (!group.ok() || *group != 1) continue;
      std::vector<ValueId> in = conv->inputs();
      in.resize(9, kNoValue);
      in.push_back(twin.at(other));
      for (size_t i : {1, 2, 4, 5, 6, 7}) in.push_back(add.input(i));
      Attributes attrs = conv->attrs;
      attrs.Set(Attribute::Int("conv_operand", operand));
      const std::string name = conv->name;
      const NodeId conv_id = conv->id();
      const ValueId y = add.output(0);
      const ValueId yt = new_twin(y);
      g_.RemoveNode(add_id);
      g_.RemoveNode(conv_id);
      ONNXQ_RETURN_IF_ERROR(g_.RemoveValue(tv));
      twin.erase(v);
      ONNXQ_ASSIGN_OR_RETURN(NodeId nn, g_.AddNode("QLinearConvAdd", in, {yt}, name, "ai.onnxq"));
      g_.node(nn).attrs = std::move(attrs);
      pending.insert(y);
      ++stats_.fused_add;
      return true;
    }
    return false;
  }

  void RemoveDeadDq() {
    bool changed = true;
    while (changed) {
      changed = false;
      const std::vector<NodeId> order = g_.order();
      for (NodeId id : order) {
        const Node& n = g_.node(id);
        if (!n.Is("DequantizeLinear") && !n.Is("QuantizeLinear")) continue;
        const ValueId y = n.output(0);
        if (g_.IsGraphOutput(y) || !g_.value(y).uses().empty()) continue;
        g_.RemoveNode(id);
        changed = true;
      }
    }
  }

  // DequantizeLinear of constants feeding float islands: computed now, once, exactly as the op
  // computes it at run time ((x - zp) * scale in float).
  Status FoldConstantDq() {
    const std::vector<NodeId> order = g_.order();
    for (NodeId id : order) {
      const Node& n = g_.node(id);
      if (!n.Is("DequantizeLinear") || n.num_outputs() != 1) continue;
      auto d = DqOf(g_, n.output(0));
      if (!d) continue;
      const Tensor* x = Init(g_, d->x);
      if (x == nullptr || (!Is8Bit(x->dtype()) && x->dtype() != DataType::kInt32)) continue;
      const Tensor* s = Init(g_, d->scale);
      const Tensor* z = Init(g_, d->zp);
      int64_t outer = 1, ch = 1, inner = 1;
      if (d->n_scale > 1) {
        const int64_t r = static_cast<int64_t>(x->rank());
        const int64_t axis = d->axis < 0 ? d->axis + r : d->axis;
        if (axis < 0 || axis >= r || x->dims()[axis] != d->n_scale) continue;
        for (int64_t i = 0; i < axis; ++i) outer *= x->dims()[i];
        ch = d->n_scale;
        for (int64_t i = axis + 1; i < r; ++i) inner *= x->dims()[i];
      } else {
        inner = x->numel();
      }
      ONNXQ_ASSIGN_OR_RETURN(Tensor f, Tensor::Create(DataType::kFloat, x->dims()));
      float* fp = f.mutable_data<float>();
      auto at = [](const Tensor* t, int64_t i) -> int64_t {
        switch (t->dtype()) {
          case DataType::kUint8: return t->data<uint8_t>()[i];
          case DataType::kInt8: return t->data<int8_t>()[i];
          case DataType::kInt32: return t->data<int32_t>()[i];
          default: return 0;
        }
      };
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t c = 0; c < ch; ++c) {
          const float sc = s->data<float>()[c];
          const int64_t zp = z ? at(z, c) : 0;
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t k = (o * ch + c) * inner + i;
            fp[k] = static_cast<float>(at(x, k) - zp) * sc;
          }
        }
      const ValueId y = n.output(0);
      g_.RemoveNode(id);
      ONNXQ_RETURN_IF_ERROR(g_.SetInitializer(y, std::move(f)));
      ++stats_.folded_dq;
    }
    return Status::Ok();
  }

  Model& m_;
  Graph& g_;
  bool channels_last_, fuse_add_;
  QdqLoweringStats stats_;
};

}  // namespace

bool HasQdqNodes(const Graph& g) {
  for (NodeId id : g.order())
    if (g.node(id).Is("DequantizeLinear")) return true;
  return false;
}

StatusOr<QdqLoweringStats> LowerQdqToInteger(Model& model, bool channels_last, bool fuse_add) {
  Lowering l(model, channels_last, fuse_add);
  return l.Run();
}

}  // namespace onnxq::runtime
