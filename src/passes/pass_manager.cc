// Registry, pipelines, the verifier and Optimize().
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "onnxq/base/json.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/passes/pass.h"
#include "passes/pass_util.h"

namespace onnxq::passes {
namespace {

struct Entry {
  const char* name;
  std::unique_ptr<Pass> (*make)();
};

const std::vector<Entry>& Registry() {
  static const std::vector<Entry> entries = {
      {"upgrade-opset", &MakeUpgradeOpsetPass},
      {"remove-identity", &MakeRemoveIdentityPass},
      {"remove-dropout", &MakeRemoveDropoutPass},
      {"fold-constants", &MakeFoldConstantsPass},
      {"dead-code", &MakeDeadCodePass},
      {"fold-batchnorm", &MakeFoldBatchNormPass},
      {"fold-conv-mul-add", &MakeFoldConvMulAddPass},
      {"matmul-add-to-gemm", &MakeMatMulAddToGemmPass},
      {"mark-activation-groups", &MakeMarkActivationGroupsPass},
      {"cle", &MakeEqualizePass},
  };
  return entries;
}


std::string ShapeOf(const Value& v) { return v.shape ? v.shape->ToString() : "?"; }

// A readable listing of the graph (one node per line) for --dump-dir.
std::string TextDump(const Model& m) {
  const Graph& g = m.graph;
  std::ostringstream os;
  os << "graph '" << g.name << "' opset " << m.OpsetVersion("") << ", " << g.num_nodes()
     << " nodes\n";
  for (ValueId v : g.RuntimeInputs())
    os << "input  " << g.value(v).name() << " " << DataTypeName(g.value(v).dtype) << ShapeOf(g.value(v))
       << "\n";
  for (NodeId n : g.order()) {
    const Node& node = g.node(n);
    os << node.op_type << " '" << node.name << "' (";
    for (size_t k = 0; k < node.num_inputs(); ++k) {
      ValueId v = node.input(k);
      os << (k ? ", " : "") << (v == kNoValue ? std::string("<none>") : g.value(v).name());
      if (v != kNoValue && g.value(v).is_initializer()) os << ":const" << ShapeOf(g.value(v));
    }
    os << ") -> (";
    for (size_t k = 0; k < node.num_outputs(); ++k) {
      ValueId v = node.output(k);
      os << (k ? ", " : "") << (v == kNoValue ? std::string("<none>") : g.value(v).name() + ShapeOf(g.value(v)));
    }
    os << ")";
    for (const auto& [key, val] : node.meta) os << " " << key << "=" << val;
    os << "\n";
  }
  for (ValueId v : g.outputs()) os << "output " << g.value(v).name() << ShapeOf(g.value(v)) << "\n";
  return os.str();
}

Status Dump(const Model& m, const std::string& dir, int index, const std::string& label) {
  char prefix[16];
  std::snprintf(prefix, sizeof prefix, "%02d-", index);
  std::filesystem::path base = std::filesystem::path(dir) / (prefix + label);
  ONNXQ_RETURN_IF_ERROR(SaveModel(m, base.string() + ".onnx"));
  std::ofstream f(base.string() + ".txt");
  f << TextDump(m);
  if (!f) return IoError("cannot write dump file '", base.string(), ".txt'");
  return Status::Ok();
}

}  // namespace

bool PassReport::changed() const {
  for (const auto& p : passes)
    if (p.changed) return true;
  return false;
}

std::string PassReport::ToText(bool verbose) const {
  std::ostringstream os;
  for (const auto& p : passes) {
    char line[256];
    std::snprintf(line, sizeof line, "%-24s %-9s %8.2f ms  nodes %lld -> %lld", p.name.c_str(),
                  p.changed ? "changed" : "unchanged", p.millis,
                  static_cast<long long>(p.nodes_before), static_cast<long long>(p.nodes_after));
    os << line;
    for (const auto& [k, v] : p.counters) os << "  " << k << "=" << v;
    os << "\n";
    if (verbose)
      for (const auto& n : p.notes) os << "    " << n << "\n";
  }
  return os.str();
}

std::string PassReport::ToJson() const {
  std::ostringstream os;
  os << "{\n  \"passes\": [";
  for (size_t i = 0; i < passes.size(); ++i) {
    const auto& p = passes[i];
    os << (i ? "," : "") << "\n    {\"name\": " << JsonQuote(p.name) << ", \"changed\": "
       << (p.changed ? "true" : "false") << ", \"millis\": " << p.millis
       << ", \"nodes_before\": " << p.nodes_before << ", \"nodes_after\": " << p.nodes_after
       << ", \"counters\": {";
    size_t k = 0;
    for (const auto& [key, v] : p.counters)
      os << (k++ ? ", " : "") << JsonQuote(key) << ": " << v;
    os << "}, \"notes\": [";
    for (size_t j = 0; j < p.notes.size(); ++j)
      os << (j ? ", " : "") << JsonQuote(p.notes[j]);
    os << "]}";
  }
  os << "\n  ]\n}\n";
  return os.str();
}

std::vector<std::string> RegisteredPasses() {
  std::vector<std::string> names;
  for (const auto& e : Registry()) names.push_back(e.name);
  return names;
}

std::string PassDescription(const std::string& name) {
  for (const auto& e : Registry())
    if (name == e.name) return e.make()->description();
  return "";
}

StatusOr<std::unique_ptr<Pass>> CreatePass(const std::string& name) {
  for (const auto& e : Registry())
    if (name == e.name) return e.make();
  std::string known;
  for (const auto& e : Registry()) known += (known.empty() ? "" : ", ") + std::string(e.name);
  return InvalidArgument("unknown pass '", name, "' (known passes: ", known, ")");
}

const std::vector<std::string>& DefaultPipeline() {
  // Order matters: the opset upgrade comes first (later passes and the QDQ export assume opset 13
  // where the model had older semantics), then Identity so that constant chains become visible,
  // constants are folded before Dropout removal (exporters feed training_mode from a Constant node), batch norm is
  // folded before Mul/Add folding (which would otherwise see BN's output), and grouping runs last
  // on the final node set. Cross-layer equalization ("cle") is opt-in: it changes weights.
  static const std::vector<std::string> pipeline = {
      "upgrade-opset",
      "remove-identity",   "fold-constants",    "remove-dropout",     "dead-code",
      "fold-batchnorm",    "fold-conv-mul-add", "matmul-add-to-gemm", "dead-code",
      "mark-activation-groups",
  };
  return pipeline;
}

StatusOr<std::vector<std::string>> ParsePipeline(const std::string& spec) {
  std::vector<std::string> out;
  if (spec == "none" || spec.empty()) return out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty()) continue;
    if (item == "default") {
      out.insert(out.end(), DefaultPipeline().begin(), DefaultPipeline().end());
      continue;
    }
    ONNXQ_ASSIGN_OR_RETURN(auto pass, CreatePass(item));
    (void)pass;
    out.push_back(item);
  }
  return out;
}

