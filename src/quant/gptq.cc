// Weight rounding on Gram matrices (see rounding.h): Hessian collection from calibration runs,
// GPTQ's column-wise Cholesky quantization with error feedback, the per-layer driver shared with
// AdaRound (adaround.cc), per-layer bit widths with the full sub-8-bit grid, and the sequential
// (asymmetric-objective) pass that carries float and quantized activations layer by layer.
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <tuple>

#include "onnxq/base/thread_pool.h"
#include "onnxq/quant/quantize_model.h"
#include "onnxq/quant/rounding.h"
#include "onnxq/runtime/batch.h"
#include "onnxq/runtime/session.h"

namespace onnxq::quant {

StatusOr<RoundingMethod> ParseRounding(const std::string& s) {
  if (s == "nearest") return RoundingMethod::kNearest;
  if (s == "gptq") return RoundingMethod::kGptq;
  if (s == "adaround") return RoundingMethod::kAdaRound;
  return InvalidArgument("unknown rounding '", s, "' (nearest|adaround|gptq)");
}

const char* RoundingName(RoundingMethod m) {
  switch (m) {
    case RoundingMethod::kGptq: return "gptq";
    case RoundingMethod::kAdaRound: return "adaround";
    default: return "nearest";
  }
}

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

// Patches of one group's input xg ([Cg, H, W]) as columns of a k x (OH * OW) matrix.
void Im2Col(const Geometry& geo, const float* xg, int64_t H, int64_t W, int64_t pt, int64_t pl,
            int64_t OH, int64_t OW, MatF& patches) {
  patches.resize(geo.k, OH * OW);
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
}

struct ConvShape {
  int64_t H = 0, W = 0, OH = 0, OW = 0, pt = 0, pl = 0;
  bool direct = false;  // 1x1, stride 1, no padding: the input itself is the patch matrix
};
StatusOr<ConvShape> ConvShapeOf(const Geometry& geo, const std::vector<int64_t>& dims) {
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
  ConvShape cs;
  cs.H = H, cs.W = W, cs.pt = pt, cs.pl = pl;
  cs.OH = (H + pt + pb - ekh) / geo.sh + 1, cs.OW = (W + pl + pr - ekw) / geo.sw + 1;
  if (cs.OH < 1 || cs.OW < 1) return InvalidArgument("Conv output would be empty");
  cs.direct = geo.kh == 1 && geo.kw == 1 && geo.sh == 1 && geo.sw == 1 && pt == 0 && pl == 0 &&
              pb == 0 && pr == 0;
  return cs;
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
  ONNXQ_ASSIGN_OR_RETURN(ConvShape cs, ConvShapeOf(geo, dims));
  const int64_t H = cs.H, W = cs.W, OH = cs.OH, OW = cs.OW, pt = cs.pt, pl = cs.pl, P = OH * OW;
  const bool direct = cs.direct;
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
    Im2Col(geo, xg, H, W, pt, pl, OH, OW, patches);
    A.selfadjointView<Eigen::Lower>().rankUpdate(patches);
  }
  *rows_out = P;
  return Status::Ok();
}

