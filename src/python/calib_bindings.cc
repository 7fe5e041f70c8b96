// onnxq.calib: calibration data, observers, calibrators and quantization math, as thin wrappers so
// that Python (tests, notebooks) can check them against numpy. All logic is in C++.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>

#include "onnxq/base/npy.h"
#include "onnxq/base/thread_pool.h"
#include "onnxq/calib/calibrator.h"
#include "onnxq/calib/dataset.h"
#include "onnxq/calib/observer.h"
#include "onnxq/quant/quant_params.h"
#include "onnxq/quant/weight_quant.h"
#include "python/common.h"
#include "python/numpy_tensor.h"

namespace onnxq::python {
namespace {

using calib::CalibrationStats;
using calib::HistogramObserver;

py::array_t<float, py::array::c_style> AsFloat(const py::array& a) {
  auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!f) throw py::value_error("expected a float array");
  return f;
}

quant::QuantParams Params(float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  return quant::QuantParams{scale, zp, qmin, qmax};
}

py::dict ParamsDict(const quant::QuantParams& p) {
  py::dict d;
  d["scale"] = p.scale;
  d["zero_point"] = p.zero_point;
  d["qmin"] = p.qmin;
  d["qmax"] = p.qmax;
  return d;
}

calib::PreprocessOptions MakePreprocess(const std::optional<std::string>& preset, const py::dict& kw) {
  calib::PreprocessOptions o;
  if (preset) o = Unwrap(calib::PreprocessPreset(*preset));
  for (auto item : kw) {
    std::string k = py::str(item.first);
    py::handle v = item.second;
    if (k == "resize") {
      o.resize_shorter = v.cast<int>();
    } else if (k == "crop") {
      if (v.is_none()) {
        o.crop_height = o.crop_width = 0;
      } else if (py::isinstance<py::int_>(v)) {
        o.crop_height = o.crop_width = v.cast<int>();
      } else {
        auto hw = v.cast<std::pair<int, int>>();
        o.crop_height = hw.first;
        o.crop_width = hw.second;
      }
    } else if (k == "scale") {
      o.scale = v.cast<float>();
    } else if (k == "mean") {
      o.mean = v.cast<std::array<float, 3>>();
    } else if (k == "std") {
      o.std = v.cast<std::array<float, 3>>();
    } else if (k == "bgr") {
      o.bgr = v.cast<bool>();
    } else if (k == "layout") {
      std::string l = v.cast<std::string>();
      if (l == "NCHW") o.layout = calib::ImageLayout::kNCHW;
      else if (l == "NHWC") o.layout = calib::ImageLayout::kNHWC;
      else throw py::value_error("layout must be 'NCHW' or 'NHWC'");
    } else {
      throw py::type_error("unknown preprocessing option '" + k + "'");
    }
  }
  Check(o.Validate());
  return o;
}

py::array ImageToArray(const calib::Image& img) {
  py::array_t<uint8_t> a({img.height, img.width, 3});
  std::memcpy(a.mutable_data(), img.rgb.data(), img.rgb.size());
  return a;
}

}  // namespace

