// Test (ctest cuda_emu_kernels, test/unit/cuda/CMakeLists.txt): runs the decode-path kernels
// (kernels/gemv_q16 with 1, 2 and 4 rows per warp and split k, kernels/gemv with half-warp rows,
// kernels/norm, kernels/rope) on the host through this folder's emulator (emu.h, emu.cpp) and
// compares them with float64 references, so their logic is checked on every machine, CI
// included (small shapes, about a second; the GPU unit tests under build.sh take minutes). It
// checks logic (indexing, tails, shuffle trees, rows per warp), not the device's float
// rounding, which the GPU conformance tests (test_cuda_kernels.cpp) cover.
#include "emu.h"

#include <functional>

#include "common/quant/quant.h"

float emu_h2f(unsigned short h) { return ktx::fp16_to_fp32(h); }
void emu_run_block(unsigned nt, const std::function<void()>& fn);  // emu.cpp

#include "gemv/kernel.cuh"
#include "gemv_q16/kernel.cuh"
#include "norm/kernel.cuh"
#include "rope/kernel.cuh"

#include <algorithm>
#include <random>
#include <string>

using namespace ktx;

namespace emu {
// Every block of a (gx, gy) grid in turn, bx threads each.
template <typename F>
void launch(unsigned gx, unsigned gy, unsigned bx, F f) {
  gridDim.x = gx, gridDim.y = gy, gridDim.z = 1;
  for (unsigned by = 0; by < gy; ++by)
    for (unsigned b = 0; b < gx; ++b) {
      blockIdx.x = b, blockIdx.y = by, blockIdx.z = 0;
      emu_run_block(bx, f);
    }
}
}  // namespace emu

static int fails = 0, checks = 0;
#define CHECK(c, ...) do { ++checks; if (!(c)) { if (fails++ < 30) { std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); std::fprintf(stderr, __VA_ARGS__); std::fprintf(stderr, "\n"); } } } while (0)

static std::vector<float> randf(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

using Q16Fn = void (*)(const ktx_u8*, ktx_i64, const short*, const float2*, float*, ktx_i64, int, int, int);
struct Q16Entry { GGMLType type; int nt, rw; Q16Fn fn; };
// rw 0: the split-k variant (one row per block, its four warps splitting k).
#define E(T, TN, NT) {GGMLType::T, NT, 1, ktx_gemv16_##TN##_##NT}, {GGMLType::T, NT, 2, ktx_gemv16_##TN##_##NT##_r2}, \
    {GGMLType::T, NT, 4, ktx_gemv16_##TN##_##NT##_r4}, {GGMLType::T, NT, 0, ktx_gemv16_##TN##_##NT##_k4}
static const Q16Entry kQ16[] = {E(Q4_K, q4_k, 1), E(Q4_K, q4_k, 4), E(Q5_K, q5_k, 1), E(Q5_K, q5_k, 4),
                                E(Q6_K, q6_k, 1), E(Q6_K, q6_k, 4), E(Q8_0, q8_0, 1), E(Q8_0, q8_0, 4)};

static void test_gemv16() {
  const int rows = 37;
  for (int k : {512, 4352})  // 4352: 17 super-blocks, shares of 5/4/4/4 under split k
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K, GGMLType::Q8_0}) {
    const size_t rb = *ggml_row_bytes(type, k);
    std::vector<uint8_t> w(rb * rows);
    const auto wf = randf(size_t(k) * rows, 0.05f, 3);
    for (int r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * k, w.data() + r * rb, k);
    std::vector<float> deq(size_t(k) * rows);
    for (int r = 0; r < rows; ++r) dequantize_row(type, w.data() + r * rb, deq.data() + r * k, k);
    for (int n_tok : {1, 3}) {
      const auto x = randf(size_t(n_tok) * k, 1.0f, 5 + n_tok);
      std::vector<short> q(size_t(KTX_Q16_MAX_TOKENS) * k, 0);
      std::vector<float2> s(size_t(KTX_Q16_MAX_TOKENS) * (k / 32), float2{0, 0});
      emu::launch((k + 255) / 256, n_tok, 256, [&] { ktx_quantize_x16(x.data(), k, k, q.data(), s.data()); });
      std::vector<float> y1;
      for (const Q16Entry& e : kQ16) {
        if (e.type != type || e.nt < n_tok || (e.nt == 4 && n_tok == 1)) continue;
        const int ld_y = rows + 2;
        std::vector<float> y(size_t(n_tok) * ld_y, -5.0f);
        const unsigned grid = e.rw == 0 ? rows : (rows + 4 * e.rw - 1) / (4 * e.rw);
        emu::launch(grid, 1, 128, [&] { e.fn(w.data(), rb, q.data(), s.data(), y.data(), ld_y, rows, k, n_tok); });
        for (int t = 0; t < n_tok; ++t)
          for (int r = 0; r < ld_y; ++r) {
            const float got = y[size_t(t) * ld_y + r];
            if (r >= rows) { CHECK(got == -5.0f, "%s rw %d wrote past rows", ggml_type_name(uint32_t(type)).c_str(), e.rw); continue; }
            double sum = 0, sa = 0;
            for (int i = 0; i < k; ++i) {
              const double xv = double(s[size_t(t) * (k / 32) + i / 32].x) * q[size_t(t) * k + i];
              sum += deq[size_t(r) * k + i] * xv;
              sa += std::fabs(deq[size_t(r) * k + i] * xv);
            }
            CHECK(std::fabs(got - sum) <= 1e-5 * sa + 1e-6, "%s nt %d rw %d tok %d row %d: %g vs %g",
                  ggml_type_name(uint32_t(type)).c_str(), e.nt, e.rw, t, r, got, sum);
          }
        if (e.rw == 1 && e.nt == (n_tok == 1 ? 1 : 4)) y1 = y;
        else if (e.rw != 0 && !y1.empty() && e.nt == (n_tok == 1 ? 1 : 4))
          CHECK(y == y1, "%s rw %d differs from rw 1 in bits", ggml_type_name(uint32_t(type)).c_str(), e.rw);
      }
    }
  }
}

