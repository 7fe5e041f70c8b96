#include "onnxq/ir/graph.h"

#include <algorithm>
#include <queue>
#include <unordered_set>

namespace onnxq {

std::string Node::Describe() const {
  std::string s = op_type;
  if (!name.empty())
    s += " '" + name + "'";
  else
    s += " (node #" + std::to_string(id_) + ")";
  return s;
}

Graph::Graph(const Graph& o) { *this = o; }

Graph& Graph::operator=(const Graph& o) {
  if (this == &o) return *this;
  name = o.name;
  doc_string = o.doc_string;
  values_.clear();
  nodes_.clear();
  values_.reserve(o.values_.size());
  for (const auto& v : o.values_) values_.push_back(v ? std::make_unique<Value>(*v) : nullptr);
  nodes_.reserve(o.nodes_.size());
  for (const auto& n : o.nodes_) nodes_.push_back(n ? std::make_unique<Node>(*n) : nullptr);
  value_by_name_ = o.value_by_name_;
  node_names_ = o.node_names_;
  order_ = o.order_;
  inputs_ = o.inputs_;
  outputs_ = o.outputs_;
  initializer_order_ = o.initializer_order_;
  return *this;
}

// ---------------------------------------------------------------- values

StatusOr<ValueId> Graph::AddValue(const std::string& vname) {
  if (vname.empty()) return InvalidArgument("a value needs a non-empty name");
  if (value_by_name_.count(vname)) return InvalidArgument("duplicate value name '", vname, "'");
  auto v = std::make_unique<Value>();
  v->id_ = static_cast<ValueId>(values_.size());
  v->name_ = vname;
  value_by_name_.emplace(vname, v->id_);
  values_.push_back(std::move(v));
  return values_.back()->id_;
}

ValueId Graph::AddUniqueValue(const std::string& base) {
  std::string candidate = base.empty() ? std::string("v") : base;
  for (int k = 1; value_by_name_.count(candidate); ++k)
    candidate = (base.empty() ? std::string("v") : base) + "_" + std::to_string(k);
  return *AddValue(candidate);
}

ValueId Graph::FindValue(const std::string& vname) const {
  auto it = value_by_name_.find(vname);
  return it == value_by_name_.end() ? kNoValue : it->second;
}

std::vector<ValueId> Graph::value_ids() const {
  std::vector<ValueId> ids;
  for (const auto& v : values_)
    if (v) ids.push_back(v->id_);
  return ids;
}

Status Graph::RenameValue(ValueId id, const std::string& new_name) {
  if (!has_value(id)) return Internal("rename of a removed value");
  Value& v = *values_[id];
  if (v.name_ == new_name) return Status::Ok();
  if (new_name.empty()) return InvalidArgument("a value needs a non-empty name");
  if (value_by_name_.count(new_name))
    return InvalidArgument("cannot rename '", v.name_, "' to '", new_name, "': name is taken");
  value_by_name_.erase(v.name_);
  v.name_ = new_name;
  value_by_name_.emplace(new_name, id);
  return Status::Ok();
}

Status Graph::RemoveValue(ValueId id) {
  if (!has_value(id)) return Status::Ok();
  Value& v = *values_[id];
  if (v.producer_ != kNoNode || !v.uses_.empty())
    return Internal("cannot remove value '", v.name_, "': it is still produced or used");
  if (IsGraphInput(id) || IsGraphOutput(id))
    return Internal("cannot remove value '", v.name_, "': it is a graph input or output");
  if (v.initializer_) ClearInitializer(id);
  value_by_name_.erase(v.name_);
  values_[id].reset();
  return Status::Ok();
}

// ---------------------------------------------------------------- initializers

Status Graph::SetInitializer(ValueId id, Tensor t) {
  if (!has_value(id)) return Internal("initializer for a removed value");
  Value& v = *values_[id];
  if (v.producer_ != kNoNode)
    return InvalidArgument("value '", v.name_, "' is produced by a node and cannot also be an initializer");
  v.dtype = t.dtype();
  v.shape = Shape::FromDims(t.dims());
  if (!v.initializer_) initializer_order_.push_back(id);
  v.initializer_ = std::move(t);
  return Status::Ok();
}

void Graph::ClearInitializer(ValueId id) {
  if (!has_value(id) || !values_[id]->initializer_) return;
  values_[id]->initializer_.reset();
  initializer_order_.erase(std::remove(initializer_order_.begin(), initializer_order_.end(), id),
                           initializer_order_.end());
}

ValueId Graph::AddInitializer(const std::string& base, Tensor t) {
  ValueId id = AddUniqueValue(base);
  Status s = SetInitializer(id, std::move(t));
  assert(s.ok());
  (void)s;
  return id;
}

// ---------------------------------------------------------------- inputs / outputs

bool Graph::IsGraphInput(ValueId v) const {
  return std::find(inputs_.begin(), inputs_.end(), v) != inputs_.end();
}
bool Graph::IsGraphOutput(ValueId v) const {
  return std::find(outputs_.begin(), outputs_.end(), v) != outputs_.end();
}
std::vector<ValueId> Graph::RuntimeInputs() const {
  std::vector<ValueId> r;
  for (ValueId v : inputs_)
    if (!values_[v]->is_initializer()) r.push_back(v);
  return r;
}

// ---------------------------------------------------------------- nodes

StatusOr<NodeId> Graph::CreateNode(const std::string& op_type, const std::vector<ValueId>& inputs,
                                   const std::vector<ValueId>& outputs, const std::string& nname,
                                   const std::string& domain) {
  for (ValueId v : inputs)
    if (v != kNoValue && !has_value(v))
      return Internal("node '", nname, "' (", op_type, ") uses a removed value");
  for (size_t k = 0; k < outputs.size(); ++k) {
    ValueId v = outputs[k];
    if (v == kNoValue) continue;
    if (!has_value(v)) return Internal("node '", nname, "' (", op_type, ") writes a removed value");
    const Value& val = *values_[v];
    if (val.producer_ != kNoNode)
      return InvalidArgument("value '", val.name_, "' is produced by two nodes: ",
                             nodes_[val.producer_]->Describe(), " and ", op_type, " '", nname, "'");
    if (val.initializer_)
      return InvalidArgument("node ", op_type, " '", nname, "' writes '", val.name_,
                             "', which is an initializer");
  }
  auto n = std::make_unique<Node>();
  n->id_ = static_cast<NodeId>(nodes_.size());
  n->op_type = op_type;
  n->domain = domain;
  n->name = nname;
  if (!nname.empty()) node_names_[nname]++;
  n->inputs_ = inputs;
  n->outputs_ = outputs;
  NodeId id = n->id_;
  nodes_.push_back(std::move(n));
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (outputs[k] == kNoValue) continue;
    values_[outputs[k]]->producer_ = id;
    values_[outputs[k]]->producer_output_ = static_cast<uint32_t>(k);
  }
  LinkInputs(id);
  return id;
}

