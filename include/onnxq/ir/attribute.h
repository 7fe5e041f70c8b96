// Node attributes with typed access. Passes and kernels read attributes through the typed getters
// (GetInt, GetFloats, ...), which check the type and report a clear error naming the attribute;
// op-specific parsing into structs lives next to each op, not sprinkled through passes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"
#include "onnxq/ir/tensor.h"

namespace onnxq {

// Values equal ONNX's AttributeProto.AttributeType.
enum class AttrType : int32_t {
  kUndefined = 0,
  kFloat = 1,
  kInt = 2,
  kString = 3,
  kTensor = 4,
  kGraph = 5,
  kFloats = 6,
  kInts = 7,
  kStrings = 8,
  kTensors = 9,
  kGraphs = 10,
  kSparseTensor = 11,
  kSparseTensors = 12,
  kTypeProto = 13,
  kTypeProtos = 14,
};
const char* AttrTypeName(AttrType t);

struct Attribute {
  std::string name;
  AttrType type = AttrType::kUndefined;
  float f = 0.f;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::string doc_string;
  std::string ref_attr_name;  // only inside functions; kept for round trips

  static Attribute Float(std::string name, float v);
  static Attribute Int(std::string name, int64_t v);
  static Attribute String(std::string name, std::string v);
  static Attribute TensorValue(std::string name, Tensor v);
  static Attribute Floats(std::string name, std::vector<float> v);
  static Attribute Ints(std::string name, std::vector<int64_t> v);
  static Attribute Strings(std::string name, std::vector<std::string> v);

  bool operator==(const Attribute& o) const;
};

// Ordered (import order is kept for faithful export) with lookup by name.
class Attributes {
 public:
  bool Has(const std::string& name) const { return Find(name) != nullptr; }
  const Attribute* Find(const std::string& name) const;
  void Set(Attribute a);  // replaces an attribute of the same name, else appends
  bool Remove(const std::string& name);
  const std::vector<Attribute>& all() const { return attrs_; }
  size_t size() const { return attrs_.size(); }
  bool empty() const { return attrs_.empty(); }

  // Typed getters: error if missing (no default) or of another type.
  StatusOr<int64_t> GetInt(const std::string& name) const;
  StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  StatusOr<float> GetFloat(const std::string& name) const;
  StatusOr<float> GetFloat(const std::string& name, float fallback) const;
  StatusOr<std::string> GetString(const std::string& name) const;
  StatusOr<std::string> GetString(const std::string& name, const std::string& fallback) const;
  StatusOr<std::vector<int64_t>> GetInts(const std::string& name) const;
  StatusOr<std::vector<int64_t>> GetInts(const std::string& name,
                                         const std::vector<int64_t>& fallback) const;
  StatusOr<std::vector<float>> GetFloats(const std::string& name) const;
  StatusOr<std::vector<float>> GetFloats(const std::string& name,
                                         const std::vector<float>& fallback) const;
  StatusOr<std::vector<std::string>> GetStrings(const std::string& name) const;
  StatusOr<Tensor> GetTensor(const std::string& name) const;

  bool operator==(const Attributes& o) const { return attrs_ == o.attrs_; }

 private:
  StatusOr<const Attribute*> Typed(const std::string& name, AttrType type) const;
  std::vector<Attribute> attrs_;
};

}  // namespace onnxq
