// `onnxq optimize` end to end (the CLI binary from ONNXQ_CLI, as ctest sets it) and the per-pass
// dump of the library's Optimize().
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "onnxq/onnx/model_io.h"
#include "passes_test_util.h"

namespace onnxq::passes {
namespace {
using namespace ptest;
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("onnxq_passes_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// x -> Identity -> Conv -> BatchNormalization -> Relu -> y
Model SmallConvModel() {
  Model m = EmptyModel(13);
  Builder b(m);
  ValueId x = b.Input("x", {1, 2, 4, 4});
  NodeId id = b.Node("Identity", "id", {x}, 1, {{1, 2, 4, 4}});
  NodeId conv = b.Node("Conv", "conv", {b.Out(id), b.RandConst("w", {3, 2, 1, 1}, 1)}, 1, {{1, 3, 4, 4}});
  NodeId bn = b.Node("BatchNormalization", "bn",
                     {b.Out(conv), b.RandConst("s", {3}, 2, 0.5f, 1.5f), b.RandConst("bb", {3}, 3),
                      b.RandConst("m", {3}, 4), b.RandConst("v", {3}, 5, 0.5f, 1.5f)},
                     1, {{1, 3, 4, 4}});
  NodeId relu = b.Node("Relu", "relu", {b.Out(bn)}, 1, {{1, 3, 4, 4}});
  b.Output(b.Out(relu));
  return m;
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(PassesDump, WritesTheModelAfterEveryPass) {
  fs::path dir = TempDir("dump");
  Model m = SmallConvModel();
  OptimizeOptions opt;
  opt.passes = {"remove-identity", "fold-batchnorm", "dead-code"};
  opt.dump_dir = (dir / "steps").string();
  auto r = Optimize(m, opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const char* f : {"00-input", "01-remove-identity", "02-fold-batchnorm", "03-dead-code"}) {
    EXPECT_TRUE(fs::is_regular_file(dir / "steps" / (std::string(f) + ".onnx"))) << f;
    EXPECT_TRUE(fs::is_regular_file(dir / "steps" / (std::string(f) + ".txt"))) << f;
  }
  auto step1 = LoadModel((dir / "steps" / "01-remove-identity.onnx").string());
  ASSERT_TRUE(step1.ok()) << step1.status().ToString();
  EXPECT_EQ(CountOps(step1->graph, "Identity"), 0);
  EXPECT_EQ(CountOps(step1->graph, "BatchNormalization"), 1);
  std::string text = Slurp(dir / "steps" / "02-fold-batchnorm.txt");
  EXPECT_EQ(text.find("BatchNormalization"), std::string::npos) << text;
  EXPECT_NE(text.find("Conv 'conv'"), std::string::npos) << text;
  fs::remove_all(dir);
}

class PassesCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* cli = std::getenv("ONNXQ_CLI");
    if (!cli || !fs::is_regular_file(cli)) GTEST_SKIP() << "ONNXQ_CLI is not set (ctest sets it)";
    cli_ = cli;
    dir_ = TempDir("cli");
    ASSERT_TRUE(SaveModel(SmallConvModel(), (dir_ / "in.onnx").string()).ok());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  int Run(const std::string& args, std::string* out) {
    std::string cmd = "'" + cli_ + "' optimize '" + (dir_ / "in.onnx").string() + "' " + args + " > '" +
                      (dir_ / "stdout").string() + "' 2>&1";
    int rc = std::system(cmd.c_str());
    *out = Slurp(dir_ / "stdout");
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  std::string cli_;
  fs::path dir_;
};

TEST_F(PassesCli, DefaultPipelineVerboseReport) {
  std::string out;
  ASSERT_EQ(Run("-o '" + (dir_ / "out.onnx").string() + "' --verbose", &out), 0) << out;
  for (const auto& name : DefaultPipeline()) EXPECT_NE(out.find(name), std::string::npos) << name;
  EXPECT_NE(out.find("folded=1"), std::string::npos) << out;
  auto m = LoadModel((dir_ / "out.onnx").string());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(CountOps(m->graph, "BatchNormalization"), 0);
  EXPECT_EQ(CountOps(m->graph, "Identity"), 0);
  EXPECT_EQ(m->graph.num_nodes(), 2u);
}

TEST_F(PassesCli, NoneAndUnknownPasses) {
  std::string out;
  ASSERT_EQ(Run("-o '" + (dir_ / "same.onnx").string() + "' --passes none", &out), 0) << out;
  auto m = LoadModel((dir_ / "same.onnx").string());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->graph.num_nodes(), 4u);
  EXPECT_EQ(Run("-o '" + (dir_ / "bad.onnx").string() + "' --passes remove-identity,nope", &out), 1);
  EXPECT_NE(out.find("unknown pass 'nope'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_ / "bad.onnx"));  // nothing written on error
}

}  // namespace
}  // namespace onnxq::passes
