#include "onnxq/calib/observer.h"

#include "onnxq/base/thread_pool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>

namespace onnxq::calib {
namespace {

std::vector<float> Samples(int n, uint32_t seed, float scale, float shift) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng) * scale + shift;
  return v;
}

uint64_t Sum(std::span<const uint64_t> c) { return std::accumulate(c.begin(), c.end(), uint64_t{0}); }

TEST(CalibHistogram, HandComputedSmall) {
  HistogramObserver h(16);
  std::vector<float> v{0, 0, 0, 1, 1, 2.5f};
  ASSERT_TRUE(h.Update(v.data(), 6).ok());
  // [0, 2.5] needs 2.5 / w < 16 bins: w = 0.25 (index 10), w = 0.125 would need index 20.
  EXPECT_EQ(h.exponent(), -2);
  EXPECT_EQ(h.first_index(), 0);
  EXPECT_EQ(h.counts()[0], 3u);
  EXPECT_EQ(h.counts()[4], 2u);
  EXPECT_EQ(h.counts()[10], 1u);
  EXPECT_EQ(Sum(h.counts()), 6u);
  EXPECT_EQ(h.min(), 0.0f);
  EXPECT_EQ(h.max(), 2.5f);
  // A negative value: the grid grows to [-4, 4) at w = 0.5.
  float m = -3.9f;
  ASSERT_TRUE(h.Update(&m, 1).ok());
  EXPECT_EQ(h.exponent(), -1);
  EXPECT_EQ(h.first_index(), -8);
  EXPECT_EQ(h.bin_edge(0), -4.0);
  EXPECT_EQ(h.counts()[0], 1u);      // -3.9 in [-4, -3.5)
  EXPECT_EQ(h.counts()[8], 3u);      // zeros in [0, 0.5)
  EXPECT_EQ(h.counts()[10], 2u);     // ones in [1, 1.5)
  EXPECT_EQ(h.counts()[13], 1u);     // 2.5 in [2.5, 3)
  EXPECT_EQ(h.count(), 7);
}

TEST(CalibHistogram, MatchesDirectBinningOfAllData) {
  auto v = Samples(100000, 1, 2.0f, 0.7f);
  HistogramObserver h;
  ASSERT_TRUE(h.Update(v.data(), static_cast<int64_t>(v.size())).ok());
  EXPECT_EQ(h.min(), *std::min_element(v.begin(), v.end()));
  EXPECT_EQ(h.max(), *std::max_element(v.begin(), v.end()));
  // Independent binning in double with the final grid.
  std::vector<uint64_t> ref(static_cast<size_t>(h.num_bins()), 0);
  for (float x : v) {
    int64_t g = static_cast<int64_t>(std::floor(double(x) / h.bin_width()));
    int64_t j = g - h.first_index();
    ASSERT_GE(j, 0);
    ASSERT_LT(j, h.num_bins());
    ++ref[static_cast<size_t>(j)];
  }
  EXPECT_TRUE(std::equal(ref.begin(), ref.end(), h.counts().begin()));
  // At least half of the bins span the data range.
  double used = (double(h.max()) - std::min(0.0, double(h.min()))) / h.bin_width();
  EXPECT_GE(used, h.num_bins() / 2.0);
}

