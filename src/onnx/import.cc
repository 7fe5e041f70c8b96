// ONNX ModelProto -> onnxq::Model. Everything from the file is untrusted: sizes are checked
// before allocating, names are checked for SSA violations, and every error names the file and the
// node or tensor at fault.
#include <google/protobuf/stubs/logging.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>

#include <climits>
#include <cstdio>
#include <cmath>
#include <exception>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "onnx/proto_convert.h"
#include "onnx/shape_infer.h"
#include "onnxq/base/file.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq {
namespace {

using onnx_io::kMaxInferenceDataElements;
using onnx_io::TensorReadContext;

std::string DescribeProtoNode(const onnx::NodeProto& n, int index) {
  std::string s = n.op_type().empty() ? std::string("<no op_type>") : n.op_type();
  if (!n.name().empty()) return s + " '" + n.name() + "'";
  return s + " (node #" + std::to_string(index) + ")";
}

std::string CanonicalDomain(const std::string& d) { return d == "ai.onnx" ? std::string() : d; }
std::string DomainLabel(const std::string& d) { return d.empty() ? std::string("ai.onnx") : d; }

// Protobuf prints parse problems to stderr by itself; onnxq reports errors through Status, and the
// CLI promises exactly one error line, so silence its logging below FATAL.
void QuietProtobufLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel level, const char* file, int line,
                                       const std::string& message) {
      if (level >= google::protobuf::LOGLEVEL_FATAL)
        std::fprintf(stderr, "[protobuf FATAL %s:%d] %s\n", file, line, message.c_str());
    });
  });
}

AttrType InferAttrType(const onnx::AttributeProto& a) {
  // IR version 1 files carry no `type`: deduce it from the field in use.
  if (a.has_f()) return AttrType::kFloat;
  if (a.has_i()) return AttrType::kInt;
  if (a.has_s()) return AttrType::kString;
  if (a.has_t()) return AttrType::kTensor;
  if (a.has_g()) return AttrType::kGraph;
  if (a.has_sparse_tensor()) return AttrType::kSparseTensor;
  if (a.has_tp()) return AttrType::kTypeProto;
  if (a.floats_size()) return AttrType::kFloats;
  if (a.ints_size()) return AttrType::kInts;
  if (a.strings_size()) return AttrType::kStrings;
  if (a.tensors_size()) return AttrType::kTensors;
  if (a.graphs_size()) return AttrType::kGraphs;
  if (a.sparse_tensors_size()) return AttrType::kSparseTensors;
  if (a.type_protos_size()) return AttrType::kTypeProtos;
  return AttrType::kUndefined;
}

// Rewrites an imported attribute's proto so that it says exactly what export will write: the
// deduced type set, fields of other types cleared, a typed scalar without a value written as 0. ONNX's
// schema checks and shape inference then read the same attribute on first import as on
// re-import of the export (they test has_i()/has_f() etc., not `type`), which keeps
// export -> import -> export byte-stable. Tensor attributes get canonical raw data when small
// (shape inference reads Constant values) and no data when large (it then reads none, both times).
void CanonicalizeAttributeProto(const Attribute& a, onnx::AttributeProto* ap) {
  onnx::TensorProto t;
  if (a.type == AttrType::kTensor) {
    if (a.t.numel() <= kMaxInferenceDataElements) {
      onnx_io::TensorToProto(a.t, "", &t);
    } else {
      for (int64_t d : a.t.dims()) t.add_dims(d);
      t.set_data_type(static_cast<int32_t>(a.t.dtype()));
    }
  }
  std::string name = ap->name(), doc = ap->doc_string();
  onnx::AttributeProto tensors_holder;
  if (a.type == AttrType::kTensors) tensors_holder.mutable_tensors()->Swap(ap->mutable_tensors());
  ap->Clear();
  ap->set_name(name);
  if (!doc.empty()) ap->set_doc_string(doc);
  switch (a.type) {
    case AttrType::kFloat: ap->set_f(a.f); break;
    case AttrType::kInt: ap->set_i(a.i); break;
    case AttrType::kString: ap->set_s(a.s); break;
    case AttrType::kTensor: ap->mutable_t()->Swap(&t); break;
    case AttrType::kFloats:
      for (float f : a.floats) ap->add_floats(f);
      break;
    case AttrType::kInts:
      for (int64_t i : a.ints) ap->add_ints(i);
      break;
    case AttrType::kStrings:
      for (const auto& s : a.strings) ap->add_strings(s);
      break;
    case AttrType::kTensors: ap->mutable_tensors()->Swap(tensors_holder.mutable_tensors()); break;
    default: break;
  }
  ap->set_type(static_cast<onnx::AttributeProto::AttributeType>(a.type));
}

