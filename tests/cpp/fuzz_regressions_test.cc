// Replays every saved fuzzer finding (tests/data/fuzz_regressions/<target>/*) through the same
// checks the libFuzzer targets run (fuzz/harness.h): each input must now give a clean error or a
// success that keeps the invariants. Every input runs in a forked child with a time limit, so a
// reproducer that still crashes or hangs fails its own test instead of taking the suite down.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../../fuzz/harness.h"

// Debian's stb_image 2.27 corrupts memory on some JPEGs (harness.h, JpegReachesKnownStbBug)
// without necessarily failing, and libstb.so is not instrumented, so the replay cannot see the
// damage. Instead these wrappers (the executable's definitions take precedence over libstb.so's;
// they forward to it unchanged) record whether such a JPEG was ever handed to stb_image.
namespace {
bool g_stb_got_known_bad_jpeg = false;
template <typename Fn>
Fn NextSymbol(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" int stbi_info_from_memory(const unsigned char* buffer, int len, int* x, int* y, int* comp) {
  using Fn = int (*)(const unsigned char*, int, int*, int*, int*);
  static Fn next = NextSymbol<Fn>("stbi_info_from_memory");
  if (len > 0 && onnxq::fuzz::JpegReachesKnownStbBug(buffer, static_cast<size_t>(len))) g_stb_got_known_bad_jpeg = true;
  return next ? next(buffer, len, x, y, comp) : 0;
}

extern "C" unsigned char* stbi_load_from_memory(const unsigned char* buffer, int len, int* x, int* y,
                                                int* comp, int req_comp) {
  using Fn = unsigned char* (*)(const unsigned char*, int, int*, int*, int*, int);
  static Fn next = NextSymbol<Fn>("stbi_load_from_memory");
  if (len > 0 && onnxq::fuzz::JpegReachesKnownStbBug(buffer, static_cast<size_t>(len))) g_stb_got_known_bad_jpeg = true;
  return next ? next(buffer, len, x, y, comp, req_comp) : nullptr;
}

namespace onnxq::fuzz {
namespace {

namespace fs = std::filesystem;

fs::path RegressionDir() { return fs::path(ONNXQ_SOURCE_DIR) / "tests" / "data" / "fuzz_regressions"; }

std::vector<fs::path> Inputs(const std::string& target) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(RegressionDir() / target, ec))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.' && e.path().extension() != ".md")
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Address space the child may add to what it already has: the fuzzers run with a 2 GiB malloc
// limit, and the inputs are small, so an allocation beyond this is an absurd size that should have
// been refused before allocating (it fails with bad_alloc and the child aborts).
constexpr uint64_t kChildExtraAddressSpace = uint64_t{2} << 30;

void LimitAddressSpace() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  if (!(statm >> pages)) return;
  const uint64_t limit = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) + kChildExtraAddressSpace;
  struct rlimit rl{limit, limit};
  ::setrlimit(RLIMIT_AS, &rl);
}

// Runs check(bytes) in a child process (with limited address space); returns "" if it returned ""
// in time, else what went wrong.
template <typename Check>
std::string RunIsolated(const std::string& bytes, Check check, int timeout_seconds = 20) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe() failed";
  pid_t pid = ::fork();
  if (pid < 0) return "fork() failed";
  if (pid == 0) {
    ::close(fds[0]);
    LimitAddressSpace();
    // An exception must end the child here: escaping into gtest would run the rest of the suite
    // a second time inside the child.
    std::string bad;
    try {
      bad = check(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      bad = std::string("exception: ") + e.what();
    } catch (...) {
      bad = "unknown exception";
    }
    if (!bad.empty()) (void)!::write(fds[1], bad.data(), bad.size());
    ::_exit(bad.empty() ? 0 : 3);
  }
  ::close(fds[1]);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ::close(fds[0]);
    return "did not finish within " + std::to_string(timeout_seconds) + " s (hang)";
  }
  std::string msg;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  if (WIFSIGNALED(status)) return "crashed with signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  return msg.empty() ? "child exited with status " + std::to_string(WEXITSTATUS(status)) : msg;
}

TEST(FuzzRegressions, HarnessDetectsBrokenInvariants) {
  // The replay must be able to fail: a child that reports a problem, crashes or hangs is caught.
  EXPECT_EQ(RunIsolated("x", [](const uint8_t*, size_t) { return std::string("bad"); }), "bad");
  EXPECT_NE(RunIsolated("x", [](const uint8_t*, size_t) -> std::string { ::abort(); }), "");
  EXPECT_NE(RunIsolated("x", [](const uint8_t*, size_t) -> std::string { ::pause(); return ""; }, 1), "");
  EXPECT_NE(RunIsolated("x", [](const uint8_t*, size_t) {
              std::vector<char> big(size_t{4} << 30);  // beyond the child's address-space allowance
              return std::string(big.empty() ? "?" : "");
            }),
            "");
}