StatusOr<NodeId> Graph::AddNode(const std::string& op_type, const std::vector<ValueId>& inputs,
                                const std::vector<ValueId>& outputs, const std::string& nname,
                                const std::string& domain) {
  ONNXQ_ASSIGN_OR_RETURN(NodeId id, CreateNode(op_type, inputs, outputs, nname, domain));
  order_.push_back(id);
  return id;
}

StatusOr<NodeId> Graph::InsertNodeBefore(NodeId before, const std::string& op_type,
                                         const std::vector<ValueId>& inputs,
                                         const std::vector<ValueId>& outputs,
                                         const std::string& nname, const std::string& domain) {
  auto pos = std::find(order_.begin(), order_.end(), before);
  if (pos == order_.end()) return Internal("InsertNodeBefore: anchor node is not in the graph");
  ONNXQ_ASSIGN_OR_RETURN(NodeId id, CreateNode(op_type, inputs, outputs, nname, domain));
  pos = std::find(order_.begin(), order_.end(), before);
  order_.insert(pos, id);
  return id;
}

void Graph::LinkInputs(NodeId n) {
  Node& node = *nodes_[n];
  for (size_t k = 0; k < node.inputs_.size(); ++k) {
    ValueId v = node.inputs_[k];
    if (v != kNoValue) values_[v]->uses_.push_back(Use{n, static_cast<uint32_t>(k)});
  }
}

void Graph::UnlinkInputs(NodeId n) {
  Node& node = *nodes_[n];
  for (ValueId v : node.inputs_) {
    if (v == kNoValue || !has_value(v)) continue;
    auto& uses = values_[v]->uses_;
    uses.erase(std::remove_if(uses.begin(), uses.end(), [n](const Use& u) { return u.node == n; }),
               uses.end());
  }
}

