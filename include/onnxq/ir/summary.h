// Model summary for `onnxq inspect` and Model.inspect() in Python.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "onnxq/ir/graph.h"

namespace onnxq {

struct TensorSummary {
  std::string name;
  std::string dtype;  // DataTypeName
  std::string shape;  // Shape::ToString, "?" if unknown rank
};

struct ModelSummary {
  std::string path;
  int64_t ir_version = 0;
  std::vector<OpsetImport> opsets;
  std::string producer;            // "name version"
  int64_t num_nodes = 0;
  std::map<std::string, int64_t> op_counts;  // "Conv" -> 53 (domain-qualified if not default)
  int64_t parameter_count = 0;     // elements of all initializers
  std::map<std::string, int64_t> bytes_by_dtype;   // initializer bytes by element type
  std::map<std::string, int64_t> params_by_dtype;  // initializer elements by element type
  std::vector<TensorSummary> inputs;   // runtime inputs (not initializers)
  std::vector<TensorSummary> outputs;
  std::vector<std::pair<std::string, std::string>> metadata;
};

ModelSummary Summarize(const Model& model);
std::string SummaryToJson(const ModelSummary& s);  // stable key order, 2-space indent
std::string SummaryToText(const ModelSummary& s);  // human-readable table

}  // namespace onnxq
