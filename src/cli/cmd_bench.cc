// `onnxq bench MODEL [--threads N] [--batch B] [--iters N] [--warmup N] [--input NAME=f.npy] [--json]`:
// latency (median / min / max ms over the timed runs) and peak intermediate memory of the executor.
#include <algorithm>
#include <chrono>
#include <cstdio>
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
    std::vector<double> ms;
    for (int64_t i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      ONNXQ_RETURN_IF_ERROR(session->Run(feeds).status());
      auto t1 = std::chrono::steady_clock::now();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
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
          "\"lowered_qdq_groups\": %lld}\n",
          JsonString(a.Arg("MODEL")).c_str(), session->num_threads(),
          static_cast<long long>(batch), static_cast<long long>(iters),
          static_cast<long long>(warmup), isa, median, sorted.front(), sorted.back(),
          static_cast<long long>(peak), static_cast<long long>(session->last_stats().steps),
          static_cast<long long>(session->last_stats().fused),
          static_cast<long long>(session->lowered_qdq_groups()));
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
    }
    return Status::Ok();
  });
}

}  // namespace

ONNXQ_REGISTER_COMMAND(bench, "bench", "time a model on the CPU executor", RunBench);

}  // namespace onnxq::cli
