// Argument parsing for `onnxq` subcommands. A command declares its positionals, options and flags
// up front (with value kinds, so numbers are validated while parsing), then RunCommand does the
// rest: `--help`, usage errors (exit 2) and runtime errors (exit 1), each as one line
// "onnxq: error: <message>" on stderr.
//
//   ArgParser p("convert", "Import a model and export it again.");
//   p.Positional("MODEL", "input .onnx file");
//   p.Option("output", 'o', "OUT", "output .onnx file").Required();
//   p.Option("max-tensor-elements", 0, "N", "...", ArgKind::kInt);
//   return RunCommand(p, args, [](const ArgParser& a) -> Status { ... a.Get("output") ... });
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/base/status.h"

namespace onnxq::cli {

enum class ArgKind {
  kString,
  kInt,     // decimal integer, e.g. 1000000
  kBytes,   // integer with an optional binary suffix: 512, 64K, 4M, 2G, 1T (KiB, MiB, ... also)
  kDouble,  // floating point
};

class ArgParser {
 public:
  struct OptionSpec {
    std::string long_name;   // without "--"
    char short_name = 0;     // 0: none
    std::string metavar;     // empty for flags
    std::string help;
    ArgKind kind = ArgKind::kString;
    bool is_flag = false;
    bool repeated = false;
    bool required = false;
    std::string default_value;  // shown in --help and returned by Get when absent
    std::vector<std::string> choices;

    OptionSpec& Required() { required = true; return *this; }
    OptionSpec& Repeated() { repeated = true; return *this; }
    OptionSpec& Default(std::string v) { default_value = std::move(v); return *this; }
    OptionSpec& Choices(std::vector<std::string> c) { choices = std::move(c); return *this; }
  };

  ArgParser(std::string command, std::string description);

  // Positionals are matched in declaration order. A variadic one (only the last) takes the rest.
  ArgParser& Positional(std::string metavar, std::string help, bool required = true,
                        bool variadic = false);
  OptionSpec& Option(std::string long_name, char short_name, std::string metavar,
                     std::string help, ArgKind kind = ArgKind::kString);
  OptionSpec& Flag(std::string long_name, char short_name, std::string help);
  // Free text printed after the option list in --help (examples, notes).
  void Epilog(std::string text) { epilog_ = std::move(text); }

  // Accepts "--name value", "--name=value", "-o value", "-ovalue", and "--" to end options.
  // Fails (a usage error) on unknown options, missing values, bad numbers, missing required
  // arguments and extra positionals. Sets help_requested() for -h/--help instead.
  Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  std::string Help() const;
  std::string Usage() const;  // the one "usage: ..." line
  const std::string& command() const { return command_; }

  // ---- results (after a successful Parse)
  // Positional by metavar; empty if an optional one was not given.
  std::string Arg(const std::string& metavar) const;
  std::vector<std::string> Args(const std::string& metavar) const;  // variadic positional
  bool Has(const std::string& long_name) const;                       // given on the command line
  bool GetFlag(const std::string& long_name) const;
  // Last value given, else the default ("" if none).
  std::string Get(const std::string& long_name) const;
  std::vector<std::string> GetAll(const std::string& long_name) const;  // every value, in order
  // Numeric values (validated by Parse for kInt/kBytes/kDouble options); `fallback` if absent and
  // without default.
  int64_t GetInt(const std::string& long_name, int64_t fallback = 0) const;
  double GetDouble(const std::string& long_name, double fallback = 0.0) const;

 private:
  struct PositionalSpec {
    std::string metavar, help;
    bool required = true, variadic = false;
  };
  const OptionSpec* FindLong(const std::string& name) const;
  const OptionSpec* FindShort(char c) const;
  Status Accept(const OptionSpec& spec, const std::string& value);

  std::string command_, description_, epilog_;
  std::vector<PositionalSpec> positionals_;
  std::vector<OptionSpec> options_;  // stable addresses are not needed: looked up by name
  bool help_requested_ = false;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_values_;
};

// Parses an integer ("1000000") or, with allow_suffix, a byte size ("4G", "64MiB").
StatusOr<int64_t> ParseInt(const std::string& text, bool allow_suffix = false);
StatusOr<double> ParseDouble(const std::string& text);

// Parses `args` and runs `body`. --help prints Help() to stdout and returns 0; a parse error prints
// "onnxq: error: <command>: <message>" (plus the usage line) and returns 2; an error from body
// prints "onnxq: error: <message>" and returns 1; success returns 0.
int RunCommand(ArgParser& parser, const std::vector<std::string>& args,
               const std::function<Status(const ArgParser&)>& body);
// The one-line error report used by RunCommand (for commands with their own flow).
void PrintError(const std::string& message);

}  // namespace onnxq::cli
