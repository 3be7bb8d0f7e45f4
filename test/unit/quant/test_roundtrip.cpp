// quantize_row -> dequantize_row round trips. Bounds are per type and come from the format's
// resolution: a b-bit block quantizer with step s has rounding error <= s/2 per element, and
// s is the block's range over its number of levels (plus the coarser rounding of K-quant
// sub-block scales). Checked as a relative RMS over the row and as a worst element relative
// to its block's largest magnitude, on rows of several blocks and several distributions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/quant/quant.h"

namespace ktx {
namespace {

struct Bound {
  GGMLType type;
  double rel_rms;    // ||y - x|| / ||x|| over the row
  double block_max;  // max |y - x| / max |x| within each block of 256 (or 32)
};

// Uniform data: RMS of x is range/sqrt(12) and the rounding error RMS is step/sqrt(12), so
// rel_rms ~ 1/levels. Worst elements: affine formats err by at most step/2 (plus sub-block
// scale rounding for K-quants); symmetric ones (Q4_0, Q5_0, Q3_K, Q6_K) map the largest
// magnitude to the level -N, which has no +N twin, so an element of the opposite sign and the
// same magnitude clips by one whole step = max/N (1/8, 1/16, 1/4, 1/32).
const Bound kBounds[] = {
    {GGMLType::F32, 0.0, 0.0},        {GGMLType::F16, 1e-3, 1e-3},
    {GGMLType::BF16, 8e-3, 8e-3},     {GGMLType::Q8_0, 0.01, 0.006},
    {GGMLType::Q5_0, 0.05, 0.065},    {GGMLType::Q5_1, 0.05, 0.04},
    {GGMLType::Q4_0, 0.1, 0.13},      {GGMLType::Q4_1, 0.1, 0.08},
    {GGMLType::Q6_K, 0.025, 0.04},    {GGMLType::Q5_K, 0.05, 0.04},
    {GGMLType::Q4_K, 0.1, 0.08},      {GGMLType::Q3_K, 0.2, 0.3},
    {GGMLType::Q2_K, 0.4, 0.4},
};

struct Errors {
  double rel_rms = 0, block_max = 0;
};

Errors round_trip(GGMLType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  const auto bytes = ggml_row_bytes(t, n);
  EXPECT_TRUE(bytes.has_value()) << bytes.status().message();
  std::vector<uint8_t> q(*bytes);
  std::vector<float> y(x.size());
  quantize_row(t, x.data(), q.data(), n);
  dequantize_row(t, q.data(), y.data(), n);
  Errors e;
  double num = 0, den = 0;
  const int64_t blk = std::min<int64_t>(n, 256);
  for (int64_t b = 0; b < n; b += blk) {
    double amax = 0, emax = 0;
    for (int64_t i = b; i < b + blk; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
      emax = std::max(emax, std::fabs(static_cast<double>(y[i]) - x[i]));
      EXPECT_TRUE(std::isfinite(y[i]));
    }
    if (amax > 0) e.block_max = std::max(e.block_max, emax / amax);
  }
  for (int64_t i = 0; i < n; ++i) {
    num += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
    den += static_cast<double>(x[i]) * x[i];
  }
  e.rel_rms = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return e;
}

std::vector<float> make_row(int64_t n, int kind, std::mt19937& rng) {
  std::vector<float> x(static_cast<size_t>(n));
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    switch (kind) {
      case 0: x[i] = uni(rng); break;                       // symmetric
      case 1: x[i] = 0.3f + 0.2f * uni(rng); break;         // all positive, offset
      case 2: x[i] = -2.0f + 0.5f * uni(rng); break;        // all negative
      default: {
        // weight-like: gaussian with a per-32 block magnitude varying over 100x
        const float scale = std::pow(10.0f, static_cast<float>((i / 32) % 5) / 2.0f - 1.0f);
        x[i] = 0.02f * scale * gauss(rng);
      }
    }
  }
  return x;
}

TEST(RoundTrip, ErrorWithinFormatResolution) {
  std::mt19937 rng(7);
  for (const Bound& bd : kBounds) {
    const std::string name = ggml_type_name(static_cast<uint32_t>(bd.type));
    for (int64_t n : {256, 512, 1280, 4096}) {
      for (int kind = 0; kind < 4; ++kind) {
        const Errors e = round_trip(bd.type, make_row(n, kind, rng));
        EXPECT_LE(e.rel_rms, kind == 3 ? 2 * bd.rel_rms : bd.rel_rms)
            << name << " n=" << n << " kind=" << kind;
        EXPECT_LE(e.block_max, bd.block_max) << name << " n=" << n << " kind=" << kind;
      }
    }
  }
}

TEST(RoundTrip, ZeroAndConstantRows) {
  for (const Bound& bd : kBounds) {
    const std::string name = ggml_type_name(static_cast<uint32_t>(bd.type));
    const Errors zero = round_trip(bd.type, std::vector<float>(512, 0.0f));
    EXPECT_EQ(zero.rel_rms, 0.0) << name;  // all-zero input decodes to exact zeros
    for (float c : {1.0f, -3.0f}) {
      const Errors e = round_trip(bd.type, std::vector<float>(512, c));
      EXPECT_LE(e.rel_rms, std::max(bd.rel_rms, 1e-3)) << name << " constant " << c;
    }
  }
}

// Inputs that are exactly d*q on the format's grid (d a power of two, the extreme level
// present) must come back bit for bit from the symmetric legacy formats.
TEST(RoundTrip, GridValuesAreExact) {
  struct Grid {
    GGMLType type;
    int lo, hi;
  };
  std::mt19937 rng(3);
  for (const Grid g : {Grid{GGMLType::Q8_0, -127, 127}, Grid{GGMLType::Q4_0, -8, 7},
                       Grid{GGMLType::Q5_0, -16, 15}}) {
    std::vector<float> x(256);
    for (size_t i = 0; i < x.size(); ++i) {
      const float d = std::ldexp(1.0f, static_cast<int>(i / 32) % 7 - 4);
      const int q = (i % 32 == 0) ? (g.lo == -127 ? 127 : g.lo)
                                  : g.lo + static_cast<int>(rng() % (g.hi - g.lo + 1));
      x[i] = d * static_cast<float>(q);
    }
    std::vector<uint8_t> q(*ggml_row_bytes(g.type, 256));
    std::vector<float> y(256);
    quantize_row(g.type, x.data(), q.data(), 256);
    dequantize_row(g.type, q.data(), y.data(), 256);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(y[i], x[i]) << ggml_type_name(static_cast<uint32_t>(g.type)) << " element " << i;
    }
  }
}

}  // namespace
}  // namespace ktx