TEST(CalibHistogram, IndependentOfBatchSplitAndShardMerging) {
  // Data whose range grows over time (the hard case for growing histograms).
  std::vector<float> v;
  for (int k = 0; k < 6; ++k) {
    auto part = Samples(20000, 10 + k, 0.1f * float(1 << (2 * k)), k % 2 ? 0.5f : -0.3f);
    v.insert(v.end(), part.begin(), part.end());
  }
  HistogramObserver one;
  ASSERT_TRUE(one.Update(v.data(), static_cast<int64_t>(v.size())).ok());
  std::mt19937 rng(4);
  for (int trial = 0; trial < 5; ++trial) {
    HistogramObserver batched;
    size_t pos = 0;
    while (pos < v.size()) {
      size_t n = std::min(v.size() - pos, size_t{1} + rng() % 30000);
      ASSERT_TRUE(batched.Update(v.data() + pos, static_cast<int64_t>(n)).ok());
      pos += n;
    }
    EXPECT_TRUE(batched == one) << "trial " << trial;
  }
  // Three shards in different orders, merged: identical to one pass.
  size_t a = v.size() / 5, b = v.size() / 2;
  HistogramObserver s1, s2, s3;
  ASSERT_TRUE(s1.Update(v.data(), static_cast<int64_t>(a)).ok());
  ASSERT_TRUE(s2.Update(v.data() + a, static_cast<int64_t>(b - a)).ok());
  ASSERT_TRUE(s3.Update(v.data() + b, static_cast<int64_t>(v.size() - b)).ok());
  HistogramObserver m1 = s3;
  ASSERT_TRUE(m1.Merge(s1).ok());
  ASSERT_TRUE(m1.Merge(s2).ok());
  EXPECT_TRUE(m1 == one);
  HistogramObserver m2;
  ASSERT_TRUE(m2.Merge(s2).ok());
  HistogramObserver s13 = s1;
  ASSERT_TRUE(s13.Merge(s3).ok());
  ASSERT_TRUE(m2.Merge(s13).ok());
  EXPECT_TRUE(m2 == one);
  // Serialized shards merge the same way.
  auto r1 = HistogramObserver::Deserialize(s1.Serialize());
  auto r2 = HistogramObserver::Deserialize(s2.Serialize());
  auto r3 = HistogramObserver::Deserialize(s3.Serialize());
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  ASSERT_TRUE(r1->Merge(*r2).ok());
  ASSERT_TRUE(r1->Merge(*r3).ok());
  EXPECT_TRUE(*r1 == one);
}

TEST(CalibHistogram, ParallelUpdateIsIdentical) {
  auto v = Samples(1 << 19, 21, 3.0f, 1.0f);
  HistogramObserver serial, parallel;
  ThreadPool pool(2);
  for (size_t pos = 0; pos < v.size(); pos += 200000) {
    int64_t n = static_cast<int64_t>(std::min<size_t>(200000, v.size() - pos));
    ASSERT_TRUE(serial.Update(v.data() + pos, n).ok());
    ASSERT_TRUE(parallel.Update(v.data() + pos, n, &pool).ok());
  }
  EXPECT_TRUE(serial == parallel);
  v[300000] = std::nanf("");
  HistogramObserver before = parallel;
  Status s = parallel.Update(v.data(), static_cast<int64_t>(v.size()), &pool);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("index 300000"), std::string::npos);
  EXPECT_TRUE(parallel == before);
}

TEST(CalibHistogram, RefusesNonFiniteWithoutChangingState) {
  HistogramObserver h;
  std::vector<float> v{1, 2, 3};
  ASSERT_TRUE(h.Update(v.data(), 3).ok());
  HistogramObserver before = h;
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    std::vector<float> w{0.5f, 100.0f, bad, 4};
    Status s = h.Update(w.data(), 4);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("index 2"), std::string::npos) << s.message();
    EXPECT_TRUE(h == before);
  }
}

TEST(CalibHistogram, ExtremesAndMinMaxOnlyMode) {
  HistogramObserver h(64);
  std::vector<float> v{std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                       std::numeric_limits<float>::denorm_min(), 0.0f};
  ASSERT_TRUE(h.Update(v.data(), 4).ok());
  EXPECT_EQ(Sum(h.counts()), 4u);
  HistogramObserver zeros;
  std::vector<float> z(1000, 0.0f);
  ASSERT_TRUE(zeros.Update(z.data(), 1000).ok());
  EXPECT_EQ(zeros.counts()[0], 1000u);
  HistogramObserver mm(0);
  ASSERT_TRUE(mm.Update(v.data(), 4).ok());
  EXPECT_FALSE(mm.has_histogram());
  EXPECT_EQ(mm.max(), std::numeric_limits<float>::max());
  EXPECT_EQ(mm.count(), 4);
  auto rt = HistogramObserver::Deserialize(mm.Serialize());
  ASSERT_TRUE(rt.ok());
  EXPECT_TRUE(*rt == mm);
  EXPECT_FALSE(mm.Merge(h).ok());  // different bin counts
  auto t = Tensor::Create(DataType::kFloat16, {3});
  ASSERT_TRUE(t.ok());
  t->SetFromDouble(0, -2.0);
  t->SetFromDouble(1, 0.5);
  t->SetFromDouble(2, 8.0);
  HistogramObserver hf;
  ASSERT_TRUE(hf.Update(*t).ok());
  EXPECT_EQ(hf.min(), -2.0f);
  EXPECT_EQ(hf.max(), 8.0f);
  EXPECT_FALSE(hf.Update(Tensor::Int64({1}, std::vector<int64_t>{1})).ok());
}

