// Attention kernels (runtime/cpu/attention.h). The conformance tables run every kernel tier
// this CPU has (AVX-512, AVX2) against the plain twin reading the same cache type, over GQA and
// MLA shapes, cache lengths and call lengths chosen to hit every tail: rows that do not fill a
// register block, partial key blocks, causal limits inside a block, and decode calls that take
// the split-K path. The twin itself is checked, with an f32 cache, against softmax attention in
// double. Separate cases cover large-magnitude keys (softmax stability), thread-count
// independence, the KV element conversions and q8_0 rows (ggml blocks, widening, error).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "common/hw/cpu_features.h"
#include "common/quant/quant.h"
#include "common/util/rng.h"
#include "runtime/cpu/attention.h"
#include "runtime/cpu/attention_flash.h"

namespace ktx::cpu {
namespace {

constexpr KvType kTypes[] = {KvType::f32, KvType::f16, KvType::bf16, KvType::q8_0};

std::vector<float> random_floats(int64_t n, uint64_t seed, float amp = 1.0f) {
  Xoshiro256 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>((2.0 * rng.next_unit() - 1.0) * amp);
  return v;
}

// Cache of f.size() / cols rows of cols elements of type t holding the rounded values of f.
std::vector<uint8_t> make_cache(KvType t, const std::vector<float>& f, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(f.size()) / cols;
  const size_t rb = kv_row_bytes(t, cols);
  std::vector<uint8_t> c(static_cast<size_t>(rows) * rb);
  for (int64_t r = 0; r < rows; ++r) kv_store_row(t, f.data() + r * cols, c.data() + r * rb, cols);
  return c;
}

// max |a - b| / max |b|: outputs are convex combinations of cache rows, so relative to the
// output's scale is the meaningful error.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / std::max(den, 1e-30);
}

std::vector<const attn::Kernels*> tiers() {
  std::vector<const attn::Kernels*> out;
  const CpuIsa isa = detect_cpu_isa();
  for (IsaTier t : {IsaTier::avx512, IsaTier::avx2})
    if (const attn::Kernels* k = attn::kernels_for(t, isa)) out.push_back(k);
  return out;
}

// The reference loops cost n_head * n_tok * n_keys * (dk + dv): cases past this are left to
// the smaller shapes (which still run every n_past / n_tok).
constexpr double kRefBudget = 3e8;

struct GqaCase {
  GqaAttnDesc d;
  int64_t n_past, n_tok;
};

struct GqaData {
  std::vector<float> q;
  std::vector<uint8_t> k, v;
  int64_t q_stride;
};

GqaData gqa_data(const GqaCase& c, uint64_t seed, float k_amp = 1.0f) {
  const GqaAttnDesc& d = c.d;
  const int64_t n_pos = c.n_past + c.n_tok;
  GqaData g;
  g.q_stride = d.n_head * d.head_dim_k + 5;  // not dense: the stride is honoured
  g.q = random_floats(c.n_tok * g.q_stride, seed);
  g.k = make_cache(d.kv, random_floats(n_pos * d.n_head_kv * d.head_dim_k, seed + 1, k_amp),
                   d.n_head_kv * d.head_dim_k);
  g.v = make_cache(d.kv, random_floats(n_pos * d.n_head_kv * d.head_dim_v, seed + 2),
                   d.n_head_kv * d.head_dim_v);
  return g;
}

TEST(Attention, GqaFastMatchesTwin) {
  ThreadPool pool(2, 100);
  // (n_head, n_head_kv, head_dim_k, head_dim_v); the last two have widths that are not whole
  // vectors (widening tails, zero-padded K columns, the single-vector PV loop) nor whole q8_0
  // blocks (heads that start and end inside a block, padded last blocks).
  const int64_t shapes[][4] = {{4, 2, 64, 64},  {32, 4, 128, 128}, {16, 16, 80, 80},
                               {8, 1, 64, 64},  {6, 3, 72, 40},    {5, 5, 36, 20}};
  int n_cases = 0;
  double worst = 0;
  for (const auto& s : shapes)
    for (int64_t n_past : {0, 1, 17, 300})
      for (int64_t n_tok : {1, 3, 64, 129})
        for (KvType kv : kTypes) {
          const GqaAttnDesc d{s[0], s[1], s[2], s[3], 1.0f / std::sqrt(float(s[2])), kv};
          const double cost = double(d.n_head) * n_tok * (n_past + n_tok) * (s[2] + s[3]);
          if (cost > kRefBudget) continue;
          const GqaData g = gqa_data({d, n_past, n_tok}, 100 + n_cases);
          std::vector<float> ref(n_tok * d.n_head * d.head_dim_v);
          gqa_attention_ref(d, g.q.data(), g.q_stride, g.k.data(), g.v.data(), n_past, n_tok,
                            ref.data());
          for (const attn::Kernels* k : tiers()) {
            std::vector<float> out(ref.size(), NAN);
            attn::gqa_attention_with(*k, pool, d, g.q.data(), g.q_stride, g.k.data(),
                                     g.v.data(), n_past, n_tok, out.data());
            const double e = rel_err(out, ref);
            worst = std::max(worst, e);
            ASSERT_LE(e, 2e-5) << k->name << " heads " << s[0] << "/" << s[1] << " hd " << s[2]
                               << "/" << s[3]
                               << " n_past " << n_past << " n_tok " << n_tok << " "
                               << kv_type_name(kv);
          }
          ++n_cases;
        }
  std::printf("gqa: %d cases x %zu tiers, worst relative error %.3g\n", n_cases, tiers().size(),
              worst);
}

struct MlaCase {
  MlaAttnDesc d;
  int64_t n_past, n_tok;
};

// q rows as the engine holds them: per head nope (here kv_lora wide, unused) then rope.
struct MlaData {
  std::vector<float> q_abs, q;
  std::vector<uint8_t> c, kpe;
  int64_t q_stride, head_stride, pe_off;
};

MlaData mla_data(const MlaCase& m, uint64_t seed, float k_amp = 1.0f) {
  const MlaAttnDesc& d = m.d;
  const int64_t n_pos = m.n_past + m.n_tok;
  MlaData g;
  g.head_stride = 8 + d.rope;
  g.pe_off = 8;
  g.q_stride = d.n_head * g.head_stride;
  g.q_abs = random_floats(m.n_tok * d.n_head * d.kv_lora, seed);
  g.q = random_floats(m.n_tok * g.q_stride, seed + 1);
  g.c = make_cache(d.kv, random_floats(n_pos * d.kv_lora, seed + 2, k_amp), d.kv_lora);
  g.kpe = make_cache(d.kv, random_floats(n_pos * d.rope, seed + 3, k_amp), d.rope);
  return g;
}

void run_mla_ref(const MlaCase& m, const MlaData& g, std::vector<float>& out) {
  out.assign(m.n_tok * m.d.n_head * m.d.kv_lora, 0.0f);
  mla_attention_ref(m.d, g.q_abs.data(), g.q.data() + g.pe_off, g.q_stride, g.head_stride,
                    g.c.data(), g.kpe.data(), m.n_past, m.n_tok, out.data());
}

void run_mla_fast(const attn::Kernels& k, ThreadPool& pool, const MlaCase& m, const MlaData& g,
                  std::vector<float>& out) {
  out.assign(m.n_tok * m.d.n_head * m.d.kv_lora, NAN);
  attn::mla_attention_with(k, pool, m.d, g.q_abs.data(), g.q.data() + g.pe_off, g.q_stride,
                           g.head_stride, g.c.data(), g.kpe.data(), m.n_past, m.n_tok,
                           out.data());
}

TEST(Attention, MlaFastMatchesTwin) {
  ThreadPool pool(2, 100);
  // (n_head, kv_lora, rope): DeepSeek-V3's and smaller ones, then widths off the vector grid
  // (k_pe lands mid-vector, latent and rope widths leave widening tails and part q8_0 blocks).
  const int64_t shapes[][3] = {{4, 64, 32}, {1, 64, 32},  {3, 48, 16}, {16, 512, 64},
                               {128, 512, 64}, {5, 40, 12}, {2, 24, 4}};
  int n_cases = 0;
  double worst = 0;
  for (const auto& s : shapes)
    for (int64_t n_past : {0, 1, 17, 300})
      for (int64_t n_tok : {1, 3, 64, 129})
        for (KvType kv : kTypes) {
          const MlaAttnDesc d{s[0], s[1], s[2], 1.0f / std::sqrt(float(s[1] / 4 + s[2])), kv};
          const double cost = double(d.n_head) * n_tok * (n_past + n_tok) * (2 * s[1] + s[2]);
          if (cost > kRefBudget) continue;
          const MlaCase m{d, n_past, n_tok};
          const MlaData g = mla_data(m, 500 + n_cases);
          std::vector<float> ref, out;
          run_mla_ref(m, g, ref);
          for (const attn::Kernels* k : tiers()) {
            run_mla_fast(*k, pool, m, g, out);
            const double e = rel_err(out, ref);
            worst = std::max(worst, e);
            ASSERT_LE(e, 2e-5) << k->name << " heads " << s[0] << " kv_lora " << s[1]
                               << " rope " << s[2] << " n_past " << n_past << " n_tok "
                               << n_tok << " " << kv_type_name(kv);
          }
          ++n_cases;
        }
  std::printf("mla: %d cases x %zu tiers, worst relative error %.3g\n", n_cases, tiers().size(),
              worst);
}

// Softmax attention of one query row in double: the oracle of the twins.
void attend_double(const std::vector<double>& scores, const float* v, int64_t v_stride,
                   int64_t width, double* o) {
  double mx = -INFINITY, sum = 0;
  for (double s : scores) mx = std::max(mx, s);
  std::fill(o, o + width, 0.0);
  for (size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(scores[j] - mx);
    sum += p;
    for (int64_t i = 0; i < width; ++i) o[i] += p * v[j * v_stride + i];
  }
  for (int64_t i = 0; i < width; ++i) o[i] /= sum;
}

// GQA in double over f32 rows; k_amp scales the keys (large = near one-hot softmax).
void gqa_vs_double(const GqaCase& c, float k_amp, double tol) {
  const GqaAttnDesc& d = c.d;
  ASSERT_EQ(d.kv, KvType::f32);
  const GqaData g = gqa_data(c, 77, k_amp);
  const auto* k = reinterpret_cast<const float*>(g.k.data());
  const auto* v = reinterpret_cast<const float*>(g.v.data());
  const int64_t hdk = d.head_dim_k, hdv = d.head_dim_v, group = d.n_head / d.n_head_kv;
  const int64_t nk = d.n_head_kv * hdk, nv = d.n_head_kv * hdv;
  std::vector<float> want(c.n_tok * d.n_head * hdv), ref(want.size()), fast(want.size());
  for (int64_t t = 0; t < c.n_tok; ++t)
    for (int64_t h = 0; h < d.n_head; ++h) {
      const int64_t kvh = h / group;
      std::vector<double> sc(c.n_past + t + 1);
      for (size_t j = 0; j < sc.size(); ++j) {
        double s = 0;
        for (int64_t i = 0; i < hdk; ++i)
          s += double(g.q[t * g.q_stride + h * hdk + i]) * k[j * nk + kvh * hdk + i];
        sc[j] = s * d.scale;
      }
      std::vector<double> o(hdv);
      attend_double(sc, v + kvh * hdv, nv, hdv, o.data());
      for (int64_t i = 0; i < hdv; ++i) want[(t * d.n_head + h) * hdv + i] = float(o[i]);
    }
  gqa_attention_ref(d, g.q.data(), g.q_stride, g.k.data(), g.v.data(), c.n_past, c.n_tok,
                    ref.data());
  EXPECT_LE(rel_err(ref, want), tol) << "reference, key amplitude " << k_amp;
  ThreadPool pool(2, 100);
  for (const attn::Kernels* kern : tiers()) {
    attn::gqa_attention_with(*kern, pool, d, g.q.data(), g.q_stride, g.k.data(), g.v.data(),
                             c.n_past, c.n_tok, fast.data());
    EXPECT_LE(rel_err(fast, want), tol) << kern->name << ", key amplitude " << k_amp;
  }
}

TEST(Attention, GqaTwinMatchesDouble) {
  for (int64_t n_past : {0, 17, 300})
    gqa_vs_double({{8, 2, 64, 64, 0.125f, KvType::f32}, n_past, 3}, 1.0f, 1e-5);
  gqa_vs_double({{4, 4, 80, 80, 1.0f / std::sqrt(80.0f), KvType::f32}, 40, 129}, 1.0f, 1e-5);
}

// Keys of magnitude 200: scores of several thousand, where exp without the max subtraction
// overflows; the result is close to the value of the best key and must stay finite.
TEST(Attention, LargeKeysStayStable) {
  gqa_vs_double({{8, 2, 64, 64, 0.125f, KvType::f32}, 300, 3}, 200.0f, 1e-4);
  gqa_vs_double({{4, 1, 128, 128, 1.0f / std::sqrt(128.0f), KvType::f32}, 17, 64}, 200.0f, 1e-4);
  // MLA, fast against the twin, over the split-K decode path (the merge rescales partials whose
  // maxima differ by thousands) and a prefill.
  ThreadPool pool(2, 100);
  for (int64_t n_tok : {1, 9}) {
    const MlaCase m{{8, 64, 16, 0.125f, KvType::bf16}, 700, n_tok};
    const MlaData g = mla_data(m, 21, 200.0f);
    std::vector<float> ref, out;
    run_mla_ref(m, g, ref);
    for (const attn::Kernels* k : tiers()) {
      run_mla_fast(*k, pool, m, g, out);
      EXPECT_LE(rel_err(out, ref), 1e-4) << k->name << " n_tok " << n_tok;
    }
  }
}

TEST(Attention, MlaTwinMatchesDouble) {
  const MlaCase m{{4, 64, 32, 0.1f, KvType::f32}, 300, 3};
  const MlaData g = mla_data(m, 9);
  const auto* c = reinterpret_cast<const float*>(g.c.data());
  const auto* kpe = reinterpret_cast<const float*>(g.kpe.data());
  const int64_t H = m.d.n_head, kvl = m.d.kv_lora, rope = m.d.rope;
  std::vector<float> want(m.n_tok * H * kvl), ref;
  for (int64_t t = 0; t < m.n_tok; ++t)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> sc(m.n_past + t + 1);
      for (size_t j = 0; j < sc.size(); ++j) {
        double s = 0;
        for (int64_t i = 0; i < kvl; ++i) s += double(g.q_abs[(t * H + h) * kvl + i]) * c[j * kvl + i];
        for (int64_t i = 0; i < rope; ++i)
          s += double(g.q[t * g.q_stride + h * g.head_stride + g.pe_off + i]) * kpe[j * rope + i];
        sc[j] = s * m.d.scale;
      }
      std::vector<double> o(kvl);
      attend_double(sc, c, kvl, kvl, o.data());
      for (int64_t i = 0; i < kvl; ++i) want[(t * H + h) * kvl + i] = float(o[i]);
    }
  run_mla_ref(m, g, ref);
  EXPECT_LE(rel_err(ref, want), 1e-5);
}