static void test_gemv_float() {
  struct C { GGMLType type; int k, rows; void (*fn)(const ktx_u8*, ktx_i64, const float*, ktx_i64, float*, ktx_i64, int, int, int); };
  const C cases[] = {{GGMLType::Q5_0, 128, 7, ktx_gemv_q5_0}, {GGMLType::Q8_0, 96, 3, ktx_gemv_q8_0},
                     {GGMLType::Q8_0, 32, 1, ktx_gemv_q8_0}, {GGMLType::Q4_K, 512, 5, ktx_gemv_q4_k}};
  for (const C& c : cases) {
    const size_t rb = *ggml_row_bytes(c.type, c.k);
    std::vector<uint8_t> w(rb * c.rows);
    const auto wf = randf(size_t(c.k) * c.rows, 0.05f, 9);
    for (int r = 0; r < c.rows; ++r) quantize_row(c.type, wf.data() + r * c.k, w.data() + r * rb, c.k);
    std::vector<float> deq(size_t(c.k) * c.rows);
    for (int r = 0; r < c.rows; ++r) dequantize_row(c.type, w.data() + r * rb, deq.data() + r * c.k, c.k);
    const int n_tok = 2, ld_x = c.k + 3, ld_y = c.rows + 1;
    const auto x = randf(size_t(n_tok) * ld_x, 1.0f, 11);
    std::vector<float> y(size_t(n_tok) * ld_y, -5.0f);
    const int rpw = c.k / 32 <= 4 ? 2 : 1;
    emu::launch((c.rows + 4 * rpw - 1) / (4 * rpw), 1, 128, [&] { c.fn(w.data(), rb, x.data(), ld_x, y.data(), ld_y, c.rows, c.k, n_tok); });
    for (int t = 0; t < n_tok; ++t)
      for (int r = 0; r < ld_y; ++r) {
        const float got = y[size_t(t) * ld_y + r];
        if (r >= c.rows) { CHECK(got == -5.0f, "float gemv wrote past rows"); continue; }
        double sum = 0, sa = 0;
        for (int i = 0; i < c.k; ++i) {
          sum += double(deq[size_t(r) * c.k + i]) * x[size_t(t) * ld_x + i];
          sa += std::fabs(double(deq[size_t(r) * c.k + i]) * x[size_t(t) * ld_x + i]);
        }
        CHECK(std::fabs(got - sum) <= 1e-5 * sa + 1e-6, "float gemv %s k %d row %d tok %d: %g vs %g",
              ggml_type_name(uint32_t(c.type)).c_str(), c.k, r, t, got, sum);
      }
  }
}

