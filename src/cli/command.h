// Subcommand registry of the `onnxq` tool. Each subcommand lives in its own cmd_*.cc file and
// registers itself with ONNXQ_REGISTER_COMMAND, so adding one touches no other file.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace onnxq::cli {

struct Command {
  std::string name;
  std::string summary;  // one line for `onnxq --help`
  // args excludes the program and subcommand names. Returns the process exit code.
  std::function<int(const std::vector<std::string>& args)> run;
};

std::vector<Command>& Commands();

// Dispatches `onnxq <args...>` (args exclude the program name) to a registered command and returns
// the exit code: used by the executable and by `python -m onnxq`.
int RunCli(const std::vector<std::string>& args);

struct CommandRegistrar {
  explicit CommandRegistrar(Command c) { Commands().push_back(std::move(c)); }
};

}  // namespace onnxq::cli

#define ONNXQ_REGISTER_COMMAND(ident, name, summary, fn) \
  static ::onnxq::cli::CommandRegistrar ident##_registrar(::onnxq::cli::Command{name, summary, fn})
