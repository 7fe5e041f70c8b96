// `onnxq bench MODEL [--threads N] [--batch B] [--iters N] [--warmup N] [--input NAME=f.npy]
// [--profile [--top N]] [--json]`: latency (median / min / max ms over the timed runs) and peak
// intermediate memory of the executor; with --profile, time per node and per operator type.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "cli/args.h"
#include "cli/command.h"
#include "cli/common_options.h"
#include "onnxq/base/json.h"
#include "onnxq/kernels/cpu.h"
#include "onnxq/onnx/model_io.h"
#include "onnxq/runtime/feeds.h"
#include "onnxq/runtime/session.h"

namespace onnxq::cli {
namespace {

std::string JsonString(const std::string& s) { return JsonQuote(s); }

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int RunBench(const std::vector<std::string>& args) {
  ArgParser p("bench",
              "Time a model on onnxq's CPU executor. Inputs not given with --input are random\n"
              "(floats uniform in [-1, 1), integers zero); symbolic batch dims take --batch.");
  p.Positional("MODEL", "the .onnx file");
  p.Option("batch", 'b', "B", "batch size for symbolic first dims", ArgKind::kInt).Default("1");
  p.Option("iters", 'n', "N", "timed runs", ArgKind::kInt).Default("20");
  p.Option("warmup", 0, "N", "untimed runs first (planning happens in the first)", ArgKind::kInt)
      .Default("3");
  p.Option("input", 'i', "NAME=FILE.npy", "a model input (repeat for each input)").Repeated();
  AddSessionOptions(p);
  p.Flag("profile", 0, "time every executed node (median over the timed runs): totals per "
                       "operator type and the slowest nodes");
  p.Option("top", 0, "N", "with --profile: how many of the slowest nodes to list", ArgKind::kInt)
      .Default("15");
  p.Flag("json", 0, "print JSON");
  AddModelLimitOptions(p);
  return RunCommand(p, args, [](const ArgParser& a) -> Status {
    const int64_t iters = a.GetInt("iters", 20), warmup = a.GetInt("warmup", 3);
    const int64_t batch = a.GetInt("batch", 1);
    if (iters < 1) return InvalidArgument("--iters must be >= 1");
    if (warmup < 0) return InvalidArgument("--warmup must be >= 0");
    ONNXQ_ASSIGN_OR_RETURN(Model model, LoadModelWithLimits(a, a.Arg("MODEL")));
    ONNXQ_ASSIGN_OR_RETURN(SessionOptions opts, SessionOptionsFromArgs(a));
    ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(model, opts));
    ONNXQ_ASSIGN_OR_RETURN(auto given, LoadNpyFeeds(a.GetAll("input")));
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, RandomFeeds(model, batch, 12345, std::move(given)));
    for (int64_t i = 0; i < warmup; ++i) ONNXQ_RETURN_IF_ERROR(session->Run(feeds).status());
    const bool profile = a.GetFlag("profile");
    const int64_t top = a.GetInt("top", 15);
    if (top < 0) return InvalidArgument("--top must be >= 0");
    RunOptions ro;
    ro.profile = profile;
    std::vector<double> ms;
    std::vector<std::vector<double>> step_us;  // [step][run]
    std::vector<StepTime> steps;
    for (int64_t i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      ONNXQ_RETURN_IF_ERROR(session->Run(feeds, ro).status());
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (profile) {
        const auto& prof = session->last_stats().profile;
        if (steps.empty()) {
          steps = prof;
          step_us.assign(prof.size(), {});
        }
        for (size_t k = 0; k < prof.size() && k < step_us.size(); ++k) step_us[k].push_back(prof[k].micros);
      }
    }
    // Per step: the median over runs; per op type: the sum of its steps' medians.
    for (size_t k = 0; k < steps.size(); ++k) steps[k].micros = Median(step_us[k]);
    std::map<std::string, std::pair<int, double>> by_op;
    double total_us = 0;
    for (const StepTime& t : steps) {
      auto& e = by_op[t.op_type];
      ++e.first;
      e.second += t.micros;
      total_us += t.micros;
    }
    std::vector<std::pair<std::string, std::pair<int, double>>> ops(by_op.begin(), by_op.end());
    std::sort(ops.begin(), ops.end(), [](const auto& x, const auto& y) { return x.second.second > y.second.second; });
    std::vector<size_t> slowest(steps.size());
    for (size_t k = 0; k < slowest.size(); ++k) slowest[k] = k;
    std::stable_sort(slowest.begin(), slowest.end(),
                     [&](size_t x, size_t y) { return steps[x].micros > steps[y].micros; });
    if (slowest.size() > static_cast<size_t>(top)) slowest.resize(static_cast<size_t>(top));
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    const int64_t peak = session->last_stats().peak_bytes;
    const char* isa = kernels::IsaName(opts.isa ? *opts.isa : kernels::ActiveIsa());
    if (a.GetFlag("json")) {
      std::printf(
          "{\"model\": %s, \"threads\": %d, \"batch\": %lld, \"iters\": %lld, \"warmup\": %lld, "
          "\"isa\": \"%s\", \"latency_ms\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}, "
          "\"peak_bytes\": %lld, \"steps\": %lld, \"fused_activations\": %lld, "
          "\"lowered_qdq_groups\": %lld",
          JsonString(a.Arg("MODEL")).c_str(), session->num_threads(),
          static_cast<long long>(batch), static_cast<long long>(iters),
          static_cast<long long>(warmup), isa, median, sorted.front(), sorted.back(),
          static_cast<long long>(peak), static_cast<long long>(session->last_stats().steps),
          static_cast<long long>(session->last_stats().fused),
          static_cast<long long>(session->lowered_qdq_groups()));
      if (profile) {
        std::string j = ", \"profile\": {\"total_us\": " + Num(total_us) + ", \"by_op\": [";
        for (size_t k = 0; k < ops.size(); ++k)
          j += std::string(k ? ", " : "") + "{\"op\": " + JsonString(ops[k].first) +
               ", \"count\": " + std::to_string(ops[k].second.first) + ", \"us\": " + Num(ops[k].second.second) + "}";
        j += "], \"steps\": [";
        for (size_t k = 0; k < steps.size(); ++k)
          j += std::string(k ? ", " : "") + "{\"node\": " + JsonString(steps[k].node) + ", \"op\": " +
               JsonString(steps[k].op_type) + ", \"output\": " + JsonString(steps[k].output) +
               ", \"shape\": " + JsonString(DimsToString(steps[k].output_dims)) + ", \"us\": " +
               Num(steps[k].micros) + "}";
        j += "]}";
        std::printf("%s", j.c_str());
      }
      std::printf("}\n");
    } else {
      std::printf("%s: %d threads, batch %lld, isa %s, %lld runs\n", a.Arg("MODEL").c_str(),
                  session->num_threads(), static_cast<long long>(batch), isa,
                  static_cast<long long>(iters));
      std::printf("latency ms: median %.3f  min %.3f  max %.3f\n", median, sorted.front(),
                  sorted.back());
      std::printf("peak intermediate memory: %.2f MiB\n", static_cast<double>(peak) / (1 << 20));
      if (session->lowered_qdq_groups() > 0)
        std::printf("QDQ groups on integer kernels: %lld\n",
                    static_cast<long long>(session->lowered_qdq_groups()));
      if (profile) {
        std::printf("\nper operator type (sum of per-node medians; %.1f us in nodes):\n", total_us);
        std::printf("  %-32s %6s %10s %6s\n", "op", "nodes", "us", "%");
        for (const auto& [op, e] : ops)
          std::printf("  %-32s %6d %10.1f %5.1f%%\n", op.c_str(), e.first, e.second,
                      total_us > 0 ? 100.0 * e.second / total_us : 0.0);
        std::printf("\nslowest nodes (median us):\n");
        for (size_t k : slowest)
          std::printf("  %9.1f  %-22s %-28s %s\n", steps[k].micros, steps[k].op_type.c_str(),
                      DimsToString(steps[k].output_dims).c_str(), steps[k].node.c_str());
      }
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(bench, "bench", "time a model on the CPU executor", RunBench);

}  // namespace onnxq::cli