// The asymmetric objective's statistics for one sample: xq (quantized-model input) and xf
// (float-model input) of the same image; adds xq xq^T to `acc_h` (full matrix) and xq xf^T to
// `acc_c`, per group.
Status AccumulatePair(const Geometry& geo, const float* xq, const float* xf,
                      const std::vector<int64_t>& dims, std::vector<float>& acc_h,
                      std::vector<float>& acc_c, int64_t* rows_out) {
  const int64_t k = geo.k;
  if (!geo.conv) {
    const int64_t K = dims.back();
    if (K != k) return InvalidArgument("input width ", K, " does not match the weight's ", k);
    int64_t r = 1;
    for (size_t i = 0; i + 1 < dims.size(); ++i) r *= dims[i];
    Eigen::Map<const MatF> Xq(xq, k, r), Xf(xf, k, r);
    Eigen::Map<MatF>(acc_h.data(), k, k).noalias() += Xq * Xq.transpose();
    Eigen::Map<MatF>(acc_c.data(), k, k).noalias() += Xq * Xf.transpose();
    *rows_out = r;
    return Status::Ok();
  }
  ONNXQ_ASSIGN_OR_RETURN(ConvShape cs, ConvShapeOf(geo, dims));
  const int64_t P = cs.OH * cs.OW;
  MatF pq, pf;
  for (int64_t gi = 0; gi < geo.groups; ++gi) {
    Eigen::Map<MatF> A(acc_h.data() + gi * k * k, k, k), B(acc_c.data() + gi * k * k, k, k);
    const float* xqg = xq + gi * geo.cg * cs.H * cs.W;
    const float* xfg = xf + gi * geo.cg * cs.H * cs.W;
    if (cs.direct) {
      Eigen::Map<const MatF> Q(xqg, P, geo.cg), F(xfg, P, geo.cg);
      A.noalias() += Q.transpose() * Q;
      B.noalias() += Q.transpose() * F;
      continue;
    }
    Im2Col(geo, xqg, cs.H, cs.W, cs.pt, cs.pl, cs.OH, cs.OW, pq);
    Im2Col(geo, xfg, cs.H, cs.W, cs.pt, cs.pl, cs.OH, cs.OW, pf);
    A.noalias() += pq * pq.transpose();
    B.noalias() += pq * pf.transpose();
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
  const auto ins = g.RuntimeInputs();
  std::vector<std::string> inputs;
  for (ValueId v : ins) inputs.push_back(g.value(v).name());
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
    if (std::find(ins.begin(), ins.end(), v) == ins.end()) ro.hooked_values.push_back(v);
  ro.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status {
    if (target.count(v)) return observe(v, t);
    return Status::Ok();
  };
  ONNXQ_ASSIGN_OR_RETURN(const int64_t fixed, FixedBatchSize(model));
  ro.batch_chunk = fixed;
  int64_t n = std::min(options.samples, calibration.size());
  if (fixed > 0) n = n / fixed * fixed;
  if (n < 1) return InvalidArgument("GPTQ needs calibration samples");
  const int64_t bs = AlignToBatch(std::max<int64_t>(options.batch_size, 1), fixed);
  for (int64_t b = 0; b < n; b += bs) {
    const int64_t m = std::min(bs, n - b);
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, m, inputs));
    for (ValueId v : ins)  // graph inputs are seen in the feeds, not through the hook
      if (target.count(v)) ONNXQ_RETURN_IF_ERROR(observe(v, feeds.at(g.value(v).name())));
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

// The column order and the upper Cholesky factor U of the dampened H^-1 (Hinv = U^T U).
struct GptqFactor {
  std::vector<int64_t> perm;
  MatD U;
};

class GptqFactorCache {
 public:
  // Key: H's contents (64-bit FNV-1a over its doubles' bits) and the options that shape
  // the factor. Computing under the lock is deliberate: concurrent callers want the same factor.
  StatusOr<std::shared_ptr<const GptqFactor>> Get(std::span<const double> h, int64_t k, const GptqOptions& o,
                                                  const std::function<StatusOr<GptqFactor>()>& compute) {
    uint64_t x = 1469598103934665603ull;
    for (double v : h) {
      uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      x = (x ^ bits) * 1099511628211ull;
    }
    const Key key{x, k, o.damp, o.act_order};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second;
    ONNXQ_ASSIGN_OR_RETURN(GptqFactor f, compute());
    auto sp = std::make_shared<const GptqFactor>(std::move(f));
    map_.emplace(key, sp);
    return sp;
  }

 private:
  using Key = std::tuple<uint64_t, int64_t, double, bool>;
  std::mutex mu_;
  std::map<Key, std::shared_ptr<const GptqFactor>> map_;
};

std::shared_ptr<GptqFactorCache> NewGptqFactorCache() { return std::make_shared<GptqFactorCache>(); }

namespace {

StatusOr<GptqFactor> ComputeGptqFactor(MatD H, int64_t k, const GptqOptions& options) {
  // Inputs that never vary carry no information: any rounding is as good (the values still get
  // quantized to nearest).
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
  GptqFactor f;
  f.perm.resize(static_cast<size_t>(k));
  std::iota(f.perm.begin(), f.perm.end(), 0);
  if (options.act_order)
    std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
  MatD Hp(k, k);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) Hp(i, j) = H(f.perm[static_cast<size_t>(i)], f.perm[static_cast<size_t>(j)]);
  // Upper Cholesky factor of H^-1; increase the dampening if H is too ill-conditioned.
  // Cholesky of H in reversed order, J H J = L L^T, gives H = R R^T with R = J L J upper, so
  // H^-1 = R^-T R^-1 and U = R^-1: one factorization and one triangular inverse instead of
  // inverting H and factorizing the inverse (about half the flops; k = 4608 for a 3x3x512 conv).
  double damp = options.damp * mean_diag;
  for (int attempt = 0;; ++attempt) {
    MatD Hd = Hp.reverse();
    Hd.diagonal().array() += damp;
    Eigen::LLT<MatD> llt(Hd);
    if (llt.info() == Eigen::Success) {
      const MatD R = MatD(llt.matrixL()).reverse();
      f.U = R.triangularView<Eigen::Upper>().solve(MatD::Identity(k, k));
      if (f.U.allFinite() && (f.U.diagonal().array() > 0).all()) return f;
    }
    if (attempt >= 6) return Internal("GPTQ: Hessian is not positive definite even with dampening");
    damp = std::max(damp * 10, 1e-8 * std::max(mean_diag, 1.0));
  }
}

}  // namespace

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

  auto compute = [&]() {
    return ComputeGptqFactor(
        Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(h.data(), k, k), k,
        options);
  };
  std::shared_ptr<const GptqFactor> factor;
  if (options.factors) {
    ONNXQ_ASSIGN_OR_RETURN(factor, options.factors->Get(h, k, options, compute));
  } else {
    ONNXQ_ASSIGN_OR_RETURN(GptqFactor f, compute());
    factor = std::make_shared<const GptqFactor>(std::move(f));
  }
  const std::vector<int64_t>& perm = factor->perm;
  const MatD& U = factor->U;
  MatD Wp(rows, k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i) Wp(r, i) = w[static_cast<size_t>(r * k + perm[static_cast<size_t>(i)])];

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


StatusOr<std::vector<float>> AsymmetricTarget(std::span<const float> w, int64_t rows, int64_t k,
                                              std::span<const double> h, std::span<const double> c,
                                              double damp) {
  if (rows < 1 || k < 1 || static_cast<int64_t>(w.size()) != rows * k ||
      static_cast<int64_t>(h.size()) != k * k || static_cast<int64_t>(c.size()) != k * k)
    return InvalidArgument("asymmetric target: sizes do not match (rows ", rows, ", k ", k, ")");
  if (!(damp >= 0)) return InvalidArgument("asymmetric target: bad dampening");
  using RowD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowD> H(h.data(), k, k), C(c.data(), k, k);
  MatD W(rows, k);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) W(r, j) = w[static_cast<size_t>(r * k + j)];
  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) mean_diag += std::max(H(i, i), 0.0);
  mean_diag /= static_cast<double>(k);
  if (!(mean_diag > 0)) return std::vector<float>(w.begin(), w.end());
  // Minimises ||W' X_q - W X||^2 + lambda ||W' - W||^2: W' (H + lambda I) = W C^T + lambda W.
  MatD Hd = H;
  double lambda = std::max(damp * mean_diag, 1e-12 * mean_diag);
  MatD D = W * (C.transpose() - H);  // rows x k
  for (int attempt = 0;; ++attempt) {
    Hd = H;
    Hd.diagonal().array() += lambda;
    Eigen::LLT<MatD> llt(Hd);
    if (llt.info() == Eigen::Success) {
      // (H + lambda I) is symmetric: W' - W = D Hd^-1 = (Hd^-1 D^T)^T.
      MatD delta = llt.solve(D.transpose()).transpose();
      std::vector<float> out(static_cast<size_t>(rows * k));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j)
          out[static_cast<size_t>(r * k + j)] = static_cast<float>(W(r, j) + delta(r, j));
      return out;
    }
    if (attempt >= 6) return Internal("asymmetric target: H is not positive definite even with dampening");
    lambda *= 10;
  }
}

