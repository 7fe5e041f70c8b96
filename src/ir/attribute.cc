#include "onnxq/ir/attribute.h"

#include <algorithm>
#include <cstring>

namespace onnxq {

const char* AttrTypeName(AttrType t) {
  switch (t) {
    case AttrType::kUndefined: return "undefined";
    case AttrType::kFloat: return "float";
    case AttrType::kInt: return "int";
    case AttrType::kString: return "string";
    case AttrType::kTensor: return "tensor";
    case AttrType::kGraph: return "graph";
    case AttrType::kFloats: return "floats";
    case AttrType::kInts: return "ints";
    case AttrType::kStrings: return "strings";
    case AttrType::kTensors: return "tensors";
    case AttrType::kGraphs: return "graphs";
    case AttrType::kSparseTensor: return "sparse_tensor";
    case AttrType::kSparseTensors: return "sparse_tensors";
    case AttrType::kTypeProto: return "type_proto";
    case AttrType::kTypeProtos: return "type_protos";
  }
  return "unknown";
}

Attribute Attribute::Float(std::string name, float v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kFloat;
  a.f = v;
  return a;
}
Attribute Attribute::Int(std::string name, int64_t v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kInt;
  a.i = v;
  return a;
}
Attribute Attribute::String(std::string name, std::string v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kString;
  a.s = std::move(v);
  return a;
}
Attribute Attribute::TensorValue(std::string name, Tensor v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kTensor;
  a.t = std::move(v);
  return a;
}
Attribute Attribute::Floats(std::string name, std::vector<float> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kFloats;
  a.floats = std::move(v);
  return a;
}
Attribute Attribute::Ints(std::string name, std::vector<int64_t> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute Attribute::Strings(std::string name, std::vector<std::string> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = AttrType::kStrings;
  a.strings = std::move(v);
  return a;
}

namespace {
bool FloatBitsEqual(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }
}  // namespace

bool Attribute::operator==(const Attribute& o) const {
  if (name != o.name || type != o.type || doc_string != o.doc_string ||
      ref_attr_name != o.ref_attr_name)
    return false;
  switch (type) {
    case AttrType::kFloat: return FloatBitsEqual(f, o.f);
    case AttrType::kInt: return i == o.i;
    case AttrType::kString: return s == o.s;
    case AttrType::kTensor: return t.BitwiseEqual(o.t);
    case AttrType::kFloats:
      return floats.size() == o.floats.size() &&
             std::equal(floats.begin(), floats.end(), o.floats.begin(), FloatBitsEqual);
    case AttrType::kInts: return ints == o.ints;
    case AttrType::kStrings: return strings == o.strings;
    case AttrType::kTensors:
      if (tensors.size() != o.tensors.size()) return false;
      for (size_t k = 0; k < tensors.size(); ++k)
        if (!tensors[k].BitwiseEqual(o.tensors[k])) return false;
      return true;
    default: return true;
  }
}

const Attribute* Attributes::Find(const std::string& name) const {
  for (const Attribute& a : attrs_)
    if (a.name == name) return &a;
  return nullptr;
}

void Attributes::Set(Attribute a) {
  for (Attribute& x : attrs_) {
    if (x.name == a.name) {
      x = std::move(a);
      return;
    }
  }
  attrs_.push_back(std::move(a));
}

bool Attributes::Remove(const std::string& name) {
  auto it = std::find_if(attrs_.begin(), attrs_.end(),
                         [&](const Attribute& a) { return a.name == name; });
  if (it == attrs_.end()) return false;
  attrs_.erase(it);
  return true;
}

StatusOr<const Attribute*> Attributes::Typed(const std::string& name, AttrType type) const {
  const Attribute* a = Find(name);
  if (!a) return NotFound("required attribute '", name, "' is missing");
  if (a->type != type)
    return InvalidArgument("attribute '", name, "' has type ", AttrTypeName(a->type),
                           ", expected ", AttrTypeName(type));
  return a;
}

#define ONNXQ_DEFINE_GETTERS(Ret, Fn, Type, field)                                        \
  StatusOr<Ret> Attributes::Fn(const std::string& name) const {                           \
    ONNXQ_ASSIGN_OR_RETURN(const Attribute* a, Typed(name, Type));                        \
    return a->field;                                                                       \
  }

ONNXQ_DEFINE_GETTERS(int64_t, GetInt, AttrType::kInt, i)
ONNXQ_DEFINE_GETTERS(float, GetFloat, AttrType::kFloat, f)
ONNXQ_DEFINE_GETTERS(std::string, GetString, AttrType::kString, s)
ONNXQ_DEFINE_GETTERS(std::vector<int64_t>, GetInts, AttrType::kInts, ints)
ONNXQ_DEFINE_GETTERS(std::vector<float>, GetFloats, AttrType::kFloats, floats)
ONNXQ_DEFINE_GETTERS(std::vector<std::string>, GetStrings, AttrType::kStrings, strings)
ONNXQ_DEFINE_GETTERS(Tensor, GetTensor, AttrType::kTensor, t)
#undef ONNXQ_DEFINE_GETTERS

StatusOr<int64_t> Attributes::GetInt(const std::string& name, int64_t fallback) const {
  return Has(name) ? GetInt(name) : StatusOr<int64_t>(fallback);
}
StatusOr<float> Attributes::GetFloat(const std::string& name, float fallback) const {
  return Has(name) ? GetFloat(name) : StatusOr<float>(fallback);
}
StatusOr<std::string> Attributes::GetString(const std::string& name,
                                            const std::string& fallback) const {
  return Has(name) ? GetString(name) : StatusOr<std::string>(fallback);
}
StatusOr<std::vector<int64_t>> Attributes::GetInts(const std::string& name,
                                                   const std::vector<int64_t>& fallback) const {
  return Has(name) ? GetInts(name) : StatusOr<std::vector<int64_t>>(fallback);
}
StatusOr<std::vector<float>> Attributes::GetFloats(const std::string& name,
                                                   const std::vector<float>& fallback) const {
  return Has(name) ? GetFloats(name) : StatusOr<std::vector<float>>(fallback);
}

}  // namespace onnxq
