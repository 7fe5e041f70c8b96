// The ONNX backend node tests of the integer operators (QLinearConv, QLinearMatMul, ConvInteger,
// MatMulInteger, DynamicQuantizeLinear) run through the kernels of src/runtime/ops_integer.cc:
//   - directly through their registrations (RegisterIntegerOps), on every ISA this CPU supports,
//     once with all inputs as run-time values and once with them known at planning time (weights
//     packed at creation);
//   - through a Session, once the registry lists these operators.
// Integer outputs must match exactly; float outputs (DynamicQuantizeLinear's scale) to 1e-6.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "onnxq/kernels/cpu.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/session.h"
#include "runtime/op_kernel.h"

namespace onnxq {
namespace {

namespace fs = std::filesystem;

std::string DataRoot() {
  if (const char* e = std::getenv("ONNXQ_BACKEND_DATA")) return e;
  return "/usr/share/libonnx-testdata/data";
}

const std::vector<std::string>& TestNames() {
  static const std::vector<std::string> v = {
      "test_qlinearconv",
      "test_qlinearmatmul_2D",
      "test_qlinearmatmul_3D",
      "test_basic_convinteger",
      "test_convinteger_with_padding",
      "test_convinteger_without_padding",
      "test_matmulinteger",
      "test_dynamicquantizelinear",
      "test_dynamicquantizelinear_max_adjusted",
      "test_dynamicquantizelinear_min_adjusted",
  };
  return v;
}

std::string Compare(const Tensor& got, const Tensor& want) {
  if (got.dtype() != want.dtype())
    return std::string("dtype ") + DataTypeName(got.dtype()) + " != " + DataTypeName(want.dtype());
  if (got.dims() != want.dims())
    return "shape " + DimsToString(got.dims()) + " != " + DimsToString(want.dims());
  const bool fp = IsFloatingPoint(want.dtype());
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double a = got.GetAsDouble(i), b = want.GetAsDouble(i);
    if (fp ? std::fabs(a - b) > 1e-6 * std::max(1.0, std::fabs(b)) : a != b) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "element %lld: got %.9g, expected %.9g",
                    static_cast<long long>(i), a, b);
      return buf;
    }
  }
  return "";
}

struct Data {
  std::map<std::string, Tensor> inputs;  // by graph input name
  std::vector<Tensor> outputs;           // by graph output index
};

