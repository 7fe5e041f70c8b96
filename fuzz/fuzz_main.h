// Turns a harness's "broken invariant" into a libFuzzer crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace onnxq::fuzz {
inline void Report(const char* target, const std::string& bad) {
  if (bad.empty()) return;
  std::fprintf(stderr, "\n[%s] INVARIANT BROKEN: %s\n", target, bad.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace onnxq::fuzz
