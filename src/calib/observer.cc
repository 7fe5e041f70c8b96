#include "onnxq/calib/observer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "onnxq/base/file.h"
#include "onnxq/base/thread_pool.h"

namespace onnxq::calib {

namespace {

constexpr char kHistMagic[8] = {'O', 'Q', 'H', 'I', 'S', 'T', '0', '1'};
constexpr char kStatsMagic[8] = {'O', 'Q', 'S', 'T', 'A', 'T', 'S', '1'};

// floor(v / 2^e) for a float value v; exact (power-of-two scaling in double).
int64_t FloorIndex(double v, int e) { return static_cast<int64_t>(std::floor(std::ldexp(v, -e))); }

// Min, max and a non-finite flag in one branch-free pass (8 independent accumulators so that the
// compiler vectorizes it).
void ScanRange(const float* x, int64_t n, float* out_min, float* out_max, bool* bad) {
  constexpr int L = 8;
  float mn[L], mx[L];
  float chk[L];
  for (int l = 0; l < L; ++l) {
    mn[l] = std::numeric_limits<float>::infinity();
    mx[l] = -std::numeric_limits<float>::infinity();
    chk[l] = 0.0f;
  }
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    for (int l = 0; l < L; ++l) {
      float v = x[i + l];
      mn[l] = v < mn[l] ? v : mn[l];
      mx[l] = v > mx[l] ? v : mx[l];
      chk[l] += v * 0.0f;  // stays 0 unless some v is NaN or +-Inf (then NaN)
    }
  }
  float m0 = mn[0], m1 = mx[0], c = 0.0f;
  for (int l = 0; l < L; ++l) {
    m0 = std::min(m0, mn[l]);
    m1 = std::max(m1, mx[l]);
    c += chk[l];
  }
  for (; i < n; ++i) {
    m0 = std::min(m0, x[i]);
    m1 = std::max(m1, x[i]);
    c += x[i] * 0.0f;
  }
  *out_min = m0;
  *out_max = m1;
  *bad = !(c == 0.0f);
}

template <typename T>
void PutLE(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian host (x86-64 / aarch64)
  out->append(b, sizeof(T));
}

class Reader {
 public:
  Reader(std::string_view b, const std::string& src) : b_(b), src_(src) {}
  template <typename T>
  Status Get(T* v) {
    if (b_.size() - pos_ < sizeof(T)) return InvalidArgument(src_, ": truncated calibration statistics");
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetBytes(size_t n, std::string_view* v) {
    if (b_.size() - pos_ < n) return InvalidArgument(src_, ": truncated calibration statistics");
    *v = b_.substr(pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  std::string_view b_;
  const std::string& src_;
  size_t pos_ = 0;
};

}  // namespace

HistogramObserver::HistogramObserver(int num_bins) : num_bins_(num_bins) {
  if (num_bins_ != 0) num_bins_ = std::clamp(num_bins_, kMinBins, kMaxBins);
  counts_.assign(static_cast<size_t>(num_bins_), 0);
}

double HistogramObserver::bin_width() const { return std::ldexp(1.0, exponent_); }

double HistogramObserver::bin_edge(int64_t j) const {
  return std::ldexp(static_cast<double>(first_ + j), exponent_);
}

int HistogramObserver::FitExponent(double lo, double hi) const {
  int e = exponent_;
  double span = hi - lo;
  if (span > 0) {
    // The fitting exponent satisfies 2^e >= span / num_bins, so this start never overshoots it.
    int guess = static_cast<int>(std::floor(std::log2(span / num_bins_))) - 1;
    e = std::max(e, guess);
  }
  e = std::clamp(e, kMinExponent, kMaxExponent);
  for (; e < kMaxExponent; ++e)
    if (FloorIndex(hi, e) - FloorIndex(lo, e) + 1 <= num_bins_) break;
  return e;
}

void HistogramObserver::Regrid(int e, int64_t first) {
  assert(e >= exponent_);
  if (e == exponent_ && first == first_) return;
  std::vector<uint64_t> fresh(counts_.size(), 0);
  int shift = e - exponent_;
  for (size_t j = 0; j < counts_.size(); ++j) {
    if (!counts_[j]) continue;
    int64_t g = first_ + static_cast<int64_t>(j);
    int64_t g2 = shift >= 63 ? (g < 0 ? -1 : 0) : (g >> shift);  // arithmetic shift = floor
    int64_t k = g2 - first;
    assert(k >= 0 && k < num_bins_);
    fresh[static_cast<size_t>(k)] += counts_[j];
  }
  counts_.swap(fresh);
  exponent_ = e;
  first_ = first;
}

void HistogramObserver::AddIndices(const float* x, int64_t n, uint64_t* c) const {
  // y = x * 2^-e is exact; floor via truncation and a correction, all branch-free so the index
  // computation vectorizes. The scatter goes to 4 interleaved 16-bit sub-histograms (so that runs
  // of equal values, like the zeros after a ReLU, do not serialise on one counter, and the 4 x 4096
  // counters stay within L1), flushed into the 64-bit counts before any of them can overflow.
  const float inv = std::ldexp(1.0f, -exponent_);
  const int32_t base = static_cast<int32_t>(first_);
  const int32_t last = num_bins_ - 1;
  constexpr int64_t kChunk = 1024;
  constexpr int64_t kFlushEvery = 4 * 65535 - 4 * 65535 % kChunk;  // whole chunks, <= 65535 per lane
  int32_t idx[kChunk];
  const bool use_lanes = n >= 4 * static_cast<int64_t>(num_bins_);
  thread_local std::vector<uint16_t> lanes;
  if (use_lanes) lanes.assign(4 * static_cast<size_t>(num_bins_), 0);
  uint16_t* l0 = use_lanes ? lanes.data() : nullptr;
  uint16_t* l1 = l0 ? l0 + num_bins_ : nullptr;
  uint16_t* l2 = l1 ? l1 + num_bins_ : nullptr;
  uint16_t* l3 = l2 ? l2 + num_bins_ : nullptr;
  int64_t since_flush = 0;
  auto flush = [&] {
    for (int j = 0; j < num_bins_; ++j) {
      c[j] += uint64_t{l0[j]} + l1[j] + l2[j] + l3[j];
      l0[j] = l1[j] = l2[j] = l3[j] = 0;
    }
    since_flush = 0;
  };
  for (int64_t start = 0; start < n; start += kChunk) {
    int64_t m = std::min(kChunk, n - start);
    const float* xs = x + start;
    for (int64_t k = 0; k < m; ++k) {
      float y = xs[k] * inv;
      int32_t t = static_cast<int32_t>(y);
      t -= static_cast<int32_t>(y < static_cast<float>(t));
      t -= base;
      t = t < 0 ? 0 : t;  // only guards against an invariant bug; never taken
      t = t > last ? last : t;
      idx[k] = t;
    }
    if (use_lanes) {
      int64_t k = 0;
      for (; k + 4 <= m; k += 4) {
        ++l0[idx[k]];
        ++l1[idx[k + 1]];
        ++l2[idx[k + 2]];
        ++l3[idx[k + 3]];
      }
      for (; k < m; ++k) ++l0[idx[k]];  // the tail (< 4) only in the last chunk
      since_flush += m;
      if (since_flush >= kFlushEvery) flush();
    } else {
      for (int64_t k = 0; k < m; ++k) ++c[idx[k]];
    }
  }
  if (use_lanes) flush();
}

Status HistogramObserver::Update(const float* x, int64_t n, ThreadPool* pool) {
  if (n <= 0) return Status::Ok();
  // Below this size a parallel split costs more than it saves.
  constexpr int64_t kParallelGrain = int64_t{1} << 16;
  const bool parallel = pool && pool->num_threads() > 1 && n >= 2 * kParallelGrain;
  float bmin = std::numeric_limits<float>::infinity(), bmax = -bmin;
  bool bad = false;
  if (parallel) {
    std::mutex mu;
    pool->ParallelFor(n, [&](int64_t b, int64_t e) {
      float mn, mx;
      bool bd;
      ScanRange(x + b, e - b, &mn, &mx, &bd);
      std::lock_guard<std::mutex> lock(mu);
      bmin = std::min(bmin, mn);
      bmax = std::max(bmax, mx);
      bad = bad || bd;
    }, kParallelGrain);
  } else {
    ScanRange(x, n, &bmin, &bmax, &bad);
  }
  if (bad) {
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i]))
        return InvalidArgument("non-finite value ", x[i], " at index ", i, " of the observed data");
  }
  float new_min = count_ ? std::min(min_, bmin) : bmin;
  float new_max = count_ ? std::max(max_, bmax) : bmax;
  if (num_bins_ > 0) {
    double lo = std::min(0.0, double(new_min)), hi = std::max(0.0, double(new_max));
    int e = FitExponent(lo, hi);
    Regrid(e, FloorIndex(lo, e));
    if (parallel) {
      // Each chunk counts privately; integer sums make the result independent of the split.
      std::mutex mu;
      pool->ParallelFor(n, [&](int64_t b, int64_t e2) {
        std::vector<uint64_t> part(counts_.size(), 0);
        AddIndices(x + b, e2 - b, part.data());
        std::lock_guard<std::mutex> lock(mu);
        for (size_t j = 0; j < part.size(); ++j) counts_[j] += part[j];
      }, kParallelGrain);
    } else {
      AddIndices(x, n, counts_.data());
    }
  }
  min_ = new_min;
  max_ = new_max;
  count_ += n;
  return Status::Ok();
}

