#include <algorithm>
#include <set>

#include "onnxq/base/json.h"
#include "onnxq/ir/summary.h"
#include "onnxq/runtime/session.h"
#include "runtime/op_kernel.h"
#include "runtime/qdq_lowering.h"

namespace onnxq::runtime {

const std::vector<OpRegistration>& Registry() {
  static const std::vector<OpRegistration> registry = [] {
    std::vector<OpRegistration> r;
    RegisterElementwiseOps(r);
    RegisterNnOps(r);
    RegisterPoolOps(r);
    RegisterTensorOps(r);
    RegisterResizeOps(r);
    RegisterQuantOps(r);
    RegisterIntegerOps(r);
    return r;
  }();
  return registry;
}

const std::vector<DomainOpRegistration>& ContribRegistry() {
  static const std::vector<DomainOpRegistration> registry = [] {
    std::vector<DomainOpRegistration> r;
    RegisterContribIntegerOps(r);
    return r;
  }();
  return registry;
}

StatusOr<const OpRegistration*> FindOp(const Node& node, int64_t opset) {
  if (node.domain.empty() || node.domain == "ai.onnx") {
    for (const auto& reg : Registry()) {
      if (reg.op_type == node.op_type && opset >= reg.min_opset && opset <= reg.max_opset)
        return &reg;
    }
  } else {
    // Contrib ops are versioned by their own domain; one version each.
    for (const auto& dr : ContribRegistry())
      if (dr.domain == node.domain && dr.reg.op_type == node.op_type) return &dr.reg;
  }
  std::string op = node.domain.empty() || node.domain == "ai.onnx"
                       ? node.op_type
                       : node.domain + "." + node.op_type;
  if (node.name.empty())
    return Unsupported("unsupported operator ", op, " (opset ", opset, ") at node #", node.id());
  return Unsupported("unsupported operator ", op, " (opset ", opset, ") at node '", node.name, "'");
}

void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() <= 1 || n <= grain) {
    fn(0, n);
    return;
  }
  pool->ParallelFor(n, fn, std::max<int64_t>(grain, 1));
}

StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank, const Node& node, const char* what) {
  if (axis < -rank || axis >= rank)
    return InvalidArgument(node.Describe(), ": ", what, " ", axis, " is out of range for rank ",
                           rank);
  return axis < 0 ? axis + rank : axis;
}

StatusOr<std::vector<int64_t>> ReadInts(const Tensor& t, const Node& node, const char* what) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DataType::kInt64) {
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<int64_t>()[i];
  } else if (t.dtype() == DataType::kInt32) {
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<int32_t>()[i];
  } else {
    return InvalidArgument(node.Describe(), ": ", what, " must be int32 or int64, got ",
                           DataTypeName(t.dtype()));
  }
  return v;
}

std::vector<float> ReadFloats(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<float>(t.GetAsDouble(i));
  return v;
}

StatusOr<std::vector<int64_t>> BroadcastShapes(const std::vector<int64_t>& a,
                                               const std::vector<int64_t>& b, const Node& node) {
  size_t r = std::max(a.size(), b.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      return InvalidArgument(node.Describe(), ": shapes ", Dims(a), " and ", Dims(b),
                             " cannot be broadcast");
    }
  }
  return out;
}

bool IsShapeInput(const Node& node, size_t index) {
  if (!node.domain.empty() && node.domain != "ai.onnx") return false;
  const std::string& op = node.op_type;
  if (op == "Reshape" || op == "Squeeze" || op == "Unsqueeze" || op.rfind("Reduce", 0) == 0 ||
      op == "Expand" || op == "Tile" || op == "Split" || op == "CumSum")
    return index == 1;
  if (op == "ConstantOfShape") return index == 0;
  if (op == "Range") return index <= 2;
  if (op == "Slice") return index >= 1;
  if (op == "Pad") return index == 1 || index == 3;
  if (op == "Resize") return index >= 1;
  if (op == "Dropout") return index >= 1;
  return false;
}

std::string Dims(const std::vector<int64_t>& d) { return DimsToString(d); }

}  // namespace onnxq::runtime

namespace onnxq {

std::vector<UnsupportedOp> UnsupportedOps(const Model& model) {
  const int64_t opset = model.OpsetVersion("");
  std::vector<UnsupportedOp> out;
  for (NodeId id : model.graph.order()) {
    const Node& n = model.graph.node(id);
    auto reg = runtime::FindOp(n, opset);
    if (reg.ok()) continue;
    const std::string op = n.domain.empty() || n.domain == "ai.onnx" ? n.op_type : n.domain + "." + n.op_type;
    auto it = std::find_if(out.begin(), out.end(), [&](const UnsupportedOp& u) { return u.op == op; });
    if (it == out.end()) {
      out.push_back({op, 1, reg.status().message()});
    } else {
      ++it->nodes;
    }
  }
  return out;
}

Status CheckSupported(const Model& model) {
  const std::vector<UnsupportedOp> bad = UnsupportedOps(model);
  if (bad.empty()) return Status::Ok();
  // The first offending node in full; the other operator types by count, so one error lists all
  // a user has to deal with.
  std::string msg = bad[0].first_error;
  if (bad[0].nodes > 1) msg += " (" + std::to_string(bad[0].nodes) + " nodes)";
  for (size_t i = 1; i < bad.size(); ++i)
    msg += (i == 1 ? "; also unsupported: " : ", ") + bad[i].op + " (" + std::to_string(bad[i].nodes) +
           (bad[i].nodes == 1 ? " node)" : " nodes)");
  return Unsupported(msg);
}

std::string InspectText(const Model& model) {
  std::string out = SummaryToText(Summarize(model));
  const std::vector<UnsupportedOp> bad = UnsupportedOps(model);
  if (bad.empty()) return out + "executor:   every operator is supported\n";
  out += "executor:   cannot run this model (so cannot calibrate it); unsupported:";
  for (const UnsupportedOp& u : bad)
    out += " " + u.op + " (" + std::to_string(u.nodes) + (u.nodes == 1 ? " node)" : " nodes)");
  return out + "\n";
}

std::string InspectJson(const Model& model) {
  std::string out = SummaryToJson(Summarize(model));
  std::string field = ",\n  \"unsupported_ops\": [";
  const std::vector<UnsupportedOp> bad = UnsupportedOps(model);
  for (size_t i = 0; i < bad.size(); ++i)
    field += (i ? ", " : "") + std::string("{\"op\": ") + JsonQuote(bad[i].op) +
             ", \"nodes\": " + std::to_string(bad[i].nodes) + "}";
  field += "]\n";
  // One more key in the summary's object (it ends with "}" and a newline).
  size_t end = out.rfind('}');
  if (end == std::string::npos) return out;
  size_t cut = end;
  while (cut > 0 && (out[cut - 1] == '\n' || out[cut - 1] == ' ')) --cut;
  return out.substr(0, cut) + field + out.substr(end);
}

std::vector<std::string> SupportedOps() {
  std::set<std::string> names;
  for (const auto& r : runtime::Registry()) names.insert(r.op_type);
  for (const auto& r : runtime::ContribRegistry()) names.insert(r.domain + "." + r.reg.op_type);
  return {names.begin(), names.end()};
}

}  // namespace onnxq
