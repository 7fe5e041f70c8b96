#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"

namespace onnxq::cli {

std::vector<Command>& Commands() {
  static std::vector<Command> commands;
  return commands;
}

namespace {
void PrintUsage(FILE* out) {
  auto cmds = Commands();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::fprintf(out, "usage: onnxq <command> [options]   (onnxq <command> --help for details)\n\n");
  std::fprintf(out, "commands:\n");
  for (const auto& c : cmds) std::fprintf(out, "  %-12s %s\n", c.name.c_str(), c.summary.c_str());
}
}  // namespace

int RunCli(const std::vector<std::string>& args) {
  if (args.empty()) {
    PrintUsage(stderr);
    return 2;
  }
  const std::string& name = args[0];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return 0;
  }
  for (const auto& c : Commands()) {
    if (c.name == name) return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "onnxq: error: unknown command '%s'\n", name.c_str());
  PrintUsage(stderr);
  return 2;
}

}  // namespace onnxq::cli