TEST(CalibHistogram, DeserializeRejectsCorruption) {
  auto v = Samples(1000, 2, 1.0f, 0.0f);
  HistogramObserver h;
  ASSERT_TRUE(h.Update(v.data(), 1000).ok());
  std::string b = h.Serialize();
  EXPECT_FALSE(HistogramObserver::Deserialize(b.substr(0, b.size() - 1), "x.stats").ok());
  EXPECT_FALSE(HistogramObserver::Deserialize(b + "z", "x.stats").ok());
  std::string bad_count = b;
  bad_count[b.size() - 1] ^= 1;  // last bin count changes: the sum no longer matches
  auto r = HistogramObserver::Deserialize(bad_count, "x.stats");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("x.stats"), std::string::npos);
  std::string bad_exp = b;
  bad_exp[12] ^= 1;  // exponent
  EXPECT_FALSE(HistogramObserver::Deserialize(bad_exp, "x.stats").ok());
  EXPECT_FALSE(HistogramObserver::Deserialize("nonsense", "x.stats").ok());
}

TEST(CalibPerChannel, HandComputed) {
  auto t = Tensor::Float({2, 3}, std::vector<float>{1, -2, 3, -4, 5, 0});
  auto r0 = PerChannelMinMax(t, 0);
  ASSERT_TRUE(r0.ok());
  ASSERT_EQ(r0->size(), 2u);
  EXPECT_EQ((*r0)[0].min, -2);
  EXPECT_EQ((*r0)[0].max, 3);
  EXPECT_EQ((*r0)[1].min, -4);
  EXPECT_EQ((*r0)[1].max, 5);
  auto r1 = PerChannelMinMax(t, -1);
  ASSERT_TRUE(r1.ok());
  ASSERT_EQ(r1->size(), 3u);
  EXPECT_EQ((*r1)[1].min, -2);
  EXPECT_EQ((*r1)[1].max, 5);
  EXPECT_EQ((*r1)[2].min, 0);
  EXPECT_FALSE(PerChannelMinMax(t, 2).ok());
}

TEST(CalibStats, MergeSaveLoad) {
  CalibrationStats a, b;
  a.fingerprint = b.fingerprint = "model:abc";
  auto v = Samples(5000, 3, 1.0f, 0.0f);
  ASSERT_TRUE(a.tensors["x"].Update(v.data(), 2500).ok());
  ASSERT_TRUE(a.tensors["y"].Update(v.data(), 100).ok());
  ASSERT_TRUE(b.tensors["x"].Update(v.data() + 2500, 2500).ok());
  ASSERT_TRUE(b.tensors["y"].Update(v.data() + 100, 100).ok());
  std::string dir = std::filesystem::temp_directory_path() / ("onnxq_stats_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(b.Save(dir + "/b.stats").ok());
  auto lb = CalibrationStats::Load(dir + "/b.stats");
  ASSERT_TRUE(lb.ok()) << lb.status().ToString();
  ASSERT_TRUE(a.Merge(*lb).ok());
  HistogramObserver all;
  ASSERT_TRUE(all.Update(v.data(), 5000).ok());
  EXPECT_TRUE(a.tensors["x"] == all);
  EXPECT_EQ(a.tensors["y"].count(), 200);

  CalibrationStats other = b;
  other.fingerprint = "model:def";
  EXPECT_FALSE(a.Merge(other).ok());
  CalibrationStats missing = b;
  missing.tensors.erase("y");
  HistogramObserver ax = a.tensors["x"];
  Status s = a.Merge(missing);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'y'"), std::string::npos);
  EXPECT_TRUE(a.tensors["x"] == ax);  // unchanged after a failed merge
  std::string bytes = b.Serialize();
  EXPECT_FALSE(CalibrationStats::Deserialize(bytes.substr(0, bytes.size() - 3), "s").ok());
  auto nf = CalibrationStats::Load(dir + "/nope.stats");
  ASSERT_FALSE(nf.ok());
  EXPECT_NE(nf.status().message().find("nope.stats"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace onnxq::calib
