#include "onnxq/runtime/batch.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace onnxq {
namespace {

// Bytes of one row (index along dim 0); packed sub-byte types must split on whole bytes.
StatusOr<size_t> RowBytes(const Tensor& t) {
  if (t.rank() == 0) return InvalidArgument("a scalar has no batch dimension");
  if (t.dtype() == DataType::kString) return Unsupported("string tensors cannot be split into batches");
  const int64_t rows = t.dims()[0];
  if (rows == 0) return size_t{0};
  size_t row = 0;
  if (!StorageBytes(t.dtype(), t.numel() / rows, &row) || row * static_cast<size_t>(rows) != t.nbytes())
    return Unsupported(DataTypeName(t.dtype()), " tensor of shape ", DimsToString(t.dims()),
                       " does not split into whole-byte rows");
  return row;
}

}  // namespace

StatusOr<int64_t> FixedBatchSize(const Model& model) {
  const Graph& g = model.graph;
  int64_t fixed = 0;
  std::string first;
  for (ValueId v : g.RuntimeInputs()) {
    const Value& val = g.value(v);
    if (!val.shape || val.shape->rank() == 0 || !(*val.shape)[0].is_known()) continue;
    const int64_t b = (*val.shape)[0].value;
    if (b < 1) continue;
    if (fixed != 0 && b != fixed)
      return InvalidArgument("the model's inputs fix different batch sizes: '", first, "' ", fixed, ", '",
                             val.name(), "' ", b);
    fixed = b;
    first = val.name();
  }
  return fixed;
}

int64_t AlignToBatch(int64_t wanted, int64_t fixed) {
  if (fixed <= 0) return wanted;
  return std::max(fixed, wanted / fixed * fixed);
}

StatusOr<Tensor> SliceBatch(const Tensor& t, int64_t begin, int64_t n) {
  ONNXQ_ASSIGN_OR_RETURN(const size_t row, RowBytes(t));
  if (begin < 0 || n < 0 || begin + n > t.dims()[0])
    return OutOfRange("rows [", begin, ", ", begin + n, ") of a tensor of shape ", DimsToString(t.dims()));
  std::vector<int64_t> dims = t.dims();
  dims[0] = n;
  return Tensor::FromBytes(t.dtype(), std::move(dims), t.raw() + static_cast<size_t>(begin) * row,
                           static_cast<size_t>(n) * row);
}

StatusOr<Tensor> ConcatBatch(const std::vector<Tensor>& parts) {
  if (parts.empty()) return InvalidArgument("nothing to concatenate");
  if (parts.size() == 1) return parts.front();
  const Tensor& p0 = parts.front();
  std::vector<int64_t> dims = p0.dims();
  if (dims.empty()) return InvalidArgument("a scalar has no batch dimension to concatenate along");
  int64_t rows = 0;
  for (const Tensor& p : parts) {
    bool same = p.dtype() == p0.dtype() && p.rank() == p0.rank();
    for (size_t i = 1; same && i < p.rank(); ++i) same = p.dims()[i] == dims[i];
    if (!same)
      return InvalidArgument("cannot concatenate ", DataTypeName(p.dtype()), " ", DimsToString(p.dims()), " with ",
                             DataTypeName(p0.dtype()), " ", DimsToString(p0.dims()), " along the batch dimension");
    rows += p.dims()[0];
  }
  dims[0] = rows;
  ONNXQ_ASSIGN_OR_RETURN(Tensor out, Tensor::Create(p0.dtype(), std::move(dims)));
  std::byte* dst = out.mutable_raw();
  for (const Tensor& p : parts) {
    ONNXQ_ASSIGN_OR_RETURN(const size_t row, RowBytes(p));
    const size_t bytes = row * static_cast<size_t>(p.dims()[0]);
    if (bytes > 0) std::memcpy(dst, p.raw(), bytes);
    dst += bytes;
  }
  return out;
}

}  // namespace onnxq