Data LoadSet(const Model& model, const fs::path& set) {
  Data d;
  const Graph& g = model.graph;
  const auto inputs = g.RuntimeInputs();
  for (size_t i = 0;; ++i) {
    fs::path p = set / ("input_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    std::string name;
    auto t = LoadTensorProtoFile(p.string(), &name);
    EXPECT_TRUE(t.ok()) << p;
    if (!t.ok()) break;
    if (g.FindValue(name) == kNoValue && i < inputs.size()) name = g.value(inputs[i]).name();
    d.inputs[name] = std::move(t).value();
  }
  for (size_t i = 0;; ++i) {
    fs::path p = set / ("output_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    auto t = LoadTensorProtoFile(p.string());
    EXPECT_TRUE(t.ok()) << p;
    if (!t.ok()) break;
    d.outputs.push_back(std::move(t).value());
  }
  return d;
}

// Creates the node's kernel from the integer-op registrations and runs it once.
std::string RunDirect(const Model& model, const Data& data, kernels::Isa isa, bool constants) {
  static const std::vector<runtime::OpRegistration> regs = [] {
    std::vector<runtime::OpRegistration> r;
    runtime::RegisterIntegerOps(r);
    return r;
  }();
  const Graph& g = model.graph;
  if (g.order().size() != 1) return "expected a single-node model";
  const Node& node = g.node(g.order()[0]);
  const int64_t opset = model.OpsetVersion("");
  const runtime::OpRegistration* reg = nullptr;
  for (const auto& r : regs)
    if (r.op_type == node.op_type && opset >= r.min_opset && opset <= r.max_opset) reg = &r;
  if (reg == nullptr) return "no integer-op registration for " + node.op_type;
  runtime::OpInfo info;
  info.node = &node;
  info.opset = opset;
  info.graph = &g;
  info.isa = isa;
  auto kernel = reg->factory(info);
  if (!kernel.ok()) return "create: " + kernel.status().ToString();

  std::vector<const Tensor*> in_tensors;
  std::vector<runtime::ValueInfo> infos(node.num_inputs());
  runtime::InferContext ictx;
  ictx.node = &node;
  ictx.isa = isa;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    const ValueId id = node.input(i);
    const Tensor* t = nullptr;
    if (id != kNoValue) {
      const Value& v = g.value(id);
      t = v.initializer();
      if (t == nullptr) {
        auto it = data.inputs.find(v.name());
        if (it == data.inputs.end()) return "no data for input '" + v.name() + "'";
        t = &it->second;
      }
    }
    in_tensors.push_back(t);
    if (t != nullptr) infos[i] = {t->dtype(), t->dims(), constants ? t : nullptr};
    ictx.in.push_back(t != nullptr ? &infos[i] : nullptr);
  }
  ictx.out.resize(node.num_outputs());
  Status st = (*kernel)->Infer(ictx);
  if (!st.ok()) return "infer: " + st.ToString();
  std::vector<Tensor> outs;
  for (const auto& o : ictx.out) {
    auto t = Tensor::Create(o.dtype, o.dims);
    if (!t.ok()) return "alloc: " + t.status().ToString();
    outs.push_back(std::move(t).value());
  }
  runtime::RunContext rctx;
  rctx.isa = isa;
  for (const Tensor* t : in_tensors) {
    runtime::TensorRef r;
    if (t != nullptr) {
      r.dtype = t->dtype();
      r.dims = t->dims();
      r.numel = t->numel();
      r.data = const_cast<std::byte*>(t->raw());
    }
    rctx.in.push_back(r);
  }
  for (Tensor& t : outs) {
    runtime::TensorRef r;
    r.dtype = t.dtype();
    r.dims = t.dims();
    r.numel = t.numel();
    r.data = t.mutable_raw();
    rctx.out.push_back(r);
  }
  ThreadPool pool(2);
  rctx.pool = &pool;
  st = (*kernel)->Run(rctx);
  if (!st.ok()) return "run: " + st.ToString();
  if (outs.size() < data.outputs.size()) return "too few outputs";
  for (size_t i = 0; i < data.outputs.size(); ++i) {
    std::string diff = Compare(outs[i], data.outputs[i]);
    if (!diff.empty()) return "output " + std::to_string(i) + ": " + diff;
  }
  return "";
}

TEST(RuntimeIntegerOps, BackendNodeTestsPassOnEveryIsa) {
  const std::string root = DataRoot() + "/node";
  if (!fs::exists(root)) GTEST_SKIP() << "ONNX backend test data not found at " << root;
  int runs = 0;
  for (const std::string& name : TestNames()) {
    const fs::path dir = fs::path(root) / name;
    ASSERT_TRUE(fs::exists(dir / "model.onnx")) << dir;
    auto model = LoadModel((dir / "model.onnx").string());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_directory() || e.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
      Data data = LoadSet(*model, e.path());
      ASSERT_FALSE(data.outputs.empty()) << e.path();
      for (kernels::Isa isa : kernels::SupportedIsas())
        for (bool constants : {false, true}) {
          std::string err = RunDirect(*model, data, isa, constants);
          EXPECT_EQ(err, "") << name << " [" << kernels::IsaName(isa)
                             << (constants ? ", constant inputs" : "") << "]";
          ++runs;
        }
    }
  }
  std::printf("integer-op backend tests: %d runs (tests x ISAs x constant/run-time inputs)\n", runs);
}

// Through the session: only once the lead has registered the integer ops in op_registry.cc.
TEST(RuntimeIntegerOps, BackendNodeTestsThroughSession) {
  const std::string root = DataRoot() + "/node";
  if (!fs::exists(root)) GTEST_SKIP() << "ONNX backend test data not found at " << root;
  auto probe = LoadModel(root + "/test_qlinearconv/model.onnx");
  ASSERT_TRUE(probe.ok());
  if (!CheckSupported(*probe).ok())
    GTEST_SKIP() << "integer ops are not registered in the executor yet (RegisterIntegerOps)";
  for (const std::string& name : TestNames()) {
    const fs::path dir = fs::path(root) / name;
    auto model = LoadModel((dir / "model.onnx").string());
    ASSERT_TRUE(model.ok());
    for (kernels::Isa isa : kernels::SupportedIsas()) {
      SessionOptions opts;
      opts.isa = isa;
      auto session = Session::Create(*model, opts);
      ASSERT_TRUE(session.ok()) << name << ": " << session.status().ToString();
      Data data = LoadSet(*model, dir / "test_data_set_0");
      auto out = (*session)->Run(data.inputs);
      ASSERT_TRUE(out.ok()) << name << ": " << out.status().ToString();
      const Graph& g = model->graph;
      for (size_t i = 0; i < data.outputs.size(); ++i) {
        auto it = out->find(g.value(g.outputs()[i]).name());
        ASSERT_NE(it, out->end());
        EXPECT_EQ(Compare(it->second, data.outputs[i]), "") << name << " [" << kernels::IsaName(isa) << "]";
      }
    }
  }
}

}  // namespace
}  // namespace onnxq
