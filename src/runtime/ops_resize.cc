// Resize (opset 10+): nearest (all nearest_modes) and N-linear interpolation with every
// coordinate_transformation_mode; cubic and antialiasing are refused when the session is created.
#include <algorithm>
#include <cmath>

#include "runtime/op_kernel.h"

namespace onnxq::runtime {
namespace {

enum class Coord { kHalfPixel, kPytorchHalfPixel, kAlignCorners, kAsymmetric, kTfHalfPixelForNn,
                   kTfCropAndResize, kHalfPixelSymmetric };
enum class Nearest { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };

struct ResizeAttrs {
  bool linear = false;
  Coord coord = Coord::kHalfPixel;
  Nearest nearest = Nearest::kRoundPreferFloor;
  float extrapolation = 0.f;
  std::vector<int64_t> axes;  // opset 18
  bool opset10 = false;
};

// Per output index along one axis: source taps and weights (one tap for nearest).
struct AxisMap {
  std::vector<int64_t> i0, i1;
  std::vector<float> w0, w1;
  std::vector<bool> outside;  // tf_crop_and_resize: use the extrapolation value
};

class ResizeKernel : public OpKernel {
 public:
  ResizeKernel(const Node& node, ResizeAttrs attrs) : node_(node), a_(std::move(attrs)) {}

  Status Infer(InferContext& ctx) override {
    if (!ctx.has(0)) return InvalidArgument(node_.Describe(), ": missing input");
    const auto& x = *ctx.in[0];
    if (a_.linear) {
      ONNXQ_DISPATCH_FLOAT(x.dtype, node_, T, (void)0);
    } else {
      ONNXQ_DISPATCH_NUMERIC(x.dtype, node_, T, (void)0);
    }
    std::vector<double> scales;
    std::vector<int64_t> out;
    std::vector<float> roi;
    ONNXQ_RETURN_IF_ERROR(Resolve(ctx, x.dims, &scales, &out, &roi));
    ctx.out[0] = {x.dtype, out, nullptr};
    return Status::Ok();
  }

  Status Run(const RunContext& ctx) const override {
    // Scales/sizes/roi are known at planning, so the same values are present now.
    std::vector<double> scales;
    std::vector<int64_t> out;
    std::vector<float> roi;
    ONNXQ_RETURN_IF_ERROR(ResolveRun(ctx, &scales, &roi));
    out = ctx.out[0].dims;
    const auto& in = ctx.in[0].dims;
    std::vector<AxisMap> maps(in.size());
    for (size_t a = 0; a < in.size(); ++a) BuildMap(a, in[a], out[a], scales[a], roi, &maps[a]);
    if (a_.linear) {
      ONNXQ_DISPATCH_FLOAT(ctx.in[0].dtype, node_, T, Apply<T>(ctx, maps));
    } else {
      ONNXQ_DISPATCH_NUMERIC(ctx.in[0].dtype, node_, T, Apply<T>(ctx, maps));
    }
    return Status::Ok();
  }

 private:
  // Input slots: opset 10 (X, scales); 11+ (X, roi, scales, sizes).
  size_t ScalesSlot() const { return a_.opset10 ? 1 : 2; }

  Status FromValues(const std::vector<int64_t>& in, const std::vector<float>* scales_in,
                    const std::vector<int64_t>* sizes_in, std::vector<double>* scales,
                    std::vector<int64_t>* out) const {
    const size_t r = in.size();
    std::vector<int64_t> axes = a_.axes;
    if (axes.empty())
      for (size_t i = 0; i < r; ++i) axes.push_back(static_cast<int64_t>(i));
    for (auto& ax : axes) {
      ONNXQ_ASSIGN_OR_RETURN(ax, NormalizeAxis(ax, static_cast<int64_t>(r), node_, "axes"));
    }
    scales->assign(r, 1.0);
    *out = in;
    if (sizes_in && !sizes_in->empty()) {
      if (sizes_in->size() != axes.size())
        return InvalidArgument(node_.Describe(), ": sizes has ", sizes_in->size(), " entries for ",
                               axes.size(), " axes");
      for (size_t i = 0; i < axes.size(); ++i) {
        const int64_t ax = axes[i];
        if ((*sizes_in)[i] < 0) return InvalidArgument(node_.Describe(), ": negative size");
        (*out)[ax] = (*sizes_in)[i];
        (*scales)[ax] = in[ax] > 0 ? static_cast<double>((*sizes_in)[i]) / in[ax] : 1.0;
      }
      return Status::Ok();
    }
    if (!scales_in || scales_in->size() != axes.size())
      return InvalidArgument(node_.Describe(), ": needs scales (", axes.size(),
                             " entries) or sizes");
    for (size_t i = 0; i < axes.size(); ++i) {
      const int64_t ax = axes[i];
      const float s = (*scales_in)[i];
      if (!(s > 0)) return InvalidArgument(node_.Describe(), ": scales must be > 0");
      (*scales)[ax] = s;
      (*out)[ax] = static_cast<int64_t>(std::floor(static_cast<double>(in[ax]) * s));
    }
    return Status::Ok();
  }

