#include "onnx/shape_infer.h"

#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <cstdint>
#include <exception>
#include <unordered_set>
#include <vector>

namespace onnxq::onnx_io {
namespace {

using onnx::NodeProto;
using onnx::TypeProto;

std::string Canonical(const std::string& d) { return d == "ai.onnx" ? std::string() : d; }

int Rank(const std::unordered_map<std::string, TypeProto*>& types, const NodeProto& n, int i) {
  if (i >= n.input_size() || n.input(i).empty()) return -1;
  auto it = types.find(n.input(i));
  if (it == types.end() || !it->second->has_tensor_type() || !it->second->tensor_type().has_shape())
    return -1;
  return it->second->tensor_type().shape().dim_size();
}

const onnx::AttributeProto* Attr(const NodeProto& n, const char* name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

// Checks the preconditions that libonnx 1.12's inference functions assume without checking.
// False means "do not run inference on this node" (its outputs stay untyped); deciding whether
// the node is valid is left to whoever executes it.
bool SafeToInfer(const NodeProto& n, const std::unordered_map<std::string, TypeProto*>& types) {
  // Every named input must have a tensor type: several functions dereference input types
  // unconditionally.
  for (const std::string& in : n.input()) {
    if (in.empty()) continue;
    auto it = types.find(in);
    if (it == types.end() || !it->second->has_tensor_type()) return false;
    const auto& tt = it->second->tensor_type();
    if (tt.elem_type() <= 0 || tt.elem_type() > onnx::TensorProto_DataType_BFLOAT16) return false;
    if (tt.has_shape())
      for (const auto& d : tt.shape().dim())
        if (d.has_dim_value() && d.dim_value() < 0) return false;
    // A 1-D integer input whose length becomes an output rank (Expand's and Reshape's shape,
    // ConstantOfShape's input, ...): a declared length of 2^31 would make inference build a
    // shape of 2^31 dims. Real data cannot be that long (limits bound initializers), so only
    // declared lengths can be, and no real model has them.
    if (tt.has_shape() && tt.shape().dim_size() == 1 && tt.shape().dim(0).has_dim_value() &&
        tt.shape().dim(0).dim_value() > (int64_t{1} << 16) &&
        (tt.elem_type() == onnx::TensorProto_DataType_INT64 ||
         tt.elem_type() == onnx::TensorProto_DataType_INT32))
      return false;
  }
  const std::string& op = n.op_type();
  if (!n.domain().empty() && n.domain() != "ai.onnx") return true;
  // Axis attributes index the first input's dims (OneHot's and Flatten's may equal its rank, and
  // Unsqueeze's axes index the larger output): anything outside [-(r+k), r+k] is invalid, and
  // e.g. LayerNormalization's inference indexes with it unchecked.
  const int r0 = Rank(types, n, 0);
  for (const auto& a : n.attribute()) {
    if (a.name() == "axis" && a.type() == onnx::AttributeProto::INT) {
      const int64_t bound = r0 >= 0 ? r0 + 1 : int64_t{1} << 20;
      if (a.i() < -bound || a.i() > bound) return false;
    } else if (a.name() == "axes" && a.type() == onnx::AttributeProto::INTS) {
      const int64_t bound = r0 >= 0 ? r0 + a.ints_size() : int64_t{1} << 20;
      for (int64_t v : a.ints())
        if (v < -bound || v > bound) return false;
    }
  }
  // Spatial ops: the data input has rank >= 3 (N, C, spatial...), the weight (if any) the same
  // rank, and per-axis attributes match the number of spatial axes.
  int data = -1, weight = -1;
  if (op == "Conv" || op == "ConvTranspose" || op == "ConvInteger") {
    data = 0;
    weight = 1;
  } else if (op == "QLinearConv") {
    data = 0;
    weight = 3;
  } else if (op == "MaxPool" || op == "AveragePool" || op == "LpPool" || op == "MaxUnpool" ||
             op == "GlobalMaxPool" || op == "GlobalAveragePool" || op == "GlobalLpPool" ||
             op == "MaxRoiPool" || op == "RoiAlign" || op == "InstanceNormalization" ||
             op == "LRN" || op == "DepthToSpace" || op == "SpaceToDepth") {
    data = 0;
  }
  if (data >= 0) {
    int r = Rank(types, n, data);
    if (r >= 0 && r < 3) return false;
    if (weight >= 0) {
      int w = Rank(types, n, weight);
      if (r >= 0 && w >= 0 && w != r) return false;
    }
    if (r >= 3) {
      const int spatial = r - 2;
      for (const char* name : {"kernel_shape", "strides", "dilations", "output_padding", "output_shape"}) {
        const auto* a = Attr(n, name);
        if (a && a->ints_size() != spatial && !(std::string(name) == "output_shape" && a->ints_size() == r))
          return false;
      }
      if (const auto* a = Attr(n, "pads"); a && a->ints_size() != 2 * spatial) return false;
    }
    if (const auto* g = Attr(n, "group"); g && (g->i() <= 0 || g->i() > (int64_t{1} << 31))) return false;
  }
  // Gemm's A and B are matrices; Gemm-6's inference reads dim(1) of both without checking.
  if (op == "Gemm") {
    for (int i = 0; i < 2; ++i) {
      int r = Rank(types, n, i);
      if (r >= 0 && r != 2) return false;
    }
  }
  if (op == "RNN" || op == "GRU" || op == "LSTM") {
    for (int i = 0; i < 3; ++i) {
      int r = Rank(types, n, i);
      if (r >= 0 && r != 3) return false;
    }
    if (const auto* h = Attr(n, "hidden_size"); h && (h->i() <= 0 || h->i() > (int64_t{1} << 31)))
      return false;
  }
  return true;
}

TypeProto TypeOfTensor(const onnx::TensorProto& t) {
  TypeProto type;
  auto* tt = type.mutable_tensor_type();
  tt->set_elem_type(t.data_type());
  auto* shape = tt->mutable_shape();
  for (int64_t d : t.dims()) shape->add_dim()->set_dim_value(d);
  return type;
}

bool HasInlineData(const onnx::TensorProto& t) {
  return t.has_raw_data() || t.float_data_size() || t.int32_data_size() || t.int64_data_size() ||
         t.double_data_size() || t.uint64_data_size() || t.string_data_size();
}

}  // namespace

std::unordered_map<std::string, TypeProto> InferTypes(onnx::ModelProto& model,
                                                      const std::vector<int>& order) {
  std::unordered_map<std::string, TypeProto> types;   // owns the types
  std::unordered_map<std::string, TypeProto*> view;   // what ONNX's contexts read
  std::unordered_map<std::string, const onnx::TensorProto*> data;
  std::unordered_map<std::string, onnx::TensorShapeProto> shape_data;
  std::unordered_map<std::string, const TypeProto*> declared;
  std::unordered_map<std::string, int> opsets;
  onnx::shape_inference::ModelLocalFunctionsMap functions;
  auto set = [&](const std::string& name, const TypeProto& t) {
    TypeProto& slot = types[name];  // element addresses survive rehashing
    slot = t;
    view[name] = &slot;
  };

  for (const auto& o : model.opset_import()) opsets[Canonical(o.domain())] = static_cast<int>(o.version());
  for (const auto& f : model.functions()) functions[f.domain() + ":" + f.name()] = &f;
  onnx::GraphProto& g = *model.mutable_graph();
  for (const auto& init : g.initializer()) {
    set(init.name(), TypeOfTensor(init));
    if (HasInlineData(init)) data[init.name()] = &init;
  }
  for (const auto& in : g.input())
    if (in.has_type() && !types.count(in.name())) set(in.name(), in.type());
  for (const auto& vi : g.value_info())
    if (vi.has_type()) declared.emplace(vi.name(), &vi.type());
  for (const auto& vi : g.output())
    if (vi.has_type()) declared.emplace(vi.name(), &vi.type());

  const auto* registry = onnx::OpSchemaRegistry::Instance();
  const onnx::ShapeInferenceOptions options(/*check_type=*/false, /*error_mode=*/0, /*data_prop=*/true);
  for (int index : order) {
    NodeProto& n = *g.mutable_node(index);
    const std::string domain = Canonical(n.domain());
    auto opset = opsets.find(domain);
    if (n.op_type() == "Constant" && n.output_size() == 1)
      for (const auto& a : n.attribute())
        if (a.name() == "value" && a.has_t() && HasInlineData(a.t())) data[n.output(0)] = &a.t();
    if (opset != opsets.end() && SafeToInfer(n, view)) {
      const onnx::OpSchema* schema = registry->GetSchema(n.op_type(), opset->second, domain);
      auto local = functions.find(n.domain() + ":" + n.op_type());
      try {
        // The importer verified nodes of the opsets libonnx knows; for newer opsets the closest
        // older schema is used, and only if the node fits it (Scan without a body would crash).
        if (schema) schema->Verify(n);
        onnx::shape_inference::InferenceContextImpl ctx(n, view, data, {}, &shape_data, nullptr);
        bool ran = false;
        if (schema && schema->has_type_and_shape_inference_function()) {
          schema->GetTypeAndShapeInferenceFunction()(ctx);
          ran = true;
        } else if (schema && schema->HasFunction() && schema->GetFunction()) {
          onnx::shape_inference::InferShapeForFunctionNode(*schema->GetFunction(), registry, ctx,
                                                           options, functions, nullptr, &shape_data);
          ran = true;
        } else if (!schema && local != functions.end()) {
          onnx::shape_inference::InferShapeForFunctionNode(*local->second, registry, ctx, options,
                                                           functions, nullptr, &shape_data);
          ran = true;
        }
        if (ran && schema && schema->has_data_propagation_function()) {
          onnx::shape_inference::DataPropagationContextImpl dctx(n, view, data, shape_data);
          schema->GetDataPropagationFunction()(dctx);
        }
        for (int i = 0; ran && i < n.output_size(); ++i) {
          const std::string& name = n.output(i);
          const TypeProto* t = ctx.getOutputType(static_cast<size_t>(i));
          if (name.empty() || !t || t->value_case() == TypeProto::VALUE_NOT_SET) continue;
          auto d = declared.find(name);
          if (d != declared.end()) {
            TypeProto merged = *d->second;
            try {
              onnx::shape_inference::mergeShapesAndTypes(*t, &merged);
            } catch (...) {
              merged = *d->second;  // the declaration wins a conflict
            }
            set(name, merged);
          } else {
            set(name, *t);
          }
        }
      } catch (...) {
        // An inference failure only means fewer known types downstream.
      }
    }
    for (const std::string& out : n.output()) {
      if (out.empty() || types.count(out)) continue;
      auto d = declared.find(out);
      if (d != declared.end()) set(out, *d->second);
    }
  }
  return types;
}

}  // namespace onnxq::onnx_io
