// onnxq::Model -> ONNX ModelProto. What the importer kept (node order, names, attribute order,
// opsets, metadata, doc strings, declared value_info, functions) is written back as it was.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <climits>
#include <optional>
#include <unordered_map>

#include "onnx/proto_convert.h"
#include "onnxq/base/file.h"
#include "onnxq/onnx/model_io.h"

namespace onnxq {
namespace {

// Where each externally stored initializer lives in the data file.
struct ExternalPlan {
  std::string location;  // relative to the model's folder
  struct Entry {
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::unordered_map<ValueId, Entry> entries;
  uint64_t file_size = 0;
};

void ValueInfoToProto(const Value& v, onnx::ValueInfoProto* vi) {
  vi->set_name(v.name());
  if (v.dtype != DataType::kUndefined) onnx_io::TypeToProto(v.dtype, v.shape, vi->mutable_type());
  if (!v.doc_string.empty()) vi->set_doc_string(v.doc_string);
}

Status AttributeToProto(const Attribute& a, onnx::AttributeProto* ap) {
  ap->set_name(a.name);
  if (!a.doc_string.empty()) ap->set_doc_string(a.doc_string);
  if (!a.ref_attr_name.empty()) ap->set_ref_attr_name(a.ref_attr_name);
  switch (a.type) {
    case AttrType::kFloat: ap->set_f(a.f); break;
    case AttrType::kInt: ap->set_i(a.i); break;
    case AttrType::kString: ap->set_s(a.s); break;
    case AttrType::kTensor: onnx_io::TensorToProto(a.t, "", ap->mutable_t()); break;
    case AttrType::kFloats:
      for (float f : a.floats) ap->add_floats(f);
      break;
    case AttrType::kInts:
      for (int64_t i : a.ints) ap->add_ints(i);
      break;
    case AttrType::kStrings:
      for (const auto& s : a.strings) ap->add_strings(s);
      break;
    case AttrType::kTensors:
      for (const auto& t : a.tensors) onnx_io::TensorToProto(t, "", ap->add_tensors());
      break;
    default:
      return Unsupported("attribute '", a.name, "' has type ", AttrTypeName(a.type),
                         ", which onnxq cannot export");
  }
  ap->set_type(static_cast<onnx::AttributeProto::AttributeType>(a.type));
  return Status::Ok();
}

Status BuildModelProto(const Model& m, const ExportOptions& options, const ExternalPlan* plan,
                       onnx::ModelProto* p) {
  const Graph& g = m.graph;
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  p->set_ir_version(m.ir_version);
  for (const OpsetImport& o : m.opset_imports) {
    auto* op = p->add_opset_import();
    op->set_domain(o.domain);
    op->set_version(o.version);
  }
  if (!m.producer_name.empty()) p->set_producer_name(m.producer_name);
  if (!m.producer_version.empty()) p->set_producer_version(m.producer_version);
  if (!m.domain.empty()) p->set_domain(m.domain);
  if (m.model_version != 0) p->set_model_version(m.model_version);
  if (!m.doc_string.empty()) p->set_doc_string(m.doc_string);
  for (const auto& kv : m.metadata_props) {
    auto* e = p->add_metadata_props();
    e->set_key(kv.first);
    e->set_value(kv.second);
  }

  onnx::GraphProto* gp = p->mutable_graph();
  gp->set_name(g.name);
  if (!g.doc_string.empty()) gp->set_doc_string(g.doc_string);
  for (NodeId n : g.order()) {
    const Node& node = g.node(n);
    auto* np = gp->add_node();
    for (ValueId v : node.inputs()) np->add_input(v == kNoValue ? std::string() : g.value(v).name());
    for (ValueId v : node.outputs()) np->add_output(v == kNoValue ? std::string() : g.value(v).name());
    if (!node.name.empty()) np->set_name(node.name);
    np->set_op_type(node.op_type);
    if (!node.domain.empty()) np->set_domain(node.domain);
    for (const Attribute& a : node.attrs.all()) {
      Status s = AttributeToProto(a, np->add_attribute());
      if (!s.ok()) return s.Prepend("node " + node.Describe());
    }
    if (!node.doc_string.empty()) np->set_doc_string(node.doc_string);
  }
  for (ValueId id : g.initializer_order()) {
    const Value& v = g.value(id);
    auto* tp = gp->add_initializer();
    const ExternalPlan::Entry* ext = nullptr;
    if (plan) {
      auto it = plan->entries.find(id);
      if (it != plan->entries.end()) ext = &it->second;
    }
    if (ext) {
      const Tensor& t = *v.initializer();
      tp->set_name(v.name());
      for (int64_t d : t.dims()) tp->add_dims(d);
      tp->set_data_type(static_cast<int32_t>(t.dtype()));
      tp->set_data_location(onnx::TensorProto::EXTERNAL);
      auto add = [&](const char* key, const std::string& value) {
        auto* e = tp->add_external_data();
        e->set_key(key);
        e->set_value(value);
      };
      add("location", plan->location);
      add("offset", std::to_string(ext->offset));
      add("length", std::to_string(ext->length));
    } else {
      onnx_io::TensorToProto(*v.initializer(), v.name(), tp);
    }
  }
  for (ValueId id : g.inputs()) ValueInfoToProto(g.value(id), gp->add_input());
  for (ValueId id : g.outputs()) ValueInfoToProto(g.value(id), gp->add_output());
  for (ValueId id : g.value_ids()) {
    const Value& v = g.value(id);
    bool write = v.declared_value_info;
    if (!write && options.write_inferred_value_info)
      write = v.dtype != DataType::kUndefined && !v.is_initializer() && !g.IsGraphInput(id) &&
              !g.IsGraphOutput(id) && (v.producer() != kNoNode || !v.uses().empty());
    if (write) ValueInfoToProto(v, gp->add_value_info());
  }
  for (const auto& bytes : m.preserved.quantization_annotation) {
    if (!gp->add_quantization_annotation()->ParseFromString(bytes))
      return Internal("a preserved quantization_annotation does not parse");
  }
  for (const auto& bytes : m.preserved.functions) {
    if (!p->add_functions()->ParseFromString(bytes))
      return Internal("a preserved model-local function does not parse");
  }
  return Status::Ok();
}

StatusOr<std::string> Serialize(const onnx::ModelProto& p) {
  size_t size = p.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX))
    return OutOfRange("the serialized model would have ", size,
                      " bytes; protobuf cannot write 2 GiB or more (lower "
                      "ExportOptions::external_data_threshold to move tensors to external data)");
  std::string out;
  if (!p.SerializeToString(&out)) return Internal("protobuf failed to serialize the model");
  return out;
}

}  // namespace

