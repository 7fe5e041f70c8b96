// GPTQ rounding (see rounding.h): Hessian collection from calibration runs and the column-wise
// Cholesky quantization with error feedback.
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "onnxq/base/thread_pool.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/rounding.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {

StatusOr<RoundingMethod> ParseRounding(const std::string& s) {
  if (s == "nearest") return RoundingMethod::kNearest;
  if (s == "gptq") return RoundingMethod::kGptq;
  return InvalidArgument("unknown rounding '", s, "' (nearest|gptq)");
}

const char* RoundingName(RoundingMethod m) { return m == RoundingMethod::kGptq ? "gptq" : "nearest"; }

namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using MatD = Eigen::MatrixXd;

// Geometry of a weighted node as GPTQ sees it: `groups` independent problems, each with
// `rows` output channels of `k` inputs.
struct Geometry {
  bool conv = false;
  int64_t groups = 1, rows = 0, k = 0;
  // Conv only
  int64_t cg = 0, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
  std::string auto_pad = "NOTSET";
  // Gemm/MatMul weight layout: true when the weight is [N, K] (axis 0), false for [K, N].
  bool n_major = true;
};

StatusOr<Geometry> GeometryOf(const Model& model, const WeightedNode& w) {
  const Graph& g = model.graph;
  const Node& n = g.node(w.node);
  const Tensor& wt = *g.value(w.weight).initializer();
  Geometry geo;
  if (n.Is("Conv")) {
    if (wt.rank() != 4) return Unsupported("GPTQ handles 2-D convolutions only");
    geo.conv = true;
    ONNXQ_ASSIGN_OR_RETURN(geo.groups, n.attrs.GetInt("group", 1));
    const int64_t M = wt.dims()[0];
    geo.cg = wt.dims()[1];
    geo.kh = wt.dims()[2];
    geo.kw = wt.dims()[3];
    if (geo.groups < 1 || M % geo.groups != 0) return Unsupported("bad group count");
    geo.rows = M / geo.groups;
    geo.k = geo.cg * geo.kh * geo.kw;
    ONNXQ_ASSIGN_OR_RETURN(auto strides, n.attrs.GetInts("strides", {1, 1}));
    ONNXQ_ASSIGN_OR_RETURN(auto dil, n.attrs.GetInts("dilations", {1, 1}));
    ONNXQ_ASSIGN_OR_RETURN(auto pads, n.attrs.GetInts("pads", {0, 0, 0, 0}));
    ONNXQ_ASSIGN_OR_RETURN(geo.auto_pad, n.attrs.GetString("auto_pad", "NOTSET"));
    if (strides.size() != 2 || dil.size() != 2 || pads.size() != 4)
      return Unsupported("unexpected Conv attribute sizes");
    geo.sh = strides[0], geo.sw = strides[1], geo.dh = dil[0], geo.dw = dil[1];
    geo.pt = pads[0], geo.pl = pads[1], geo.pb = pads[2], geo.pr = pads[3];
    return geo;
  }
  if (wt.rank() != 2) return Unsupported("GPTQ handles 2-D Gemm/MatMul weights only");
  geo.n_major = w.axis == 0;
  geo.rows = geo.n_major ? wt.dims()[0] : wt.dims()[1];
  geo.k = geo.n_major ? wt.dims()[1] : wt.dims()[0];
  return geo;
}