namespace {

// A weighted node's weight as `groups` row-major rows x k matrices, and back.
struct LayerMatrices {
  Geometry geo;
  bool per_channel = false;
  std::function<int64_t(int64_t, int64_t, int64_t)> flat;  // (group, row, col) -> weight index
};

StatusOr<LayerMatrices> MatricesOf(const Model& model, const WeightedNode& w) {
  LayerMatrices lm;
  ONNXQ_ASSIGN_OR_RETURN(lm.geo, GeometryOf(model, w));
  const QuantizedWeight& qw = w.qweight;
  if (qw.q.dtype() != DataType::kInt8) return Unsupported("rounding writes int8 containers only");
  lm.per_channel = qw.params.size() > 1;
  const Geometry geo = lm.geo;
  if (lm.per_channel && qw.axis != (geo.conv ? 0 : (geo.n_major ? 0 : 1)))
    return Unsupported("rounding: per-channel axis is not the output-channel axis");
  lm.flat = [geo](int64_t gi, int64_t r, int64_t c) -> int64_t {
    const int64_t o = gi * geo.rows + r;
    if (geo.conv || geo.n_major) return o * geo.k + c;
    return c * geo.rows + o;  // [K, N]
  };
  return lm;
}

}  // namespace

namespace {
Status RoundLayerOn(const Model& model, WeightedNode& w, const LayerHessian& lh, const RoundingOptions& options,
                    ThreadPool* pool);
StatusOr<Tensor> DequantizedWeightOf(const QuantizedWeight& qw) {
  ONNXQ_ASSIGN_OR_RETURN(Tensor deq, Tensor::Create(DataType::kFloat, qw.q.dims()));
  std::vector<int32_t> qi(static_cast<size_t>(qw.q.numel()));
  for (int64_t k = 0; k < qw.q.numel(); ++k) qi[static_cast<size_t>(k)] = qw.q.data<int8_t>()[k];
  ONNXQ_RETURN_IF_ERROR(DequantizeArray(qi, qw.q.dims(), qw.axis, qw.params,
                                        std::span<float>(deq.mutable_data<float>(), static_cast<size_t>(deq.numel()))));
  return deq;
}
}  // namespace

namespace {
// Per output channel, takes `other`'s codes where they reach a lower objective than w's.
Status KeepBetterRows(const Model& model, WeightedNode& w, const WeightedNode& other, const LayerHessian& lh,
                      double damp) {
  ONNXQ_ASSIGN_OR_RETURN(LayerMatrices lm, MatricesOf(model, w));
  const std::vector<double> lw = RowLosses(model, w, lh, damp);
  const std::vector<double> lo = RowLosses(model, other, lh, damp);
  if (lw.size() != lo.size() || lw.empty()) return Internal("rounding: per-channel losses do not match");
  bool changed = false;
  for (int64_t gi = 0; gi < lm.geo.groups; ++gi)
    for (int64_t r = 0; r < lm.geo.rows; ++r) {
      const size_t i = static_cast<size_t>(gi * lm.geo.rows + r);
      if (!(lo[i] < lw[i])) continue;
      changed = true;
      for (int64_t c = 0; c < lm.geo.k; ++c) {
        const int64_t f = lm.flat(gi, r, c);
        w.qweight.q.mutable_data<int8_t>()[f] = other.qweight.q.data<int8_t>()[f];
      }
    }
  if (changed) {
    const Tensor& wt = *model.graph.value(w.weight).initializer();
    ONNXQ_ASSIGN_OR_RETURN(Tensor deq, DequantizedWeightOf(w.qweight));
    w.qweight.sqnr_db = Sqnr(wt.span<float>(), deq.span<float>());
  }
  return Status::Ok();
}
}  // namespace

Status RoundLayer(const Model& model, WeightedNode& w, const LayerHessian& lh, const RoundingOptions& options,
                  ThreadPool* pool) {
  if (options.method == RoundingMethod::kNearest) return Status::Ok();
  // Fewer input vectors than inputs (e.g. a classifier after global pooling, one vector per
  // image): H is rank-deficient and the rounding would fit the calibration samples, not the layer.
  if (lh.groups == 0 || lh.rows < lh.k) return Status::Ok();
  // The nearest codes (set by the caller) stay a candidate: GPTQ's greedy column order is not
  // guaranteed to beat them on every channel (it lost badly on some of MobileNetV2's depthwise
  // channels at 7 bits).
  const WeightedNode nearest = w;
  if (options.method == RoundingMethod::kAdaRound && options.adaround.keep_better_gptq) {
    // AdaRound and GPTQ minimise the same quadratic; keep, per output channel, whichever codes
    // reach the lower value (neither wins on every channel).
    WeightedNode wg = w;
    RoundingOptions go = options;
    go.method = RoundingMethod::kGptq;
    ONNXQ_RETURN_IF_ERROR(RoundLayerOn(model, wg, lh, go, pool));
    ONNXQ_RETURN_IF_ERROR(RoundLayerOn(model, w, lh, options, pool));
    ONNXQ_RETURN_IF_ERROR(KeepBetterRows(model, w, wg, lh, options.target_damp));
  } else {
    ONNXQ_RETURN_IF_ERROR(RoundLayerOn(model, w, lh, options, pool));
  }
  return KeepBetterRows(model, w, nearest, lh, options.target_damp);
}