Status HistogramObserver::Update(const Tensor& t, ThreadPool* pool) {
  if (t.dtype() == DataType::kFloat) return Update(t.data<float>(), t.numel(), pool);
  if (t.dtype() != DataType::kDouble && t.dtype() != DataType::kFloat16 &&
      t.dtype() != DataType::kBFloat16)
    return Unsupported("cannot observe a tensor of element type ", DataTypeName(t.dtype()));
  constexpr int64_t kChunk = 4096;
  std::vector<float> buf(static_cast<size_t>(std::min(kChunk, t.numel())));
  for (int64_t s = 0; s < t.numel(); s += kChunk) {
    int64_t m = std::min(kChunk, t.numel() - s);
    for (int64_t k = 0; k < m; ++k) buf[k] = static_cast<float>(t.GetAsDouble(s + k));
    Status st = Update(buf.data(), m);
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

Status HistogramObserver::Merge(const HistogramObserver& o) {
  if (o.num_bins_ != num_bins_)
    return InvalidArgument("cannot merge histograms of ", num_bins_, " and ", o.num_bins_, " bins");
  if (o.count_ == 0) return Status::Ok();
  if (count_ == 0) {
    *this = o;
    return Status::Ok();
  }
  float new_min = std::min(min_, o.min_), new_max = std::max(max_, o.max_);
  if (num_bins_ > 0) {
    double lo = std::min(0.0, double(new_min)), hi = std::max(0.0, double(new_max));
    int e = std::max(FitExponent(lo, hi), o.exponent_);
    // Fit is monotone in e, so the larger exponent of the two still fits; re-check the canonical
    // choice (the smallest fitting e >= both) for exact equality with a single pass.
    HistogramObserver other = o;
    int e2 = other.FitExponent(lo, hi);
    e = std::max(e, e2);
    int64_t first = FloorIndex(lo, e);
    Regrid(e, first);
    other.Regrid(e, first);
    for (size_t j = 0; j < counts_.size(); ++j) counts_[j] += other.counts_[j];
  }
  min_ = new_min;
  max_ = new_max;
  count_ += o.count_;
  return Status::Ok();
}

bool HistogramObserver::operator==(const HistogramObserver& o) const {
  if (num_bins_ != o.num_bins_ || count_ != o.count_) return false;
  if (count_ == 0) return true;
  return exponent_ == o.exponent_ && first_ == o.first_ && min_ == o.min_ && max_ == o.max_ &&
         counts_ == o.counts_;
}

std::string HistogramObserver::Serialize() const {
  std::string out(kHistMagic, 8);
  PutLE<uint32_t>(&out, static_cast<uint32_t>(num_bins_));
  PutLE<int32_t>(&out, exponent_);
  PutLE<int64_t>(&out, first_);
  PutLE<float>(&out, min_);
  PutLE<float>(&out, max_);
  PutLE<int64_t>(&out, count_);
  uint32_t b = 0, e = static_cast<uint32_t>(counts_.size());
  while (b < e && counts_[b] == 0) ++b;
  while (e > b && counts_[e - 1] == 0) --e;
  PutLE<uint32_t>(&out, b);
  PutLE<uint32_t>(&out, e);
  for (uint32_t j = b; j < e; ++j) PutLE<uint64_t>(&out, counts_[j]);
  return out;
}

StatusOr<HistogramObserver> HistogramObserver::Deserialize(std::string_view bytes,
                                                           const std::string& source) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kHistMagic, 8) != 0)
    return InvalidArgument(source, ": not an onnxq histogram (bad magic)");
  Reader r(bytes.substr(8), source);
  uint32_t nb = 0, b = 0, e = 0;
  int32_t exp = 0;
  int64_t first = 0, count = 0;
  float mn = 0, mx = 0;
  ONNXQ_RETURN_IF_ERROR(r.Get(&nb));
  ONNXQ_RETURN_IF_ERROR(r.Get(&exp));
  ONNXQ_RETURN_IF_ERROR(r.Get(&first));
  ONNXQ_RETURN_IF_ERROR(r.Get(&mn));
  ONNXQ_RETURN_IF_ERROR(r.Get(&mx));
  ONNXQ_RETURN_IF_ERROR(r.Get(&count));
  ONNXQ_RETURN_IF_ERROR(r.Get(&b));
  ONNXQ_RETURN_IF_ERROR(r.Get(&e));
  auto bad = [&](const char* what) {
    return InvalidArgument(source, ": corrupt histogram: ", what);
  };
  if (nb != 0 && (nb < uint32_t(kMinBins) || nb > uint32_t(kMaxBins))) return bad("bin count out of range");
  if (exp < kMinExponent || exp > kMaxExponent) return bad("bin exponent out of range");
  if (count < 0) return bad("negative count");
  if (b > e || e > nb) return bad("bin range out of bounds");
  HistogramObserver h(static_cast<int>(nb));
  for (uint32_t j = b; j < e; ++j) ONNXQ_RETURN_IF_ERROR(r.Get(&h.counts_[j]));
  if (!r.done()) return bad("trailing bytes");
  if (count > 0) {
    if (!std::isfinite(mn) || !std::isfinite(mx) || mn > mx) return bad("invalid min/max");
    if (nb > 0) {
      double lo = std::min(0.0, double(mn)), hi = std::max(0.0, double(mx));
      if (first != FloorIndex(lo, exp) || FloorIndex(hi, exp) - first + 1 > int64_t(nb))
        return bad("grid does not match min/max");
      if (exp > kMinExponent && FloorIndex(hi, exp - 1) - FloorIndex(lo, exp - 1) + 1 <= int64_t(nb))
        return bad("grid is not canonical");
      uint64_t total = 0;
      for (uint64_t c : h.counts_) {
        if (total + c < total) return bad("count overflow");
        total += c;
      }
      if (total != static_cast<uint64_t>(count)) return bad("bin counts do not sum to the count");
    }
  } else if (b != e) {
    return bad("empty histogram with counts");
  }
  h.exponent_ = count > 0 ? exp : kMinExponent;
  h.first_ = count > 0 ? first : 0;
  h.min_ = mn;
  h.max_ = mx;
  h.count_ = count;
  return h;
}

