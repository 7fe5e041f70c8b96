// Calibration data for a model with several inputs, one dataset per input (the CLI's
// `--calib NAME=PATH`): sample i of the model is sample i of every dataset.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "onnxq/calib/dataset.h"
#include "onnxq/quant/quantize_model.h"

namespace onnxq::quant {
namespace {

class DatasetMapCalibrationSource : public CalibrationSource {
 public:
  DatasetMapCalibrationSource(std::vector<std::pair<std::string, const calib::Dataset*>> sets, ThreadPool* pool)
      : sets_(std::move(sets)), pool_(pool) {}

  int64_t size() const override { return sets_.empty() ? 0 : sets_.front().second->size(); }

  StatusOr<Tensor> Batch(int64_t begin, int64_t n) override {
    if (sets_.size() == 1) return sets_.front().second->LoadBatch(begin, n, pool_);
    return InvalidArgument("the calibration data has one dataset per input (", Names(),
                           "), not a single tensor per sample");
  }

  StatusOr<std::map<std::string, Tensor>> Feeds(int64_t begin, int64_t n,
                                                const std::vector<std::string>& inputs) override {
    std::map<std::string, Tensor> out;
    for (const std::string& name : inputs) {
      const calib::Dataset* d = Find(name);
      if (d == nullptr)
        return InvalidArgument("no calibration data for the model input '", name, "' (given: ", Names(), ")");
      auto t = d->LoadBatch(begin, n, pool_);
      if (!t.ok()) {
        Status s = t.status();
        return s.Prepend("calibration data for input '" + name + "'");
      }
      out.emplace(name, std::move(*t));
    }
    for (const auto& [name, d] : sets_) {
      (void)d;
      if (std::find(inputs.begin(), inputs.end(), name) == inputs.end())
        return InvalidArgument("calibration data given for '", name, "', which is not an input of the model");
    }
    return out;
  }

  std::vector<std::pair<std::string, std::string>> Fingerprints() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [name, d] : sets_) {
      for (int64_t i = 0; i < d->size(); ++i) {
        std::string src = d->source(i);
        auto h = Sha256File(src);
        out.emplace_back(name + ": " + src, h.ok() ? *h : std::string("unreadable"));
        if (d->kind() == calib::Dataset::Kind::kNpyStack) break;  // one file
      }
    }
    return out;
  }

 private:
  const calib::Dataset* Find(const std::string& name) const {
    for (const auto& [n, d] : sets_)
      if (n == name) return d;
    return nullptr;
  }
  std::string Names() const {
    std::string s;
    for (const auto& [n, d] : sets_) s += (s.empty() ? "'" : ", '") + n + "'";
    return s;
  }

  std::vector<std::pair<std::string, const calib::Dataset*>> sets_;
  ThreadPool* pool_;
};

}  // namespace

StatusOr<std::unique_ptr<CalibrationSource>> DatasetMapSource(
    std::vector<std::pair<std::string, const calib::Dataset*>> datasets, ThreadPool* pool) {
  if (datasets.empty()) return InvalidArgument("no calibration datasets given");
  const int64_t n = datasets.front().second->size();
  for (size_t i = 0; i < datasets.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (datasets[j].first == datasets[i].first)
        return InvalidArgument("calibration data given twice for input '", datasets[i].first, "'");
    if (datasets[i].second->size() != n)
      return InvalidArgument("the calibration data of the inputs differ in size: '", datasets.front().first,
                             "' has ", n, " samples, '", datasets[i].first, "' has ",
                             datasets[i].second->size());
  }
  return std::unique_ptr<CalibrationSource>(new DatasetMapCalibrationSource(std::move(datasets), pool));
}

}  // namespace onnxq::quant