StatusOr<std::string> SerializeModel(const Model& model, const ExportOptions& options) {
  onnx::ModelProto p;
  ONNXQ_RETURN_IF_ERROR(BuildModelProto(model, options, nullptr, &p));
  return Serialize(p);
}

namespace {

Status SaveModelImpl(const Model& model, const std::string& path, const ExportOptions& options) {
  const Graph& g = model.graph;
  int64_t total = 0;
  for (ValueId id : g.initializer_order()) total += static_cast<int64_t>(g.value(id).initializer()->nbytes());

  ExternalPlan plan;
  std::optional<AtomicFile> data_file;
  if (total > options.external_data_threshold) {
    plan.location = BaseName(path) + ".data";
    const uint64_t align =
        options.external_data_alignment > 0 ? static_cast<uint64_t>(options.external_data_alignment) : 1;
    for (ValueId id : g.initializer_order()) {
      const Tensor& t = *g.value(id).initializer();
      if (t.dtype() == DataType::kString ||
          static_cast<int64_t>(t.nbytes()) < options.external_data_min_tensor_bytes)
        continue;
      plan.file_size = (plan.file_size + align - 1) / align * align;
      plan.entries[id] = ExternalPlan::Entry{plan.file_size, t.nbytes()};
      plan.file_size += t.nbytes();
    }
  }

  onnx::ModelProto p;
  ONNXQ_RETURN_IF_ERROR(BuildModelProto(model, options, plan.entries.empty() ? nullptr : &plan, &p));
  ONNXQ_ASSIGN_OR_RETURN(std::string serialized, Serialize(p));
  const std::string* bytes = &serialized;
  p.Clear();

  if (!plan.entries.empty()) {
    const std::string data_path = DirName(path) + "/" + plan.location;
    auto created = AtomicFile::Create(data_path);
    if (!created.ok()) return created.status();
    data_file.emplace(std::move(created).value());
    static const char zeros[4096] = {};
    for (ValueId id : g.initializer_order()) {
      auto it = plan.entries.find(id);
      if (it == plan.entries.end()) continue;
      while (data_file->size() < it->second.offset) {
        size_t pad = static_cast<size_t>(std::min<uint64_t>(sizeof(zeros), it->second.offset - data_file->size()));
        ONNXQ_RETURN_IF_ERROR(data_file->Write(zeros, pad));
      }
      const Tensor& t = *g.value(id).initializer();
      ONNXQ_RETURN_IF_ERROR(data_file->Write(t.raw(), t.nbytes()));
    }
  }
  // Both files are complete as temporaries before either is renamed into place.
  ONNXQ_ASSIGN_OR_RETURN(AtomicFile model_file, AtomicFile::Create(path));
  ONNXQ_RETURN_IF_ERROR(model_file.Write(bytes->data(), bytes->size()));
  if (data_file) ONNXQ_RETURN_IF_ERROR(data_file->Commit());
  return model_file.Commit();
}

}  // namespace

Status SaveModel(const Model& model, const std::string& path, const ExportOptions& options) {
  Status s = SaveModelImpl(model, path, options);
  return s.ok() ? s : s.Prepend("cannot write '" + path + "'");
}

Status SaveTensorProtoFile(const Tensor& tensor, const std::string& name, const std::string& path) {
  onnx::TensorProto p;
  onnx_io::TensorToProto(tensor, name, &p);
  if (p.ByteSizeLong() > static_cast<size_t>(INT_MAX))
    return OutOfRange("tensor '", name, "' is too large for a TensorProto file (2 GiB or more)");
  std::string bytes;
  if (!p.SerializeToString(&bytes)) return Internal("protobuf failed to serialize tensor '", name, "'");
  return AtomicWriteFile(path, bytes);
}

}  // namespace onnxq
