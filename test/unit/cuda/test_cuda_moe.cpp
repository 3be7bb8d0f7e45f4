// Routed experts on the GPU (runtime/cuda/moe.h, kernels/moe/kernel.cuh) against a float64
// reference on the dequantized weights: a table of weight types (gate/up and down apart),
// expert counts, top-k, shapes with row tails (not whole 128-row tiles) and token tails (an
// expert with more than one 64-token tile, experts with no tokens, one token), strided input
// and output (nothing written past n_embd), and ids outside [0, n_expert), which drop their
// choice. Then ExpertStream: host ranges staged through pinned buffers into alternating slots,
// in order with their users. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/cuda/moe.h"
#include "test/unit/cuda/attn_test_util.h"

namespace ktx::cuda {
namespace {

using attn_test::download;
using attn_test::HostWeight;
using attn_test::make_weight;
using attn_test::upload;
using gpu_test::random_floats;

struct Case {
  GGMLType gate_up, down;
  int64_t E, K, D, F, T;
  bool bad_ids = false;  // some choices name no expert (-1, E): they are left out
  bool hot = false;      // every token's first choice is expert 0 (more than one token tile)
};

// Distinct experts per token (a router's top-k), in [0, E).
std::vector<int32_t> route(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < c.T; ++t) {
    std::vector<int32_t> e(static_cast<size_t>(c.E));
    std::iota(e.begin(), e.end(), 0);
    std::shuffle(e.begin(), e.end(), rng);
    if (c.hot) std::swap(e[0], *std::find(e.begin(), e.end(), 0));
    for (int64_t j = 0; j < c.K; ++j) ids.push_back(e[static_cast<size_t>(j)]);
  }
  if (c.bad_ids)
    for (size_t i = 0; i < ids.size(); i += 3) ids[i] = (i % 2) ? -1 : static_cast<int32_t>(c.E);
  return ids;
}

// out[t][d] in float64 from the dequantized weights; `round`: the tensor-core form's operands
// (weights, inputs and the hidden activations rounded to bf16).
std::vector<double> reference(const Case& c, const HostWeight& gate, const HostWeight& up,
                              const HostWeight& down, const std::vector<float>& x, int64_t ld_x,
                              const std::vector<int32_t>& ids, const std::vector<float>& wts,
                              bool round) {
  auto r = [&](float v) { return round ? double(gpu_test::bf16_round(v)) : double(v); };
  std::vector<double> out(static_cast<size_t>(c.T * c.D), 0.0), h(static_cast<size_t>(c.F));
  for (int64_t t = 0; t < c.T; ++t) {
    const float* xt = x.data() + t * ld_x;
    for (int64_t j = 0; j < c.K; ++j) {
      const int32_t e = ids[static_cast<size_t>(t * c.K + j)];
      if (e < 0 || e >= c.E) continue;
      for (int64_t f = 0; f < c.F; ++f) {
        double a = 0.0, b = 0.0;
        for (int64_t i = 0; i < c.D; ++i) {
          a += r(gate.row(e * c.F + f)[i]) * r(xt[i]);
          b += r(up.row(e * c.F + f)[i]) * r(xt[i]);
        }
        h[static_cast<size_t>(f)] = r(static_cast<float>(a / (1.0 + std::exp(-a)) * b));
      }
      for (int64_t d = 0; d < c.D; ++d) {
        double s = 0.0;
        for (int64_t f = 0; f < c.F; ++f) s += r(down.row(e * c.D + d)[f]) * h[static_cast<size_t>(f)];
        out[static_cast<size_t>(t * c.D + d)] += wts[static_cast<size_t>(t * c.K + j)] * s;
      }
    }
  }
  return out;
}

double rel_l2(const std::vector<float>& out, int64_t ld_out, const std::vector<double>& ref,
              int64_t T, int64_t D) {
  double err2 = 0.0, ref2 = 0.0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < D; ++d) {
      const double y = out[static_cast<size_t>(t * ld_out + d)], v = ref[static_cast<size_t>(t * D + d)];
      err2 += (y - v) * (y - v);
      ref2 += v * v;
    }
  return std::sqrt(err2 / std::max(ref2, 1e-30));
}