StatusOr<std::vector<ChannelRange>> PerChannelMinMax(const Tensor& t, int axis) {
  if (t.dtype() != DataType::kFloat)
    return Unsupported("per-channel min/max needs float32, got ", DataTypeName(t.dtype()));
  int rank = static_cast<int>(t.rank());
  int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    return InvalidArgument("axis ", axis, " out of range for shape ", DimsToString(t.dims()));
  int64_t outer = 1, inner = 1, ch = t.dims()[a];
  for (int i = 0; i < a; ++i) outer *= t.dims()[i];
  for (int i = a + 1; i < rank; ++i) inner *= t.dims()[i];
  std::vector<ChannelRange> r(static_cast<size_t>(ch));
  std::vector<bool> seen(static_cast<size_t>(ch), false);
  const float* x = t.data<float>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < ch; ++c) {
      const float* p = x + (o * ch + c) * inner;
      if (inner == 0) continue;
      float mn, mx;
      bool bad;
      ScanRange(p, inner, &mn, &mx, &bad);
      if (bad) {
        for (int64_t k = 0; k < inner; ++k)
          if (!std::isfinite(p[k]))
            return InvalidArgument("non-finite value ", p[k], " at index ", (o * ch + c) * inner + k);
      }
      auto& cr = r[static_cast<size_t>(c)];
      cr.min = seen[c] ? std::min(cr.min, mn) : mn;
      cr.max = seen[c] ? std::max(cr.max, mx) : mx;
      seen[c] = true;
    }
  return r;
}