  Status Resolve(const InferContext& ctx, const std::vector<int64_t>& in,
                 std::vector<double>* scales, std::vector<int64_t>* out,
                 std::vector<float>* roi) const {
    std::vector<float> sc;
    std::vector<int64_t> sz;
    const size_t ss = ScalesSlot();
    auto need = [&](size_t i, const char* what) -> Status {
      if (ctx.value(i) == nullptr)
        return Unsupported(node_.Describe(), ": ", what, " must be known before the run");
      return Status::Ok();
    };
    if (ctx.has(ss) && NumElements(ctx.in[ss]->dims) > 0) {
      ONNXQ_RETURN_IF_ERROR(need(ss, "scales"));
      sc = ReadFloats(*ctx.value(ss));
    }
    if (!a_.opset10 && ctx.has(3) && NumElements(ctx.in[3]->dims) > 0) {
      ONNXQ_RETURN_IF_ERROR(need(3, "sizes"));
      ONNXQ_ASSIGN_OR_RETURN(sz, ReadInts(*ctx.value(3), node_, "sizes"));
    }
    if (!sc.empty() && !sz.empty())
      return InvalidArgument(node_.Describe(), ": only one of scales and sizes may be given");
    if (a_.coord == Coord::kTfCropAndResize) {
      if (!ctx.has(1)) return InvalidArgument(node_.Describe(), ": tf_crop_and_resize needs roi");
      ONNXQ_RETURN_IF_ERROR(need(1, "roi"));
      *roi = ReadFloats(*ctx.value(1));
      if (roi->size() != 2 * in.size())
        return Unsupported(node_.Describe(), ": roi must have 2 x rank entries");
    }
    return FromValues(in, sc.empty() ? nullptr : &sc, sz.empty() ? nullptr : &sz, scales, out);
  }

  Status ResolveRun(const RunContext& ctx, std::vector<double>* scales,
                    std::vector<float>* roi) const {
    const size_t ss = ScalesSlot();
    std::vector<float> sc;
    std::vector<int64_t> sz;
    if (ctx.in.size() > ss && ctx.in[ss].present() && ctx.in[ss].numel > 0)
      sc.assign(ctx.in[ss].ptr<float>(), ctx.in[ss].ptr<float>() + ctx.in[ss].numel);
    if (!a_.opset10 && ctx.in.size() > 3 && ctx.in[3].present() && ctx.in[3].numel > 0)
      sz.assign(ctx.in[3].ptr<int64_t>(), ctx.in[3].ptr<int64_t>() + ctx.in[3].numel);
    if (a_.coord == Coord::kTfCropAndResize)
      roi->assign(ctx.in[1].ptr<float>(), ctx.in[1].ptr<float>() + ctx.in[1].numel);
    std::vector<int64_t> out;
    return FromValues(ctx.in[0].dims, sc.empty() ? nullptr : &sc, sz.empty() ? nullptr : &sz,
                      scales, &out);
  }

