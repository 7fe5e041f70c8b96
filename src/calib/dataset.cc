#include "onnxq/calib/dataset.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <unordered_set>

#include "onnxq/base/file.h"
#include "onnxq/base/npy.h"
#include "onnxq/base/thread_pool.h"

namespace onnxq::calib {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsImageName(const std::string& name) {
  std::string l = Lower(name);
  auto ends = [&](const char* e) {
    size_t n = std::strlen(e);
    return l.size() > n && l.compare(l.size() - n, n, e) == 0;
  };
  return ends(".jpg") || ends(".jpeg") || ends(".png");
}

bool IsNpyName(const std::string& name) {
  std::string l = Lower(name);
  return l.size() > 4 && l.compare(l.size() - 4, 4, ".npy") == 0;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

Status ApplyWindow(int64_t total, int64_t skip, int64_t count, const std::string& what,
                   int64_t* begin, int64_t* end) {
  if (skip < 0) return InvalidArgument("skip must be >= 0, got ", skip);
  if (total == 0) return InvalidArgument(what, " has no samples");
  if (skip >= total)
    return InvalidArgument("skip ", skip, " leaves no samples: ", what, " has ", total);
  int64_t avail = total - skip;
  if (count == 0) return InvalidArgument("sample count must be positive, got 0");
  if (count > avail)
    return InvalidArgument("asked for ", count, " samples after skipping ", skip, ", but ", what,
                           " has only ", total);
  *begin = skip;
  *end = count < 0 ? total : skip + count;
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<LabelEntry>> ReadLabels(const std::string& path) {
  ONNXQ_ASSIGN_OR_RETURN(std::string text, ReadFile(path, int64_t{1} << 30));
  std::vector<LabelEntry> out;
  std::unordered_set<std::string> seen;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    size_t tab = line.find('\t');
    if (tab == std::string::npos)
      return InvalidArgument(path, ":", lineno, ": expected 'file<TAB>class_index', got '", line, "'");
    LabelEntry e;
    e.file = line.substr(0, tab);
    e.line = lineno;
    size_t tab2 = line.find('\t', tab + 1);
    std::string num = line.substr(tab + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab - 1);
    errno = 0;
    char* endp = nullptr;
    long long v = std::strtoll(num.c_str(), &endp, 10);
    if (num.empty() || *endp != '\0' || errno != 0 || v < 0)
      return InvalidArgument(path, ":", lineno, ": class index '", num, "' is not a non-negative integer");
    e.label = v;
    if (e.file.empty()) return InvalidArgument(path, ":", lineno, ": empty file name");
    if (!seen.insert(e.file).second)
      return InvalidArgument(path, ":", lineno, ": file '", e.file, "' is listed twice");
    out.push_back(std::move(e));
  }
  if (out.empty()) return InvalidArgument(path, ": no entries");
  return out;
}

StatusOr<std::unique_ptr<Dataset>> Dataset::Open(const std::string& path, const DatasetOptions& options) {
  ONNXQ_RETURN_IF_ERROR(options.preprocess.Validate());
  ONNXQ_RETURN_IF_ERROR(options.image_limits.Validate());
  std::unique_ptr<Dataset> ds(new Dataset());
  ds->options_ = options;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound("calibration data '", path, "' does not exist");
    return IoError("cannot access '", path, "': ", std::strerror(errno));
  }
  const PreprocessOptions& pp = options.preprocess;
  auto image_dims = [&]() -> std::vector<int64_t> {
    if (pp.crop_height == 0) return {};
    return pp.layout == ImageLayout::kNCHW ? std::vector<int64_t>{3, pp.crop_height, pp.crop_width}
                                           : std::vector<int64_t>{pp.crop_height, pp.crop_width, 3};
  };

  if (S_ISREG(st.st_mode)) {
    if (!options.labels.empty())
      return InvalidArgument("a labels file needs a folder of samples, but '", path, "' is a file");
    int64_t begin = 0, end = 0;
    if (IsNpyName(path)) {
      ONNXQ_ASSIGN_OR_RETURN(Tensor t, ReadNpy(path, options.limits));
      if (t.dtype() != options.dtype)
        return InvalidArgument(path, ": array has dtype ", DataTypeName(t.dtype()), ", expected ",
                               DataTypeName(options.dtype));
      if (t.rank() < 1) return InvalidArgument(path, ": a stacked .npy needs a leading sample dimension");
      std::vector<int64_t> sdims(t.dims().begin() + 1, t.dims().end());
      if (!options.sample_shape.empty() && sdims != options.sample_shape)
        return InvalidArgument(path, ": samples have shape ", DimsToString(sdims), ", expected ",
                               DimsToString(options.sample_shape), " (array shape ",
                               DimsToString(t.dims()), ", first dim = samples)");
      ONNXQ_RETURN_IF_ERROR(ApplyWindow(t.dims()[0], options.skip, options.count, path, &begin, &end));
      ds->kind_ = Kind::kNpyStack;
      ds->sample_dims_ = sdims;
      ds->stack_ = std::move(t);
      for (int64_t i = begin; i < end; ++i) ds->files_.push_back(path);
      ds->labels_.clear();
      // Remember which rows of the stack the window selects.
      ds->options_.skip = begin;
      return ds;
    }
    if (IsImageName(path)) {
      ONNXQ_RETURN_IF_ERROR(ApplyWindow(1, options.skip, options.count, path, &begin, &end));
      ds->kind_ = Kind::kImages;
      ds->files_.push_back(path);
      ds->sample_dims_ = image_dims();
      return ds;
    }
    return InvalidArgument("'", path, "' is neither a folder, a .npy file nor a .jpg/.jpeg/.png image");
  }
  if (!S_ISDIR(st.st_mode)) return InvalidArgument("'", path, "' is neither a file nor a folder");

  std::string labels_path = options.labels;
  if (labels_path.empty() && PathExists(JoinPath(path, "labels.tsv"))) labels_path = JoinPath(path, "labels.tsv");

  std::vector<std::string> names;
  std::vector<int64_t> labels;
  if (!labels_path.empty()) {
    ONNXQ_ASSIGN_OR_RETURN(std::vector<LabelEntry> entries, ReadLabels(labels_path));
    for (const auto& e : entries) {
      auto resolved = ResolvePathInside(path, e.file);
      if (!resolved.ok())
        return Status(resolved.status()).Prepend(labels_path + ":" + std::to_string(e.line));
      struct stat fs{};
      if (::stat(resolved->c_str(), &fs) != 0 || !S_ISREG(fs.st_mode))
        return NotFound(labels_path, ":", e.line, ": '", e.file, "' is not a file in '", path, "'");
      if (!IsImageName(e.file) && !IsNpyName(e.file))
        return InvalidArgument(labels_path, ":", e.line, ": '", e.file,
                               "' is neither a .jpg/.jpeg/.png image nor a .npy file");
      names.push_back(*resolved);
      labels.push_back(e.label);
    }
  } else {
    std::error_code ec;
    std::filesystem::directory_iterator it(path, ec);
    if (ec) return IoError("cannot list '", path, "': ", ec.message());
    for (const auto& entry : it) {
      std::string name = entry.path().filename().string();
      if (!IsImageName(name) && !IsNpyName(name)) continue;
      std::error_code ec2;
      if (!entry.is_regular_file(ec2)) continue;
      names.push_back(JoinPath(path, name));
    }
    std::sort(names.begin(), names.end());
  }
  size_t images = std::count_if(names.begin(), names.end(), IsImageName);
  if (names.empty())
    return InvalidArgument("'", path, "' contains no .jpg/.jpeg/.png images and no .npy files");
  if (images != 0 && images != names.size())
    return InvalidArgument("'", path, "' mixes images and .npy files; use one kind per folder");
  int64_t begin = 0, end = 0;
  ONNXQ_RETURN_IF_ERROR(ApplyWindow(static_cast<int64_t>(names.size()), options.skip, options.count,
                                    "'" + path + "'", &begin, &end));
  ds->files_.assign(names.begin() + begin, names.begin() + end);
  if (!labels.empty()) ds->labels_.assign(labels.begin() + begin, labels.begin() + end);
  if (images) {
    ds->kind_ = Kind::kImages;
    ds->sample_dims_ = image_dims();
  } else {
    ds->kind_ = Kind::kNpyFiles;
    ds->sample_dims_ = options.sample_shape;
    if (ds->sample_dims_.empty()) {
      // The first sample fixes the shape for all others.
      ONNXQ_ASSIGN_OR_RETURN(Tensor first, ReadNpy(ds->files_[0], options.limits));
      ds->sample_dims_ = first.dims();
    }
  }
  return ds;
}

std::string Dataset::source(int64_t i) const {
  if (kind_ == Kind::kNpyStack) return files_.at(static_cast<size_t>(i)) + "[" + std::to_string(options_.skip + i) + "]";
  return files_.at(static_cast<size_t>(i));
}

Status Dataset::CheckSample(const Tensor& t, int64_t i) const {
  int64_t bad = -1;
  if (t.HasNonFinite(&bad))
    return InvalidArgument(source(i), ": non-finite value (NaN or Inf) at element ", bad);
  return Status::Ok();
}

StatusOr<Tensor> Dataset::Load(int64_t i) const {
  if (i < 0 || i >= size()) return OutOfRange("sample index ", i, " out of range (", size(), " samples)");
  const std::string& file = files_[static_cast<size_t>(i)];
  switch (kind_) {
    case Kind::kImages: {
      ONNXQ_ASSIGN_OR_RETURN(Tensor t, LoadImage(file, options_.preprocess, options_.image_limits));
      return t;
    }
    case Kind::kNpyFiles: {
      ONNXQ_ASSIGN_OR_RETURN(Tensor t, ReadNpy(file, options_.limits));
      if (t.dtype() != options_.dtype)
        return InvalidArgument(file, ": array has dtype ", DataTypeName(t.dtype()), ", expected ",
                               DataTypeName(options_.dtype));
      if (t.dims() != sample_dims_) {
        std::vector<int64_t> batched = sample_dims_;
        batched.insert(batched.begin(), 1);
        if (t.dims() != batched)
          return InvalidArgument(file, ": array has shape ", DimsToString(t.dims()), ", expected ",
                                 DimsToString(sample_dims_), " (or with a leading batch dim of 1)");
        ONNXQ_ASSIGN_OR_RETURN(t, t.Reshaped(sample_dims_));
      }
      ONNXQ_RETURN_IF_ERROR(CheckSample(t, i));
      return t;
    }
    case Kind::kNpyStack: {
      size_t bytes = stack_.nbytes() / static_cast<size_t>(stack_.dims()[0]);
      const std::byte* p = stack_.raw() + static_cast<size_t>(options_.skip + i) * bytes;
      ONNXQ_ASSIGN_OR_RETURN(Tensor t, Tensor::FromBytes(stack_.dtype(), sample_dims_, p, bytes));
      ONNXQ_RETURN_IF_ERROR(CheckSample(t, i));
      return t;
    }
  }
  return Internal("unknown dataset kind");
}

StatusOr<Tensor> Dataset::LoadBatch(int64_t begin, int64_t n, ThreadPool* pool) const {
  if (n < 1 || begin < 0 || begin + n > size())
    return OutOfRange("batch [", begin, ", ", begin + n, ") out of range (", size(), " samples)");
  std::vector<Tensor> samples(static_cast<size_t>(n));
  std::vector<Status> errors(static_cast<size_t>(n));
  auto work = [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      auto t = Load(begin + k);
      if (t.ok())
        samples[static_cast<size_t>(k)] = std::move(t).value();
      else
        errors[static_cast<size_t>(k)] = t.status();
    }
  };
  if (pool && n > 1)
    pool->ParallelFor(n, work);
  else
    work(0, n);
  for (const Status& s : errors)  // the first error in sample order, whatever the thread timing
    if (!s.ok()) return s;
  const std::vector<int64_t>& d0 = samples[0].dims();
  for (int64_t k = 1; k < n; ++k)
    if (samples[static_cast<size_t>(k)].dims() != d0)
      return InvalidArgument(source(begin + k), ": sample has shape ",
                             DimsToString(samples[static_cast<size_t>(k)].dims()), " but ",
                             source(begin), " has ", DimsToString(d0),
                             "; a batch needs equal shapes (set a crop size)");
  std::vector<int64_t> dims = d0;
  dims.insert(dims.begin(), n);
  ONNXQ_ASSIGN_OR_RETURN(Tensor out, Tensor::Create(samples[0].dtype(), dims, options_.limits));
  std::byte* dst = out.mutable_raw();
  for (const Tensor& s : samples) {
    if (s.nbytes()) std::memcpy(dst, s.raw(), s.nbytes());
    dst += s.nbytes();
  }
  return out;
}

StatusOr<std::optional<Tensor>> BatchReader::Next() {
  if (next_ >= dataset_.size()) return std::optional<Tensor>();
  int64_t n = std::min(batch_size_, dataset_.size() - next_);
  ONNXQ_ASSIGN_OR_RETURN(Tensor t, dataset_.LoadBatch(next_, n, pool_));
  next_ += n;
  return std::optional<Tensor>(std::move(t));
}

}  // namespace onnxq::calib
