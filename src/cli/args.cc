#include "cli/args.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <sstream>

namespace onnxq::cli {

StatusOr<int64_t> ParseInt(const std::string& text, bool allow_suffix) {
  if (text.empty()) return InvalidArgument("expected a number, got an empty value");
  size_t pos = 0;
  bool negative = false;
  if (text[0] == '-' || text[0] == '+') {
    negative = text[0] == '-';
    pos = 1;
  }
  size_t digits_start = pos;
  uint64_t v = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[pos] - '0');
    if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - d) / 10)
      return OutOfRange("'", text, "' is too large");
    v = v * 10 + d;
    ++pos;
  }
  if (pos == digits_start) return InvalidArgument("'", text, "' is not a number");
  int shift = 0;
  if (pos < text.size()) {
    std::string suffix = text.substr(pos);
    if (!allow_suffix) return InvalidArgument("'", text, "' is not an integer");
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    std::string rest = suffix.substr(1);
    if (c == 'K') shift = 10;
    else if (c == 'M') shift = 20;
    else if (c == 'G') shift = 30;
    else if (c == 'T') shift = 40;
    else if (c == 'B' && rest.empty()) shift = 0;
    else return InvalidArgument("'", text, "' has an unknown size suffix (use K, M, G or T)");
    if (c != 'B' && !(rest.empty() || rest == "B" || rest == "iB" || rest == "ib"))
      return InvalidArgument("'", text, "' has an unknown size suffix (use K, M, G or T)");
  }
  if (shift && v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> shift))
    return OutOfRange("'", text, "' is too large");
  int64_t r = static_cast<int64_t>(v << shift);
  return negative ? -r : r;
}

StatusOr<double> ParseDouble(const std::string& text) {
  if (text.empty()) return InvalidArgument("expected a number, got an empty value");
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return InvalidArgument("'", text, "' is not a number");
  if (errno == ERANGE || !std::isfinite(v)) return OutOfRange("'", text, "' is out of range");
  return v;
}

ArgParser::ArgParser(std::string command, std::string description)
    : command_(std::move(command)), description_(std::move(description)) {}

ArgParser& ArgParser::Positional(std::string metavar, std::string help, bool required,
                                 bool variadic) {
  positionals_.push_back(PositionalSpec{std::move(metavar), std::move(help), required, variadic});
  return *this;
}

ArgParser::OptionSpec& ArgParser::Option(std::string long_name, char short_name,
                                         std::string metavar, std::string help, ArgKind kind) {
  OptionSpec s;
  s.long_name = std::move(long_name);
  s.short_name = short_name;
  s.metavar = metavar.empty() ? std::string("VALUE") : std::move(metavar);
  s.help = std::move(help);
  s.kind = kind;
  options_.push_back(std::move(s));
  return options_.back();
}

ArgParser::OptionSpec& ArgParser::Flag(std::string long_name, char short_name, std::string help) {
  OptionSpec s;
  s.long_name = std::move(long_name);
  s.short_name = short_name;
  s.help = std::move(help);
  s.is_flag = true;
  options_.push_back(std::move(s));
  return options_.back();
}

const ArgParser::OptionSpec* ArgParser::FindLong(const std::string& name) const {
  for (const auto& o : options_)
    if (o.long_name == name) return &o;
  return nullptr;
}

const ArgParser::OptionSpec* ArgParser::FindShort(char c) const {
  for (const auto& o : options_)
    if (o.short_name && o.short_name == c) return &o;
  return nullptr;
}

Status ArgParser::Accept(const OptionSpec& spec, const std::string& value) {
  const std::string label = "--" + spec.long_name;
  switch (spec.kind) {
    case ArgKind::kInt:
    case ArgKind::kBytes: {
      auto v = ParseInt(value, spec.kind == ArgKind::kBytes);
      if (!v.ok()) return InvalidArgument(label, ": ", v.status().message());
      break;
    }
    case ArgKind::kDouble: {
      auto v = ParseDouble(value);
      if (!v.ok()) return InvalidArgument(label, ": ", v.status().message());
      break;
    }
    case ArgKind::kString: break;
  }
  if (!spec.choices.empty()) {
    bool ok = false;
    std::string all;
    for (const auto& c : spec.choices) {
      ok |= c == value;
      all += (all.empty() ? "" : ", ") + c;
    }
    if (!ok) return InvalidArgument(label, ": '", value, "' is not one of ", all);
  }
  auto& vals = values_[spec.long_name];
  if (!spec.repeated && !vals.empty())
    return InvalidArgument(label, " given more than once");
  vals.push_back(value);
  return Status::Ok();
}

Status ArgParser::Parse(const std::vector<std::string>& args) {
  values_.clear();
  positional_values_.clear();
  help_requested_ = false;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 2 || a[0] != '-' ||
        (a[1] >= '0' && a[1] <= '9')) {  // "-1" is a value, not an option
      positional_values_.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      help_requested_ = true;
      return Status::Ok();
    }
    const OptionSpec* spec = nullptr;
    std::optional<std::string> inline_value;
    std::string shown = a;
    if (a[1] == '-') {
      std::string name = a.substr(2);
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
        shown = "--" + name;
      }
      spec = FindLong(name);
    } else {
      spec = FindShort(a[1]);
      shown = a.substr(0, 2);
      if (a.size() > 2) {
        if (spec && spec->is_flag)
          return InvalidArgument("flag ", shown, " takes no value (in '", a, "')");
        inline_value = a.substr(2);
      }
    }
    if (!spec) return InvalidArgument("unknown option '", shown, "'");
    if (spec->is_flag) {
      if (inline_value) return InvalidArgument("flag --", spec->long_name, " takes no value");
      values_[spec->long_name].push_back("1");
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      if (i + 1 >= args.size()) return InvalidArgument("option ", shown, " needs a value (", spec->metavar, ")");
      value = args[++i];
    }
    ONNXQ_RETURN_IF_ERROR(Accept(*spec, value));
  }
  for (const auto& o : options_)
    if (o.required && !values_.count(o.long_name))
      return InvalidArgument("missing required option --", o.long_name, " ", o.metavar);
  size_t needed = 0;
  bool variadic = !positionals_.empty() && positionals_.back().variadic;
  for (const auto& p : positionals_) needed += p.required ? 1 : 0;
  if (positional_values_.size() < needed) {
    const auto& missing = positionals_[positional_values_.size()];
    return InvalidArgument("missing argument ", missing.metavar);
  }
  if (!variadic && positional_values_.size() > positionals_.size())
    return InvalidArgument("unexpected argument '", positional_values_[positionals_.size()], "'");
  return Status::Ok();
}