// The work split is a function of the shapes only: 1 and 4 threads give the same numbers,
// on a split-K decode and on a prefill.
TEST(Attention, ThreadCountDoesNotChangeResults) {
  ThreadPool one(1, 100), four(4, 100);
  for (const attn::Kernels* k : tiers()) {
    for (int64_t n_tok : {1, 64}) {
      const MlaCase m{{16, 512, 64, 0.07f, KvType::bf16}, n_tok == 1 ? 3000 : 100, n_tok};
      const MlaData g = mla_data(m, 4);
      std::vector<float> a, b;
      run_mla_fast(*k, one, m, g, a);
      run_mla_fast(*k, four, m, g, b);
      EXPECT_LE(rel_err(a, b), 1e-6) << k->name << " mla n_tok " << n_tok;

      const GqaCase c{{32, 4, 128, 128, 0.088f, KvType::f16}, n_tok == 1 ? 3000 : 100, n_tok};
      const GqaData gd = gqa_data(c, 5);
      std::vector<float> x(n_tok * 32 * 128), y(x.size());
      attn::gqa_attention_with(*k, one, c.d, gd.q.data(), gd.q_stride, gd.k.data(), gd.v.data(),
                               c.n_past, n_tok, x.data());
      attn::gqa_attention_with(*k, four, c.d, gd.q.data(), gd.q_stride, gd.k.data(),
                               gd.v.data(), c.n_past, n_tok, y.data());
      EXPECT_LE(rel_err(x, y), 1e-6) << k->name << " gqa n_tok " << n_tok;
    }
  }
}