class Importer {
 public:
  Importer(const ImportOptions& options, std::string base_dir) : options_(options) {
    ctx_.limits = options.tensor_limits;
    ctx_.max_total_bytes = options.max_total_tensor_bytes;
    ctx_.base_dir = std::move(base_dir);
    ctx_.allow_external_data = options.allow_external_data;
  }

  StatusOr<Model> Run(onnx::ModelProto& proto);

 private:
  Status ImportOpsets(const onnx::ModelProto& proto, Model* model);
  Status ImportAttribute(const onnx::AttributeProto& ap, const std::string& node_desc,
                         Attribute* out);
  Status ImportGraph(onnx::GraphProto& gp, Model* model);
  Status CheckOperator(const onnx::NodeProto& np, const std::string& desc, const Model& model);
  Status InferShapes(onnx::ModelProto& proto, Graph& g);

  const ImportOptions& options_;
  TensorReadContext ctx_;
  // Values whose type the file states (graph inputs/outputs, value_info): inference fills only
  // what these leave open.
  std::unordered_set<ValueId> declared_;
  std::unordered_set<std::string> local_functions_;  // "domain:name"
};

Status Importer::ImportOpsets(const onnx::ModelProto& proto, Model* model) {
  std::unordered_set<std::string> seen;
  for (const auto& op : proto.opset_import()) {
    std::string canon = CanonicalDomain(op.domain());
    if (!seen.insert(canon).second)
      return InvalidArgument("opset_import lists domain '", DomainLabel(canon), "' twice");
    if (op.version() < 1)
      return InvalidArgument("opset_import gives domain '", DomainLabel(canon),
                             "' the invalid version ", op.version());
    if (canon.empty() && op.version() > kMaxKnownOnnxOpset)
      return Unsupported("the model imports ai.onnx opset ", op.version(),
                         ", newer than any onnxq knows (up to ", kMaxKnownOnnxOpset, ")");
    model->opset_imports.push_back(OpsetImport{op.domain(), op.version()});
  }
  return Status::Ok();
}

Status Importer::ImportAttribute(const onnx::AttributeProto& ap, const std::string& node_desc,
                                 Attribute* a) {
  const std::string where = "attribute '" + ap.name() + "' of node " + node_desc;
  if (ap.name().empty()) return InvalidArgument("node ", node_desc, " has an attribute without a name");
  if (!ap.ref_attr_name().empty())
    return InvalidArgument(where, " refers to a function attribute ('", ap.ref_attr_name(),
                           "') outside a function");
  AttrType type = ap.has_type() && ap.type() != onnx::AttributeProto::UNDEFINED
                      ? static_cast<AttrType>(ap.type())
                      : InferAttrType(ap);
  a->name = ap.name();
  a->type = type;
  a->doc_string = ap.doc_string();
  switch (type) {
    case AttrType::kFloat: a->f = ap.f(); break;
    case AttrType::kInt: a->i = ap.i(); break;
    case AttrType::kString: a->s = ap.s(); break;
    case AttrType::kTensor: {
      if (!ap.has_t()) return InvalidArgument(where, " is of type TENSOR but holds no tensor");
      ONNXQ_ASSIGN_OR_RETURN(a->t, onnx_io::TensorFromProto(ap.t(), where, ctx_));
      break;
    }
    case AttrType::kFloats: a->floats.assign(ap.floats().begin(), ap.floats().end()); break;
    case AttrType::kInts: a->ints.assign(ap.ints().begin(), ap.ints().end()); break;
    case AttrType::kStrings: a->strings.assign(ap.strings().begin(), ap.strings().end()); break;
    case AttrType::kTensors:
      for (int k = 0; k < ap.tensors_size(); ++k) {
        ONNXQ_ASSIGN_OR_RETURN(Tensor t, onnx_io::TensorFromProto(
                                             ap.tensors(k), where + " (tensor #" + std::to_string(k) + ")", ctx_));
        a->tensors.push_back(std::move(t));
      }
      break;
    case AttrType::kGraph:
    case AttrType::kGraphs:
      return Unsupported("subgraph attribute '", ap.name(), "' of node ", node_desc,
                         " is not supported yet");
    case AttrType::kSparseTensor:
    case AttrType::kSparseTensors:
      return Unsupported("sparse tensor ", where, " is not supported");
    case AttrType::kTypeProto:
    case AttrType::kTypeProtos:
      return Unsupported("type-proto ", where, " is not supported");
    case AttrType::kUndefined:
    default:
      return InvalidArgument(where, " has no value or an unknown type (", static_cast<int>(type), ")");
  }
  return Status::Ok();
}