std::string ArgParser::Usage() const {
  std::ostringstream os;
  os << "usage: onnxq " << command_;
  for (const auto& p : positionals_) {
    std::string m = p.metavar + (p.variadic ? "..." : "");
    os << ' ' << (p.required ? m : "[" + m + "]");
  }
  for (const auto& o : options_) {
    if (!o.required) continue;
    os << " " << (o.short_name ? std::string("-") + o.short_name : "--" + o.long_name) << ' ' << o.metavar;
  }
  bool has_optional = false;
  for (const auto& o : options_) has_optional |= !o.required;
  if (has_optional) os << " [options]";
  return os.str();
}

std::string ArgParser::Help() const {
  std::ostringstream os;
  os << Usage() << "\n\n" << description_ << "\n";
  if (!positionals_.empty()) {
    os << "\narguments:\n";
    for (const auto& p : positionals_) {
      std::string left = "  " + p.metavar;
      os << left << std::string(left.size() < 28 ? 28 - left.size() : 1, ' ') << p.help << "\n";
    }
  }
  os << "\noptions:\n";
  auto line = [&](const std::string& left, const std::string& help) {
    os << left;
    if (left.size() < 28) os << std::string(28 - left.size(), ' ');
    else os << "\n" << std::string(28, ' ');
    os << help << "\n";
  };
  for (const auto& o : options_) {
    std::string left = "  ";
    left += o.short_name ? std::string("-") + o.short_name + ", " : std::string("    ");
    left += "--" + o.long_name;
    if (!o.is_flag) left += " " + o.metavar;
    std::string help = o.help;
    if (!o.choices.empty()) {
      help += " (one of:";
      for (const auto& c : o.choices) help += " " + c;
      help += ")";
    }
    if (!o.default_value.empty()) help += " [default: " + o.default_value + "]";
    if (o.repeated) help += " (repeatable)";
    line(left, help);
  }
  line("  -h, --help", "show this help and exit");
  if (!epilog_.empty()) os << "\n" << epilog_ << (epilog_.back() == '\n' ? "" : "\n");
  return os.str();
}

std::string ArgParser::Arg(const std::string& metavar) const {
  for (size_t k = 0; k < positionals_.size(); ++k)
    if (positionals_[k].metavar == metavar)
      return k < positional_values_.size() ? positional_values_[k] : std::string();
  return {};
}

std::vector<std::string> ArgParser::Args(const std::string& metavar) const {
  for (size_t k = 0; k < positionals_.size(); ++k)
    if (positionals_[k].metavar == metavar) {
      if (k >= positional_values_.size()) return {};
      if (!positionals_[k].variadic) return {positional_values_[k]};
      return std::vector<std::string>(positional_values_.begin() + static_cast<long>(k),
                                      positional_values_.end());
    }
  return {};
}

bool ArgParser::Has(const std::string& long_name) const { return values_.count(long_name) > 0; }
bool ArgParser::GetFlag(const std::string& long_name) const { return Has(long_name); }

std::string ArgParser::Get(const std::string& long_name) const {
  auto it = values_.find(long_name);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  const OptionSpec* spec = FindLong(long_name);
  return spec ? spec->default_value : std::string();
}

std::vector<std::string> ArgParser::GetAll(const std::string& long_name) const {
  auto it = values_.find(long_name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t ArgParser::GetInt(const std::string& long_name, int64_t fallback) const {
  std::string v = Get(long_name);
  if (v.empty()) return fallback;
  auto r = ParseInt(v, /*allow_suffix=*/true);
  return r.ok() ? *r : fallback;
}

double ArgParser::GetDouble(const std::string& long_name, double fallback) const {
  std::string v = Get(long_name);
  if (v.empty()) return fallback;
  auto r = ParseDouble(v);
  return r.ok() ? *r : fallback;
}

void PrintError(const std::string& message) {
  // One line, whatever the message holds (names from a model file can contain any byte).
  std::string line = message;
  for (char& c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = u == '\n' || u == '\t' || u == '\r' ? ' ' : '?';
  }
  line = "onnxq: error: " + line + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

int RunCommand(ArgParser& parser, const std::vector<std::string>& args,
               const std::function<Status(const ArgParser&)>& body) {
  Status parsed = parser.Parse(args);
  if (!parsed.ok()) {
    PrintError(parser.command() + ": " + parsed.message() + " (see 'onnxq " + parser.command() +
               " --help')");
    return 2;
  }
  if (parser.help_requested()) {
    std::fputs(parser.Help().c_str(), stdout);
    return 0;
  }
  Status s;
  try {
    s = body(parser);
  } catch (const std::bad_alloc&) {
    s = OutOfRange("out of memory");
  }
  if (!s.ok()) {
    PrintError(s.message());
    return 1;
  }
  return 0;
}

}  // namespace onnxq::cli
