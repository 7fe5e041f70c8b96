#include "onnxq/ir/summary.h"

#include "onnxq/base/json.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace onnxq {
namespace {

TensorSummary DescribeValue(const Value& v) {
  TensorSummary t;
  t.name = v.name();
  t.dtype = DataTypeName(v.dtype);
  t.shape = v.shape ? v.shape->ToString() : std::string("?");
  return t;
}

void JsonString(std::ostringstream& os, const std::string& s) { os << JsonQuote(s); }

void JsonCounts(std::ostringstream& os, const std::map<std::string, int64_t>& m) {
  if (m.empty()) {
    os << "{}";
    return;
  }
  os << "{\n";
  size_t k = 0;
  for (const auto& [key, count] : m) {
    os << "    ";
    JsonString(os, key);
    os << ": " << count << (++k < m.size() ? ",\n" : "\n");
  }
  os << "  }";
}

void JsonTensors(std::ostringstream& os, const std::vector<TensorSummary>& ts) {
  if (ts.empty()) {
    os << "[]";
    return;
  }
  os << "[\n";
  for (size_t k = 0; k < ts.size(); ++k) {
    os << "    {\"name\": ";
    JsonString(os, ts[k].name);
    os << ", \"dtype\": ";
    JsonString(os, ts[k].dtype);
    os << ", \"shape\": ";
    JsonString(os, ts[k].shape);
    os << (k + 1 < ts.size() ? "},\n" : "}\n");
  }
  os << "  ]";
}

// 3487886 -> "3,487,886"
std::string Grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace

ModelSummary Summarize(const Model& model) {
  ModelSummary s;
  const Graph& g = model.graph;
  s.path = model.source_path;
  s.ir_version = model.ir_version;
  s.opsets = model.opset_imports;
  s.producer = model.producer_name;
  if (!model.producer_version.empty())
    s.producer += (s.producer.empty() ? "" : " ") + model.producer_version;
  s.num_nodes = static_cast<int64_t>(g.num_nodes());
  for (NodeId n : g.order()) {
    const Node& node = g.node(n);
    bool default_domain = node.domain.empty() || node.domain == "ai.onnx";
    s.op_counts[default_domain ? node.op_type : node.domain + ":" + node.op_type]++;
  }
  for (ValueId id : g.initializer_order()) {
    const Tensor& t = *g.value(id).initializer();
    const std::string dt = DataTypeName(t.dtype());
    s.parameter_count += t.numel();
    s.params_by_dtype[dt] += t.numel();
    int64_t bytes = static_cast<int64_t>(t.nbytes());
    if (t.dtype() == DataType::kString)
      for (const auto& str : t.strings()) bytes += static_cast<int64_t>(str.size());
    s.bytes_by_dtype[dt] += bytes;
  }
  for (ValueId id : g.RuntimeInputs()) s.inputs.push_back(DescribeValue(g.value(id)));
  for (ValueId id : g.outputs()) s.outputs.push_back(DescribeValue(g.value(id)));
  s.metadata = model.metadata_props;
  return s;
}

std::string SummaryToJson(const ModelSummary& s) {
  std::ostringstream os;
  os << "{\n  \"path\": ";
  JsonString(os, s.path);
  os << ",\n  \"ir_version\": " << s.ir_version << ",\n  \"opsets\": [";
  for (size_t k = 0; k < s.opsets.size(); ++k) {
    os << (k ? ", " : "") << "{\"domain\": ";
    JsonString(os, s.opsets[k].domain);
    os << ", \"version\": " << s.opsets[k].version << "}";
  }
  os << "],\n  \"producer\": ";
  JsonString(os, s.producer);
  os << ",\n  \"num_nodes\": " << s.num_nodes << ",\n  \"op_counts\": ";
  JsonCounts(os, s.op_counts);
  os << ",\n  \"parameter_count\": " << s.parameter_count << ",\n  \"bytes_by_dtype\": ";
  JsonCounts(os, s.bytes_by_dtype);
  os << ",\n  \"params_by_dtype\": ";
  JsonCounts(os, s.params_by_dtype);
  os << ",\n  \"inputs\": ";
  JsonTensors(os, s.inputs);
  os << ",\n  \"outputs\": ";
  JsonTensors(os, s.outputs);
  os << ",\n  \"metadata\": {";
  for (size_t k = 0; k < s.metadata.size(); ++k) {
    os << (k ? ",\n    " : "\n    ");
    JsonString(os, s.metadata[k].first);
    os << ": ";
    JsonString(os, s.metadata[k].second);
  }
  os << (s.metadata.empty() ? "}" : "\n  }") << "\n}\n";
  return os.str();
}

std::string SummaryToText(const ModelSummary& s) {
  std::ostringstream os;
  os << "model:      " << (s.path.empty() ? "<memory>" : s.path) << "\n";
  os << "ir_version: " << s.ir_version << "\n";
  os << "opsets:     ";
  for (size_t k = 0; k < s.opsets.size(); ++k)
    os << (k ? ", " : "") << (s.opsets[k].domain.empty() ? "ai.onnx" : s.opsets[k].domain) << " "
       << s.opsets[k].version;
  os << "\n";
  if (!s.producer.empty()) os << "producer:   " << s.producer << "\n";
  os << "nodes:      " << Grouped(s.num_nodes) << "\n";
  os << "parameters: " << Grouped(s.parameter_count) << "\n";
  for (const auto& [dt, bytes] : s.bytes_by_dtype) {
    auto p = s.params_by_dtype.find(dt);
    os << "  " << dt << ": " << Grouped(p == s.params_by_dtype.end() ? 0 : p->second) << " elements, "
       << Grouped(bytes) << " bytes\n";
  }
  os << "inputs:\n";
  for (const auto& t : s.inputs) os << "  " << t.name << ": " << t.dtype << " " << t.shape << "\n";
  os << "outputs:\n";
  for (const auto& t : s.outputs) os << "  " << t.name << ": " << t.dtype << " " << t.shape << "\n";
  os << "operators:\n";
  size_t width = 0;
  for (const auto& kv : s.op_counts) width = std::max(width, kv.first.size());
  for (const auto& [op, count] : s.op_counts) {
    os << "  " << op << std::string(width - op.size() + 2, ' ') << count << "\n";
  }
  if (!s.metadata.empty()) {
    os << "metadata:\n";
    for (const auto& [k, v] : s.metadata) os << "  " << k << ": " << v << "\n";
  }
  return os.str();
}

}  // namespace onnxq
