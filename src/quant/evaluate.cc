// Evaluation of classifiers: accuracy, and agreement with a reference model.
#include "onnxq/quant/evaluate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "onnxq/base/thread_pool.h"
#include "onnxq/quant/qdq_plan.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/report.h"
#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {
namespace {

// Indices of the k largest logits, largest first (ties: lower index first).
std::vector<int64_t> TopK(std::span<const float> x, int64_t k) {
  std::vector<int64_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int64_t>(k, static_cast<int64_t>(x.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return x[static_cast<size_t>(a)] > x[static_cast<size_t>(b)] ||
           (x[static_cast<size_t>(a)] == x[static_cast<size_t>(b)] && a < b);
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

StatusOr<Tensor> Logits(Session& s, const std::map<std::string, Tensor>& feeds, int64_t fixed_batch,
                        const char* which) {
  RunOptions ro;
  ro.batch_chunk = fixed_batch;
  ONNXQ_ASSIGN_OR_RETURN(auto out, s.Run(feeds, ro));
  const std::string output = s.output_names()[0];  // output_names() returns a copy
  Tensor t = out.at(output);
  if (t.dtype() != DataType::kFloat || t.rank() < 1)
    return InvalidArgument(which, " output '", output, "' is not a float tensor of scores [N, ...]");
  return t;
}

}  // namespace

double SoftmaxKl(std::span<const float> p, std::span<const float> q) {
  auto lse = [](std::span<const float> x) {
    double m = -INFINITY;
    for (float v : x) m = std::max(m, double(v));
    double s = 0;
    for (float v : x) s += std::exp(double(v) - m);
    return m + std::log(s);
  };
  const double lp = lse(p), lq = lse(q);
  double kl = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double a = double(p[i]) - lp, b = double(q[i]) - lq;
    kl += std::exp(a) * (a - b);
  }
  return std::max(0.0, kl);
}

std::string EvalResult::ToJson() const {
  JsonWriter j;
  j.BeginObject();
  j.Field("count", count);
  if (has_labels) j.Field("top1", top1).Field("top5", top5);
  if (has_reference) {
    if (has_labels) j.Field("reference_top1", reference_top1).Field("reference_top5", reference_top5);
    j.Field("top1_agreement", top1_agreement).Field("mean_kl", mean_kl);
  }
  j.EndObject();
  return j.str();
}

StatusOr<EvalResult> Evaluate(const Model& model, CalibrationSource& data, const std::vector<int64_t>& labels,
                              const Model* reference, const EvalOptions& options) {
  const int64_t total = data.size();
  if (total == 0) return InvalidArgument("the evaluation set is empty");
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != total)
    return InvalidArgument(labels.size(), " labels for ", total, " samples");
  if (options.batch_size < 1) return InvalidArgument("batch size must be at least 1");
  SessionOptions so;
  so.num_threads = options.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto sess, Session::Create(model, so));
  const std::vector<std::string> inputs = sess->input_names();
  if (inputs.empty()) return InvalidArgument("the model has no runtime input to evaluate on");
  std::unique_ptr<Session> ref;
  if (reference) {
    ONNXQ_ASSIGN_OR_RETURN(ref, Session::Create(*reference, so));
    std::vector<std::string> a = inputs, b = ref->input_names();
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return InvalidArgument("the model and the reference have different inputs");
  }
  // Models that fix their batch size run in parts of it; a batch must then be a multiple of both.
  ONNXQ_ASSIGN_OR_RETURN(const int64_t fixed, FixedBatchSize(model));
  int64_t fixed_ref = 0;
  if (reference) {
    ONNXQ_ASSIGN_OR_RETURN(fixed_ref, FixedBatchSize(*reference));
  }
  const int64_t step = std::lcm(std::max<int64_t>(fixed, 1), std::max<int64_t>(fixed_ref, 1));
  if (total % step != 0)
    return InvalidArgument("the evaluation set's ", total, " samples are not a multiple of ", step,
                           ", the batch size the model", reference ? " and the reference fix" : " fixes");
  const int64_t batch_size = step > 1 ? std::max(step, options.batch_size / step * step) : options.batch_size;
  EvalResult r;
  r.has_labels = !labels.empty();
  r.has_reference = reference != nullptr;
  int64_t c1 = 0, c5 = 0, r1 = 0, r5 = 0, agree = 0;
  double kl = 0;
  for (int64_t b = 0; b < total; b += batch_size) {
    const int64_t n = std::min(batch_size, total - b);
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, data.Feeds(b, n, inputs));
    ONNXQ_ASSIGN_OR_RETURN(Tensor y, Logits(*sess, feeds, fixed, "the model's"));
    Tensor yr;
    if (ref) {
      ONNXQ_ASSIGN_OR_RETURN(yr, Logits(*ref, feeds, fixed_ref, "the reference's"));
      if (yr.numel() != y.numel())
        return InvalidArgument("the model and the reference produce outputs of different sizes (",
                               DimsToString(y.dims()), " vs ", DimsToString(yr.dims()), ")");
    }
    if (y.numel() % n != 0) return InvalidArgument("output size is not a multiple of the batch");
    const int64_t classes = y.numel() / n;
    for (int64_t i = 0; i < n; ++i) {
      std::span<const float> row(y.data<float>() + i * classes, static_cast<size_t>(classes));
      auto top = TopK(row, 5);
      r.predictions.push_back(top[0]);
      if (r.has_labels) {
        const int64_t label = labels[static_cast<size_t>(b + i)];
        c1 += top[0] == label;
        c5 += std::find(top.begin(), top.end(), label) != top.end();
      }
      if (ref) {
        std::span<const float> rrow(yr.data<float>() + i * classes, static_cast<size_t>(classes));
        auto rtop = TopK(rrow, 5);
        agree += rtop[0] == top[0];
        kl += SoftmaxKl(rrow, row);
        if (r.has_labels) {
          const int64_t label = labels[static_cast<size_t>(b + i)];
          r1 += rtop[0] == label;
          r5 += std::find(rtop.begin(), rtop.end(), label) != rtop.end();
        }
      }
    }
    r.count += n;
    if (options.progress && !options.progress(r.count, total)) return Cancelled("evaluation cancelled");
  }
  const double N = static_cast<double>(r.count);
  r.top1 = c1 / N;
  r.top5 = c5 / N;
  r.reference_top1 = r1 / N;
  r.reference_top5 = r5 / N;
  r.top1_agreement = agree / N;
  r.mean_kl = kl / N;
  return r;
}

StatusOr<EvalResult> Evaluate(const Model& model, const calib::Dataset& data, const Model* reference,
                              const EvalOptions& options) {
  ThreadPool pool(options.threads);
  std::unique_ptr<CalibrationSource> source = DatasetSource(data, &pool);
  std::vector<int64_t> labels;
  if (data.has_labels())
    for (int64_t i = 0; i < data.size(); ++i) labels.push_back(data.label(i));
  return Evaluate(model, *source, labels, reference, options);
}

}  // namespace onnxq::quant