namespace {
Status RoundLayerOn(const Model& model, WeightedNode& w, const LayerHessian& lh, const RoundingOptions& options,
                    ThreadPool* pool) {
  ONNXQ_ASSIGN_OR_RETURN(LayerMatrices lm, MatricesOf(model, w));
  const Geometry& geo = lm.geo;
  if (geo.groups != lh.groups || geo.k != lh.k) return Internal("rounding: Hessian does not match the layer");
  if (!lh.c.empty() && lh.c.size() != lh.h.size()) return Internal("rounding: cross term does not match the layer");
  const Tensor& wt = *model.graph.value(w.weight).initializer();
  const float* wf = wt.data<float>();
  QuantizedWeight& qw = w.qweight;
  const int64_t kk = lh.k * lh.k;
  // Tasks: one per group; a single-group AdaRound splits its rows into fixed blocks (rows are
  // independent problems), so the result does not depend on the thread count.
  constexpr int64_t kRowBlock = 32;
  const bool split_rows = options.method == RoundingMethod::kAdaRound && geo.groups == 1;
  const int64_t blocks_per_group = split_rows ? (geo.rows + kRowBlock - 1) / kRowBlock : 1;
  const int64_t rows_per_task = split_rows ? kRowBlock : geo.rows;
  // Depthwise-like layers (one row per group): AdaRound on many tiny problems, batched into one
  // call of kGroupBatch rows with their own H each.
  constexpr int64_t kGroupBatch = 64;
  const bool batch_groups = options.method == RoundingMethod::kAdaRound && geo.groups > 1 && geo.rows == 1;
  const int64_t tasks = batch_groups ? (geo.groups + kGroupBatch - 1) / kGroupBatch : geo.groups * blocks_per_group;
  // The target of every group first (the asymmetric solve is shared by all rows of a group).
  std::vector<float> target(static_cast<size_t>(wt.numel()));
  for (int64_t i = 0; i < wt.numel(); ++i) target[static_cast<size_t>(i)] = wf[i];
  if (!lh.c.empty()) {
    std::vector<Status> terrs(static_cast<size_t>(geo.groups));
    auto solve = [&](int64_t g0, int64_t g1) {
      std::vector<float> mat(static_cast<size_t>(geo.rows * geo.k));
      for (int64_t gi = g0; gi < g1; ++gi) {
        for (int64_t r = 0; r < geo.rows; ++r)
          for (int64_t c = 0; c < geo.k; ++c) mat[static_cast<size_t>(r * geo.k + c)] = wf[lm.flat(gi, r, c)];
        auto tg = AsymmetricTarget(mat, geo.rows, geo.k,
                                   std::span<const double>(lh.h.data() + gi * kk, static_cast<size_t>(kk)),
                                   std::span<const double>(lh.c.data() + gi * kk, static_cast<size_t>(kk)),
                                   options.target_damp);
        if (!tg.ok()) {
          terrs[static_cast<size_t>(gi)] = tg.status();
          continue;
        }
        for (int64_t r = 0; r < geo.rows; ++r)
          for (int64_t c = 0; c < geo.k; ++c)
            target[static_cast<size_t>(lm.flat(gi, r, c))] = (*tg)[static_cast<size_t>(r * geo.k + c)];
      }
    };
    if (pool && geo.groups > 1)
      pool->ParallelFor(geo.groups, solve);
    else
      solve(0, geo.groups);
    for (const Status& e : terrs) ONNXQ_RETURN_IF_ERROR(e);
  }
  std::vector<Status> errs(static_cast<size_t>(tasks));
  auto work = [&](int64_t t0, int64_t t1) {
    std::vector<float> mat;
    std::vector<QuantParams> prm;
    std::vector<double> hs;
    for (int64_t t = t0; t < t1 && batch_groups; ++t) {
      const int64_t g0 = t * kGroupBatch, ng = std::min(kGroupBatch, geo.groups - g0);
      mat.resize(static_cast<size_t>(ng * geo.k));
      hs.assign(lh.h.begin() + g0 * kk, lh.h.begin() + (g0 + ng) * kk);
      prm.clear();
      for (int64_t j = 0; j < ng; ++j) {
        for (int64_t c = 0; c < geo.k; ++c)
          mat[static_cast<size_t>(j * geo.k + c)] = target[static_cast<size_t>(lm.flat(g0 + j, 0, c))];
        prm.push_back(qw.params[lm.per_channel ? static_cast<size_t>(g0 + j) : 0]);
      }
      auto q = ng > 1 ? AdaRoundQuantizeMatrix(mat, ng, geo.k, hs, prm, options.adaround)
                      : AdaRoundQuantizeMatrix(mat, 1, geo.k, std::span<const double>(hs.data(), static_cast<size_t>(kk)), prm, options.adaround);
      if (!q.ok()) {
        errs[static_cast<size_t>(t)] = q.status();
        continue;
      }
      for (int64_t j = 0; j < ng; ++j)
        for (int64_t c = 0; c < geo.k; ++c)
          qw.q.mutable_data<int8_t>()[lm.flat(g0 + j, 0, c)] = static_cast<int8_t>((*q)[static_cast<size_t>(j * geo.k + c)]);
    }
    for (int64_t t = t0; t < t1 && !batch_groups; ++t) {
      const int64_t gi = t / blocks_per_group, r0 = (t % blocks_per_group) * rows_per_task;
      const int64_t nr = std::min(rows_per_task, geo.rows - r0);
      std::span<const double> hg(lh.h.data() + gi * kk, static_cast<size_t>(kk));
      mat.resize(static_cast<size_t>(nr * geo.k));
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = 0; c < geo.k; ++c) mat[static_cast<size_t>(r * geo.k + c)] = target[static_cast<size_t>(lm.flat(gi, r0 + r, c))];
      prm.clear();
      if (lm.per_channel)
        prm.assign(qw.params.begin() + gi * geo.rows + r0, qw.params.begin() + gi * geo.rows + r0 + nr);
      else
        prm.push_back(qw.params[0]);
      auto q = options.method == RoundingMethod::kAdaRound
                   ? AdaRoundQuantizeMatrix(mat, nr, geo.k, hg, prm, options.adaround)
                   : GptqQuantizeMatrix(mat, nr, geo.k, hg, prm, options.gptq);
      if (!q.ok()) {
        errs[static_cast<size_t>(t)] = q.status();
        continue;
      }
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = 0; c < geo.k; ++c) {
          const int64_t f = lm.flat(gi, r0 + r, c);
          qw.q.mutable_data<int8_t>()[f] = static_cast<int8_t>((*q)[static_cast<size_t>(r * geo.k + c)]);
        }
    }
  };
  if (pool && tasks > 1)
    pool->ParallelFor(tasks, work);
  else
    work(0, tasks);
  for (const Status& e : errs) ONNXQ_RETURN_IF_ERROR(e);
  std::vector<float> deq(static_cast<size_t>(wt.numel()));
  for (int64_t gi = 0; gi < geo.groups; ++gi)
    for (int64_t r = 0; r < geo.rows; ++r) {
      const QuantParams& p = qw.params[lm.per_channel ? static_cast<size_t>(gi * geo.rows + r) : 0];
      for (int64_t c = 0; c < geo.k; ++c) {
        const int64_t f = lm.flat(gi, r, c);
        deq[static_cast<size_t>(f)] = DequantizeValue(qw.q.data<int8_t>()[f], p);
      }
    }
  qw.sqnr_db = Sqnr(wt.span<float>(), deq);
  return Status::Ok();
}

}  // namespace

