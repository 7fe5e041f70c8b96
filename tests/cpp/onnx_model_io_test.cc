// Importer and exporter details, with models built directly as ONNX protos (the tests link ONNX).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <variant>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "onnxq/base/file.h"
#include "onnxq/onnx/model_io.h"
#include "test_temp_dir.h"

namespace onnxq {
namespace {

namespace fs = std::filesystem;

// A fresh temporary folder per test, removed afterwards.
using ::onnxq::test_util::TempDir;

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

onnx::ValueInfoProto* AddTensorInfo(google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list,
                                    const std::string& name, int elem,
                                    std::vector<std::variant<int64_t, std::string>> dims) {
  auto* vi = list->Add();
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  auto* shape = tt->mutable_shape();
  for (const auto& d : dims) {
    auto* dim = shape->add_dim();
    if (std::holds_alternative<int64_t>(d))
      dim->set_dim_value(std::get<int64_t>(d));
    else
      dim->set_dim_param(std::get<std::string>(d));
  }
  return vi;
}

// x[N,3] + w[3] -> y, opset 13.
onnx::ModelProto AddModel() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("onnxq-test");
  m.set_producer_version("1.0");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("add_graph");
  AddTensorInfo(g->mutable_input(), "x", onnx::TensorProto::FLOAT, {std::string("N"), int64_t{3}});
  AddTensorInfo(g->mutable_output(), "y", onnx::TensorProto::FLOAT, {std::string("N"), int64_t{3}});
  auto* w = g->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(3);
  for (float f : {1.f, 2.f, 3.f}) w->add_float_data(f);
  auto* n = g->add_node();
  n->set_op_type("Add");
  n->set_name("add");
  n->add_input("x");
  n->add_input("w");
  n->add_output("y");
  return m;
}

StatusOr<Model> Load(const onnx::ModelProto& m, const std::string& base_dir = "",
                     const ImportOptions& opts = {}) {
  std::string bytes = m.SerializeAsString();
  return LoadModelFromBytes(bytes.data(), bytes.size(), base_dir, "test.onnx", opts);
}

// Loads, expecting failure; returns the message.
std::string LoadError(const onnx::ModelProto& m, const std::string& base_dir = "",
                      const ImportOptions& opts = {}) {
  auto r = Load(m, base_dir, opts);
  EXPECT_FALSE(r.ok()) << "expected the import to fail";
  return r.ok() ? std::string() : r.status().message();
}

onnx::TensorProto* SetWeight(onnx::ModelProto& m, int dtype, std::vector<int64_t> dims) {
  auto* w = m.mutable_graph()->mutable_initializer(0);
  w->Clear();
  w->set_name("w");
  w->set_data_type(dtype);
  for (int64_t d : dims) w->add_dims(d);
  return w;
}

const Tensor& Weight(const Model& model) {
  return *model.graph.value(model.graph.FindValue("w")).initializer();
}

TEST(OnnxImport, LoadsGraphAndKeepsOrderAndNames) {
  auto model = Load(AddModel());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Graph& g = model->graph;
  EXPECT_EQ(g.name, "add_graph");
  EXPECT_EQ(model->producer_name, "onnxq-test");
  EXPECT_EQ(model->OpsetVersion(""), 13);
  ASSERT_EQ(g.num_nodes(), 1u);
  const Node& n = g.node(g.order()[0]);
  EXPECT_EQ(n.op_type, "Add");
  EXPECT_EQ(n.name, "add");
  ASSERT_EQ(g.RuntimeInputs().size(), 1u);
  const Value& x = g.value(g.RuntimeInputs()[0]);
  EXPECT_EQ(x.dtype, DataType::kFloat);
  ASSERT_TRUE(x.shape.has_value());
  EXPECT_EQ(x.shape->ToString(), "[N,3]");
  const Tensor& w = Weight(*model);
  EXPECT_EQ(w.dims(), (std::vector<int64_t>{3}));
  EXPECT_EQ(w.span<float>()[2], 3.f);
}

// Every element type, from typed fields and from raw_data, must give the same bytes.
TEST(OnnxImport, TypedFieldsAndRawDataAgree) {
  struct Case {
    int dtype;
    std::function<void(onnx::TensorProto*)> fill;  // 4 elements into the typed field
    std::vector<uint8_t> raw;                      // the same 4 elements as raw_data
  };
  auto le = [](std::initializer_list<uint64_t> vals, size_t width) {
    std::vector<uint8_t> out;
    for (uint64_t v : vals)
      for (size_t b = 0; b < width; ++b) out.push_back(static_cast<uint8_t>(v >> (8 * b)));
    return out;
  };
  auto f32 = [](float f) { uint32_t u; std::memcpy(&u, &f, 4); return uint64_t{u}; };
  auto f64 = [](double f) { uint64_t u; std::memcpy(&u, &f, 8); return u; };
  std::vector<Case> cases = {
      {onnx::TensorProto::FLOAT, [](auto* t) { for (float v : {1.5f, -2.f, 0.f, 1e30f}) t->add_float_data(v); },
       le({f32(1.5f), f32(-2.f), f32(0.f), f32(1e30f)}, 4)},
      {onnx::TensorProto::DOUBLE, [](auto* t) { for (double v : {1.5, -2.0, 0.0, 1e300}) t->add_double_data(v); },
       le({f64(1.5), f64(-2.0), f64(0.0), f64(1e300)}, 8)},
      {onnx::TensorProto::INT8, [](auto* t) { for (int v : {-128, -1, 0, 127}) t->add_int32_data(v); },
       {0x80, 0xff, 0x00, 0x7f}},
      {onnx::TensorProto::UINT8, [](auto* t) { for (int v : {0, 1, 200, 255}) t->add_int32_data(v); },
       {0, 1, 200, 255}},
      {onnx::TensorProto::INT16, [](auto* t) { for (int v : {-32768, -1, 2, 32767}) t->add_int32_data(v); },
       le({0x8000, 0xffff, 2, 0x7fff}, 2)},
      {onnx::TensorProto::UINT16, [](auto* t) { for (int v : {0, 1, 40000, 65535}) t->add_int32_data(v); },
       le({0, 1, 40000, 65535}, 2)},
      {onnx::TensorProto::INT32, [](auto* t) { for (int v : {INT32_MIN, -1, 0, INT32_MAX}) t->add_int32_data(v); },
       le({0x80000000u, 0xffffffffu, 0, 0x7fffffff}, 4)},
      {onnx::TensorProto::INT64, [](auto* t) { for (int64_t v : {INT64_MIN, int64_t{-1}, int64_t{0}, INT64_MAX}) t->add_int64_data(v); },
       le({0x8000000000000000ull, ~0ull, 0, 0x7fffffffffffffffull}, 8)},
      {onnx::TensorProto::UINT32, [](auto* t) { for (uint64_t v : {0ull, 1ull, 4000000000ull, 4294967295ull}) t->add_uint64_data(v); },
       le({0, 1, 4000000000ull, 4294967295ull}, 4)},
      {onnx::TensorProto::UINT64, [](auto* t) { for (uint64_t v : {0ull, 1ull, 1ull << 63, ~0ull}) t->add_uint64_data(v); },
       le({0, 1, 1ull << 63, ~0ull}, 8)},
      {onnx::TensorProto::BOOL, [](auto* t) { for (int v : {0, 1, 1, 0}) t->add_int32_data(v); },
       {0, 1, 1, 0}},
      // float16 1.0 = 0x3c00, -2.0 = 0xc000; bfloat16 1.0 = 0x3f80.
      {onnx::TensorProto::FLOAT16, [](auto* t) { for (int v : {0x3c00, 0xc000, 0, 0x7bff}) t->add_int32_data(v); },
       le({0x3c00, 0xc000, 0, 0x7bff}, 2)},
      {onnx::TensorProto::BFLOAT16, [](auto* t) { for (int v : {0x3f80, 0xc000, 0, 0x7f7f}) t->add_int32_data(v); },
       le({0x3f80, 0xc000, 0, 0x7f7f}, 2)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(DataTypeName(static_cast<DataType>(c.dtype)));
    onnx::ModelProto typed = AddModel();
    c.fill(SetWeight(typed, c.dtype, {2, 2}));
    onnx::ModelProto raw = AddModel();
    SetWeight(raw, c.dtype, {2, 2})->set_raw_data(std::string(c.raw.begin(), c.raw.end()));
    ImportOptions no_inference;
    no_inference.infer_shapes = false;  // Add(float, int8) does not type-check; not the point here
    auto a = Load(typed, "", no_inference);
    auto b = Load(raw, "", no_inference);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    const Tensor& ta = Weight(*a);
    const Tensor& tb = Weight(*b);
    EXPECT_EQ(ta.dtype(), static_cast<DataType>(c.dtype));
    ASSERT_EQ(ta.nbytes(), c.raw.size());
    EXPECT_EQ(std::memcmp(ta.raw(), c.raw.data(), c.raw.size()), 0);
    EXPECT_TRUE(ta.BitwiseEqual(tb));
  }
  // Strings come from string_data.
  onnx::ModelProto s = AddModel();
  auto* w = SetWeight(s, onnx::TensorProto::STRING, {2});
  w->add_string_data("hello");
  w->add_string_data(std::string("a\0b", 3));
  ImportOptions no_inference;
  no_inference.infer_shapes = false;
  auto m = Load(s, "", no_inference);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(Weight(*m).strings(), (std::vector<std::string>{"hello", std::string("a\0b", 3)}));
}

TEST(OnnxImport, RefusesBadTensorData) {
  {
    auto m = AddModel();
    SetWeight(m, onnx::TensorProto::FLOAT, {3})->set_raw_data(std::string(11, '\0'));
    std::string e = LoadError(m);
    EXPECT_NE(e.find("test.onnx"), std::string::npos) << e;
    EXPECT_NE(e.find("initializer 'w'"), std::string::npos) << e;
    EXPECT_NE(e.find("11 bytes of raw_data"), std::string::npos) << e;
  }
  {
    auto m = AddModel();
    auto* w = SetWeight(m, onnx::TensorProto::FLOAT, {3});
    w->add_float_data(1.f);
    EXPECT_NE(LoadError(m).find("1 values in float_data but shape [3] needs 3"), std::string::npos);
  }
  {
    auto m = AddModel();
    auto* w = SetWeight(m, onnx::TensorProto::FLOAT, {3});
    for (int k = 0; k < 3; ++k) w->add_int64_data(k);
    EXPECT_NE(LoadError(m).find("stores its data in int64_data instead of float_data"), std::string::npos);
  }
  {
    auto m = AddModel();
    auto* w = SetWeight(m, onnx::TensorProto::INT8, {1});
    w->add_int32_data(300);
    EXPECT_NE(LoadError(m).find("does not fit"), std::string::npos);
  }
  {
    auto m = AddModel();
    SetWeight(m, 99, {3})->set_raw_data(std::string(12, '\0'));
    EXPECT_NE(LoadError(m).find("unknown data type 99"), std::string::npos);
  }
  {
    auto m = AddModel();
    SetWeight(m, onnx::TensorProto::FLOAT, {3, -1})->set_raw_data("");
    EXPECT_NE(LoadError(m).find("negative dimension -1"), std::string::npos);
  }
  {
    auto m = AddModel();
    SetWeight(m, onnx::TensorProto::FLOAT, {3});  // no data at all
    EXPECT_NE(LoadError(m).find("but no data"), std::string::npos);
  }
}

// A tiny file claiming 10^12 elements must be refused on its dims, before any allocation.
TEST(OnnxImport, AbsurdDimsAreRefusedBeforeAllocating) {
  auto m = AddModel();
  SetWeight(m, onnx::TensorProto::FLOAT, {1000000, 1000000})->set_raw_data(std::string(4, '\0'));
  auto r = Load(m);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("1000000000000 elements"), std::string::npos) << r.status().message();
  // Overflowing int64 is refused too.
  SetWeight(m, onnx::TensorProto::FLOAT, {int64_t{1} << 40, int64_t{1} << 40});
  EXPECT_NE(LoadError(m).find("overflows"), std::string::npos);
}

TEST(OnnxImport, LimitsAreConfigurable) {
  auto m = AddModel();
  ImportOptions opts;
  opts.tensor_limits.max_elements = 2;
  std::string e = LoadError(m, "", opts);
  EXPECT_NE(e.find("more than the limit of 2 elements"), std::string::npos) << e;
  opts.tensor_limits.max_elements = 3;
  EXPECT_TRUE(Load(m, "", opts).ok());
  opts.max_model_bytes = 10;
  e = LoadError(m, "", opts);
  EXPECT_NE(e.find("more than the limit of 10"), std::string::npos) << e;
  ImportOptions total;
  total.max_total_tensor_bytes = 8;
  EXPECT_NE(LoadError(m, "", total).find("total limit of 8 bytes"), std::string::npos);
}

TEST(OnnxImport, RefusesGarbageTruncatedAndEmpty) {
  std::string good = AddModel().SerializeAsString();
  auto r = LoadModelFromBytes(good.data(), good.size() / 2, "", "half.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("half.onnx"), std::string::npos);
  std::string garbage = "\xff\xfe\xfd this is not protobuf \x01\x02";
  r = LoadModelFromBytes(garbage.data(), garbage.size(), "", "garbage.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("garbage.onnx"), std::string::npos);
  r = LoadModelFromBytes("", 0, "", "empty.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("empty"), std::string::npos);
  auto missing = LoadModel("/nonexistent/model.onnx");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(OnnxImport, RefusesBrokenGraphs) {
  {  // undefined input
    auto m = AddModel();
    m.mutable_graph()->mutable_node(0)->set_input(1, "nothing");
    EXPECT_NE(LoadError(m).find("input 'nothing' of node Add 'add' is not defined"), std::string::npos);
  }
  {  // two producers
    auto m = AddModel();
    *m.mutable_graph()->add_node() = m.graph().node(0);
    m.mutable_graph()->mutable_node(1)->set_name("add2");
    EXPECT_NE(LoadError(m).find("'y' is produced by two nodes: Add 'add' and Add 'add2'"), std::string::npos);
  }
  {  // a node writes an initializer
    auto m = AddModel();
    m.mutable_graph()->mutable_node(0)->set_output(0, "w");
    EXPECT_NE(LoadError(m).find("writes 'w', which is also an initializer"), std::string::npos);
  }
  {  // duplicate initializer names
    auto m = AddModel();
    *m.mutable_graph()->add_initializer() = m.graph().initializer(0);
    EXPECT_NE(LoadError(m).find("duplicate initializer name 'w'"), std::string::npos);
  }
  {  // graph output listed twice
    auto m = AddModel();
    *m.mutable_graph()->add_output() = m.graph().output(0);
    EXPECT_NE(LoadError(m).find("graph output 'y' is listed twice"), std::string::npos);
  }
  {  // cycle: y = Add(x, z), z = Relu(y)
    auto m = AddModel();
    auto* g = m.mutable_graph();
    g->mutable_node(0)->set_input(1, "z");
    auto* relu = g->add_node();
    relu->set_op_type("Relu");
    relu->set_name("relu");
    relu->add_input("y");
    relu->add_output("z");
    std::string e = LoadError(m);
    EXPECT_NE(e.find("cycle"), std::string::npos) << e;
    EXPECT_NE(e.find("test.onnx"), std::string::npos) << e;
  }
  {  // graph output nothing produces
    auto m = AddModel();
    m.mutable_graph()->mutable_output(0)->set_name("ghost");
    EXPECT_NE(LoadError(m).find("graph output 'ghost' is not produced"), std::string::npos);
  }
  {  // unknown domain
    auto m = AddModel();
    m.mutable_graph()->mutable_node(0)->set_domain("com.example");
    EXPECT_NE(LoadError(m).find("domain 'com.example', which the model does not import"), std::string::npos);
  }
  {  // unknown operator in a known opset
    auto m = AddModel();
    m.mutable_graph()->mutable_node(0)->set_op_type("NoSuchOp");
    EXPECT_NE(LoadError(m).find("'NoSuchOp' is not an operator of domain 'ai.onnx'"), std::string::npos);
  }
  {  // opset from the future
    auto m = AddModel();
    m.mutable_opset_import(0)->set_version(1000);
    EXPECT_NE(LoadError(m).find("opset 1000"), std::string::npos);
  }
  {  // schema violation: LSTM needs X, W and R
    auto m = AddModel();
    m.mutable_graph()->mutable_node(0)->set_op_type("LSTM");
    m.mutable_graph()->mutable_node(0)->clear_input();
    m.mutable_graph()->mutable_node(0)->add_input("x");
    std::string e = LoadError(m);
    EXPECT_NE(e.find("node LSTM 'add' does not match operator LSTM of ai.onnx opset 13"), std::string::npos) << e;
  }
  {  // no graph
    onnx::ModelProto m;
    m.set_ir_version(8);
    EXPECT_NE(LoadError(m).find("no graph"), std::string::npos);
  }
}

TEST(OnnxImport, RefusesUnsupportedConstructsClearly) {
  {
    auto m = AddModel();
    auto* n = m.mutable_graph()->mutable_node(0);
    n->set_op_type("If");
    n->set_name("x");
    auto* a = n->add_attribute();
    a->set_name("then_branch");
    a->set_type(onnx::AttributeProto::GRAPH);
    a->mutable_g()->set_name("then");
    EXPECT_NE(LoadError(m).find("subgraph attribute 'then_branch' of node If 'x' is not supported yet"),
              std::string::npos);
  }
  {
    auto m = AddModel();
    auto* sp = m.mutable_graph()->add_sparse_initializer();
    sp->mutable_values()->set_name("sparse_w");
    EXPECT_NE(LoadError(m).find("sparse initializer 'sparse_w'"), std::string::npos);
  }
  {
    auto m = AddModel();
    auto* in = m.mutable_graph()->mutable_input(0);
    in->mutable_type()->mutable_sequence_type()->mutable_elem_type()->mutable_tensor_type()->set_elem_type(1);
    EXPECT_NE(LoadError(m).find("graph input 'x' has a sequence type"), std::string::npos);
  }
}

TEST(OnnxImport, NodeAttributesKeepOrderTypesAndTensors) {
  auto m = AddModel();
  auto* n = m.mutable_graph()->add_node();
  n->set_op_type("Constant");
  n->set_name("c");
  n->add_output("k");
  auto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::INT64);
  a->mutable_t()->add_dims(2);
  a->mutable_t()->add_int64_data(7);
  a->mutable_t()->add_int64_data(-8);
  auto* conv = m.mutable_graph()->add_node();
  conv->set_op_type("LeakyRelu");
  conv->add_input("y");
  conv->add_output("z");
  auto* alpha = conv->add_attribute();
  alpha->set_name("alpha");
  alpha->set_f(0.25f);  // no `type`: IR v1 style, deduced from the field
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Graph& g = model->graph;
  const Node& c = *g.Producer(g.FindValue("k"));
  auto t = c.attrs.GetTensor("value");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->span<int64_t>()[1], -8);
  EXPECT_EQ(*g.Producer(g.FindValue("z"))->attrs.GetFloat("alpha"), 0.25f);
  // Inference typed the Constant's output.
  EXPECT_EQ(g.value(g.FindValue("k")).dtype, DataType::kInt64);
}

TEST(OnnxImport, ShapeInferenceFillsUndeclaredAndKeepsDeclared) {
  auto m = AddModel();
  auto* g = m.mutable_graph();
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->add_input("y");
  relu->add_output("r");
  auto* t = g->add_node();
  t->set_op_type("Transpose");
  t->add_input("r");
  t->add_output("t");
  // The file declares r with a different symbolic name; the declaration wins.
  AddTensorInfo(g->mutable_value_info(), "r", onnx::TensorProto::FLOAT, {std::string("batch"), int64_t{3}});
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Graph& ig = model->graph;
  const Value& r = ig.value(ig.FindValue("r"));
  EXPECT_TRUE(r.declared_value_info);
  EXPECT_EQ(r.shape->ToString(), "[batch,3]");
  const Value& tv = ig.value(ig.FindValue("t"));
  EXPECT_FALSE(tv.declared_value_info);
  EXPECT_EQ(tv.dtype, DataType::kFloat);
  ASSERT_TRUE(tv.shape.has_value());
  EXPECT_EQ(tv.shape->ToString(), "[3,batch]");
  // Export writes back only the declared value_info.
  auto bytes = SerializeModel(*model);
  ASSERT_TRUE(bytes.ok());
  onnx::ModelProto out;
  ASSERT_TRUE(out.ParseFromString(*bytes));
  ASSERT_EQ(out.graph().value_info_size(), 1);
  EXPECT_EQ(out.graph().value_info(0).name(), "r");
  ExportOptions all;
  all.write_inferred_value_info = true;
  ASSERT_TRUE(out.ParseFromString(*SerializeModel(*model, all)));
  EXPECT_EQ(out.graph().value_info_size(), 2);
}

// Newer opsets, custom domains and ops libonnx 1.12 does not know must not break the import.
TEST(OnnxImport, InferenceFailuresAreNotFatal) {
  auto m = AddModel();
  m.mutable_opset_import(0)->set_version(21);
  auto* op = m.add_opset_import();
  op->set_domain("com.example");
  op->set_version(1);
  auto* n = m.mutable_graph()->add_node();
  n->set_op_type("Mystery");
  n->set_domain("com.example");
  n->add_input("y");
  n->add_output("q");
  // Add declared with an impossible rank: inference (if it runs) would conflict; still no error.
  AddTensorInfo(m.mutable_graph()->mutable_value_info(), "q", onnx::TensorProto::FLOAT16, {int64_t{7}});
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Value& q = model->graph.value(model->graph.FindValue("q"));
  EXPECT_EQ(q.dtype, DataType::kFloat16);
  EXPECT_EQ(q.shape->ToString(), "[7]");
}

// libonnx 1.12's inference functions crash on some schema-valid but inconsistent nodes (found by
// fuzzing): a ConvTranspose whose weight has rank 1, pads of the wrong length, an LSTM with rank-2
// weights. The importer must skip inference for them, not crash; the node imports untyped.
TEST(OnnxImport, InferenceHazardsDoNotCrash) {
  struct Case {
    std::string op;
    std::vector<std::pair<std::string, std::vector<int64_t>>> inputs;  // name, dims
    std::vector<std::pair<std::string, std::vector<int64_t>>> int_lists;
  };
  std::vector<Case> cases = {
      {"ConvTranspose", {{"x", {3, 4, 5}}, {"k", {5}}}, {}},
      {"Conv", {{"x", {1, 2, 5, 5}}, {"k", {2, 2, 3}}}, {}},
      {"Conv", {{"x", {1, 2, 5, 5}}, {"k", {2, 2, 3, 3}}}, {{"pads", {1, 1, 1}}}},
      {"ConvTranspose", {{"x", {1, 2, 5, 5}}, {"k", {2, 2, 3, 3}}}, {{"output_shape", {7}}}},
      {"MaxPool", {{"x", {5}}}, {{"kernel_shape", {2}}}},
      {"LSTM", {{"x", {2, 1, 3}}, {"k", {1, 16}}, {"r", {1, 16, 4}}}, {}},
      {"LayerNormalization", {{"x", {2, 3, 4}}, {"k", {4}}}, {}},
      {"Scan", {{"x", {3}}, {"k", {3}}}, {}},  // opset 18: newer than libonnx, no body
      {"Expand", {{"x", {3, 1}}, {"shape", {int64_t{1} << 31}}}, {}},  // a rank of 2^31
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op);
    onnx::ModelProto m;
    m.set_ir_version(8);
    m.add_opset_import()->set_version(13);
    auto* g = m.mutable_graph();
    auto* n = g->add_node();
    n->set_op_type(c.op);
    n->set_name("n");
    for (const auto& [name, dims] : c.inputs) {
      std::vector<std::variant<int64_t, std::string>> d(dims.begin(), dims.end());
      AddTensorInfo(g->mutable_input(), name, onnx::TensorProto::FLOAT, d);
      n->add_input(name);
    }
    n->add_output("y");
    for (const auto& [name, vals] : c.int_lists) {
      auto* a = n->add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::INTS);
      for (int64_t v : vals) a->add_ints(v);
    }
    if (c.op == "Scan") m.mutable_opset_import(0)->set_version(18);
    if (c.op == "Expand") {
      g->mutable_input(1)->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
    }
    if (c.op == "LayerNormalization") {  // opset 17 operator with an absurd axis
      m.mutable_opset_import(0)->set_version(17);
      auto* a = n->add_attribute();
      a->set_name("axis");
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(int64_t{1} << 31);
    }
    if (c.op == "LSTM") {
      auto* h = n->add_attribute();
      h->set_name("hidden_size");
      h->set_type(onnx::AttributeProto::INT);
      h->set_i(4);
    }
    auto* out = g->add_output();
    out->set_name("y");
    auto model = Load(m);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_FALSE(model->graph.value(model->graph.FindValue("y")).shape.has_value());
  }
}

TEST(OnnxImport, OldIrInitializersStayGraphInputs) {
  auto m = AddModel();
  m.set_ir_version(3);
  AddTensorInfo(m.mutable_graph()->mutable_input(), "w", onnx::TensorProto::FLOAT, {int64_t{3}});
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Graph& g = model->graph;
  EXPECT_EQ(g.inputs().size(), 2u);
  EXPECT_EQ(g.RuntimeInputs().size(), 1u);
  EXPECT_TRUE(g.IsGraphInput(g.FindValue("w")));
  onnx::ModelProto out;
  ASSERT_TRUE(out.ParseFromString(*SerializeModel(*model)));
  ASSERT_EQ(out.graph().input_size(), 2);
  EXPECT_EQ(out.graph().input(1).name(), "w");
}

TEST(OnnxExport, RoundTripKeepsEverythingItDoesNotInterpret) {
  auto m = AddModel();
  m.set_doc_string("model doc");
  m.set_domain("org.test");
  m.set_model_version(42);
  auto* kv = m.add_metadata_props();
  kv->set_key("author");
  kv->set_value("tests");
  m.mutable_graph()->set_doc_string("graph doc");
  auto* n = m.mutable_graph()->mutable_node(0);
  n->set_doc_string("node doc");
  m.mutable_graph()->mutable_input(0)->set_doc_string("input doc");
  // Attribute order is kept (ONNX does not sort them; neither may we).
  auto* leaky = m.mutable_graph()->add_node();
  leaky->set_op_type("Clip");
  leaky->set_name("clip");
  leaky->add_input("y");
  leaky->add_input("");  // omitted optional input
  leaky->add_input("w");
  leaky->add_output("z");
  auto* f = m.add_functions();
  f->set_name("MyFn");
  f->set_domain("local");
  f->add_input("a");
  f->add_output("b");
  auto* fn_node = f->add_node();
  fn_node->set_op_type("Identity");
  fn_node->add_input("a");
  fn_node->add_output("b");
  auto* fop = f->add_opset_import();
  fop->set_domain("");
  fop->set_version(13);
  auto* qa = m.mutable_graph()->add_quantization_annotation();
  qa->set_tensor_name("y");
  auto* qp = qa->add_quant_parameter_tensor_names();
  qp->set_key("SCALE_TENSOR");
  qp->set_value("w");
  // Typed float_data on input: raw_data on output, same bytes.
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->preserved.functions.size(), 1u);
  ASSERT_EQ(model->preserved.quantization_annotation.size(), 1u);
  auto bytes = SerializeModel(*model);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  onnx::ModelProto out;
  ASSERT_TRUE(out.ParseFromString(*bytes));
  EXPECT_EQ(out.doc_string(), "model doc");
  EXPECT_EQ(out.domain(), "org.test");
  EXPECT_EQ(out.model_version(), 42);
  ASSERT_EQ(out.metadata_props_size(), 1);
  EXPECT_EQ(out.metadata_props(0).value(), "tests");
  EXPECT_EQ(out.graph().doc_string(), "graph doc");
  EXPECT_EQ(out.graph().node(0).doc_string(), "node doc");
  EXPECT_EQ(out.graph().input(0).doc_string(), "input doc");
  ASSERT_EQ(out.graph().node_size(), 2);
  EXPECT_EQ(out.graph().node(1).input(1), "");
  EXPECT_EQ(out.graph().node(1).input(2), "w");
  EXPECT_EQ(out.functions(0).SerializeAsString(), m.functions(0).SerializeAsString());
  EXPECT_EQ(out.graph().quantization_annotation(0).SerializeAsString(),
            m.graph().quantization_annotation(0).SerializeAsString());
  const auto& w = out.graph().initializer(0);
  ASSERT_EQ(w.raw_data().size(), 12u);
  float vals[3];
  std::memcpy(vals, w.raw_data().data(), 12);
  EXPECT_EQ(vals[2], 3.f);
  EXPECT_EQ(out.graph().output(0).type().tensor_type().shape().dim(0).dim_param(), "N");
  // A second round trip is byte-identical (the export is a fixed point).
  auto again = LoadModelFromBytes(bytes->data(), bytes->size(), "", "again.onnx");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*SerializeModel(*again), *bytes);
}