// Adds one sample's contribution (input x of one image: [C, H, W] for Conv, [rows, K] for others)
// to `acc` (groups * k * k floats, lower triangle filled by rankUpdate, mirrored later).
Status AccumulateSample(const Geometry& geo, const float* x, const std::vector<int64_t>& dims,
                        std::vector<float>& acc, int64_t* rows_out) {
  const int64_t k = geo.k;
  if (!geo.conv) {
    const int64_t K = dims.back();
    if (K != k) return InvalidArgument("input width ", K, " does not match the weight's ", k);
    int64_t r = 1;
    for (size_t i = 0; i + 1 < dims.size(); ++i) r *= dims[i];
    Eigen::Map<const MatF> X(x, k, r);  // column j = input vector j
    Eigen::Map<MatF> A(acc.data(), k, k);
    A.selfadjointView<Eigen::Lower>().rankUpdate(X);
    *rows_out = r;
    return Status::Ok();
  }
  if (dims.size() != 3) return InvalidArgument("Conv input is not [C, H, W]");
  const int64_t C = dims[0], H = dims[1], W = dims[2];
  if (C != geo.cg * geo.groups) return InvalidArgument("Conv input has ", C, " channels, weight wants ", geo.cg * geo.groups);
  int64_t pt = geo.pt, pl = geo.pl, pb = geo.pb, pr = geo.pr;
  const int64_t ekh = (geo.kh - 1) * geo.dh + 1, ekw = (geo.kw - 1) * geo.dw + 1;
  if (geo.auto_pad == "SAME_UPPER" || geo.auto_pad == "SAME_LOWER") {
    auto same = [&](int64_t in, int64_t s, int64_t ek, int64_t* lo, int64_t* hi) {
      int64_t out = (in + s - 1) / s;
      int64_t total = std::max<int64_t>((out - 1) * s + ek - in, 0);
      *lo = geo.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      *hi = total - *lo;
    };
    same(H, geo.sh, ekh, &pt, &pb);
    same(W, geo.sw, ekw, &pl, &pr);
  } else if (geo.auto_pad == "VALID") {
    pt = pl = pb = pr = 0;
  }
  const int64_t OH = (H + pt + pb - ekh) / geo.sh + 1, OW = (W + pl + pr - ekw) / geo.sw + 1;
  if (OH < 1 || OW < 1) return InvalidArgument("Conv output would be empty");
  const int64_t P = OH * OW;
  const bool direct = geo.kh == 1 && geo.kw == 1 && geo.sh == 1 && geo.sw == 1 && pt == 0 && pl == 0 &&
                      pb == 0 && pr == 0;
  MatF patches;
  for (int64_t gi = 0; gi < geo.groups; ++gi) {
    Eigen::Map<MatF> A(acc.data() + gi * k * k, k, k);
    const float* xg = x + gi * geo.cg * H * W;
    if (direct) {
      // Row-major [Cg, HW] is column-major [HW, Cg]: X^T X over pixels.
      Eigen::Map<const MatF> X(xg, P, geo.cg);
      A.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose());
      continue;
    }
    patches.resize(k, P);
    for (int64_t c = 0; c < geo.cg; ++c)
      for (int64_t ky = 0; ky < geo.kh; ++ky)
        for (int64_t kx = 0; kx < geo.kw; ++kx) {
          const int64_t row = (c * geo.kh + ky) * geo.kw + kx;
          for (int64_t oy = 0; oy < OH; ++oy) {
            const int64_t iy = oy * geo.sh - pt + ky * geo.dh;
            for (int64_t ox = 0; ox < OW; ++ox) {
              const int64_t ix = ox * geo.sw - pl + kx * geo.dw;
              patches(row, oy * OW + ox) =
                  (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xg[(c * H + iy) * W + ix] : 0.0f;
            }
          }
        }
    A.selfadjointView<Eigen::Lower>().rankUpdate(patches);
  }
  *rows_out = P;
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<LayerHessian>> CollectHessians(const Model& model, const QdqPlan& plan,
                                                    CalibrationSource& calibration,
                                                    const HessianOptions& options) {
  const Graph& g = model.graph;
  std::vector<LayerHessian> out(plan.weighted.size());
  std::vector<Geometry> geos(plan.weighted.size());
  std::map<ValueId, std::vector<size_t>> target;
  for (size_t i = 0; i < plan.weighted.size(); ++i) {
    auto geo = GeometryOf(model, plan.weighted[i]);
    if (!geo.ok()) {
      out[i].unsupported = geo.status().message();
      continue;
    }
    geos[i] = *geo;
    out[i].groups = geo->groups;
    out[i].k = geo->k;
    out[i].h.assign(static_cast<size_t>(geo->groups * geo->k * geo->k), 0.0);
    target[plan.weighted[i].input].push_back(i);
  }
  if (target.empty()) return out;
  auto ins = g.RuntimeInputs();
  if (ins.size() != 1) return Unsupported("GPTQ calibrates models with exactly one runtime input");
  const std::string input = g.value(ins[0]).name();
  const ValueId in_id = ins[0];
  ThreadPool pool(options.threads);
  auto observe = [&](ValueId v, const Tensor& t0) -> Status {
    Tensor qt;
    const Tensor* t = &t0;
    if (options.quantized_inputs && plan.GroupOf(v) != nullptr) {
      qt = t0.Clone();
      ONNXQ_RETURN_IF_ERROR(FakeQuantizeTensor(plan, v, qt));
      t = &qt;
    }
    if (t->dtype() != DataType::kFloat || t->rank() < 2) return Status::Ok();
    const int64_t n = t->dims()[0];
    std::vector<int64_t> sdims(t->dims().begin() + 1, t->dims().end());
    const int64_t per = t->numel() / std::max<int64_t>(n, 1);
    for (size_t li : target[v]) {
      const Geometry& geo = geos[li];
      // Gemm/MatMul: the whole batch is one [rows, K] block.
      const bool whole = !geo.conv;
      const int64_t tasks = whole ? 1 : n;
      const size_t sz = static_cast<size_t>(geo.groups * geo.k * geo.k);
      std::vector<std::vector<float>> part(static_cast<size_t>(tasks));
      std::vector<Status> err(static_cast<size_t>(tasks));
      std::vector<int64_t> rows(static_cast<size_t>(tasks), 0);
      // One task per image, each summed on its own: the result does not depend on the thread count.
      pool.ParallelFor(tasks, [&](int64_t b, int64_t e) {
        for (int64_t s = b; s < e; ++s) {
          auto& acc = part[static_cast<size_t>(s)];
          acc.assign(sz, 0.0f);
          err[static_cast<size_t>(s)] =
              whole ? AccumulateSample(geo, t->data<float>(), t->dims(), acc, &rows[static_cast<size_t>(s)])
                    : AccumulateSample(geo, t->data<float>() + s * per, sdims, acc, &rows[static_cast<size_t>(s)]);
        }
      });
      LayerHessian& lh = out[li];
      for (int64_t s = 0; s < tasks; ++s) {
        if (!err[static_cast<size_t>(s)].ok()) {
          Status st = err[static_cast<size_t>(s)];
          return st.Prepend("Hessian of " + g.node(plan.weighted[li].node).Describe());
        }
        const auto& acc = part[static_cast<size_t>(s)];
        for (size_t i = 0; i < sz; ++i) lh.h[i] += acc[i];
        lh.rows += rows[static_cast<size_t>(s)];
      }
    }
    return Status::Ok();
  };
  SessionOptions so;
  so.num_threads = options.threads;
  ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(model, so));
  RunOptions ro;
  for (const auto& [v, l] : target)
    if (v != in_id) ro.hooked_values.push_back(v);
  ro.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
    if (target.count(v)) return observe(v, t);
    return Status::Ok();
  };
  const int64_t n = std::min(options.samples, calibration.size());
  if (n < 1) return InvalidArgument("GPTQ needs calibration samples");
  const int64_t bs = std::max<int64_t>(options.batch_size, 1);
  for (int64_t b = 0; b < n; b += bs) {
    const int64_t m = std::min(bs, n - b);
    ONNXQ_ASSIGN_OR_RETURN(Tensor batch, calibration.Batch(b, m));
    if (target.count(in_id)) ONNXQ_RETURN_IF_ERROR(observe(in_id, batch));
    std::map<std::string, Tensor> feeds;
    feeds.emplace(input, std::move(batch));
    ONNXQ_RETURN_IF_ERROR(session->Run(feeds, ro).status());
  }
  // rankUpdate filled the column-major lower triangle, i.e. a[c * k + r] for r >= c; mirror it.
  for (LayerHessian& lh : out) {
    for (int64_t gi = 0; gi < lh.groups; ++gi) {
      double* a = lh.h.data() + gi * lh.k * lh.k;
      for (int64_t c = 0; c < lh.k; ++c)
        for (int64_t r = c + 1; r < lh.k; ++r) a[r * lh.k + c] = a[c * lh.k + r];
    }
  }
  return out;
}