// The public entry points pick a tier (or the twin) by themselves.
TEST(Attention, PublicEntryPointsDispatch) {
  ThreadPool pool(2, 100);
  const GqaCase c{{8, 2, 64, 64, 0.125f, KvType::bf16}, 33, 5};
  const GqaData g = gqa_data(c, 6);
  std::vector<float> a(5 * 8 * 64), b(a.size());
  gqa_attention(pool, c.d, g.q.data(), g.q_stride, g.k.data(), g.v.data(), 33, 5, a.data());
  gqa_attention_ref(c.d, g.q.data(), g.q_stride, g.k.data(), g.v.data(), 33, 5, b.data());
  EXPECT_LE(rel_err(a, b), 2e-5);
  const MlaCase m{{4, 64, 32, 0.1f, KvType::f16}, 70, 2};
  const MlaData gm = mla_data(m, 7);
  std::vector<float> x(2 * 4 * 64), y;
  mla_attention(pool, m.d, gm.q_abs.data(), gm.q.data() + gm.pe_off, gm.q_stride,
                gm.head_stride, gm.c.data(), gm.kpe.data(), 70, 2, x.data());
  run_mla_ref(m, gm, y);
  EXPECT_LE(rel_err(x, y), 2e-5);
}

// A CPU without the features gets no block kernels (the public calls then run the twins).
TEST(Attention, TiersNeedTheirFeatures) {
  CpuIsa none;
  EXPECT_EQ(attn::kernels_for(IsaTier::avx512, none), nullptr);
  EXPECT_EQ(attn::kernels_for(IsaTier::avx2, none), nullptr);
  EXPECT_EQ(attn::kernels_for(IsaTier::reference, detect_cpu_isa()), nullptr);
  CpuIsa avx2;
  avx2.avx2 = avx2.fma = avx2.f16c = true;
  EXPECT_EQ(attn::kernels_for(IsaTier::avx512, avx2), nullptr);
  ASSERT_NE(attn::kernels_for(IsaTier::avx2, avx2), nullptr);
  EXPECT_STREQ(attn::kernels_for(IsaTier::avx2, avx2)->name, "avx2");
}