// Both forms: the float GEMMs against float64 (2e-5), the tensor-core ones against float64 of
// the bf16-rounded operands (5e-4: a hidden value on a rounding boundary may round the other
// way) and within their rounding's size of the exact result (1e-2).
TEST(CudaMoe, ExpertsMatchTheReferenceOverTypesShapesAndRoutes) {
  KTX_NEED_GPU(g);
  MoeKernels mk = MoeKernels::bind(g->lib);
  if (!mk.has(GGMLType::Q4_K)) GTEST_SKIP() << "no moe family in this build's code";
  const Case cases[] = {
      {GGMLType::Q4_K, GGMLType::Q6_K, 8, 2, 256, 256, 20},
      {GGMLType::Q8_0, GGMLType::Q8_0, 4, 4, 64, 96, 70},          // every expert every token
      {GGMLType::F16, GGMLType::BF16, 16, 1, 128, 160, 3},         // experts without tokens
      {GGMLType::Q5_K, GGMLType::Q4_0, 6, 3, 256, 288, 1},
      {GGMLType::Q4_K, GGMLType::Q5_0, 8, 1, 256, 64, 130, false, true},  // 3 token tiles
      {GGMLType::F32, GGMLType::Q4_K, 5, 2, 32, 256, 9, true},
  };
  for (const bool mma : {false, true}) {
    mk.set_mma(mma);
    if (mma && !mk.uses_mma(GGMLType::Q4_K)) {
      ADD_FAILURE() << "the moe family lacks its tensor-core GEMMs";
      continue;
    }
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(mma ? "mma " : "float ") +
                   ggml_type_name(static_cast<uint32_t>(c.gate_up)) + "/" +
                   ggml_type_name(static_cast<uint32_t>(c.down)) + " E " + std::to_string(c.E) +
                   " K " + std::to_string(c.K) + " D " + std::to_string(c.D) + " F " +
                   std::to_string(c.F) + " T " + std::to_string(c.T));
      const uint32_t seed = static_cast<uint32_t>(c.E * 131 + c.F + c.T);
      // Each tensor as the GGUF stores it: E matrices one after another.
      HostWeight gate = make_weight(c.gate_up, c.D, c.E * c.F, 0.08f, seed + 1);
      HostWeight up = make_weight(c.gate_up, c.D, c.E * c.F, 0.08f, seed + 2);
      HostWeight down = make_weight(c.down, c.F, c.E * c.D, 0.08f, seed + 3);
      auto mat = [](const HostWeight& w, int64_t rows) {
        return ExpertMatrix{w.type, w.dev.get(), rows, w.row_len, w.row_bytes, rows * w.row_bytes};
      };
      const ExpertWeights w{mat(gate, c.F), mat(up, c.F), mat(down, c.D), c.E};
      const int64_t ld_x = c.D + 3, ld_out = c.D + 5;
      const auto x = random_floats(static_cast<size_t>(c.T * ld_x), 1.0f, seed + 4);
      const std::vector<int32_t> ids = route(c, seed + 5);
      const auto wts = random_floats(ids.size(), 0.5f, seed + 6);
      auto dx = upload(x);
      auto di = upload(ids);
      auto dw = upload(wts);
      std::vector<float> out(static_cast<size_t>(c.T * ld_out), -7.0f);
      auto dout = upload(out);
      auto ws = MoeWorkspace::create(c.T * c.K, c.D, c.F, c.E);
      ASSERT_TRUE(ws) << ws.status().message();
      ASSERT_TRUE(mk.run(g->k, w, dx.as<float>(), ld_x, di.as<int32_t>(), dw.as<float>(), c.T,
                         c.K, dout.as<float>(), ld_out, *ws, nullptr));
      out = download<float>(dout, out.size());
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t d = 0; d < ld_out; ++d) {
          const float y = out[static_cast<size_t>(t * ld_out + d)];
          if (d >= c.D) {
            ASSERT_EQ(y, -7.0f) << "wrote past n_embd: token " << t << " column " << d;
          } else {
            ASSERT_TRUE(std::isfinite(y)) << "token " << t << " column " << d;
          }
        }
      const auto exact = reference(c, gate, up, down, x, ld_x, ids, wts, false);
      if (!mma) {
        EXPECT_LE(rel_l2(out, ld_out, exact, c.T, c.D), 2e-5) << "relative L2 error";
        continue;
      }
      const auto rounded = reference(c, gate, up, down, x, ld_x, ids, wts, true);
      EXPECT_LE(rel_l2(out, ld_out, rounded, c.T, c.D), 5e-4) << "vs the bf16-rounded reference";
      EXPECT_LE(rel_l2(out, ld_out, exact, c.T, c.D), 1e-2) << "vs the exact reference";
    }
  }
}