Status Importer::CheckOperator(const onnx::NodeProto& np, const std::string& desc,
                               const Model& model) {
  const std::string domain = CanonicalDomain(np.domain());
  const int64_t version = model.OpsetVersion(domain);
  if (version < 0) {
    return InvalidArgument("node ", desc, " uses domain '", DomainLabel(domain),
                           "', which the model does not import (opset_import)");
  }
  if (local_functions_.count(np.domain() + ":" + np.op_type())) return Status::Ok();
  // Only the standard domains can be checked against ONNX's schemas, and only for opsets that
  // libonnx knows (newer opsets may add operators it has never heard of).
  if (!domain.empty() && domain != "ai.onnx.ml") return Status::Ok();
  const auto& ranges = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  auto range = ranges.find(domain);
  if (range == ranges.end() || version > range->second.second) return Status::Ok();
  if (!onnx::OpSchemaRegistry::Schema(np.op_type(), domain))
    return Unsupported("node ", desc, ": '", np.op_type(), "' is not an operator of domain '",
                       DomainLabel(domain), "'");
  const onnx::OpSchema* schema =
      onnx::OpSchemaRegistry::Schema(np.op_type(), static_cast<int>(version), domain);
  if (!schema)
    return Unsupported("node ", desc, ": operator '", np.op_type(), "' does not exist in ",
                       DomainLabel(domain), " opset ", version, " (it was added later)");
  // Input/output counts, empty required inputs, attribute names and types: what every consumer
  // (ONNX's shape inference included) assumes.
  // (Untyped attributes of IR v1 files have their deduced type by now: CanonicalizeAttributeProto.)
  try {
    schema->Verify(np);
  } catch (const std::exception& e) {
    std::string why = e.what();
    why = why.substr(0, why.find('\n'));
    if (auto ctx = why.find(" ==> Context:"); ctx != std::string::npos) why.resize(ctx);
    return InvalidArgument("node ", desc, " does not match operator ", np.op_type(), " of ",
                           DomainLabel(domain), " opset ", version, ": ", why);
  }
  return Status::Ok();
}