TEST(Attention, KvTypesConvertAndParse) {
  for (KvType t : kTypes) {
    auto parsed = parse_kv_type(kv_type_name(t));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, t);
  }
  const auto bad = parse_kv_type("q4_0");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.status().message(), "unknown KV cache type 'q4_0' (expected f32, f16, bf16 or q8_0)");
  EXPECT_EQ(kv_row_bytes(KvType::f32, 7), 28u);
  EXPECT_EQ(kv_row_bytes(KvType::bf16, 7), 14u);
  EXPECT_EQ(kv_row_bytes(KvType::f16, 64), 128u);
  EXPECT_EQ(kv_row_bytes(KvType::q8_0, 1), 34u);
  EXPECT_EQ(kv_row_bytes(KvType::q8_0, 32), 34u);
  EXPECT_EQ(kv_row_bytes(KvType::q8_0, 33), 68u);
  EXPECT_EQ(kv_row_bytes(KvType::q8_0, 512), 16u * 34u);
  const std::vector<float> x = {0.0f, -1.5f, 1.0f + 0x1p-9f, 3.14159f, 65504.0f, 1e-6f, 1e30f};
  std::vector<uint16_t> h(x.size());
  std::vector<float> back(x.size());
  kv_store_row(KvType::f16, x.data(), h.data(), 7);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(h[i], fp32_to_fp16(x[i])) << i;
  kv_store_row(KvType::bf16, x.data(), h.data(), 7);
  kv_load_row(KvType::bf16, h.data(), back.data(), 7);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i], fp32_to_bf16(x[i])) << i;
    EXPECT_EQ(back[i], bf16_to_fp32(h[i])) << i;
  }
}