static void test_norm() {
  for (int n : {7168, 128, 100, 36}) {
    for (int pad : {0, 1}) {
      const int rows = 3, ld = n + (pad ? 1 : 4);
      const auto x = randf(size_t(rows) * ld, 1.5f, 13 + n);
      const auto wt = randf(size_t(n), 1.0f, 17);
      std::vector<float> y(size_t(rows) * ld, -5.0f);
      const int threads = std::clamp((n / 4 + 31) / 32 * 32, 32, KTX_NORM_THREADS);
      emu::launch(rows, 1, threads, [&] { ktx_rms_norm(x.data(), ld, wt.data(), y.data(), ld, n, 1e-6f); });
      for (int r = 0; r < rows; ++r) {
        double ss = 0;
        for (int i = 0; i < n; ++i) ss += double(x[size_t(r) * ld + i]) * x[size_t(r) * ld + i];
        const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
        for (int i = 0; i < ld; ++i) {
          const float got = y[size_t(r) * ld + i];
          if (i >= n) { CHECK(got == -5.0f, "norm wrote past n"); continue; }
          const double want = x[size_t(r) * ld + i] * inv * wt[i];
          CHECK(std::fabs(got - want) <= 1e-5 * std::fabs(want) + 1e-6, "norm n %d ld %d row %d i %d: %g vs %g", n, ld, r, i, got, want);
        }
      }
    }
  }
}

static void test_rope() {
  struct C { int n_heads, stride, offset, n_rot; };
  for (const C c : {C{128, 192, 128, 64}, C{1, 64, 0, 64}, C{300, 64, 0, 64}, C{8, 128, 0, 128}}) {
    for (int neox : {0, 1}) {
      const int n_tok = 2, ld = c.n_heads * c.stride + 5, half = c.n_rot / 2;
      auto x = randf(size_t(n_tok) * ld, 1.0f, 19);
      const auto x0 = x;
      std::vector<float> inv(half);
      for (int i = 0; i < half; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / c.n_rot));
      const int pos = 37;
      const int slices = std::clamp((c.n_heads * half + 127) / 128, 1, 64);
      emu::launch(n_tok, slices, 128, [&] { ktx_rope(x.data(), ld, c.n_heads, c.stride, c.offset, c.n_rot, neox, inv.data(), &pos, 3); });
      for (int t = 0; t < n_tok; ++t) {
        std::vector<float> want(x0.begin() + size_t(t) * ld, x0.begin() + size_t(t + 1) * ld);
        for (int h = 0; h < c.n_heads; ++h)
          for (int i = 0; i < half; ++i) {
            const double a = double(pos + 3 + t) * double(inv[i]);
            const float cs = static_cast<float>(std::cos(a)), sn = static_cast<float>(std::sin(a));
            float* p = want.data() + h * c.stride + c.offset + (neox ? i : 2 * i);
            float* q = p + (neox ? half : 1);
            const float v0 = *p, v1 = *q;
            *p = v0 * cs - v1 * sn;
            *q = v0 * sn + v1 * cs;
          }
        for (int i = 0; i < ld; ++i)
          CHECK(std::fabs(x[size_t(t) * ld + i] - want[i]) <= 1e-6f * (1 + std::fabs(want[i])),
                "rope heads %d neox %d tok %d elem %d: %g vs %g", c.n_heads, neox, t, i, x[size_t(t) * ld + i], want[i]);
      }
    }
  }
}

int main() {
  test_gemv16();
  std::printf("gemv16 done (%d checks, %d failures)\n", checks, fails);
  test_gemv_float();
  std::printf("float gemv done (%d checks, %d failures)\n", checks, fails);
  test_norm();
  std::printf("rms_norm done (%d checks, %d failures)\n", checks, fails);
  test_rope();
  std::printf("rope done (%d checks, %d failures)\n", checks, fails);
  std::printf("%s\n", fails ? "FAILED" : "all passed");
  return fails ? 1 : 0;
}