Status Importer::ImportGraph(onnx::GraphProto& gp, Model* model) {
  Graph& g = model->graph;
  g.name = gp.name();
  g.doc_string = gp.doc_string();
  if (gp.sparse_initializer_size() > 0) {
    const auto& sp = gp.sparse_initializer(0);
    return Unsupported("sparse initializer '", sp.values().name(), "' is not supported");
  }

  // Initializers, in file order.
  for (int k = 0; k < gp.initializer_size(); ++k) {
    onnx::TensorProto& tp = *gp.mutable_initializer(k);
    if (tp.name().empty()) return InvalidArgument("initializer #", k, " has no name");
    if (g.FindValue(tp.name()) != kNoValue)
      return InvalidArgument("duplicate initializer name '", tp.name(), "'");
    ONNXQ_ASSIGN_OR_RETURN(Tensor t,
                           onnx_io::TensorFromProto(tp, "initializer '" + tp.name() + "'", ctx_));
    ONNXQ_ASSIGN_OR_RETURN(ValueId id, g.AddValue(tp.name()));
    ONNXQ_RETURN_IF_ERROR(g.SetInitializer(id, std::move(t)));
    // The IR owns the bytes now. Shape inference only reads small initializers (shapes, axes,
    // Resize scales), so the rest is freed to keep the peak near one copy of the weights.
    // Kept ones are rewritten the way export writes them (raw_data, no external data), so
    // inference reads the same data on first import as on re-import of the export.
    const Tensor& imported = *g.value(id).initializer();
    if (imported.numel() <= kMaxInferenceDataElements) {
      const std::string name = tp.name();  // TensorToProto clears tp first
      onnx_io::TensorToProto(imported, name, &tp);
    } else {
      tp.clear_raw_data();
      tp.clear_float_data();
      tp.clear_int32_data();
      tp.clear_double_data();
      tp.clear_string_data();
      tp.clear_uint64_data();
      tp.clear_int64_data();
    }
  }

  // Graph inputs (old IR versions list initializers here too: they stay graph inputs).
  for (int k = 0; k < gp.input_size(); ++k) {
    const auto& vi = gp.input(k);
    if (vi.name().empty()) return InvalidArgument("graph input #", k, " has no name");
    const std::string what = "graph input '" + vi.name() + "'";
    DataType dtype = DataType::kUndefined;
    std::optional<Shape> shape;
    if (vi.has_type()) ONNXQ_RETURN_IF_ERROR(onnx_io::TypeFromProto(vi.type(), what, &dtype, &shape));
    ValueId id = g.FindValue(vi.name());
    if (id != kNoValue) {
      if (g.IsGraphInput(id)) return InvalidArgument(what, " is listed twice");
      const Value& v = g.value(id);
      if (dtype != DataType::kUndefined && dtype != v.dtype)
        return InvalidArgument(what, " is declared ", DataTypeName(dtype), " but its initializer is ",
                               DataTypeName(v.dtype));
    } else {
      ONNXQ_ASSIGN_OR_RETURN(id, g.AddValue(vi.name()));
      Value& v = g.value(id);
      v.dtype = dtype;
      v.shape = shape;
    }
    g.value(id).doc_string = vi.doc_string();
    declared_.insert(id);
    g.AddInput(id);
  }

  // Node outputs first (so a file whose nodes are out of order still links up), checking that
  // every value has exactly one definition.
  std::unordered_map<std::string, std::string> producer_of;
  for (int k = 0; k < gp.node_size(); ++k) {
    const auto& np = gp.node(k);
    const std::string desc = DescribeProtoNode(np, k);
    if (np.op_type().empty()) return InvalidArgument("node #", k, " has no op_type");
    for (const std::string& out : np.output()) {
      if (out.empty()) continue;
      auto it = producer_of.find(out);
      if (it != producer_of.end())
        return InvalidArgument("value '", out, "' is produced by two nodes: ", it->second, " and ", desc);
      ValueId existing = g.FindValue(out);
      if (existing != kNoValue) {
        if (g.value(existing).is_initializer())
          return InvalidArgument("node ", desc, " writes '", out, "', which is also an initializer");
        return InvalidArgument("node ", desc, " writes '", out, "', which is also a graph input");
      }
      ONNXQ_RETURN_IF_ERROR(g.AddValue(out).status());
      producer_of.emplace(out, desc);
    }
  }

  for (int k = 0; k < gp.node_size(); ++k) {
    onnx::NodeProto& np = *gp.mutable_node(k);
    const std::string desc = DescribeProtoNode(np, k);
    std::vector<ValueId> inputs, outputs;
    for (const std::string& in : np.input()) {
      if (in.empty()) {
        inputs.push_back(kNoValue);
        continue;
      }
      ValueId id = g.FindValue(in);
      if (id == kNoValue)
        return InvalidArgument("input '", in, "' of node ", desc,
                               " is not defined by any node, initializer or graph input");
      inputs.push_back(id);
    }
    for (const std::string& out : np.output()) outputs.push_back(out.empty() ? kNoValue : g.FindValue(out));
    Attributes attrs;
    for (auto& ap : *np.mutable_attribute()) {
      if (attrs.Has(ap.name()))
        return InvalidArgument("node ", desc, " has attribute '", ap.name(), "' twice");
      Attribute a;
      ONNXQ_RETURN_IF_ERROR(ImportAttribute(ap, desc, &a));
      CanonicalizeAttributeProto(a, &ap);
      attrs.Set(std::move(a));
    }
    ONNXQ_RETURN_IF_ERROR(CheckOperator(np, desc, *model));
    auto node_id = g.AddNode(np.op_type(), inputs, outputs, np.name(), np.domain());
    if (!node_id.ok()) return Status(node_id.status().code(), "node " + desc + ": " + node_id.status().message());
    Node& node = g.node(*node_id);
    node.attrs = std::move(attrs);
    node.doc_string = np.doc_string();
  }
  // Refuses cycles (naming a node on one); a file that lists nodes out of order is accepted and
  // put in order (stable, so well-ordered files keep their order exactly).
  ONNXQ_RETURN_IF_ERROR(g.TopologicalSort());

  for (int k = 0; k < gp.output_size(); ++k) {
    const auto& vi = gp.output(k);
    if (vi.name().empty()) return InvalidArgument("graph output #", k, " has no name");
    const std::string what = "graph output '" + vi.name() + "'";
    ValueId id = g.FindValue(vi.name());
    if (id == kNoValue)
      return InvalidArgument(what, " is not produced by any node, initializer or graph input");
    if (g.IsGraphOutput(id)) return InvalidArgument(what, " is listed twice");
    DataType dtype = DataType::kUndefined;
    std::optional<Shape> shape;
    if (vi.has_type()) ONNXQ_RETURN_IF_ERROR(onnx_io::TypeFromProto(vi.type(), what, &dtype, &shape));
    Value& v = g.value(id);
    if (!v.is_initializer() && !g.IsGraphInput(id)) {
      v.dtype = dtype;
      v.shape = shape;
    }
    if (v.doc_string.empty()) v.doc_string = vi.doc_string();
    declared_.insert(id);
    g.AddOutput(id);
  }

  for (const auto& vi : gp.value_info()) {
    ValueId id = g.FindValue(vi.name());
    if (id == kNoValue) continue;  // stale entry for a value the graph no longer has
    Value& v = g.value(id);
    if (v.declared_value_info) continue;
    DataType dtype = DataType::kUndefined;
    std::optional<Shape> shape;
    if (vi.has_type())
      ONNXQ_RETURN_IF_ERROR(onnx_io::TypeFromProto(vi.type(), "value '" + vi.name() + "'", &dtype, &shape));
    if (!v.is_initializer() && !declared_.count(id)) {
      v.dtype = dtype;
      v.shape = shape;
    }
    if (v.doc_string.empty()) v.doc_string = vi.doc_string();
    v.declared_value_info = true;
    declared_.insert(id);
  }

  for (const auto& qa : gp.quantization_annotation())
    model->preserved.quantization_annotation.push_back(qa.SerializeAsString());
  return Status::Ok();
}