// q8_0 rows are ggml's Q8_0 blocks: whole blocks byte for byte what quantize_row writes, a
// partial last block that of the zero-padded values; loading gives dequantize_row's values, and
// every element is within half a quantization step of the input.
TEST(Attention, Q8_0RowsAreGgmlBlocks) {
  for (int64_t n : {32, 64, 40, 7, 100}) {
    const std::vector<float> x = random_floats(n, 300 + n, 3.0f);
    std::vector<uint8_t> row(kv_row_bytes(KvType::q8_0, n), 0xAA);
    kv_store_row(KvType::q8_0, x.data(), row.data(), n);
    const int64_t padded = (n + 31) / 32 * 32;
    std::vector<float> xp(x);
    xp.resize(static_cast<size_t>(padded), 0.0f);
    std::vector<uint8_t> want(static_cast<size_t>(padded / 32 * 34));
    quantize_row(GGMLType::Q8_0, xp.data(), want.data(), padded);
    EXPECT_EQ(row, want) << n;
    std::vector<float> back(static_cast<size_t>(n)), deq(static_cast<size_t>(padded));
    kv_load_row(KvType::q8_0, row.data(), back.data(), n);
    dequantize_row(GGMLType::Q8_0, want.data(), deq.data(), padded);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(back[i], deq[i]) << n << " " << i;
      float amax = 0;
      for (int64_t j = i / 32 * 32; j < std::min(n, i / 32 * 32 + 32); ++j) amax = std::max(amax, std::fabs(x[j]));
      // Half a step of amax / 127, the step itself rounded to f16 (relative 2^-11).
      EXPECT_LE(std::fabs(back[i] - x[i]), 0.5f * amax / 127 * (1 + 1e-3f) + 127 * amax / 127 * 0x1p-11f)
          << n << " " << i;
    }
  }
}