namespace {

// Per output channel (group-major) e H e^T and t H t^T of a layer's codes against its target.
std::vector<double> RowLossesImpl(const Model& model, const WeightedNode& w, const LayerHessian& lh, double damp,
                                  std::vector<double>* target_energy) {
  if (lh.groups == 0) return {};
  auto lm = MatricesOf(model, w);
  if (!lm.ok() || lm->geo.groups != lh.groups || lm->geo.k != lh.k) return {};
  const Geometry& geo = lm->geo;
  const float* wf = model.graph.value(w.weight).initializer()->data<float>();
  const QuantizedWeight& qw = w.qweight;
  const int64_t kk = lh.k * lh.k;
  std::vector<double> out;
  std::vector<float> mat(static_cast<size_t>(geo.rows * geo.k));
  for (int64_t gi = 0; gi < geo.groups; ++gi) {
    for (int64_t r = 0; r < geo.rows; ++r)
      for (int64_t c = 0; c < geo.k; ++c) mat[static_cast<size_t>(r * geo.k + c)] = wf[lm->flat(gi, r, c)];
    std::span<const double> hg(lh.h.data() + gi * kk, static_cast<size_t>(kk));
    if (!lh.c.empty()) {
      auto tg = AsymmetricTarget(mat, geo.rows, geo.k, hg,
                                 std::span<const double>(lh.c.data() + gi * kk, static_cast<size_t>(kk)), damp);
      if (!tg.ok()) return {};
      mat = std::move(tg).value();
    }
    Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> H(hg.data(), lh.k, lh.k);
    // All rows at once: one matrix product streams H once (a product per row re-read all of H for
    // every output channel, 170 MB per row at k = 4608).
    MatD T(geo.rows, lh.k), E(geo.rows, lh.k);
    for (int64_t r = 0; r < geo.rows; ++r) {
      const QuantParams& p = qw.params[lm->per_channel ? static_cast<size_t>(gi * geo.rows + r) : 0];
      for (int64_t c = 0; c < geo.k; ++c) {
        T(r, c) = mat[static_cast<size_t>(r * geo.k + c)];
        E(r, c) = DequantizeValue(qw.q.data<int8_t>()[lm->flat(gi, r, c)], p) - T(r, c);
      }
    }
    const Eigen::VectorXd loss = (E * H).cwiseProduct(E).rowwise().sum();
    for (int64_t r = 0; r < geo.rows; ++r) out.push_back(loss(r));
    if (target_energy) {
      const Eigen::VectorXd energy = (T * H).cwiseProduct(T).rowwise().sum();
      for (int64_t r = 0; r < geo.rows; ++r) target_energy->push_back(energy(r));
    }
  }
  return out;
}

}  // namespace

std::vector<double> RowLosses(const Model& model, const WeightedNode& w, const LayerHessian& lh, double damp) {
  return RowLossesImpl(model, w, lh, damp, nullptr);
}

double RoundingLoss(const Model& model, const WeightedNode& w, const LayerHessian& lh, double damp) {
  std::vector<double> te;
  const std::vector<double> l = RowLossesImpl(model, w, lh, damp, &te);
  if (l.empty()) return -1;
  double num = 0, den = 0;
  for (size_t i = 0; i < l.size(); ++i) num += l[i], den += te[i];
  return den > 0 ? num / den : 0.0;
}