TEST(CudaMoe, WorkspaceAndShapeErrorsNameTheProblem) {
  KTX_NEED_GPU(g);
  const MoeKernels mk = MoeKernels::bind(g->lib);
  if (!mk.has(GGMLType::Q8_0)) GTEST_SKIP() << "no moe family in this build's code";
  HostWeight gate = make_weight(GGMLType::Q8_0, 64, 4 * 32, 0.1f, 1);
  HostWeight down = make_weight(GGMLType::Q8_0, 32, 4 * 64, 0.1f, 2);
  const ExpertMatrix gm{gate.type, gate.dev.get(), 32, 64, gate.row_bytes, 32 * gate.row_bytes};
  const ExpertMatrix dm{down.type, down.dev.get(), 64, 32, down.row_bytes, 64 * down.row_bytes};
  auto ws = MoeWorkspace::create(4, 64, 32, 4);
  ASSERT_TRUE(ws);
  const ExpertWeights w{gm, gm, dm, 4};
  auto many = mk.run(g->k, w, nullptr, 64, nullptr, nullptr, 3, 2, nullptr, 64, *ws, nullptr);
  ASSERT_FALSE(many);
  EXPECT_NE(many.message().find("6 pairs (the workspace holds 4)"), std::string::npos) << many.message();
  const ExpertWeights swapped{dm, gm, dm, 4};
  auto shape = mk.run(g->k, swapped, nullptr, 64, nullptr, nullptr, 1, 1, nullptr, 64, *ws, nullptr);
  ASSERT_FALSE(shape);
  EXPECT_NE(shape.message().find("gate is 64 x 32, expected 32 x 64"), std::string::npos) << shape.message();
  EXPECT_FALSE(MoeWorkspace::create(4, 64, 32, 5000)) << "more experts than the sort holds";
}

// Loads through two slots, each staged through the pinned ring (ranges larger than a staging
// buffer, split in several, at offsets in the slot, with 1 and 4 copy threads); each user (a
// device-to-device copy on the compute stream) sees its own load, never the next one, though
// the next load into its slot is enqueued right after it.
TEST(CudaMoe, ExpertStreamLoadsSlotsInOrderWithTheirUsers) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    GTEST_SKIP() << "no CUDA device: GPU test skipped";
  }
  const size_t bytes = ExpertStream::kStagingBytes * 5 / 2 + 4096 + 12;  // 3 staging chunks
  std::vector<std::vector<uint8_t>> src(5, std::vector<uint8_t>(bytes));
  for (size_t i = 0; i < src.size(); ++i)
    for (size_t j = 0; j < bytes; ++j) src[i][j] = static_cast<uint8_t>(j * 7 + i * 31 + (j >> 12));
  for (int threads : {1, 4}) {
    SCOPED_TRACE("copy threads " + std::to_string(threads));
    auto es = ExpertStream::create(bytes + 512, 2, threads);
    ASSERT_TRUE(es) << es.status().message();
    EXPECT_EQ((*es)->copy_threads(), threads);
    cudaStream_t compute = nullptr;
    ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
    std::vector<DeviceBuffer> seen;
    for (size_t i = 0; i < src.size(); ++i) {
      auto b = DeviceBuffer::alloc(bytes);
      ASSERT_TRUE(b) << b.status().message();
      seen.push_back(std::move(*b));
    }
    for (size_t i = 0; i < src.size(); ++i) {
      const int slot = static_cast<int>(i % 2);
      const size_t off = i % 2 ? 0 : 512;
      // Two ranges: the halves, the second first in the list.
      ASSERT_TRUE((*es)->load(slot, {{src[i].data() + bytes / 2, bytes - bytes / 2, off + bytes / 2},
                                     {src[i].data(), bytes / 2, off}}));
      ASSERT_TRUE((*es)->acquire(slot, compute));
      ASSERT_EQ(cudaMemcpyAsync(seen[i].get(), static_cast<char*>((*es)->slot(slot)) + off, bytes,
                                cudaMemcpyDeviceToDevice, compute), cudaSuccess);
      ASSERT_TRUE((*es)->release(slot, compute));
    }
    ASSERT_EQ(cudaStreamSynchronize(compute), cudaSuccess);
    for (size_t i = 0; i < src.size(); ++i) {
      std::vector<uint8_t> got(bytes);
      ASSERT_TRUE(seen[i].download(got.data(), bytes));
      EXPECT_TRUE(got == src[i]) << "user " << i;
    }
    EXPECT_EQ((*es)->loaded_bytes(), src.size() * bytes);
    auto past = (*es)->load(1, {{src[0].data(), bytes, 1024}});
    ASSERT_FALSE(past);
    EXPECT_NE(past.message().find("past a"), std::string::npos) << past.message();
    cudaStreamDestroy(compute);
  }
}

}  // namespace
}  // namespace ktx::cuda