Status VerifyModel(const Model& model) {
  const Graph& g = model.graph;
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  for (ValueId v : g.initializer_order()) {
    const Value& val = g.value(v);
    const Tensor* t = val.initializer();
    if (val.dtype != t->dtype())
      return Internal("initializer '", val.name(), "' is ", DataTypeName(t->dtype()),
                      " but its value says ", DataTypeName(val.dtype));
    if (val.shape && *val.shape != Shape::FromDims(t->dims()))
      return Internal("initializer '", val.name(), "' has dims ", DimsToString(t->dims()),
                      " but its value says ", val.shape->ToString());
  }
  // Weight/bias agreement of the ops passes rewrite most.
  for (NodeId n : g.order()) {
    const Node& node = g.node(n);
    bool conv = node.Is("Conv"), convt = node.Is("ConvTranspose");
    if (!conv && !convt) continue;
    const Tensor* w = ConstantOf(g, node.input(1));
    const Tensor* b = ConstantOf(g, node.input(2));
    if (!w || !b) continue;
    int64_t cout = conv ? w->dims()[0] : w->dims().size() > 1 ? w->dims()[1] * AttrInt(node, "group", 1) : -1;
    if (b->rank() != 1 || b->dims()[0] != cout)
      return Internal(node.Describe(), ": bias has dims ", DimsToString(b->dims()), " but the weight has ",
                      cout, " output channels");
    const Value& x = g.value(node.input(0));
    if (x.shape && x.shape->rank() != w->rank())
      return Internal(node.Describe(), ": input rank ", x.shape->rank(), " does not match weight rank ",
                      w->rank());
  }
  return Status::Ok();
}

StatusOr<PassReport> Optimize(Model& model, const OptimizeOptions& options) {
  std::vector<std::unique_ptr<Pass>> passes;
  for (const auto& name : options.passes) {
    ONNXQ_ASSIGN_OR_RETURN(auto p, CreatePass(name));
    passes.push_back(std::move(p));
  }
  if (!options.dump_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.dump_dir, ec);
    if (ec) return IoError("cannot create dump directory '", options.dump_dir, "': ", ec.message());
  }
  // Work on a copy (initializers are copy-on-write, so this is cheap) and commit on success.
  Model work = model;
  if (options.verify) {
    Status s = VerifyModel(work);
    if (!s.ok()) return s.Prepend("the input model fails verification");
  }
  if (!options.dump_dir.empty()) ONNXQ_RETURN_IF_ERROR(Dump(work, options.dump_dir, 0, "input"));
  PassReport report;
  PassContext ctx;
  ctx.equalization = options.equalization;
  for (size_t i = 0; i < passes.size(); ++i) {
    Pass& pass = *passes[i];
    PassResult result;
    result.name = pass.name();
    result.nodes_before = static_cast<int64_t>(work.graph.num_nodes());
    ctx.result = &result;
    auto t0 = std::chrono::steady_clock::now();
    auto changed = pass.Run(work, ctx);
    auto t1 = std::chrono::steady_clock::now();
    ctx.result = nullptr;
    if (!changed.ok()) {
      Status s = changed.status();
      return s.Prepend(std::string("pass '") + pass.name() + "'");
    }
    result.changed = *changed;
    result.millis = std::chrono::duration<double, std::milli>(t1 - t0).count();
    result.nodes_after = static_cast<int64_t>(work.graph.num_nodes());
    if (options.verify) {
      Status s = VerifyModel(work);
      if (!s.ok())
        return Internal("the graph is inconsistent after pass '", pass.name(), "' (a bug in onnxq): ",
                        s.message());
    }
    report.passes.push_back(std::move(result));
    if (!options.dump_dir.empty())
      ONNXQ_RETURN_IF_ERROR(Dump(work, options.dump_dir, static_cast<int>(i + 1), pass.name()));
  }
  model = std::move(work);
  return report;
}

}  // namespace onnxq::passes