// The block kernels' widening of q8_0 slices (any start column: inside a block, at a boundary,
// spanning several blocks) gives kv_load_row's bits.
TEST(Attention, Q8_0WideningMatchesLoadRow) {
  const int64_t cols = 200, rows = 3;
  const std::vector<float> f = random_floats(rows * cols, 41, 2.0f);
  const std::vector<uint8_t> c = make_cache(KvType::q8_0, f, cols);
  const size_t rb = kv_row_bytes(KvType::q8_0, cols);
  std::vector<float> full(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) kv_load_row(KvType::q8_0, c.data() + r * rb, full.data() + r * cols, cols);
  int n_checked = 0;
  for (const attn::Kernels* k : tiers())
    for (int64_t col0 : {0, 5, 31, 32, 37, 64, 160})
      for (int64_t n : {1, 8, 27, 32, 33, 64, 100})
        if (col0 + n <= cols) {
          std::vector<float> out(static_cast<size_t>(rows * 128), NAN);
          k->widen_rows(KvType::q8_0, c.data(), rb, col0, rows, n, out.data(), 128);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i)
              ASSERT_EQ(out[r * 128 + i], full[r * cols + col0 + i])
                  << k->name << " col0 " << col0 << " n " << n << " row " << r << " i " << i;
          ++n_checked;
        }
  EXPECT_GT(n_checked, 0) << "no tier on this CPU";
}