Status CalibrationStats::Merge(const CalibrationStats& o) {
  if (o.fingerprint != fingerprint)
    return InvalidArgument("cannot merge calibration statistics of different models or settings "
                           "(fingerprint '", fingerprint, "' vs '", o.fingerprint, "')");
  for (const auto& [name, h] : tensors)
    if (!o.tensors.count(name)) return InvalidArgument("statistics to merge lack tensor '", name, "'");
  for (const auto& [name, h] : o.tensors)
    if (!tensors.count(name)) return InvalidArgument("statistics to merge have extra tensor '", name, "'");
  // Validate every pair first so that a failure leaves *this unchanged.
  for (const auto& [name, h] : o.tensors)
    if (tensors.at(name).num_bins() != h.num_bins())
      return InvalidArgument("tensor '", name, "': histograms of ", tensors.at(name).num_bins(),
                             " and ", h.num_bins(), " bins cannot be merged");
  for (const auto& [name, h] : o.tensors) {
    Status s = tensors.at(name).Merge(h);
    if (!s.ok()) return s.Prepend("tensor '" + name + "'");
  }
  return Status::Ok();
}

std::string CalibrationStats::Serialize() const {
  std::string out(kStatsMagic, 8);
  PutLE<uint32_t>(&out, static_cast<uint32_t>(fingerprint.size()));
  out += fingerprint;
  PutLE<uint32_t>(&out, static_cast<uint32_t>(tensors.size()));
  for (const auto& [name, h] : tensors) {
    PutLE<uint32_t>(&out, static_cast<uint32_t>(name.size()));
    out += name;
    std::string blob = h.Serialize();
    PutLE<uint64_t>(&out, blob.size());
    out += blob;
  }
  return out;
}