void Graph::RemoveNode(NodeId id) {
  if (!has_node(id)) return;
  UnlinkInputs(id);
  for (ValueId v : nodes_[id]->outputs_)
    if (v != kNoValue && has_value(v) && values_[v]->producer_ == id) values_[v]->producer_ = kNoNode;
  if (!nodes_[id]->name.empty()) {
    auto it = node_names_.find(nodes_[id]->name);
    if (it != node_names_.end() && --it->second <= 0) node_names_.erase(it);
  }
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
  nodes_[id].reset();
}

void Graph::SetNodeInput(NodeId n, size_t index, ValueId v) {
  UnlinkInputs(n);
  Node& node = *nodes_[n];
  if (index >= node.inputs_.size()) node.inputs_.resize(index + 1, kNoValue);
  node.inputs_[index] = v;
  LinkInputs(n);
}

void Graph::AddNodeInput(NodeId n, ValueId v) { SetNodeInput(n, nodes_[n]->inputs_.size(), v); }

void Graph::SetNodeInputs(NodeId n, const std::vector<ValueId>& inputs) {
  UnlinkInputs(n);
  nodes_[n]->inputs_ = inputs;
  LinkInputs(n);
}

Status Graph::SetNodeOutput(NodeId n, size_t index, ValueId v) {
  Node& node = *nodes_[n];
  if (v != kNoValue && values_[v]->producer_ != kNoNode && values_[v]->producer_ != n)
    return InvalidArgument("value '", values_[v]->name_, "' already has a producer");
  if (index >= node.outputs_.size()) node.outputs_.resize(index + 1, kNoValue);
  ValueId old = node.outputs_[index];
  if (old != kNoValue && has_value(old) && values_[old]->producer_ == n)
    values_[old]->producer_ = kNoNode;
  node.outputs_[index] = v;
  if (v != kNoValue) {
    values_[v]->producer_ = n;
    values_[v]->producer_output_ = static_cast<uint32_t>(index);
  }
  return Status::Ok();
}

void Graph::ReplaceAllUses(ValueId from, ValueId to, bool include_graph_outputs) {
  if (from == to) return;
  std::vector<Use> uses = values_[from]->uses_;
  std::unordered_set<NodeId> touched;
  for (const Use& u : uses) touched.insert(u.node);
  for (NodeId n : touched) {
    UnlinkInputs(n);
    for (ValueId& in : nodes_[n]->inputs_)
      if (in == from) in = to;
    LinkInputs(n);
  }
  if (include_graph_outputs)
    for (ValueId& o : outputs_)
      if (o == from) o = to;
}

const Node* Graph::Producer(ValueId v) const {
  if (v == kNoValue || !has_value(v)) return nullptr;
  NodeId p = values_[v]->producer_;
  return p == kNoNode ? nullptr : nodes_[p].get();
}

std::vector<NodeId> Graph::Consumers(ValueId v) const {
  std::vector<NodeId> out;
  if (v == kNoValue || !has_value(v)) return out;
  for (const Use& u : values_[v]->uses_)
    if (std::find(out.begin(), out.end(), u.node) == out.end()) out.push_back(u.node);
  return out;
}

// ---------------------------------------------------------------- order and verification

Status Graph::TopologicalSort() {
  // Kahn's algorithm, preferring the current order among ready nodes so that already-sorted
  // graphs keep their order exactly (exports stay byte-stable).
  std::unordered_map<NodeId, size_t> position;
  for (size_t k = 0; k < order_.size(); ++k) position[order_[k]] = k;
  std::unordered_map<NodeId, int> pending;
  std::vector<std::vector<NodeId>> dependents(nodes_.size());
  for (NodeId n : order_) {
    int count = 0;
    std::unordered_set<NodeId> preds;
    for (ValueId v : nodes_[n]->inputs_) {
      if (v == kNoValue) continue;
      const Value& val = *values_[v];
      if (val.producer_ != kNoNode) {
        if (val.producer_ == n)
          return InvalidArgument("node ", nodes_[n]->Describe(), " consumes its own output '",
                                 val.name_, "' (a cycle)");
        if (preds.insert(val.producer_).second) {
          dependents[val.producer_].push_back(n);
          ++count;
        }
      } else if (!val.initializer_ && !IsGraphInput(v)) {
        return InvalidArgument("input '", val.name_, "' of node ", nodes_[n]->Describe(),
                               " is not defined by any node, initializer or graph input");
      }
    }
    pending[n] = count;
  }
  auto cmp = [&](NodeId a, NodeId b) { return position[a] > position[b]; };
  std::priority_queue<NodeId, std::vector<NodeId>, decltype(cmp)> ready(cmp);
  for (NodeId n : order_)
    if (pending[n] == 0) ready.push(n);
  std::vector<NodeId> sorted;
  sorted.reserve(order_.size());
  while (!ready.empty()) {
    NodeId n = ready.top();
    ready.pop();
    sorted.push_back(n);
    for (NodeId d : dependents[n])
      if (--pending[d] == 0) ready.push(d);
  }
  if (sorted.size() != order_.size()) {
    for (NodeId n : order_)
      if (pending[n] > 0)
        return InvalidArgument("the graph has a cycle through node ", nodes_[n]->Describe());
  }
  order_ = std::move(sorted);
  return Status::Ok();
}

