// Small graph builders for the pass tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "onnxq/ir/graph.h"
#include "onnxq/passes/pass.h"

namespace onnxq::passes::ptest {

inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A model with opset `opset` and no nodes yet.
inline Model EmptyModel(int64_t opset = 13) {
  Model m;
  m.SetOpsetVersion("", opset);
  m.graph.name = "test";
  return m;
}

class Builder {
 public:
  explicit Builder(Model& m) : m_(m), g_(m.graph) {}

  ValueId Input(const std::string& name, std::vector<int64_t> dims) {
    ValueId v = *g_.AddValue(name);
    g_.value(v).dtype = DataType::kFloat;
    g_.value(v).shape = Shape::FromDims(dims);
    g_.AddInput(v);
    return v;
  }
  ValueId Const(const std::string& name, std::vector<int64_t> dims, std::vector<float> values) {
    return g_.AddInitializer(name, Tensor::Float(std::move(dims), values));
  }
  ValueId RandConst(const std::string& name, std::vector<int64_t> dims, uint32_t seed,
                    float lo = -1.f, float hi = 1.f) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return Const(name, std::move(dims), RandomFloats(static_cast<size_t>(n), seed, lo, hi));
  }
  ValueId IntConst(const std::string& name, std::vector<int64_t> dims, std::vector<int64_t> values) {
    return g_.AddInitializer(name, Tensor::Int64(std::move(dims), values));
  }
  // Adds a node with fresh float outputs named after `name` (shape optional).
  NodeId Node(const std::string& op, const std::string& name, std::vector<ValueId> inputs,
              int num_outputs = 1, std::vector<std::vector<int64_t>> out_dims = {}) {
    std::vector<ValueId> outs;
    for (int k = 0; k < num_outputs; ++k) {
      ValueId v = g_.AddUniqueValue(name + (k ? "_out" + std::to_string(k) : std::string("_out")));
      g_.value(v).dtype = DataType::kFloat;
      if (static_cast<size_t>(k) < out_dims.size()) g_.value(v).shape = Shape::FromDims(out_dims[k]);
      outs.push_back(v);
    }
    auto n = g_.AddNode(op, inputs, outs, name);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return *n;
  }
  ValueId Out(NodeId n, size_t k = 0) const { return g_.node(n).output(k); }
  void Output(ValueId v) { g_.AddOutput(v); }
  onnxq::Node& operator[](NodeId n) { return g_.node(n); }

 private:
  Model& m_;
  Graph& g_;
};

inline int CountOps(const Graph& g, const std::string& op) {
  int c = 0;
  for (NodeId n : g.order()) c += g.node(n).op_type == op;
  return c;
}

inline const Tensor& Init(const Graph& g, ValueId v) { return *g.value(v).initializer(); }

// Runs a pipeline given as "a,b"; fails the test on error.
inline PassReport RunPasses(Model& m, const std::string& spec, OptimizeOptions opt = {}) {
  auto pipeline = ParsePipeline(spec);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status().ToString();
  opt.passes = *pipeline;
  auto r = Optimize(m, opt);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : PassReport{};
}

}  // namespace onnxq::passes::ptest