namespace {

double GridError(std::span<const float> v, const QuantParams& p) {
  double e = 0;
  for (float x : v) {
    const double d = double(DequantizeValue(QuantizeValue(x, p), p)) - x;
    e += d * d;
  }
  return e;
}

// Sub-8-bit weights on the full signed grid: per channel, scales searched again with the extra
// level (the narrow-range pass kept the rule that gives all-zero channels the smallest live
// scale; such channels keep it); `oriented`: the grid or its mirror per channel.
Status RequantizeFullGrid(const Model& model, WeightedNode& w, int bits, WeightScaleMethod method, bool oriented) {
  const Tensor& wt = *model.graph.value(w.weight).initializer();
  QuantizedWeight& qw = w.qweight;
  WeightQuantOptions o;
  o.bits = bits;
  o.narrow_range = false;
  o.method = method;
  const QuantSpec spec = o.spec();
  const int rank = static_cast<int>(wt.rank());
  int64_t outer = 1, ch = 1, inner = wt.numel();
  if (qw.axis >= 0) {
    ch = wt.dims()[static_cast<size_t>(qw.axis)];
    outer = inner = 1;
    for (int i = 0; i < qw.axis; ++i) outer *= wt.dims()[static_cast<size_t>(i)];
    for (int i = qw.axis + 1; i < rank; ++i) inner *= wt.dims()[static_cast<size_t>(i)];
  }
  if (static_cast<int64_t>(qw.params.size()) != ch) return Internal("full grid: params do not match the weight");
  const float* x = wt.data<float>();
  std::vector<float> buf, neg;
  for (int64_t c = 0; c < ch; ++c) {
    buf.clear();
    bool zero = true;
    for (int64_t ou = 0; ou < outer; ++ou)
      for (int64_t k = 0; k < inner; ++k) {
        const float v = x[(ou * ch + c) * inner + k];
        buf.push_back(v);
        zero = zero && v == 0.0f;
      }
    QuantParams& p = qw.params[static_cast<size_t>(c)];
    if (zero) {
      p.qmin = spec.qmin();
      p.qmax = spec.qmax();
    } else {
      p = ChooseSymmetricParams(buf, o);
      if (oriented) {
        // The mirror's scale is the one the full grid picks for the negated weights.
        neg.resize(buf.size());
        for (size_t k = 0; k < buf.size(); ++k) neg[k] = -buf[k];
        QuantParams m = ChooseSymmetricParams(neg, o);
        std::swap(m.qmin, m.qmax);
        m.qmin = -m.qmin, m.qmax = -m.qmax;
        if (GridError(buf, m) < GridError(buf, p)) p = m;
      }
    }
  }
  std::vector<float> deq(static_cast<size_t>(wt.numel()));
  int64_t i = 0;
  for (int64_t ou = 0; ou < outer; ++ou)
    for (int64_t c = 0; c < ch; ++c)
      for (int64_t k = 0; k < inner; ++k, ++i) {
        const QuantParams& p = qw.params[static_cast<size_t>(c)];
        const int32_t q = QuantizeValue(x[i], p);
        qw.q.mutable_data<int8_t>()[i] = static_cast<int8_t>(q);
        deq[static_cast<size_t>(i)] = DequantizeValue(q, p);
      }
  qw.sqnr_db = Sqnr(wt.span<float>(), deq);
  return Status::Ok();
}

}  // namespace

Status QuantizeWeightsMixed(const Model& model, QdqPlan& plan, const std::vector<int>& bits,
                            const WeightOptions& base, const std::vector<LayerHessian>* hessians,
                            const RoundingOptions& rounding, ThreadPool* pool) {
  if (bits.size() != plan.weighted.size())
    return InvalidArgument("per-layer bits: ", bits.size(), " entries for ", plan.weighted.size(), " layers");
  if (hessians && hessians->size() != plan.weighted.size())
    return InvalidArgument("rounding: ", hessians->size(), " Hessians for ", plan.weighted.size(), " layers");
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
    for (size_t j = 0; j < idx.size(); ++j) {
      if (rounding.full_grid && b < 8)
        ONNXQ_RETURN_IF_ERROR(RequantizeFullGrid(model, sub.weighted[j], b, base.method,
                                                 rounding.oriented_grid && b <= rounding.oriented_max_bits));
      plan.weighted[idx[j]].qweight = std::move(sub.weighted[j].qweight);
    }
  }
  if (hessians == nullptr || rounding.method == RoundingMethod::kNearest) return Status::Ok();
  std::vector<Status> errs(plan.weighted.size());
  // Layers in parallel; each layer single-threaded (the result does not depend on the thread count).
  auto work = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      errs[static_cast<size_t>(i)] =
          RoundLayer(model, plan.weighted[static_cast<size_t>(i)], (*hessians)[static_cast<size_t>(i)], rounding, nullptr);
  };
  if (pool)
    pool->ParallelFor(static_cast<int64_t>(plan.weighted.size()), work);
  else
    work(0, static_cast<int64_t>(plan.weighted.size()));
  for (size_t i = 0; i < errs.size(); ++i)
    if (!errs[i].ok()) {
      Status s = errs[i];
      return s.Prepend(std::string(RoundingName(rounding.method)) + " rounding of " +
                       model.graph.node(plan.weighted[i].node).Describe());
    }
  return Status::Ok();
}