StatusOr<CalibrationStats> CalibrationStats::Deserialize(std::string_view bytes,
                                                         const std::string& source) {
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kStatsMagic, 8) != 0)
    return InvalidArgument(source, ": not an onnxq calibration statistics file (bad magic)");
  Reader r(bytes.substr(8), source);
  CalibrationStats s;
  uint32_t fp_len = 0, n = 0;
  std::string_view v;
  ONNXQ_RETURN_IF_ERROR(r.Get(&fp_len));
  ONNXQ_RETURN_IF_ERROR(r.GetBytes(fp_len, &v));
  s.fingerprint = std::string(v);
  ONNXQ_RETURN_IF_ERROR(r.Get(&n));
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t name_len = 0;
    uint64_t blob_len = 0;
    ONNXQ_RETURN_IF_ERROR(r.Get(&name_len));
    ONNXQ_RETURN_IF_ERROR(r.GetBytes(name_len, &v));
    std::string name(v);
    ONNXQ_RETURN_IF_ERROR(r.Get(&blob_len));
    ONNXQ_RETURN_IF_ERROR(r.GetBytes(static_cast<size_t>(blob_len), &v));
    ONNXQ_ASSIGN_OR_RETURN(HistogramObserver h,
                           HistogramObserver::Deserialize(v, source + " (tensor '" + name + "')"));
    if (!s.tensors.emplace(name, std::move(h)).second)
      return InvalidArgument(source, ": tensor '", name, "' appears twice");
  }
  if (!r.done()) return InvalidArgument(source, ": trailing bytes after the calibration statistics");
  return s;
}

Status CalibrationStats::Save(const std::string& path) const {
  return AtomicWriteFile(path, Serialize());
}

StatusOr<CalibrationStats> CalibrationStats::Load(const std::string& path) {
  ONNXQ_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return Deserialize(bytes, path);
}

}  // namespace onnxq::calib