TEST(OnnxFinite, CheckFiniteWeightsFindsNanAndInf) {
  auto m = AddModel();
  auto model = Load(m);
  ASSERT_TRUE(model.ok());
  EXPECT_TRUE(CheckFiniteWeights(*model).ok());
  auto* w = SetWeight(m, onnx::TensorProto::FLOAT, {3});
  w->add_float_data(1.f);
  w->add_float_data(std::numeric_limits<float>::quiet_NaN());
  w->add_float_data(2.f);
  auto nan_model = Load(m);
  ASSERT_TRUE(nan_model.ok()) << "NaN weights are valid ONNX";
  Status s = CheckFiniteWeights(*nan_model);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("initializer 'w'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("element 1"), std::string::npos) << s.message();
  // float16 +Inf (0x7c00) inside a Constant's tensor attribute is found too.
  auto c = AddModel();
  auto* n = c.mutable_graph()->add_node();
  n->set_op_type("Constant");
  n->set_name("k");
  n->add_output("kout");
  auto* a = n->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::FLOAT16);
  a->mutable_t()->add_dims(1);
  a->mutable_t()->add_int32_data(0x7c00);
  auto inf_model = Load(c);
  ASSERT_TRUE(inf_model.ok());
  s = CheckFiniteWeights(*inf_model);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("node Constant 'k'"), std::string::npos) << s.message();
}