namespace {

// The nodes [begin, end) of the topological order as a model of their own: inputs are the
// tensors they read that earlier nodes produced (or graph inputs), outputs the tensors they
// produce that nodes from `end` on read. With `weighted` set, that node's weight becomes an input
// too, so one session runs the float and the quantized weight.
struct Segment {
  Model model;
  std::vector<ValueId> inputs, outputs;
  std::string weight_input;
};

StatusOr<Segment> BuildSegment(const Model& model, size_t begin, size_t end,
                               const std::map<NodeId, size_t>& pos,
                               const std::vector<size_t>& last_use, const WeightedNode* weighted) {
  Segment sg;
  sg.model = model;
  Graph& g = sg.model.graph;
  const std::vector<NodeId> order = g.order();
  std::set<ValueId> ins, outs;
  for (size_t k = begin; k < end; ++k) {
    const Node& n = g.node(order[k]);
    for (ValueId v : n.inputs()) {
      if (v == kNoValue || g.value(v).is_initializer()) continue;
      const Node* prod = g.Producer(v);
      if (prod == nullptr || pos.at(prod->id()) < begin) ins.insert(v);
    }
    for (ValueId v : n.outputs())
      if (v != kNoValue && last_use[v] >= end && last_use[v] != SIZE_MAX) outs.insert(v);
  }
  for (size_t k = order.size(); k-- > 0;)
    if (k < begin || k >= end) g.RemoveNode(order[k]);
  sg.inputs.assign(ins.begin(), ins.end());
  sg.outputs.assign(outs.begin(), outs.end());
  std::vector<ValueId> gin = sg.inputs;
  if (weighted) {
    const ValueId wv = g.AddUniqueValue("onnxq_rounding_weight");
    const Tensor& wt = *g.value(weighted->weight).initializer();
    g.value(wv).dtype = DataType::kFloat;
    g.value(wv).shape = Shape::FromDims(wt.dims());
    g.SetNodeInput(weighted->node, static_cast<size_t>(weighted->weight_slot), wv);
    sg.weight_input = g.value(wv).name();
    gin.push_back(wv);
  }
  g.SetInputs(gin);
  g.SetOutputs(sg.outputs);
  ONNXQ_RETURN_IF_ERROR(g.Verify());
  return sg;
}


}  // namespace

