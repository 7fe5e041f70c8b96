// The graph IR. A Graph owns its values (tensors flowing between nodes, with type, shape and an
// optional initializer) and nodes; both have stable integer ids that are never reused, so passes
// can hold ids across rewrites. Producer and consumer links are maintained by the Graph's mutators:
// change node inputs only through Graph, never by editing Node::inputs directly.
// Analyses (liveness, quantization plans, statistics) live outside the graph and refer to ids.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/attribute.h"
#include "onnxq/ir/tensor.h"
#include "onnxq/ir/types.h"

namespace onnxq {

using ValueId = uint32_t;
using NodeId = uint32_t;
inline constexpr ValueId kNoValue = 0xffffffffu;  // an omitted optional input ("")
inline constexpr NodeId kNoNode = 0xffffffffu;

// Quantization annotation carried by a value: what the quantizer decided for this tensor.
// Per-tensor when axis < 0 (scale and zero_point then have one entry), per-channel along axis.
struct QuantParams {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  int bits = 8;
  bool is_signed = true;
  int axis = -1;
  std::string calibrator;  // "minmax", "mse", ... (for reports)
};

// Where a node input is used: consumer node and input slot.
struct Use {
  NodeId node;
  uint32_t input_index;
  bool operator==(const Use& o) const { return node == o.node && input_index == o.input_index; }
};

class Value {
 public:
  ValueId id() const { return id_; }
  const std::string& name() const { return name_; }

  DataType dtype = DataType::kUndefined;
  std::optional<Shape> shape;  // nullopt: rank unknown
  std::string doc_string;
  // The source model declared this value in graph.value_info (the exporter writes those back).
  bool declared_value_info = false;
  std::optional<QuantParams> quant;

  NodeId producer() const { return producer_; }
  uint32_t producer_output_index() const { return producer_output_; }
  const std::vector<Use>& uses() const { return uses_; }
  bool is_initializer() const { return initializer_.has_value(); }
  const Tensor* initializer() const { return initializer_ ? &*initializer_ : nullptr; }
  Tensor* mutable_initializer() { return initializer_ ? &*initializer_ : nullptr; }

 private:
  friend class Graph;
  ValueId id_ = kNoValue;
  std::string name_;
  NodeId producer_ = kNoNode;
  uint32_t producer_output_ = 0;
  std::vector<Use> uses_;
  std::optional<Tensor> initializer_;
};

class Node {
 public:
  NodeId id() const { return id_; }
  std::string name;
  std::string op_type;
  std::string domain;  // "" is the default ONNX domain ("ai.onnx")
  Attributes attrs;
  std::string doc_string;
  // Free-form per-node metadata for passes and the quantizer ("onnxq.group" -> group id, ...).
  // Not exported unless a pass writes it into attributes.
  std::map<std::string, std::string> meta;

  const std::vector<ValueId>& inputs() const { return inputs_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }
  ValueId input(size_t i) const { return i < inputs_.size() ? inputs_[i] : kNoValue; }
  ValueId output(size_t i) const { return i < outputs_.size() ? outputs_[i] : kNoValue; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }
  bool Is(const char* type, const char* dom = "") const {
    return op_type == type && (domain == dom || (domain == "ai.onnx" && dom[0] == '\0'));
  }
  // "Conv 'conv1'" or "Conv (node #12)" for error messages.
  std::string Describe() const;

 private:
  friend class Graph;
  NodeId id_ = kNoNode;
  std::vector<ValueId> inputs_;
  std::vector<ValueId> outputs_;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph& other);
  Graph& operator=(const Graph& other);
  Graph(Graph&&) noexcept = default;
  Graph& operator=(Graph&&) noexcept = default;

  std::string name;
  std::string doc_string;

  // ---- values
  // Creates a value with a unique name; fails if the name is taken or empty.
  StatusOr<ValueId> AddValue(const std::string& name);
  // Creates a value named `base` or `base_1`, `base_2`, ... whichever is free.
  ValueId AddUniqueValue(const std::string& base);
  ValueId FindValue(const std::string& name) const;
  Value& value(ValueId id) { return *values_[id]; }
  const Value& value(ValueId id) const { return *values_[id]; }
  bool has_value(ValueId id) const { return id < values_.size() && values_[id] != nullptr; }
  size_t value_capacity() const { return values_.size(); }  // ids are < this
  // All live values in id order.
  std::vector<ValueId> value_ids() const;
  // Renames a value (keeps links); fails if the new name is taken.
  Status RenameValue(ValueId id, const std::string& new_name);
  // Removes a value that nothing produces or uses and that is not a graph input/output.
  Status RemoveValue(ValueId id);

  // ---- initializers (constant values owned by the graph)
  Status SetInitializer(ValueId id, Tensor t);  // dtype and shape of the value follow the tensor
  void ClearInitializer(ValueId id);
  // Initializer ids in export order (import order, then additions).
  const std::vector<ValueId>& initializer_order() const { return initializer_order_; }
  // Adds a new constant value named base (uniquified).
  ValueId AddInitializer(const std::string& base, Tensor t);