  void BuildMap(size_t axis, int64_t lin, int64_t lout, double scale,
                const std::vector<float>& roi, AxisMap* m) const {
    m->i0.resize(lout);
    m->i1.resize(lout);
    m->w0.resize(lout);
    m->w1.resize(lout);
    m->outside.assign(lout, false);
    for (int64_t o = 0; o < lout; ++o) {
      double x = 0;
      const double xo = static_cast<double>(o);
      switch (a_.coord) {
        case Coord::kHalfPixel: x = (xo + 0.5) / scale - 0.5; break;
        case Coord::kPytorchHalfPixel: x = lout > 1 ? (xo + 0.5) / scale - 0.5 : 0.0; break;
        case Coord::kAlignCorners:
          // ONNX measures the resized length as in * scale (not the rounded output size).
          x = lout == 1 ? 0.0 : xo * static_cast<double>(lin - 1) / (static_cast<double>(lin) * scale - 1.0);
          break;
        case Coord::kAsymmetric: x = xo / scale; break;
        case Coord::kTfHalfPixelForNn: x = (xo + 0.5) / scale; break;
        case Coord::kHalfPixelSymmetric: {
          const double adj = static_cast<double>(lout) / (scale * static_cast<double>(lin));
          const double center = static_cast<double>(lin) / 2.0;
          x = center * (1.0 - adj) + (xo + 0.5) / scale - 0.5;
          break;
        }
        case Coord::kTfCropAndResize: {
          const double s = roi[axis], e = roi[axis + roi.size() / 2];
          x = lout > 1 ? s * (lin - 1) + xo * (e - s) * (lin - 1) / static_cast<double>(lout - 1)
                       : 0.5 * (s + e) * (lin - 1);
          if (x < 0 || x > static_cast<double>(lin - 1)) m->outside[o] = true;
          break;
        }
      }
      if (!a_.linear) {
        double r = 0;
        switch (a_.nearest) {
          case Nearest::kRoundPreferFloor:
            r = (x == std::floor(x) + 0.5) ? std::floor(x) : std::round(x);
            break;
          case Nearest::kRoundPreferCeil: r = std::round(x); break;  // halves away from zero
          case Nearest::kFloor: r = std::floor(x); break;
          case Nearest::kCeil: r = std::ceil(x); break;
        }
        if (a_.nearest == Nearest::kRoundPreferCeil && x < 0 && x == std::floor(x) + 0.5)
          r = std::ceil(x);
        const int64_t i = std::clamp<int64_t>(static_cast<int64_t>(r), 0, lin - 1);
        m->i0[o] = m->i1[o] = i;
        m->w0[o] = 1.f;
        m->w1[o] = 0.f;
        continue;
      }
      const double f = std::floor(x);
      const double frac = x - f;
      const int64_t i = static_cast<int64_t>(f);
      m->i0[o] = std::clamp<int64_t>(i, 0, lin - 1);
      m->i1[o] = std::clamp<int64_t>(i + 1, 0, lin - 1);
      m->w0[o] = static_cast<float>(1.0 - frac);
      m->w1[o] = static_cast<float>(frac);
    }
  }

  template <typename T>
  void Apply(const RunContext& ctx, const std::vector<AxisMap>& maps) const {
    const auto& in = ctx.in[0].dims;
    const auto& out = ctx.out[0].dims;
    const size_t r = in.size();
    const T* xp = ctx.in[0].ptr<T>();
    T* yp = ctx.out[0].ptr<T>();
    if (r == 0) {
      yp[0] = xp[0];
      return;
    }
    std::vector<int64_t> stride(r, 1);
    for (size_t i = r; i-- > 1;) stride[i - 1] = stride[i] * in[i];
    const int64_t inner = out[r - 1];
    if (inner == 0) return;
    const int64_t rows = ctx.out[0].numel / inner;
    const T extrap = static_cast<T>(a_.extrapolation);
    const AxisMap& last = maps[r - 1];
    ParallelFor(ctx.pool, rows, 1, [&](int64_t s, int64_t e) {
      std::vector<std::pair<int64_t, double>> corners, next;
      for (int64_t row = s; row < e; ++row) {
        corners.assign(1, {0, 1.0});
        bool outside = false;
        int64_t rem = row;
        std::vector<int64_t> idx(r - 1);
        for (size_t a = r - 1; a-- > 0;) {
          idx[a] = rem % out[a];
          rem /= out[a];
        }
        for (size_t a = 0; a + 1 < r; ++a) {
          const AxisMap& m = maps[a];
          const int64_t o = idx[a];
          outside = outside || m.outside[o];
          next.clear();
          for (const auto& [off, w] : corners) {
            next.push_back({off + m.i0[o] * stride[a], w * m.w0[o]});
            if (m.w1[o] != 0.f) next.push_back({off + m.i1[o] * stride[a], w * m.w1[o]});
          }
          corners.swap(next);
        }
        T* yo = yp + row * inner;
        for (int64_t j = 0; j < inner; ++j) {
          if (outside || last.outside[j]) {
            yo[j] = extrap;
            continue;
          }
          if (!a_.linear) {
            yo[j] = xp[corners[0].first + last.i0[j]];
            continue;
          }
          double acc = 0;
          for (const auto& [off, w] : corners) {
            acc += w * (last.w0[j] * static_cast<double>(xp[off + last.i0[j]]) +
                        last.w1[j] * static_cast<double>(xp[off + last.i1[j]]));
          }
          yo[j] = static_cast<T>(acc);
        }
      }
    });
  }