StatusOr<std::vector<LayerHessian>> QuantizeWeightsSequential(
    const Model& model, QdqPlan& plan, const std::vector<int>& bits, const WeightOptions& base,
    CalibrationSource& calibration, const HessianOptions& ho, const RoundingOptions& rounding,
    ThreadPool* pool) {
  ONNXQ_RETURN_IF_ERROR(QuantizeWeightsMixed(model, plan, bits, base, nullptr, rounding, pool));
  const Graph& g = model.graph;
  std::vector<LayerHessian> out(plan.weighted.size());
  if (plan.weighted.empty()) return out;
  const std::vector<ValueId> ins = g.RuntimeInputs();
  std::vector<std::string> input_names;
  for (ValueId v : ins) input_names.push_back(g.value(v).name());
  const std::vector<NodeId>& order = g.order();
  std::map<NodeId, size_t> pos;
  for (size_t k = 0; k < order.size(); ++k) pos[order[k]] = k;
  std::vector<size_t> last_use(g.value_capacity(), SIZE_MAX);
  for (size_t k = 0; k < order.size(); ++k)
    for (ValueId v : g.node(order[k]).inputs())
      if (v != kNoValue) last_use[v] = last_use[v] == SIZE_MAX ? k : std::max(last_use[v], k);
  std::map<size_t, size_t> layer_at;  // position -> plan.weighted index
  std::vector<Geometry> geos(plan.weighted.size());
  for (size_t i = 0; i < plan.weighted.size(); ++i) {
    layer_at[pos.at(plan.weighted[i].node)] = i;
    auto geo = GeometryOf(model, plan.weighted[i]);
    if (!geo.ok()) {
      out[i].unsupported = geo.status().message();
      continue;
    }
    geos[i] = *geo;
    out[i].groups = geo->groups;
    out[i].k = geo->k;
  }
  std::vector<size_t> starts;
  if (layer_at.begin()->first > 0) starts.push_back(0);
  for (const auto& [p, i] : layer_at) starts.push_back(p);

  // A model that fixes its batch size streams batches of exactly that size: the live tensors
  // between segments need not be batch-major, so a batch is never split.
  ONNXQ_ASSIGN_OR_RETURN(const int64_t fixed, FixedBatchSize(model));
  int64_t n = std::min(ho.samples, calibration.size());
  if (fixed > 0) n = n / fixed * fixed;
  if (n < 1) return InvalidArgument("rounding needs calibration samples");
  const int64_t bs = fixed > 0 ? fixed : std::max<int64_t>(ho.batch_size, 1);
  // Live tensors of every batch, for the float model (f) and the model quantized so far (q).
  std::vector<std::map<ValueId, Tensor>> live_f, live_q;
  for (int64_t b = 0; b < n; b += bs) {
    ONNXQ_ASSIGN_OR_RETURN(auto feeds, calibration.Feeds(b, std::min(bs, n - b), input_names));
    std::map<ValueId, Tensor> f, q;
    for (ValueId v : ins) {
      Tensor& t = feeds.at(g.value(v).name());
      Tensor qt = t.Clone();
      if (plan.GroupOf(v) != nullptr) ONNXQ_RETURN_IF_ERROR(FakeQuantizeTensor(plan, v, qt));
      f.emplace(v, std::move(t));
      q.emplace(v, std::move(qt));
    }
    live_f.push_back(std::move(f));
    live_q.push_back(std::move(q));
  }
  const std::vector<ValueId> simulated = SimulatedValues(plan);
  ThreadPool local(ho.threads);
  ThreadPool& tp = pool ? *pool : local;
  SessionOptions so;
  so.num_threads = ho.threads;

  for (size_t s = 0; s < starts.size(); ++s) {
    const size_t a = starts[s], e = s + 1 < starts.size() ? starts[s + 1] : order.size();
    auto lit = layer_at.find(a);
    WeightedNode* wn = lit != layer_at.end() ? &plan.weighted[lit->second] : nullptr;
    if (wn != nullptr && out[lit->second].groups > 0) {
      const size_t li = lit->second;
      const Geometry& geo = geos[li];
      LayerHessian& lh = out[li];
      const size_t sz = static_cast<size_t>(geo.groups * geo.k * geo.k);
      lh.h.assign(sz, 0.0);
      std::vector<double> cc(sz, 0.0);
      for (size_t b = 0; b < live_f.size(); ++b) {
        auto fi = live_f[b].find(wn->input), qi = live_q[b].find(wn->input);
        if (fi == live_f[b].end() || qi == live_q[b].end())
          return Internal("rounding: the input of ", g.node(wn->node).Describe(), " is not live");
        const Tensor& tf = fi->second;
        const Tensor& tq = qi->second;
        if (tf.dtype() != DataType::kFloat || tf.rank() < 2) break;
        const int64_t nb = tf.dims()[0];
        std::vector<int64_t> sdims(tf.dims().begin() + 1, tf.dims().end());
        const int64_t per = tf.numel() / std::max<int64_t>(nb, 1);
        const bool whole = !geo.conv;
        const int64_t tasks = whole ? 1 : nb;
        std::vector<std::vector<float>> ph(static_cast<size_t>(tasks)), pc(static_cast<size_t>(tasks));
        std::vector<Status> err(static_cast<size_t>(tasks));
        std::vector<int64_t> rows(static_cast<size_t>(tasks), 0);
        // One task per image, summed in image order: the result does not depend on the thread count.
        tp.ParallelFor(tasks, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            auto& H = ph[static_cast<size_t>(t)];
            auto& C = pc[static_cast<size_t>(t)];
            H.assign(sz, 0.0f);
            C.assign(sz, 0.0f);
            err[static_cast<size_t>(t)] =
                whole ? AccumulatePair(geo, tq.data<float>(), tf.data<float>(), tf.dims(), H, C, &rows[static_cast<size_t>(t)])
                      : AccumulatePair(geo, tq.data<float>() + t * per, tf.data<float>() + t * per, sdims, H, C,
                                       &rows[static_cast<size_t>(t)]);
          }
        });
        for (int64_t t = 0; t < tasks; ++t) {
          if (!err[static_cast<size_t>(t)].ok()) {
            Status st = err[static_cast<size_t>(t)];
            return st.Prepend("rounding statistics of " + g.node(wn->node).Describe());
          }
          for (size_t i = 0; i < sz; ++i) {
            lh.h[i] += ph[static_cast<size_t>(t)][i];
            cc[i] += pc[static_cast<size_t>(t)][i];
          }
          lh.rows += rows[static_cast<size_t>(t)];
        }
      }
      // Column-major accumulators to row-major: H is symmetric, C(i, j) = sum xq_i xf_j.
      lh.c.assign(sz, 0.0);
      const int64_t k = geo.k;
      for (int64_t gi = 0; gi < geo.groups; ++gi)
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) lh.c[static_cast<size_t>(gi * k * k + i * k + j)] = cc[static_cast<size_t>(gi * k * k + j * k + i)];
      Status st = RoundLayer(model, *wn, lh, rounding, &tp);
      if (!st.ok()) return st.Prepend(std::string(RoundingName(rounding.method)) + " rounding of " + g.node(wn->node).Describe());
    }
    if (s + 1 == starts.size()) break;  // nothing after the last layer needs the streams
    ONNXQ_ASSIGN_OR_RETURN(Segment sg, BuildSegment(model, a, e, pos, last_use, wn));
    if (!sg.outputs.empty()) {
      ONNXQ_ASSIGN_OR_RETURN(auto session, Session::Create(sg.model, so));
      Tensor wq;
      if (wn) {
        ONNXQ_ASSIGN_OR_RETURN(wq, DequantizedWeightOf(wn->qweight));
      }
      const Graph& sgg = sg.model.graph;
      RunOptions qo;
      for (ValueId v : simulated)
        if (sgg.has_value(v) && sgg.Producer(v) != nullptr) qo.hooked_values.push_back(v);
      qo.hook = [&](ValueId v, const std::string&, Tensor& t) -> Status { return FakeQuantizeTensor(plan, v, t); };
      if (qo.hooked_values.empty()) qo.hook = nullptr;
      for (size_t b = 0; b < live_f.size(); ++b) {
        for (int pass = 0; pass < 2; ++pass) {
          auto& live = pass == 0 ? live_f[b] : live_q[b];
          std::map<std::string, Tensor> feeds;
          for (ValueId v : sg.inputs) {
            auto it = live.find(v);
            if (it == live.end()) return Internal("rounding: tensor '", g.value(v).name(), "' is not live");
            feeds[g.value(v).name()] = it->second;
          }
          if (wn) feeds[sg.weight_input] = pass == 0 ? *g.value(wn->weight).initializer() : wq;
          ONNXQ_ASSIGN_OR_RETURN(auto res, session->Run(feeds, pass == 0 ? RunOptions{} : qo));
          for (ValueId v : sg.outputs) live[v] = std::move(res.at(g.value(v).name()));
        }
      }
    }
    // Drop what no later node reads.
    for (auto* streams : {&live_f, &live_q})
      for (auto& live : *streams)
        for (auto it = live.begin(); it != live.end();)
          it = (last_use[it->first] == SIZE_MAX || last_use[it->first] < e) ? live.erase(it) : std::next(it);
  }
  return out;
}

}  // namespace onnxq::quant