// Attention over a q8_0 cache stays near the same attention over the unrounded f32 cache:
// a wrong scale or block address moves the output by O(1).
TEST(Attention, Q8_0CacheStaysNearF32) {
  ThreadPool pool(2, 100);
  for (int64_t n_tok : {1, 9}) {
    GqaCase c{{8, 2, 64, 64, 0.125f, KvType::f32}, 150, n_tok};
    const GqaData g32 = gqa_data(c, 61);
    c.d.kv = KvType::q8_0;
    const GqaData g8 = gqa_data(c, 61);  // the same floats, rounded to q8_0
    std::vector<float> a(n_tok * 8 * 64), b(a.size());
    gqa_attention(pool, {8, 2, 64, 64, 0.125f, KvType::f32}, g32.q.data(), g32.q_stride,
                  g32.k.data(), g32.v.data(), 150, n_tok, a.data());
    gqa_attention(pool, c.d, g8.q.data(), g8.q_stride, g8.k.data(), g8.v.data(), 150, n_tok,
                  b.data());
    EXPECT_LE(rel_err(b, a), 1e-2) << "gqa n_tok " << n_tok;

    MlaCase m{{4, 64, 32, 0.1f, KvType::f32}, 150, n_tok};
    const MlaData m32 = mla_data(m, 62);
    std::vector<float> x, y;
    run_mla_ref(m, m32, x);
    m.d.kv = KvType::q8_0;
    const MlaData m8 = mla_data(m, 62);
    std::vector<float> fast(x.size());
    mla_attention(pool, m.d, m8.q_abs.data(), m8.q.data() + m8.pe_off, m8.q_stride,
                  m8.head_stride, m8.c.data(), m8.kpe.data(), 150, n_tok, fast.data());
    EXPECT_LE(rel_err(fast, x), 1e-2) << "mla n_tok " << n_tok;
  }
}

// A paged copy of a contiguous cache (rows of row_bytes): blocks of block_rows rows placed in
// the storage in a scrambled order with unused blocks between (ids[b] = where block b went).
struct Paged {
  std::vector<uint8_t> storage;
  std::vector<int32_t> ids;
  KvRows rows(int64_t block_rows) const { return {storage.data(), ids.data(), block_rows}; }
};

Paged page(const std::vector<uint8_t>& flat, size_t row_bytes, int64_t block_rows) {
  const int64_t rows = static_cast<int64_t>(flat.size() / row_bytes);
  const int64_t n_blocks = (rows + block_rows - 1) / block_rows;
  Paged p;
  p.storage.assign(static_cast<size_t>(2 * n_blocks + 1) * block_rows * row_bytes, 0xA5);
  for (int64_t b = 0; b < n_blocks; ++b) p.ids.push_back(static_cast<int32_t>(2 * (n_blocks - b)));
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(flat.data() + r * row_bytes, row_bytes,
                p.storage.data() + (p.ids[r / block_rows] * block_rows + r % block_rows) * row_bytes);
  return p;
}