TEST(FuzzRegressions, HarnessChecksWork) {
  // Known-good and known-bad inputs through each check, so an empty regression folder still tests
  // the machinery the fuzzers rely on.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string npy = std::string("\x93NUMPY\x01\x00", 8);
  npy.push_back(static_cast<char>(header.size() & 0xff));
  npy.push_back(static_cast<char>(header.size() >> 8));
  const float values[2] = {1.5f, -2.0f};
  npy += header + std::string(reinterpret_cast<const char*>(values), sizeof(values));
  auto parsed = ParseNpy(npy.data(), npy.size());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->dims(), std::vector<int64_t>{2});
  EXPECT_EQ(CheckNpy(reinterpret_cast<const uint8_t*>(npy.data()), npy.size()), "");
  EXPECT_EQ(CheckNpy(reinterpret_cast<const uint8_t*>("garbage"), 7), "");
  EXPECT_EQ(CheckImage(reinterpret_cast<const uint8_t*>("garbage"), 7), "");
  ExternalDataFolder folder = MakeExternalDataFolder(false);
  ASSERT_FALSE(folder.model_real.empty());
  const std::string good = "i\nweights.bin\n4\n16\n4\n1";
  const std::string escape = "r\nlink_out";
  EXPECT_EQ(CheckExternalData(folder, reinterpret_cast<const uint8_t*>(good.data()), good.size()), "");
  EXPECT_EQ(CheckExternalData(folder, reinterpret_cast<const uint8_t*>(escape.data()), escape.size()), "");
  // The import of `good` succeeds and reads bytes 4..19 of weights.bin: check that directly too.
  const std::string model = BuildExternalDataModel(SplitExternalDataFields(
      reinterpret_cast<const uint8_t*>(good.data()), good.size()));
  auto m = LoadModelFromBytes(model.data(), model.size(), folder.model_dir);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Tensor* w = m->graph.value(m->graph.FindValue("w")).initializer();
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(w->nbytes(), 16u);
  EXPECT_EQ(static_cast<uint8_t>(w->raw()[0]), 4);
  EXPECT_EQ(static_cast<uint8_t>(w->raw()[15]), 19);
  // Through link_out the same import must be refused (a symlink leaving the folder).
  const std::string out = "i\nlink_out\n0\n16\n4\n1";
  const std::string out_model = BuildExternalDataModel(SplitExternalDataFields(
      reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  EXPECT_FALSE(LoadModelFromBytes(out_model.data(), out_model.size(), folder.model_dir).ok());
  RemoveTree(folder.root);
}

void ReplayAll(const std::string& target) {
  const auto inputs = Inputs(target);
  if (inputs.empty()) GTEST_SKIP() << "no saved findings for " << target;
  std::string import_dir = MakeImportFolder();
  ExternalDataFolder folder = MakeExternalDataFolder(/*with_fifo=*/true);
  for (const auto& p : inputs) {
    const std::string bytes = ReadAll(p);
    std::string bad;
    if (target == "onnx_import")
      bad = RunIsolated(bytes, [&](const uint8_t* d, size_t n) { return CheckOnnxImport(d, n, import_dir); });
    else if (target == "external_data")
      bad = RunIsolated(bytes, [&](const uint8_t* d, size_t n) { return CheckExternalData(folder, d, n); });
    else if (target == "npy")
      bad = RunIsolated(bytes, [](const uint8_t* d, size_t n) { return CheckNpy(d, n); });
    else
      bad = RunIsolated(bytes, [](const uint8_t* d, size_t n) {
        std::string r = CheckImage(d, n);
        if (r.empty() && g_stb_got_known_bad_jpeg)
          r = "DecodeImage handed stb_image 2.27 a JPEG that reaches one of its known memory-safety "
              "bugs (validate the Huffman tables first: fuzz/harness.h JpegReachesKnownStbBug)";
        return r;
      });
    EXPECT_EQ(bad, "") << p.string();
  }
  RemoveTree(import_dir);
  RemoveTree(folder.root);
}

TEST(FuzzRegressions, OnnxImport) { ReplayAll("onnx_import"); }
TEST(FuzzRegressions, ExternalData) { ReplayAll("external_data"); }
TEST(FuzzRegressions, Npy) { ReplayAll("npy"); }
TEST(FuzzRegressions, Image) { ReplayAll("image"); }

}  // namespace
}  // namespace onnxq::fuzz
