#include "onnxq/runtime/feeds.h"

#include <random>
#include <set>

#include "onnxq/base/npy.h"

namespace onnxq {

StatusOr<std::map<std::string, Tensor>> LoadNpyFeeds(const std::vector<std::string>& specs) {
  std::map<std::string, Tensor> feeds;
  for (const auto& spec : specs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      return InvalidArgument("input '", spec, "' is not NAME=file.npy");
    const std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    if (feeds.count(name)) return InvalidArgument("input '", name, "' is given twice");
    auto t = ReadNpy(path);
    if (!t.ok()) return Status(t.status()).Prepend("input '" + name + "'");
    feeds[name] = std::move(t).value();
  }
  return feeds;
}

StatusOr<std::map<std::string, Tensor>> RandomFeeds(const Model& model, int64_t batch,
                                                    uint32_t seed,
                                                    std::map<std::string, Tensor> given) {
  if (batch < 1) return InvalidArgument("batch must be >= 1, got ", batch);
  const Graph& g = model.graph;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  for (ValueId v : g.RuntimeInputs()) {
    const Value& val = g.value(v);
    if (given.count(val.name())) continue;
    if (!val.shape)
      return InvalidArgument("input '", val.name(), "' has no declared shape; pass it with --input");
    std::vector<int64_t> dims;
    for (size_t i = 0; i < val.shape->rank(); ++i) {
      const Dim& d = (*val.shape)[i];
      if (d.is_known()) {
        dims.push_back(d.value);
      } else if (i == 0) {
        dims.push_back(batch);
      } else {
        return InvalidArgument("input '", val.name(), "' has an unknown dim ", i, " (",
                               val.shape->ToString(), "); pass it with --input");
      }
    }
    if (val.dtype == DataType::kUndefined || val.dtype == DataType::kString)
      return Unsupported("input '", val.name(), "' has no numeric element type");
    ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(val.dtype, dims));
    if (IsFloatingPoint(val.dtype))
      for (int64_t i = 0; i < t.numel(); ++i) t.SetFromDouble(i, uni(rng));
    given[val.name()] = std::move(t);
  }
  return given;
}

std::vector<std::string> SafeFileStems(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  std::set<std::string> used;
  for (const auto& name : names) {
    std::string s;
    for (char c : name) {
      const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      s += ok ? c : '_';
    }
    if (s.empty() || s[0] == '.') s = "_" + s;
    if (s.size() > 200) s.resize(200);
    std::string candidate = s;
    for (int i = 1; used.count(candidate); ++i) candidate = s + "_" + std::to_string(i);
    used.insert(candidate);
    out.push_back(candidate);
  }
  return out;
}

}  // namespace onnxq