  const Node& node_;
  ResizeAttrs a_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeResize(const OpInfo& info) {
  const Node& node = *info.node;
  const auto& at = node.attrs;
  ResizeAttrs a;
  a.opset10 = info.opset < 11;
  ONNXQ_ASSIGN_OR_RETURN(std::string mode, at.GetString("mode", "nearest"));
  if (mode == "linear" || mode == "bilinear") {
    a.linear = true;
  } else if (mode != "nearest") {
    return Unsupported(node.Describe(), ": Resize mode '", mode,
                       "' is not supported (nearest and linear are)");
  }
  if (a.opset10) {
    a.coord = Coord::kAsymmetric;
    a.nearest = Nearest::kFloor;
  } else {
    ONNXQ_ASSIGN_OR_RETURN(std::string c, at.GetString("coordinate_transformation_mode", "half_pixel"));
    if (c == "half_pixel") a.coord = Coord::kHalfPixel;
    else if (c == "pytorch_half_pixel") a.coord = Coord::kPytorchHalfPixel;
    else if (c == "align_corners") a.coord = Coord::kAlignCorners;
    else if (c == "asymmetric") a.coord = Coord::kAsymmetric;
    else if (c == "tf_half_pixel_for_nn") a.coord = Coord::kTfHalfPixelForNn;
    else if (c == "tf_crop_and_resize") a.coord = Coord::kTfCropAndResize;
    else if (c == "half_pixel_symmetric" && info.opset >= 19) a.coord = Coord::kHalfPixelSymmetric;
    else return Unsupported(node.Describe(), ": coordinate_transformation_mode '", c, "'");
    ONNXQ_ASSIGN_OR_RETURN(std::string n, at.GetString("nearest_mode", "round_prefer_floor"));
    if (n == "round_prefer_floor") a.nearest = Nearest::kRoundPreferFloor;
    else if (n == "round_prefer_ceil") a.nearest = Nearest::kRoundPreferCeil;
    else if (n == "floor") a.nearest = Nearest::kFloor;
    else if (n == "ceil") a.nearest = Nearest::kCeil;
    else return Unsupported(node.Describe(), ": nearest_mode '", n, "'");
    ONNXQ_ASSIGN_OR_RETURN(a.extrapolation, at.GetFloat("extrapolation_value", 0.f));
    ONNXQ_ASSIGN_OR_RETURN(int64_t antialias, at.GetInt("antialias", 0));
    if (antialias != 0) return Unsupported(node.Describe(), ": Resize antialias=1 is not supported");
    ONNXQ_ASSIGN_OR_RETURN(std::string kar, at.GetString("keep_aspect_ratio_policy", "stretch"));
    if (kar != "stretch")
      return Unsupported(node.Describe(), ": keep_aspect_ratio_policy '", kar, "'");
    ONNXQ_ASSIGN_OR_RETURN(a.axes, at.GetInts("axes", {}));
  }
  return MakeKernel<ResizeKernel>(node, std::move(a));
}

}  // namespace

void RegisterResizeOps(std::vector<OpRegistration>& r) {
  r.push_back({"Resize", 10, 23, MakeResize,
               "nearest (all nearest_modes, numeric types) and linear (float), every "
               "coordinate_transformation_mode; no cubic, no antialias; scales/sizes known when "
               "planning"});
}

}  // namespace onnxq::runtime