// Fills types the file leaves open from ONNX's shape inference. Inference failures (newer opsets,
// unknown ops, custom domains) only mean fewer known shapes, never an import error; non-tensor
// types that inference finds (a Sequence* op's output) are refused.
Status Importer::InferShapes(onnx::ModelProto& proto, Graph& g) {
  std::vector<int> order;
  order.reserve(g.order().size());
  for (NodeId n : g.order()) order.push_back(static_cast<int>(n));  // ids follow file order
  const auto inferred = onnx_io::InferTypes(proto, order);
  for (ValueId id : g.value_ids()) {  // value order: deterministic errors
    Value& v = g.value(id);
    auto it = inferred.find(v.name());
    if (it == inferred.end()) continue;
    const std::string& name = v.name();
    const onnx::TypeProto& type = it->second;
    if (v.is_initializer()) continue;
    DataType dtype = DataType::kUndefined;
    std::optional<Shape> shape;
    std::string what = "value '" + name + "'";
    if (const Node* p = g.Producer(id)) what += " (output of " + p->Describe() + ")";
    Status s = onnx_io::TypeFromProto(type, what, &dtype, &shape);
    if (!s.ok()) {
      if (type.value_case() != onnx::TypeProto::kTensorType) return s;
      continue;  // e.g. an unknown element type that inference passed through
    }
    if (declared_.count(id)) {
      if (v.dtype == DataType::kUndefined) v.dtype = dtype;
      if (!v.shape && v.dtype == dtype) v.shape = shape;
      continue;
    }
    if (v.dtype == DataType::kUndefined || v.dtype == dtype) {
      v.dtype = dtype;
      v.shape = shape;
    }
  }
  return Status::Ok();
}

StatusOr<Model> Importer::Run(onnx::ModelProto& proto) {
  if (!proto.has_graph()) return InvalidArgument("the file holds no graph (is it an ONNX model?)");
  if (proto.ir_version() <= 0)
    return InvalidArgument("the model has no valid ir_version (is it an ONNX model?)");
  if (proto.ir_version() > kMaxKnownIrVersion)
    return Unsupported("IR version ", proto.ir_version(), " is newer than any onnxq knows (up to ",
                       kMaxKnownIrVersion, ")");
  if (proto.training_info_size() > 0) return Unsupported("training_info is not supported");
  Model model;
  model.ir_version = proto.ir_version();
  model.producer_name = proto.producer_name();
  model.producer_version = proto.producer_version();
  model.domain = proto.domain();
  model.model_version = proto.model_version();
  model.doc_string = proto.doc_string();
  for (const auto& kv : proto.metadata_props()) model.metadata_props.emplace_back(kv.key(), kv.value());
  ONNXQ_RETURN_IF_ERROR(ImportOpsets(proto, &model));
  for (const auto& f : proto.functions()) {
    local_functions_.insert(f.domain() + ":" + f.name());
    model.preserved.functions.push_back(f.SerializeAsString());
  }
  ONNXQ_RETURN_IF_ERROR(ImportGraph(*proto.mutable_graph(), &model));
  if (options_.infer_shapes) ONNXQ_RETURN_IF_ERROR(InferShapes(proto, model.graph));
  return model;
}

}  // namespace