// ---------------------------------------------------------------- external data

onnx::ModelProto ExternalModel(const std::string& location, int64_t offset, int64_t length) {
  auto m = AddModel();
  auto* w = SetWeight(m, onnx::TensorProto::FLOAT, {3});
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& v) {
    auto* e = w->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", location);
  if (offset >= 0) add("offset", std::to_string(offset));
  if (length >= 0) add("length", std::to_string(length));
  return m;
}

std::string FloatBytes(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

TEST(OnnxExternalData, LoadsWithOffsetAndLength) {
  TempDir dir;
  fs::create_directory(dir / "sub");
  WriteBytes(dir / "sub/w.bin", std::string(8, 'x') + FloatBytes({4.f, 5.f, 6.f}) + "tail");
  auto model = Load(ExternalModel("sub/w.bin", 8, 12), dir.path());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(Weight(*model).span<float>()[2], 6.f);
  // Without length the data runs to the end of the file, which must then match exactly.
  WriteBytes(dir / "w2.bin", FloatBytes({1.f, 2.f, 3.f}));
  ASSERT_TRUE(Load(ExternalModel("w2.bin", -1, -1), dir.path()).ok());
  // A symlink that stays inside the folder is fine.
  fs::create_symlink("w2.bin", dir / "link.bin");
  ASSERT_TRUE(Load(ExternalModel("link.bin", 0, 12), dir.path()).ok());
  // From a file on disk, the model's folder is the base.
  WriteBytes(dir / "m.onnx", ExternalModel("w2.bin", 0, 12).SerializeAsString());
  auto from_file = LoadModel(dir / "m.onnx");
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(Weight(*from_file).span<float>()[0], 1.f);
}

TEST(OnnxExternalData, RefusesEscapesAndBadRanges) {
  TempDir outer;
  fs::create_directory(outer / "model");
  const std::string dir = outer / "model";
  WriteBytes(outer / "secret.bin", FloatBytes({1.f, 2.f, 3.f}));
  WriteBytes(dir + "/w.bin", FloatBytes({1.f, 2.f, 3.f}));
  fs::create_symlink("../secret.bin", dir + "/escape.bin");
  fs::create_directory(dir + "/d");
  fs::create_symlink("..", dir + "/d/up");

  auto expect_error = [&](const onnx::ModelProto& m, const std::string& needle) {
    auto r = Load(m, dir);
    ASSERT_FALSE(r.ok()) << "expected refusal containing: " << needle;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("initializer 'w'"), std::string::npos) << r.status().message();
  };
  expect_error(ExternalModel("../secret.bin", 0, 12), "'..'");
  expect_error(ExternalModel("d/../../secret.bin", 0, 12), "'..'");
  expect_error(ExternalModel(outer / "secret.bin", 0, 12), "absolute");
  expect_error(ExternalModel("escape.bin", 0, 12), "outside the model folder");
  fs::create_symlink("../..", dir + "/d/up2");
  expect_error(ExternalModel("d/up2/secret.bin", 0, 12), "outside the model folder");
  expect_error(ExternalModel("w.bin", 100, 12), "beyond the end");
  expect_error(ExternalModel("w.bin", 4, 12), "beyond the end");
  expect_error(ExternalModel("w.bin", 0, 8), "does not match");
  expect_error(ExternalModel("missing.bin", 0, 12), "does not exist");
  expect_error(ExternalModel("", 0, 12), "no location");
  // A symlinked folder that stays inside is fine.
  EXPECT_TRUE(Load(ExternalModel("d/up/w.bin", 0, 12), dir).ok());
  // Loading from memory without a folder refuses external data.
  auto r = Load(ExternalModel("w.bin", 0, 12), "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("without a folder"), std::string::npos);
}

TEST(OnnxExternalData, ExportWritesDataFileAndReloads) {
  TempDir dir;
  auto m = AddModel();
  auto* w = SetWeight(m, onnx::TensorProto::FLOAT, {1000});
  std::vector<float> vals(1000);
  for (int k = 0; k < 1000; ++k) vals[k] = static_cast<float>(k) * 0.5f;
  w->set_raw_data(FloatBytes(vals));
  auto* small = m.mutable_graph()->add_initializer();
  small->set_name("shape");
  small->set_data_type(onnx::TensorProto::INT64);
  small->add_dims(1);
  small->add_int64_data(3);
  m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(1000);
  m.mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(1)->set_dim_value(1000);
  auto model = Load(m);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ExportOptions opts;
  opts.external_data_threshold = 0;
  ASSERT_TRUE(SaveModel(*model, dir / "out.onnx", opts).ok());
  EXPECT_EQ(dir.Files(), (std::vector<std::string>{"out.onnx", "out.onnx.data"}));
  onnx::ModelProto out;
  std::ifstream f(dir / "out.onnx", std::ios::binary);
  ASSERT_TRUE(out.ParseFromIstream(&f));
  const auto& ow = out.graph().initializer(0);
  EXPECT_EQ(ow.data_location(), onnx::TensorProto::EXTERNAL);
  EXPECT_FALSE(ow.has_raw_data());
  EXPECT_EQ(ow.external_data(0).key(), "location");
  EXPECT_EQ(ow.external_data(0).value(), "out.onnx.data");
  // The small initializer stays inline.
  EXPECT_NE(out.graph().initializer(1).data_location(), onnx::TensorProto::EXTERNAL);
  auto back = LoadModel(dir / "out.onnx");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(Weight(*back).BitwiseEqual(Weight(*model)));
  // Under the threshold everything is inline and no data file appears.
  ASSERT_TRUE(SaveModel(*model, dir / "inline.onnx").ok());
  EXPECT_FALSE(PathExists(dir / "inline.onnx.data"));
}

// ---------------------------------------------------------------- atomic writes

TEST(OnnxExport, FailedSaveLeavesNothingAndKeepsExistingFile) {
  TempDir dir;
  auto model = Load(AddModel());
  ASSERT_TRUE(model.ok());
  WriteBytes(dir / "out.onnx", "previous contents");
  // An invalid graph (output that nothing defines) fails in the middle of export.
  Model broken = *model;
  ValueId ghost = *broken.graph.AddValue("ghost");
  broken.graph.AddOutput(ghost);
  Status s = SaveModel(broken, dir / "out.onnx");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("ghost"), std::string::npos) << s.message();
  EXPECT_EQ(*ReadFile(dir / "out.onnx"), "previous contents");
  EXPECT_EQ(dir.Files(), std::vector<std::string>{"out.onnx"});  // no temporaries left
  // Missing folder: an error naming it, and nothing created.
  s = SaveModel(*model, dir / "no/such/dir/out.onnx");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s.message();
  // A good save replaces the old file in one step.
  ASSERT_TRUE(SaveModel(*model, dir / "out.onnx").ok());
  EXPECT_EQ(dir.Files(), std::vector<std::string>{"out.onnx"});
  EXPECT_TRUE(LoadModel(dir / "out.onnx").ok());
}

// ---------------------------------------------------------------- TensorProto files

TEST(OnnxTensorFile, RoundTripsAndReadsBackendData) {
  TempDir dir;
  Tensor t = Tensor::Float({2, 2}, std::vector<float>{1.f, -2.f, 3.5f, 0.f});
  ASSERT_TRUE(SaveTensorProtoFile(t, "input_0", dir / "t.pb").ok());
  std::string name;
  auto back = LoadTensorProtoFile(dir / "t.pb", &name);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(name, "input_0");
  EXPECT_TRUE(back->BitwiseEqual(t));
  WriteBytes(dir / "bad.pb", "\xff\xff\xff");
  EXPECT_FALSE(LoadTensorProtoFile(dir / "bad.pb").ok());

  const std::string backend =
      "/usr/share/libonnx-testdata/data/node/test_abs/test_data_set_0/input_0.pb";
  if (!PathExists(backend)) GTEST_SKIP() << "libonnx-testdata is not installed";
  auto x = LoadTensorProtoFile(backend, &name);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_EQ(name, "x");
  EXPECT_EQ(x->dtype(), DataType::kFloat);
  EXPECT_EQ(x->dims(), (std::vector<int64_t>{3, 4, 5}));
}

}  // namespace
}  // namespace onnxq