StatusOr<std::vector<int32_t>> GptqQuantizeMatrix(std::span<const float> w, int64_t rows, int64_t k,
                                                  std::span<const double> h,
                                                  std::span<const QuantParams> params,
                                                  const GptqOptions& options) {
  if (rows < 1 || k < 1 || static_cast<int64_t>(w.size()) != rows * k ||
      static_cast<int64_t>(h.size()) != k * k)
    return InvalidArgument("GPTQ: matrix sizes do not match (rows ", rows, ", k ", k, ")");
  if (params.size() != 1 && static_cast<int64_t>(params.size()) != rows)
    return InvalidArgument("GPTQ: need 1 or ", rows, " quantization params, got ", params.size());
  if (!(options.damp >= 0) || options.block < 1) return InvalidArgument("GPTQ: bad options");
  auto prm = [&](int64_t r) -> const QuantParams& { return params[params.size() == 1 ? 0 : static_cast<size_t>(r)]; };

  MatD H = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(h.data(), k, k);
  MatD W(rows, k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) W(r, c) = w[static_cast<size_t>(r * k + c)];
  // Inputs that never vary carry no information: any rounding is as good (the values still get
  // quantized to nearest below).
  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (H(i, i) <= 0) {
      H.row(i).setZero();
      H.col(i).setZero();
      H(i, i) = 1;
    }
    mean_diag += H(i, i);
  }
  mean_diag /= static_cast<double>(k);
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  if (options.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
  MatD Hp(k, k), Wp(rows, k);
  for (int64_t i = 0; i < k; ++i) {
    Wp.col(i) = W.col(perm[static_cast<size_t>(i)]);
    for (int64_t j = 0; j < k; ++j) Hp(i, j) = H(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  // Upper Cholesky factor of H^-1 (Hinv = U^T U); increase the dampening if H is too ill-conditioned.
  MatD U;
  double damp = options.damp * mean_diag;
  for (int attempt = 0;; ++attempt) {
    MatD Hd = Hp;
    Hd.diagonal().array() += damp;
    Eigen::LLT<MatD> llt(Hd);
    if (llt.info() == Eigen::Success) {
      MatD Hinv = llt.solve(MatD::Identity(k, k));
      Eigen::LLT<MatD> llt2(Hinv);
      if (llt2.info() == Eigen::Success) {
        U = llt2.matrixU();
        break;
      }
    }
    if (attempt >= 6) return Internal("GPTQ: Hessian is not positive definite even with dampening");
    damp = std::max(damp * 10, 1e-8 * std::max(mean_diag, 1.0));
  }

  std::vector<int32_t> qp(static_cast<size_t>(rows * k));
  Eigen::VectorXd err(rows);
  const int64_t B = options.block;
  for (int64_t i1 = 0; i1 < k; i1 += B) {
    const int64_t i2 = std::min(i1 + B, k), cnt = i2 - i1;
    MatD E(rows, cnt);
    for (int64_t i = i1; i < i2; ++i) {
      const double d = U(i, i);
      for (int64_t r = 0; r < rows; ++r) {
        const QuantParams& p = prm(r);
        const int32_t q = QuantizeValue(static_cast<float>(Wp(r, i)), p);
        qp[static_cast<size_t>(r * k + i)] = q;
        err(r) = (Wp(r, i) - static_cast<double>(DequantizeValue(q, p))) / d;
      }
      if (i + 1 < i2) Wp.block(0, i + 1, rows, i2 - i - 1).noalias() -= err * U.row(i).segment(i + 1, i2 - i - 1);
      E.col(i - i1) = err;
    }
    if (i2 < k) Wp.rightCols(k - i2).noalias() -= E * U.block(i1, i2, cnt, k - i2);
  }
  std::vector<int32_t> q(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      q[static_cast<size_t>(r * k + perm[static_cast<size_t>(i)])] = qp[static_cast<size_t>(r * k + i)];
  return q;
}

Status GptqRoundLayer(const Model& model, WeightedNode& w, const LayerHessian& lh, const GptqOptions& options) {
  // Fewer input vectors than inputs (e.g. a classifier after global pooling, one vector per
  // image): H is rank-deficient and GPTQ would fit the calibration samples, not the layer.
  if (lh.groups == 0 || lh.rows < lh.k) return Status::Ok();
  ONNXQ_ASSIGN_OR_RETURN(Geometry geo, GeometryOf(model, w));
  if (geo.groups != lh.groups || geo.k != lh.k) return Internal("GPTQ: Hessian does not match the layer");
  const Tensor& wt = *model.graph.value(w.weight).initializer();
  const float* wf = wt.data<float>();
  QuantizedWeight& qw = w.qweight;
  if (qw.q.dtype() != DataType::kInt8) return Unsupported("GPTQ writes int8 containers only");
  const bool per_channel = qw.params.size() > 1;
  if (per_channel && qw.axis != (geo.conv ? 0 : (geo.n_major ? 0 : 1)))
    return Unsupported("GPTQ: per-channel axis is not the output-channel axis");
  // Flat index of (row r of group gi, column c).
  auto flat = [&](int64_t gi, int64_t r, int64_t c) -> int64_t {
    const int64_t o = gi * geo.rows + r;
    if (geo.conv || geo.n_major) return o * geo.k + c;
    return c * geo.rows + o;  // [K, N]
  };
  std::vector<float> mat(static_cast<size_t>(geo.rows * geo.k));
  std::vector<QuantParams> prm;
  std::vector<float> deq(static_cast<size_t>(wt.numel()));
  for (int64_t gi = 0; gi < geo.groups; ++gi) {
    for (int64_t r = 0; r < geo.rows; ++r)
      for (int64_t c = 0; c < geo.k; ++c) mat[static_cast<size_t>(r * geo.k + c)] = wf[flat(gi, r, c)];
    prm.clear();
    if (per_channel)
      prm.assign(qw.params.begin() + gi * geo.rows, qw.params.begin() + (gi + 1) * geo.rows);
    else
      prm.push_back(qw.params[0]);
    std::span<const double> hg(lh.h.data() + gi * lh.k * lh.k, static_cast<size_t>(lh.k * lh.k));
    ONNXQ_ASSIGN_OR_RETURN(std::vector<int32_t> q, GptqQuantizeMatrix(mat, geo.rows, geo.k, hg, prm, options));
    for (int64_t r = 0; r < geo.rows; ++r)
      for (int64_t c = 0; c < geo.k; ++c) {
        const int64_t f = flat(gi, r, c);
        const int32_t v = q[static_cast<size_t>(r * geo.k + c)];
        qw.q.mutable_data<int8_t>()[f] = static_cast<int8_t>(v);
        deq[static_cast<size_t>(f)] = DequantizeValue(v, prm[per_channel ? static_cast<size_t>(r) : 0]);
      }
  }
  qw.sqnr_db = Sqnr(wt.span<float>(), deq);
  return Status::Ok();
}

Status QuantizeWeightsMixed(const Model& model, QdqPlan& plan, const std::vector<int>& bits,
                            const WeightOptions& base, const std::vector<LayerHessian>* hessians,
                            const GptqOptions& gptq, ThreadPool* pool) {
  if (bits.size() != plan.weighted.size())
    return InvalidArgument("per-layer bits: ", bits.size(), " entries for ", plan.weighted.size(), " layers");
  if (hessians && hessians->size() != plan.weighted.size())
    return InvalidArgument("GPTQ: ", hessians->size(), " Hessians for ", plan.weighted.size(), " layers");
  // One QuantizeWeights call per distinct bit width, on a plan holding only those layers, so the
  // scale rules (including the zero-channel one) stay in one place.
  std::set<int> widths(bits.begin(), bits.end());
  for (int b : widths) {
    if (b < 2 || b > 8) return InvalidArgument("weight bits must be in 2..8, got ", b);
    QdqPlan sub;
    std::vector<size_t> idx;
    for (size_t i = 0; i < bits.size(); ++i)
      if (bits[i] == b) {
        idx.push_back(i);
        sub.weighted.push_back(plan.weighted[i]);
      }
    WeightOptions o = base;
    o.bits = b;
    ONNXQ_RETURN_IF_ERROR(QuantizeWeights(model, sub, o, pool));
    for (size_t j = 0; j < idx.size(); ++j) plan.weighted[idx[j]].qweight = std::move(sub.weighted[j].qweight);
  }
  if (hessians == nullptr) return Status::Ok();
  std::vector<Status> errs(plan.weighted.size());
  auto work = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      errs[static_cast<size_t>(i)] =
          GptqRoundLayer(model, plan.weighted[static_cast<size_t>(i)], (*hessians)[static_cast<size_t>(i)], gptq);
  };
  if (pool)
    pool->ParallelFor(static_cast<int64_t>(plan.weighted.size()), work);
  else
    work(0, static_cast<int64_t>(plan.weighted.size()));
  for (size_t i = 0; i < errs.size(); ++i)
    if (!errs[i].ok()) {
      Status s = errs[i];
      return s.Prepend("GPTQ of " + model.graph.node(plan.weighted[i].node).Describe());
    }
  return Status::Ok();
}

}  // namespace onnxq::quant