StatusOr<Model> LoadModelFromBytes(const void* data, size_t size, const std::string& base_dir,
                                   const std::string& display_name, const ImportOptions& options) {
  QuietProtobufLogging();
  auto fail = [&](Status s) { return s.Prepend(display_name); };
  if (static_cast<int64_t>(size) > options.max_model_bytes)
    return fail(OutOfRange("the model has ", size, " bytes, more than the limit of ",
                           options.max_model_bytes, " (--max-model-bytes)"));
  if (size == 0) return fail(InvalidArgument("the file is empty"));
  if (size > static_cast<size_t>(INT_MAX))
    return fail(OutOfRange("the model has ", size,
                           " bytes; protobuf cannot parse 2 GiB or more (large tensors belong in "
                           "external data)"));
  onnx::ModelProto proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size)))
    return fail(InvalidArgument("not a valid ONNX model: protobuf parsing failed (the file is "
                                "truncated, corrupt or not an ONNX file)"));
  Importer importer(options, base_dir);
  auto model = importer.Run(proto);
  if (!model.ok()) return fail(model.status());
  return model;
}

StatusOr<Model> LoadModel(const std::string& path, const ImportOptions& options) {
  std::string bytes;
  {
    auto read = ReadFile(path, options.max_model_bytes);
    if (!read.ok()) {
      Status s = read.status();
      if (s.code() == StatusCode::kOutOfRange) s = OutOfRange(s.message(), " (--max-model-bytes)");
      return s.Prepend("cannot load model");
    }
    bytes = std::move(read).value();
  }
  std::string dir = DirName(path);
  auto model = LoadModelFromBytes(bytes.data(), bytes.size(), dir, path, options);
  if (!model.ok()) return model.status();
  model->source_path = path;
  return model;
}

Status CheckFiniteWeights(const Model& model) {
  const Graph& g = model.graph;
  const std::string file = model.source_path.empty() ? std::string("<model>") : model.source_path;
  auto check = [&](const Tensor& t, const std::string& what) -> Status {
    if (!IsFloatingPoint(t.dtype())) return Status::Ok();
    int64_t index = -1;
    if (t.HasNonFinite(&index))
      return InvalidArgument(file, ": ", what, " holds a non-finite value (", t.GetAsDouble(index),
                             ") at element ", index);
    return Status::Ok();
  };
  for (ValueId id : g.initializer_order())
    ONNXQ_RETURN_IF_ERROR(check(*g.value(id).initializer(), "initializer '" + g.value(id).name() + "'"));
  for (NodeId n : g.order()) {
    const Node& node = g.node(n);
    for (const Attribute& a : node.attrs.all()) {
      if (a.type == AttrType::kTensor)
        ONNXQ_RETURN_IF_ERROR(check(a.t, "attribute '" + a.name + "' of node " + node.Describe()));
      for (size_t k = 0; k < a.tensors.size(); ++k)
        ONNXQ_RETURN_IF_ERROR(check(a.tensors[k], "tensor #" + std::to_string(k) + " of attribute '" +
                                                      a.name + "' of node " + node.Describe()));
    }
  }
  return Status::Ok();
}

StatusOr<Tensor> LoadTensorProtoFile(const std::string& path, std::string* name,
                                     const TensorLimits& limits) {
  QuietProtobufLogging();
  ONNXQ_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    return OutOfRange(path, ": a TensorProto file cannot be 2 GiB or more");
  onnx::TensorProto proto;
  if (!proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return InvalidArgument(path, ": not a valid TensorProto file (protobuf parsing failed)");
  bytes.clear();
  bytes.shrink_to_fit();
  TensorReadContext ctx;
  ctx.limits = limits;
  ctx.max_total_bytes = limits.max_bytes;
  ctx.base_dir = DirName(path);
  auto t = onnx_io::TensorFromProto(
      proto, proto.name().empty() ? std::string("tensor") : "tensor '" + proto.name() + "'", ctx);
  if (!t.ok()) return Status(t.status()).Prepend(path);
  if (name) *name = proto.name();
  return t;
}

}  // namespace onnxq