ONNXQ_PYTHON_BINDINGS(BindCalib, 20) {
  py::module_ c = m.def_submodule("calib", "Calibration data, observers, calibrators and quantization math.");

  // ------------------------------------------------------------------ .npy
  c.def("read_npy", [](const std::string& path) { return TensorToArray(Unwrap(ReadNpy(path))); },
        py::arg("path"), "Reads a .npy file with onnxq's reader (errors name the file).");
  c.def("write_npy", [](const std::string& path, const py::array& a) { Check(WriteNpy(path, ArrayToTensor(a))); },
        py::arg("path"), py::arg("array"), "Writes a .npy file atomically.");
  c.def("parse_npy", [](const py::bytes& b) {
          std::string s = b;
          return TensorToArray(Unwrap(ParseNpy(s.data(), s.size(), "<bytes>")));
        }, py::arg("data"));

  // ------------------------------------------------------------------ images and datasets
  c.def("preprocess_presets", &calib::PreprocessPresetNames);
  c.def("decode_image", [](const std::string& path, int64_t max_pixels) {
          calib::ImageLimits limits;
          limits.max_pixels = max_pixels;
          return ImageToArray(Unwrap(calib::ReadImage(path, limits)));
        },
        py::arg("path"), py::kw_only(), py::arg("max_pixels") = calib::ImageLimits{}.max_pixels,
        "Decodes a JPEG/PNG to uint8 [H, W, 3] RGB (stb_image); images over max_pixels are refused "
        "before decoding.");
  c.def("resize_bilinear",
        [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> a, int width, int height) {
          if (a.ndim() != 3 || a.shape(2) != 3) throw py::value_error("expected a uint8 [H, W, 3] array");
          if (width < 1 || height < 1) throw py::value_error("size must be positive");
          calib::Image img;
          img.height = static_cast<int>(a.shape(0));
          img.width = static_cast<int>(a.shape(1));
          img.rgb.assign(a.data(), a.data() + a.size());
          return ImageToArray(calib::ResizeBilinear(img, width, height, 0, 0, width, height));
        },
        py::arg("image"), py::arg("width"), py::arg("height"),
        "PIL-compatible bilinear resize of a uint8 [H, W, 3] image.");
  c.def("preprocess_image",
        [](const std::string& path, std::optional<std::string> preset, py::kwargs kw) {
          return TensorToArray(Unwrap(calib::LoadImage(path, MakePreprocess(preset, kw))));
        },
        py::arg("path"), py::arg("preset") = py::none(),
        "Decodes and preprocesses one image: preset name and/or resize=, crop=, scale=, mean=, std=, "
        "bgr=, layout=.");

  py::class_<calib::Dataset, std::shared_ptr<calib::Dataset>>(c, "Dataset")
      .def(py::init([](const std::string& path, std::optional<std::string> preset, std::string labels,
                       int64_t skip, int64_t count, std::vector<int64_t> sample_shape,
                       int64_t max_image_pixels, py::kwargs kw) {
             calib::DatasetOptions o;
             o.preprocess = MakePreprocess(preset, kw);
             o.image_limits.max_pixels = max_image_pixels;
             o.labels = labels;
             o.skip = skip;
             o.count = count;
             o.sample_shape = sample_shape;
             return std::shared_ptr<calib::Dataset>(Unwrap(calib::Dataset::Open(path, o)).release());
           }),
           py::arg("path"), py::arg("preset") = py::none(), py::arg("labels") = "", py::arg("skip") = 0,
           py::arg("count") = -1, py::arg("sample_shape") = std::vector<int64_t>{},
           py::arg("max_image_pixels") = calib::ImageLimits{}.max_pixels)
      .def("__len__", &calib::Dataset::size)
      .def("source", &calib::Dataset::source)
      .def_property_readonly("has_labels", &calib::Dataset::has_labels)
      .def("label", &calib::Dataset::label)
      .def_property_readonly("sample_dims", &calib::Dataset::sample_dims)
      .def("load", [](const calib::Dataset& d, int64_t i) {
        Tensor t;
        {
          py::gil_scoped_release release;
          auto r = d.Load(i);
          py::gil_scoped_acquire acquire;
          t = Unwrap(std::move(r));
        }
        return TensorToArray(t);
      })
      .def("load_batch", [](const calib::Dataset& d, int64_t begin, int64_t n, int threads) {
        StatusOr<Tensor> r = Internal("unset");
        {
          py::gil_scoped_release release;
          ThreadPool pool(threads);
          r = d.LoadBatch(begin, n, &pool);
        }
        return TensorToArray(Unwrap(std::move(r)));
      }, py::arg("begin"), py::arg("count"), py::arg("threads") = 1);

  // ------------------------------------------------------------------ observers
  py::class_<HistogramObserver>(c, "HistogramObserver")
      .def(py::init<int>(), py::arg("num_bins") = HistogramObserver::kDefaultBins)
      .def("update", [](HistogramObserver& h, const py::array& a, int threads) {
        auto f = AsFloat(a);
        Status s;
        {
          py::gil_scoped_release release;
          std::unique_ptr<ThreadPool> pool;
          if (threads > 1) pool = std::make_unique<ThreadPool>(threads);
          s = h.Update(f.data(), static_cast<int64_t>(f.size()), pool.get());
        }
        Check(s);
      }, py::arg("values"), py::arg("threads") = 1)
      .def("merge", [](HistogramObserver& h, const HistogramObserver& o) { Check(h.Merge(o)); })
      .def_property_readonly("num_bins", &HistogramObserver::num_bins)
      .def_property_readonly("count", &HistogramObserver::count)
      .def_property_readonly("min", &HistogramObserver::min)
      .def_property_readonly("max", &HistogramObserver::max)
      .def_property_readonly("exponent", &HistogramObserver::exponent)
      .def_property_readonly("first_index", &HistogramObserver::first_index)
      .def_property_readonly("bin_width", &HistogramObserver::bin_width)
      .def_property_readonly("counts", [](const HistogramObserver& h) {
        auto c = h.counts();
        py::array_t<uint64_t> a(std::vector<py::ssize_t>{static_cast<py::ssize_t>(c.size())});
        if (!c.empty()) std::memcpy(a.mutable_data(), c.data(), c.size() * sizeof(uint64_t));
        return a;
      })
      .def("edges", [](const HistogramObserver& h) {
        py::array_t<double> a(std::vector<py::ssize_t>{static_cast<py::ssize_t>(h.num_bins()) + 1});
        for (int j = 0; j <= h.num_bins(); ++j) a.mutable_at(j) = h.bin_edge(j);
        return a;
      })
      .def("to_bytes", [](const HistogramObserver& h) { return py::bytes(h.Serialize()); })
      .def_static("from_bytes", [](const py::bytes& b) {
        std::string s = b;
        return Unwrap(HistogramObserver::Deserialize(s));
      })
      .def("__eq__", [](const HistogramObserver& a, const HistogramObserver& b) { return a == b; });

  py::class_<CalibrationStats>(c, "CalibrationStats")
      .def(py::init<>())
      .def_readwrite("fingerprint", &CalibrationStats::fingerprint)
      .def_readwrite("tensors", &CalibrationStats::tensors)
      .def("merge", [](CalibrationStats& s, const CalibrationStats& o) { Check(s.Merge(o)); })
      .def("save", [](const CalibrationStats& s, const std::string& p) { Check(s.Save(p)); })
      .def_static("load", [](const std::string& p) { return Unwrap(CalibrationStats::Load(p)); })
      .def("to_bytes", [](const CalibrationStats& s) { return py::bytes(s.Serialize()); })
      .def_static("from_bytes", [](const py::bytes& b) {
        std::string s = b;
        return Unwrap(CalibrationStats::Deserialize(s, "<bytes>"));
      });

  c.def("per_channel_min_max", [](const py::array& a, int axis) {
    auto r = Unwrap(calib::PerChannelMinMax(ArrayToTensor(AsFloat(a)), axis));
    std::vector<std::pair<float, float>> out;
    for (auto& cr : r) out.emplace_back(cr.min, cr.max);
    return out;
  }, py::arg("array"), py::arg("axis"));

  // ------------------------------------------------------------------ calibrators and quant math
  c.def("compute_quant_params",
        [](double lo, double hi, int bits, bool is_signed, bool symmetric, bool narrow_range) {
          return ParamsDict(Unwrap(quant::ComputeQuantParams(lo, hi, {bits, is_signed, symmetric, narrow_range})));
        },
        py::arg("lo"), py::arg("hi"), py::arg("bits") = 8, py::arg("signed") = false,
        py::arg("symmetric") = false, py::arg("narrow_range") = false);
  c.def("calibrate",
        [](const HistogramObserver& h, const std::string& method, int bits, bool is_signed, bool symmetric,
           bool narrow_range, double percentile) {
          calib::CalibratorOptions o;
          o.method = Unwrap(calib::ParseCalibrationMethod(method));
          o.spec = {bits, is_signed, symmetric, narrow_range};
          o.percentile = percentile;
          auto r = Unwrap(calib::Calibrate(h, o));
          py::dict d = ParamsDict(r.params);
          d["lo"] = r.lo;
          d["hi"] = r.hi;
          d["expected_mse"] = r.expected_mse;
          return d;
        },
        py::arg("observer"), py::arg("method"), py::arg("bits") = 8, py::arg("signed") = false,
        py::arg("symmetric") = false, py::arg("narrow_range") = false, py::arg("percentile") = 99.999);
  c.def("histogram_quant_error",
        [](const HistogramObserver& h, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
          return calib::HistogramQuantError(h, Params(scale, zp, qmin, qmax));
        },
        py::arg("observer"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"), py::arg("qmax"));
  c.def("quantize",
        [](const py::array& a, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
          auto f = AsFloat(a);
          py::array_t<int32_t> out(std::vector<py::ssize_t>(f.shape(), f.shape() + f.ndim()));
          quant::QuantParams p = Params(scale, zp, qmin, qmax);
          std::vector<int64_t> dims{static_cast<int64_t>(f.size())};
          Check(quant::QuantizeArray({f.data(), static_cast<size_t>(f.size())}, dims, -1, {&p, 1},
                                     {out.mutable_data(), static_cast<size_t>(f.size())}));
          return out;
        },
        py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"), py::arg("qmax"));
  c.def("fake_quantize",
        [](const py::array& a, py::array_t<float> scales, py::array_t<int32_t> zps, int32_t qmin,
           int32_t qmax, int axis) {
          auto f = AsFloat(a);
          if (scales.size() != zps.size()) throw py::value_error("scales and zero points differ in size");
          std::vector<quant::QuantParams> ps;
          for (py::ssize_t i = 0; i < scales.size(); ++i)
            ps.push_back(Params(scales.at(i), zps.at(i), qmin, qmax));
          std::vector<int64_t> dims(f.shape(), f.shape() + f.ndim());
          py::array_t<float> out(std::vector<py::ssize_t>(f.shape(), f.shape() + f.ndim()));
          Check(quant::FakeQuantizeArray({f.data(), static_cast<size_t>(f.size())}, dims, axis, ps,
                                         {out.mutable_data(), static_cast<size_t>(f.size())}));
          return out;
        },
        py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("qmin"), py::arg("qmax"),
        py::arg("axis") = 0);
  c.def("quantize_weight",
        [](const py::array& a, int bits, bool per_channel, int axis, const std::string& method,
           bool narrow_range) {
          quant::WeightQuantOptions o;
          o.bits = bits;
          o.per_channel = per_channel;
          o.axis = axis;
          o.narrow_range = narrow_range;
          if (method == "minmax") o.method = quant::WeightScaleMethod::kMinMax;
          else if (method == "mse") o.method = quant::WeightScaleMethod::kMse;
          else throw py::value_error("method must be 'minmax' or 'mse'");
          auto r = Unwrap(quant::QuantizeWeight(ArrayToTensor(AsFloat(a)), o));
          py::array_t<float> scales(std::vector<py::ssize_t>{static_cast<py::ssize_t>(r.params.size())});
          for (size_t i = 0; i < r.params.size(); ++i) scales.mutable_at(i) = r.params[i].scale;
          return py::make_tuple(TensorToArray(r.q), scales, r.sqnr_db);
        },
        py::arg("weight"), py::arg("bits") = 8, py::arg("per_channel") = true, py::arg("axis") = 0,
        py::arg("method") = "minmax", py::arg("narrow_range") = true);
  c.def("quantize_bias",
        [](const py::array& b, float input_scale, py::array_t<float> weight_scales) {
          std::vector<float> ws(weight_scales.data(), weight_scales.data() + weight_scales.size());
          auto r = Unwrap(quant::QuantizeBias(ArrayToTensor(AsFloat(b)), input_scale, ws));
          py::array_t<float> s(std::vector<py::ssize_t>{static_cast<py::ssize_t>(r.scales.size())});
          for (size_t i = 0; i < r.scales.size(); ++i) s.mutable_at(i) = r.scales[i];
          return py::make_tuple(TensorToArray(r.q), s, r.saturated);
        },
        py::arg("bias"), py::arg("input_scale"), py::arg("weight_scales"));
  c.def("sqnr", [](const py::array& a, const py::array& b) {
    auto x = AsFloat(a), y = AsFloat(b);
    return quant::Sqnr({x.data(), static_cast<size_t>(x.size())}, {y.data(), static_cast<size_t>(y.size())});
  });
}

}  // namespace onnxq::python