  // ---- graph inputs / outputs
  const std::vector<ValueId>& inputs() const { return inputs_; }
  const std::vector<ValueId>& outputs() const { return outputs_; }
  void AddInput(ValueId v) { inputs_.push_back(v); }
  void AddOutput(ValueId v) { outputs_.push_back(v); }
  void SetInputs(std::vector<ValueId> v) { inputs_ = std::move(v); }
  void SetOutputs(std::vector<ValueId> v) { outputs_ = std::move(v); }
  bool IsGraphInput(ValueId v) const;
  bool IsGraphOutput(ValueId v) const;
  // Graph inputs that are not initializers (what a user feeds).
  std::vector<ValueId> RuntimeInputs() const;

  // ---- nodes
  // Appends a node after all existing ones in the order. Outputs must not have a producer yet.
  StatusOr<NodeId> AddNode(const std::string& op_type, const std::vector<ValueId>& inputs,
                           const std::vector<ValueId>& outputs, const std::string& name = "",
                           const std::string& domain = "");
  // Same, but placed right before `before` in the order (handy for rewrites).
  StatusOr<NodeId> InsertNodeBefore(NodeId before, const std::string& op_type,
                                    const std::vector<ValueId>& inputs,
                                    const std::vector<ValueId>& outputs,
                                    const std::string& name = "",
                                    const std::string& domain = "");
  Node& node(NodeId id) { return *nodes_[id]; }
  const Node& node(NodeId id) const { return *nodes_[id]; }
  bool has_node(NodeId id) const { return id < nodes_.size() && nodes_[id] != nullptr; }
  size_t node_capacity() const { return nodes_.size(); }
  size_t num_nodes() const { return order_.size(); }
  // Node ids in the current order (topological after TopologicalSort or a well-formed import).
  const std::vector<NodeId>& order() const { return order_; }
  // Detaches the node from its inputs and outputs (outputs lose their producer) and deletes it.
  void RemoveNode(NodeId id);
  void SetNodeInput(NodeId n, size_t index, ValueId v);
  void AddNodeInput(NodeId n, ValueId v);
  void SetNodeInputs(NodeId n, const std::vector<ValueId>& inputs);
  // Replaces the output slot of n with v (v must have no producer).
  Status SetNodeOutput(NodeId n, size_t index, ValueId v);
  // Every use of `from` by a node (and, if include_graph_outputs, the graph output list) now uses
  // `to`.
  void ReplaceAllUses(ValueId from, ValueId to, bool include_graph_outputs = true);

  // Producer node of v, or nullptr.
  const Node* Producer(ValueId v) const;
  // Distinct consumer node ids of v, in order of first use.
  std::vector<NodeId> Consumers(ValueId v) const;

  // Re-orders nodes topologically (stable: keeps the current order where it is already valid).
  // Fails naming a node on a cycle, or an input that nothing defines.
  Status TopologicalSort();
  // Structural checks: ids and links consistent, every node input is a graph input, initializer
  // or earlier node output; no value has two producers; outputs defined; order topological.
  Status Verify() const;
  // Unique node name from a base ("conv" -> "conv", "conv_1", ...).
  std::string UniqueNodeName(const std::string& base);

 private:
  void LinkInputs(NodeId n);
  void UnlinkInputs(NodeId n);
  StatusOr<NodeId> CreateNode(const std::string& op_type, const std::vector<ValueId>& inputs,
                              const std::vector<ValueId>& outputs, const std::string& name,
                              const std::string& domain);

  std::vector<std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, ValueId> value_by_name_;
  std::unordered_map<std::string, int> node_names_;  // name -> count (for uniquifying)
  std::vector<NodeId> order_;
  std::vector<ValueId> inputs_;
  std::vector<ValueId> outputs_;
  std::vector<ValueId> initializer_order_;
};

struct OpsetImport {
  std::string domain;  // "" for the default ONNX domain
  int64_t version = 0;
  bool operator==(const OpsetImport& o) const { return domain == o.domain && version == o.version; }
};

class Model {
 public:
  int64_t ir_version = 8;
  std::vector<OpsetImport> opset_imports;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata_props;
  Graph graph;

  // Parts of the ONNX model that onnxq carries through unchanged without interpreting them,
  // as serialized protobuf bytes (only src/onnx/ reads or writes them).
  struct Preserved {
    std::vector<std::string> functions;                // FunctionProto
    std::vector<std::string> quantization_annotation;  // TensorAnnotation
  } preserved;

  // Where the model was read from (for error messages and external data); may be empty.
  std::string source_path;

  // Opset version imported for a domain ("" and "ai.onnx" are the same), or -1.
  int64_t OpsetVersion(const std::string& domain = "") const;
  void SetOpsetVersion(const std::string& domain, int64_t version);
  void SetMetadata(const std::string& key, const std::string& value);
  const std::string* FindMetadata(const std::string& key) const;
};

}  // namespace onnxq