Status Graph::Verify() const {
  std::unordered_set<ValueId> defined;
  for (ValueId v : inputs_) {
    if (!has_value(v)) return Internal("graph input refers to a removed value");
    defined.insert(v);
  }
  for (ValueId v : initializer_order_) {
    if (!has_value(v) || !values_[v]->initializer_)
      return Internal("initializer list refers to a value without an initializer");
    defined.insert(v);
  }
  std::unordered_set<NodeId> seen;
  for (NodeId n : order_) {
    if (!has_node(n)) return Internal("node order refers to a removed node");
    if (!seen.insert(n).second) return Internal("node ", nodes_[n]->Describe(), " appears twice in the order");
    const Node& node = *nodes_[n];
    for (size_t k = 0; k < node.inputs_.size(); ++k) {
      ValueId v = node.inputs_[k];
      if (v == kNoValue) continue;
      if (!has_value(v)) return Internal("node ", node.Describe(), " uses a removed value");
      if (!defined.count(v))
        return InvalidArgument("input '", values_[v]->name_, "' of node ", node.Describe(),
                               values_[v]->producer_ != kNoNode
                                   ? " is produced later (the order is not topological)"
                                   : " is not defined by any node, initializer or graph input");
      const auto& uses = values_[v]->uses_;
      if (std::find(uses.begin(), uses.end(), Use{n, static_cast<uint32_t>(k)}) == uses.end())
        return Internal("use list of '", values_[v]->name_, "' misses node ", node.Describe());
    }
    for (ValueId v : node.outputs_) {
      if (v == kNoValue) continue;
      if (!has_value(v)) return Internal("node ", node.Describe(), " writes a removed value");
      if (values_[v]->producer_ != n)
        return Internal("producer link of '", values_[v]->name_, "' is inconsistent");
      if (defined.count(v))
        return InvalidArgument("value '", values_[v]->name_, "' is defined twice (by node ",
                               node.Describe(), " and earlier)");
      defined.insert(v);
    }
  }
  size_t live = 0;
  for (const auto& n : nodes_) live += n != nullptr;
  if (live != order_.size()) return Internal("a live node is missing from the order");
  std::unordered_set<ValueId> outs;
  for (ValueId v : outputs_) {
    if (!has_value(v)) return Internal("graph output refers to a removed value");
    if (!defined.count(v))
      return InvalidArgument("graph output '", values_[v]->name_, "' is never defined");
    if (!outs.insert(v).second)
      return InvalidArgument("graph output '", values_[v]->name_, "' is listed twice");
  }
  return Status::Ok();
}

std::string Graph::UniqueNodeName(const std::string& base) {
  std::string candidate = base;
  for (int k = 1; candidate.empty() || node_names_.count(candidate); ++k)
    candidate = base + "_" + std::to_string(k);
  return candidate;
}

// ---------------------------------------------------------------- model

int64_t Model::OpsetVersion(const std::string& dom) const {
  for (const OpsetImport& o : opset_imports) {
    bool same = o.domain == dom || (o.domain.empty() && dom == "ai.onnx") ||
                (o.domain == "ai.onnx" && dom.empty());
    if (same) return o.version;
  }
  return -1;
}

void Model::SetOpsetVersion(const std::string& dom, int64_t version) {
  for (OpsetImport& o : opset_imports) {
    if (o.domain == dom || (o.domain.empty() && dom == "ai.onnx") ||
        (o.domain == "ai.onnx" && dom.empty())) {
      o.version = version;
      return;
    }
  }
  opset_imports.push_back(OpsetImport{dom, version});
}

void Model::SetMetadata(const std::string& key, const std::string& value) {
  for (auto& kv : metadata_props) {
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  }
  metadata_props.emplace_back(key, value);
}

const std::string* Model::FindMetadata(const std::string& key) const {
  for (const auto& kv : metadata_props)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

}  // namespace onnxq
