#include "onnxq/base/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace onnxq {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "onnxq_file_XXXXXX").string();
    dir_ = ::mkdtemp(templ.data());
  }
  void TearDown() override {
    ::chmod(dir_.c_str(), 0700);
    fs::remove_all(dir_);
  }
  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string dir_;
};

TEST_F(FileTest, ReadFileHonoursLimitAndKinds) {
  ASSERT_TRUE(AtomicWriteFile(P("a"), "hello").ok());
  EXPECT_EQ(*ReadFile(P("a")), "hello");
  auto big = ReadFile(P("a"), 4);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(ReadFile(P("missing")).status().code(), StatusCode::kNotFound);
  auto dir = ReadFile(dir_);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
}

TEST_F(FileTest, AtomicWriteReplacesAndCleansUp) {
  ASSERT_TRUE(AtomicWriteFile(P("out"), "one").ok());
  ASSERT_TRUE(AtomicWriteFile(P("out"), "two").ok());
  EXPECT_EQ(*ReadFile(P("out")), "two");
  EXPECT_EQ(Files(), std::vector<std::string>{"out"});
  // New files get ordinary permissions (not mkstemp's 0600) under the usual umask.
  mode_t old = ::umask(022);
  ASSERT_TRUE(AtomicWriteFile(P("perm"), "x").ok());
  ::umask(old);
  struct stat st;
  ASSERT_EQ(::stat(P("perm").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // Writing onto a directory fails and leaves nothing behind.
  fs::create_directory(P("sub"));
  EXPECT_FALSE(AtomicWriteFile(P("sub"), "x").ok());
  EXPECT_FALSE(AtomicWriteFile(P("nodir/out"), "x").ok());
  EXPECT_EQ(Files(), (std::vector<std::string>{"out", "perm", "sub"}));
}

TEST_F(FileTest, AtomicFileAppearsOnlyOnCommit) {
  {
    auto f = AtomicFile::Create(P("big"));
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->Write("abc", 3).ok());
    EXPECT_FALSE(PathExists(P("big")));
    // Destroyed without Commit: nothing at the path, no temporary left.
  }
  EXPECT_TRUE(Files().empty());
  auto f = AtomicFile::Create(P("big"));
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->Write("abc", 3).ok());
  ASSERT_TRUE(f->Write("def", 3).ok());
  EXPECT_EQ(f->size(), 6u);
  ASSERT_TRUE(f->Commit().ok());
  EXPECT_EQ(*ReadFile(P("big")), "abcdef");
  EXPECT_EQ(Files(), std::vector<std::string>{"big"});
}

TEST_F(FileTest, ResolvePathInsideRefusesEscapes) {
  fs::create_directory(P("m"));
  fs::create_directory(P("m/sub"));
  ASSERT_TRUE(AtomicWriteFile(P("m/sub/w.bin"), "w").ok());
  ASSERT_TRUE(AtomicWriteFile(P("outside.bin"), "o").ok());
  fs::create_symlink("../outside.bin", P("m/link_out"));
  fs::create_symlink("sub/w.bin", P("m/link_in"));
  fs::create_symlink("/etc", P("m/etc"));
  const std::string base = P("m");
  auto ok = ResolvePathInside(base, "sub/w.bin");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, fs::canonical(P("m/sub/w.bin")).string());
  EXPECT_TRUE(ResolvePathInside(base, "./sub/w.bin").ok());
  EXPECT_TRUE(ResolvePathInside(base, "link_in").ok());
  auto msg = [&](const std::string& rel) {
    auto r = ResolvePathInside(base, rel);
    EXPECT_FALSE(r.ok()) << rel;
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(msg("../outside.bin").find("'..'"), std::string::npos);
  EXPECT_NE(msg("sub/../../outside.bin").find("'..'"), std::string::npos);
  EXPECT_NE(msg("sub\\..\\..\\outside.bin").find("'..'"), std::string::npos);
  EXPECT_NE(msg(P("outside.bin")).find("absolute"), std::string::npos);
  EXPECT_NE(msg("C:\\weights.bin").find("absolute"), std::string::npos);
  EXPECT_NE(msg("link_out").find("outside the model folder"), std::string::npos);
  EXPECT_NE(msg("etc/passwd").find("outside the model folder"), std::string::npos);
  EXPECT_NE(msg("missing.bin").find("does not exist"), std::string::npos);
  EXPECT_NE(msg("").find("empty"), std::string::npos);
  // A base folder whose name is a prefix of a sibling's must not admit the sibling.
  fs::create_directory(P("m2"));
  ASSERT_TRUE(AtomicWriteFile(P("m2/x"), "x").ok());
  fs::create_symlink("../m2/x", P("m/sibling"));
  EXPECT_NE(msg("sibling").find("outside the model folder"), std::string::npos);
}

TEST(FilePaths, DirAndBaseName) {
  EXPECT_EQ(DirName("a/b/m.onnx"), "a/b");
  EXPECT_EQ(DirName("m.onnx"), ".");
  EXPECT_EQ(DirName("/m.onnx"), "/");
  EXPECT_EQ(BaseName("a/b/m.onnx"), "m.onnx");
  EXPECT_EQ(BaseName("m.onnx"), "m.onnx");
}

}  // namespace
}  // namespace onnxq