// The kernels and their twins over a paged cache give the contiguous cache's bits: with
// blocks of the engine's 64 rows and of 128, and with 48-row blocks, which split the kernels'
// 64-key blocks into two runs.
TEST(Attention, PagedCacheGivesTheContiguousBits) {
  ThreadPool pool(2, 100);
  for (int64_t block_rows : {64, 128, 48})
    for (KvType kv : kTypes)
      for (auto [n_past, n_tok] : {std::pair<int64_t, int64_t>{0, 70}, {130, 1}, {200, 5}}) {
        const GqaAttnDesc d{8, 2, 64, 32, 0.125f, kv};
        const GqaData g = gqa_data({d, n_past, n_tok}, 7 + n_past);
        const Paged pk = page(g.k, kv_row_bytes(kv, 2 * 64), block_rows);
        const Paged pv = page(g.v, kv_row_bytes(kv, 2 * 32), block_rows);
        const size_t n_out = static_cast<size_t>(n_tok * d.n_head * d.head_dim_v);
        std::vector<float> a(n_out), b(n_out);
        gqa_attention_ref(d, g.q.data(), g.q_stride, g.k.data(), g.v.data(), n_past, n_tok, a.data());
        gqa_attention_ref(d, g.q.data(), g.q_stride, pk.rows(block_rows), pv.rows(block_rows),
                          n_past, n_tok, b.data());
        EXPECT_EQ(a, b) << "gqa ref " << kv_type_name(kv) << " blocks of " << block_rows;
        for (const attn::Kernels* k : tiers()) {
          attn::gqa_attention_with(*k, pool, d, g.q.data(), g.q_stride, g.k.data(), g.v.data(),
                                   n_past, n_tok, a.data());
          attn::gqa_attention_with(*k, pool, d, g.q.data(), g.q_stride, pk.rows(block_rows),
                                   pv.rows(block_rows), n_past, n_tok, b.data());
          EXPECT_EQ(a, b) << "gqa " << k->name << " " << kv_type_name(kv) << " blocks of "
                          << block_rows << " n_past " << n_past;
        }
        const MlaCase mc{{4, 64, 32, 0.1f, kv}, n_past, n_tok};
        const MlaData m = mla_data(mc, 11 + n_past);
        const Paged pc = page(m.c, kv_row_bytes(kv, 64), block_rows);
        const Paged pe = page(m.kpe, kv_row_bytes(kv, 32), block_rows);
        const size_t n_lat = static_cast<size_t>(n_tok * 4 * 64);
        std::vector<float> c(n_lat), e(n_lat);
        mla_attention_ref(mc.d, m.q_abs.data(), m.q.data() + m.pe_off, m.q_stride, m.head_stride,
                          m.c.data(), m.kpe.data(), n_past, n_tok, c.data());
        mla_attention_ref(mc.d, m.q_abs.data(), m.q.data() + m.pe_off, m.q_stride, m.head_stride,
                          pc.rows(block_rows), pe.rows(block_rows), n_past, n_tok, e.data());
        EXPECT_EQ(c, e) << "mla ref " << kv_type_name(kv) << " blocks of " << block_rows;
        for (const attn::Kernels* k : tiers()) {
          attn::mla_attention_with(*k, pool, mc.d, m.q_abs.data(), m.q.data() + m.pe_off,
                                   m.q_stride, m.head_stride, m.c.data(), m.kpe.data(), n_past,
                                   n_tok, c.data());
          attn::mla_attention_with(*k, pool, mc.d, m.q_abs.data(), m.q.data() + m.pe_off,
                                   m.q_stride, m.head_stride, pc.rows(block_rows),
                                   pe.rows(block_rows), n_past, n_tok, e.data());
          EXPECT_EQ(c, e) << "mla " << k->name << " " << kv_type_name(kv) << " blocks of "
                          << block_rows << " n_past " << n_past;
        }
      }
}

}  // namespace
}  // namespace ktx::cpu
