// The K-quant prefill kernel (jit/gemm_kq_kernel.h): its C++ twin against the dequantized GGUF
// weights times the rounded activations, over types x super-blocks x token groups with padding
// tokens, and at the extreme levels and scales; the generated AMX kernel (where the CPU has it)
// against the twin bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/jit/gemm_kq_kernel.h"
#include "test/unit/cpu/moe_test_util.h"

namespace ktx::cpu {
namespace {

// Tokens of `groups` groups of 16 (k floats each, rounded to q16_k in place) and their packed
// tiles; a padding token (pad[t]) has no row.
struct Acts {
  int64_t k = 0, groups = 0;
  std::vector<float> x;
  std::vector<bool> pad;
  std::vector<uint8_t> rows;
  std::vector<int8_t> tiles;
  std::vector<float> floats;
};

Acts make_acts(const std::vector<float>& x, int64_t k, int64_t groups, std::vector<bool> pad,
               KqActLayout layout = KqActLayout::amx_planes) {
  Acts a;
  a.k = k, a.groups = groups, a.x = x, a.pad = std::move(pad);
  const ActFormat fmt = layout == KqActLayout::i8_quads ? ActFormat::q8_k32 : ActFormat::q16_k;
  const int64_t ns = k / kKqSuper, rb = static_cast<int64_t>(act_row_bytes(fmt, k));
  a.rows.resize(groups * kKqTile * rb);
  a.tiles.resize(groups * ns * kKqActBytes);
  a.floats.resize(groups * ns * kKqActFloats);
  for (int64_t t = 0; t < groups * kKqTile; ++t) {
    float* row = a.x.data() + t * k;
    if (a.pad[t]) {
      std::fill(row, row + k, 0.0f);
      continue;
    }
    quantize_act_row(fmt, row, a.rows.data() + t * rb, k);
    round_act_row(fmt, row, k);
  }
  for (int64_t g = 0; g < groups && layout == KqActLayout::i8_quads; ++g) {
    const ActBlockQ8_K32* tok[kKqTile];
    for (int64_t i = 0; i < kKqTile; ++i) {
      const int64_t t = g * kKqTile + i;
      tok[i] = a.pad[t] ? nullptr
                        : reinterpret_cast<const ActBlockQ8_K32*>(a.rows.data() + t * rb);
    }
    kq_pack_acts_i8(tok, ns, a.tiles.data() + g * ns * kKqActBytes, kKqActBytes,
                    a.floats.data() + g * ns * kKqActFloats, kKqActFloats);
  }
  for (int64_t g = 0; g < groups && layout != KqActLayout::i8_quads; ++g) {
    const ActBlockQ16_K* tok[kKqTile];
    for (int64_t i = 0; i < kKqTile; ++i) {
      const int64_t t = g * kKqTile + i;
      tok[i] = a.pad[t] ? nullptr
                        : reinterpret_cast<const ActBlockQ16_K*>(a.rows.data() + t * rb);
    }
    (layout == KqActLayout::i16_pairs ? kq_pack_acts_i16 : kq_pack_acts)(
        tok, ns, a.tiles.data() + g * ns * kKqActBytes, kKqActBytes,
        a.floats.data() + g * ns * kKqActFloats, kKqActFloats);
  }
  return a;
}

// out[g][n][t] of one 16-row panel.
std::vector<float> run(const GemmKqKernel& kernel, const std::vector<uint8_t>& w, int64_t rb,
                       const Acts& a) {
  const int64_t ns = a.k / kKqSuper;
  std::vector<float> out(a.groups * kKqTile * kKqTile, NAN);
  GemmKqArgs g;
  g.w = w.data(), g.w_stride = rb;
  g.act = a.tiles.data(), g.act_group_stride = ns * kKqActBytes;
  g.act_f = a.floats.data(), g.act_f_group_stride = ns * kKqActFloats * 4;
  g.out = out.data(), g.out_group_stride = kKqTile * kKqTile;
  g.n_super = ns, g.n_groups = a.groups;
  kernel.run(g);
  return out;
}

// Checks out against Σ_k w[n][k]·x[t][k] (dequantized weights, rounded activations) in double,
// within `rel` of Σ|w·x|; padding tokens must come out exactly zero.
void check_against_weights(GGMLType type, const std::vector<uint8_t>& w, int64_t rb,
                           const Acts& a, const std::vector<float>& out, double rel) {
  std::vector<float> row(a.k);
  for (int64_t n = 0; n < kKqTile; ++n) {
    dequantize_row(type, w.data() + n * rb, row.data(), a.k);
    for (int64_t t = 0; t < a.groups * kKqTile; ++t) {
      double ref = 0.0, scale = 0.0;
      for (int64_t i = 0; i < a.k; ++i) {
        const double p = static_cast<double>(row[i]) * a.x[t * a.k + i];
        ref += p, scale += std::fabs(p);
      }
      const float got = out[(t / kKqTile) * 256 + n * kKqTile + t % kKqTile];
      if (a.pad[t]) {
        ASSERT_EQ(got, 0.0f) << "padding token " << t << " row " << n;
      } else {
        ASSERT_NEAR(got, ref, rel * scale + 1e-7) << "token " << t << " row " << n;
      }
    }
  }
}

struct Shape {
  int64_t n_super, groups;
};
const Shape kShapes[] = {{1, 1}, {1, 3}, {2, 2}, {3, 1}, {5, 2}};

// Padding pattern: the last tokens of the last group (as the driver pads) and one in between.
std::vector<bool> padding(int64_t groups) {
  std::vector<bool> pad(groups * kKqTile, false);
  for (int64_t t = groups * kKqTile - 5; t < groups * kKqTile; ++t) pad[t] = true;
  if (groups > 1) pad[7] = true;
  return pad;
}

TEST(GemmKq, PermutationCoversEveryElementOfAChunkOnce) {
  std::set<int> seen;
  for (int b = 0; b < 64; ++b) {
    seen.insert(kq_perm(b));
    if (b % 4 != 0) {  // the four bytes of a dword hold consecutive elements
      EXPECT_EQ(kq_perm(b), kq_perm(b - b % 4) + b % 4);
    }
  }
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 63);
}

TEST(GemmKq, RefusesTypesWithoutTheKernel) {
  auto k = create_gemm_kq_ref(GGMLType::Q6_K);
  ASSERT_FALSE(k.has_value());
  EXPECT_NE(k.status().message().find("Q6_K"), std::string::npos);
  CpuIsa none;
  auto amx = create_gemm_kq_amx(GGMLType::Q4_K, none);
  ASSERT_FALSE(amx.has_value());
  EXPECT_NE(amx.status().message().find("amx_tile"), std::string::npos);
}

TEST(GemmKq, TwinMatchesDequantizedWeights) {
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_ref(type);
    ASSERT_TRUE(twin.has_value());
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(std::string((*twin)->name()) + " super-blocks " + std::to_string(s.n_super) +
                   " groups " + std::to_string(s.groups));
      const int64_t k = s.n_super * kKqSuper;
      const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
      const auto w = test::random_rows(type, kKqTile, k, 11 + static_cast<uint32_t>(k));
      const Acts a = make_acts(test::random_floats(s.groups * kKqTile * k, 1.0f, 3), k,
                               s.groups, padding(s.groups));
      check_against_weights(type, w, rb, a, run(**twin, w, rb, a), 2e-6);
    }
  }
}

// Every level and scale at its maximum (q = 15 or 31, sc = m = 63), activations at ±32512:
// the int32 products and the float forms must not wrap or lose the sum.
std::vector<uint8_t> extreme_panel(GGMLType type, int64_t k) {
  const int64_t bb = type == GGMLType::Q5_K ? 176 : 144, rb = k / kKqSuper * bb;
  std::vector<uint8_t> w(kKqTile * rb, 0xff);
  for (int64_t n = 0; n < kKqTile; ++n) {
    for (int64_t b = 0; b < k / kKqSuper; ++b) {
      uint8_t* blk = w.data() + n * rb + b * bb;
      const uint16_t d = fp32_to_fp16(n % 2 ? -0.5f : 1.0f);
      const uint16_t dmin = fp32_to_fp16(n % 3 ? 0.25f : 0.0f);
      std::memcpy(blk, &d, 2);
      std::memcpy(blk + 2, &dmin, 2);
    }
  }
  return w;
}

TEST(GemmKq, ExtremeLevelsDoNotWrap) {
  constexpr int64_t k = 2 * kKqSuper;
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    auto twin = create_gemm_kq_ref(type);
    ASSERT_TRUE(twin.has_value());
    const auto w = extreme_panel(type, k);
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
    std::vector<float> x(kKqTile * k);
    for (int64_t t = 0; t < kKqTile; ++t) {
      for (int64_t i = 0; i < k; ++i) x[t * k + i] = (t % 2 ? -1.0f : 1.0f) * (i % 7 ? 1.0f : 0.5f);
    }
    const Acts a = make_acts(x, k, 1, std::vector<bool>(kKqTile, false));
    const auto out = run(**twin, w, rb, a);
    check_against_weights(type, w, rb, a, out, 2e-6);
    const CpuIsa cpu = detect_cpu_isa();
    if (!isa_tier_supported(IsaTier::amx, cpu)) continue;
    auto amx = create_gemm_kq_amx(type, cpu);
    ASSERT_TRUE(amx.has_value()) << amx.status().message();
    const auto got = run(**amx, w, rb, a);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], out[i]) << "output " << i;
  }
}

// The int16 form (hosts without AMX): its twin against the dequantized weights over the shape
// table, the AVX-512 body against the twin bit for bit, both at the extreme levels (the
// int32 windows are sized so that W·max|sc·q|·32512 < 2^31), and its refusals.
TEST(GemmKqI16, TwinMatchesDequantizedWeights) {
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_i16_ref(type);
    ASSERT_TRUE(twin.has_value());
    EXPECT_EQ((*twin)->act_layout(), KqActLayout::i16_pairs);
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(std::string((*twin)->name()) + " super-blocks " + std::to_string(s.n_super) +
                   " groups " + std::to_string(s.groups));
      const int64_t k = s.n_super * kKqSuper;
      const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
      const auto w = test::random_rows(type, kKqTile, k, 13 + static_cast<uint32_t>(k));
      const Acts a = make_acts(test::random_floats(s.groups * kKqTile * k, 1.0f, 4), k,
                               s.groups, padding(s.groups), KqActLayout::i16_pairs);
      check_against_weights(type, w, rb, a, run(**twin, w, rb, a), 2e-6);
    }
  }
}

TEST(GemmKqI16, ExtremeLevelsDoNotWrap) {
  constexpr int64_t k = 2 * kKqSuper;
  const CpuIsa cpu = detect_cpu_isa();
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    auto twin = create_gemm_kq_i16_ref(type);
    ASSERT_TRUE(twin.has_value());
    const auto w = extreme_panel(type, k);
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
    std::vector<float> x(kKqTile * k);
    for (int64_t t = 0; t < kKqTile; ++t) {
      for (int64_t i = 0; i < k; ++i) x[t * k + i] = (t % 2 ? -1.0f : 1.0f) * (i % 7 ? 1.0f : 0.5f);
    }
    const Acts a = make_acts(x, k, 1, std::vector<bool>(kKqTile, false), KqActLayout::i16_pairs);
    const auto out = run(**twin, w, rb, a);
    check_against_weights(type, w, rb, a, out, 2e-6);
    // The vector bodies this CPU has (EqualsTwinBitForBit reports the skips).
    for (int body = 0; body < 2; ++body) {
      auto vec = body == 0 ? create_gemm_kq_avx512(type, cpu) : create_gemm_kq_avx2(type, cpu);
      if (!vec) continue;
      const auto got = run(**vec, w, rb, a);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], out[i]) << (*vec)->name() << " output " << i;
    }
  }
}

TEST(GemmKqI16, RefusesTypesAndCpusWithoutTheKernel) {
  auto q6 = create_gemm_kq_i16_ref(GGMLType::Q6_K);
  ASSERT_FALSE(q6.has_value());
  EXPECT_NE(q6.status().message().find("Q6_K"), std::string::npos);
  CpuIsa none;
  auto vec = create_gemm_kq_avx512(GGMLType::Q4_K, none);
  ASSERT_FALSE(vec.has_value());
  EXPECT_NE(vec.status().message().find("avx512_vnni"), std::string::npos);
  auto v2 = create_gemm_kq_avx2(GGMLType::Q4_K, none);
  ASSERT_FALSE(v2.has_value());
  EXPECT_NE(v2.status().message().find("avx2 fma"), std::string::npos) << v2.status().message();
  auto v2q6 = create_gemm_kq_avx2(GGMLType::Q6_K, detect_cpu_isa());
  ASSERT_FALSE(v2q6.has_value());
  EXPECT_NE(v2q6.status().message().find("Q6_K"), std::string::npos);
}

// Over kShapes, `body` equals `twin` bit for bit (weights seeded w_seed + k, activations
// a_seed, in the body's activation layout).
void expect_equals_twin(const GemmKqKernel& twin, const GemmKqKernel& body, GGMLType type,
                        uint32_t w_seed, uint32_t a_seed) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(body.name() + " super-blocks " + std::to_string(s.n_super) + " groups " +
                 std::to_string(s.groups));
    const int64_t k = s.n_super * kKqSuper;
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
    const auto w = test::random_rows(type, kKqTile, k, w_seed + static_cast<uint32_t>(k));
    const Acts a = make_acts(test::random_floats(s.groups * kKqTile * k, 2.0f, a_seed), k,
                             s.groups, padding(s.groups), body.act_layout());
    const auto want = run(twin, w, rb, a), got = run(body, w, rb, a);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "output " << i;
  }
}

TEST(GemmKqI16, Avx2EqualsTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!(cpu.avx2 && cpu.fma)) GTEST_SKIP() << "this CPU lacks AVX2 and FMA";
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_i16_ref(type);
    auto vec = create_gemm_kq_avx2(type, cpu);
    ASSERT_TRUE(twin.has_value());
    ASSERT_TRUE(vec.has_value()) << vec.status().message();
    expect_equals_twin(**twin, **vec, type, 13, 4);
  }
}

TEST(GemmKqI16, Avx512EqualsTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!(cpu.avx512f && cpu.avx512bw && cpu.avx512_vnni))
    GTEST_SKIP() << "this CPU lacks AVX-512 VNNI";
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_i16_ref(type);
    auto vec = create_gemm_kq_avx512(type, cpu);
    ASSERT_TRUE(twin.has_value());
    ASSERT_TRUE(vec.has_value()) << vec.status().message();
    expect_equals_twin(**twin, **vec, type, 7, 9);
  }
}

// The int8-activation form (AVX-512 VNNI hosts): its twin against the dequantized weights
// times the q8_k32-rounded activations over the shape table and at the extreme levels (the
// sub-block dots are exact: 32·31·127 < 2^31), the AVX-512 body against the twin bit for
// bit, and its refusals.
TEST(GemmKqI8, TwinMatchesDequantizedWeights) {
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_i8_ref(type);
    ASSERT_TRUE(twin.has_value());
    EXPECT_EQ((*twin)->act_layout(), KqActLayout::i8_quads);
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(std::string((*twin)->name()) + " super-blocks " + std::to_string(s.n_super) +
                   " groups " + std::to_string(s.groups));
      const int64_t k = s.n_super * kKqSuper;
      const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
      const auto w = test::random_rows(type, kKqTile, k, 17 + static_cast<uint32_t>(k));
      const Acts a = make_acts(test::random_floats(s.groups * kKqTile * k, 1.0f, 6), k,
                               s.groups, padding(s.groups), KqActLayout::i8_quads);
      check_against_weights(type, w, rb, a, run(**twin, w, rb, a), 2e-6);
    }
  }
}

TEST(GemmKqI8, ExtremeLevelsDoNotWrap) {
  constexpr int64_t k = 2 * kKqSuper;
  const CpuIsa cpu = detect_cpu_isa();
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    SCOPED_TRACE(ggml_type_name(static_cast<uint32_t>(type)));
    auto twin = create_gemm_kq_i8_ref(type);
    ASSERT_TRUE(twin.has_value());
    const auto w = extreme_panel(type, k);
    const int64_t rb = static_cast<int64_t>(ggml_row_bytes(type, k).value());
    std::vector<float> x(kKqTile * k);
    for (int64_t t = 0; t < kKqTile; ++t) {  // every activation at ±127 (or ±64 of 127)
      for (int64_t i = 0; i < k; ++i) x[t * k + i] = (t % 2 ? -1.0f : 1.0f) * (i % 7 ? 1.0f : 0.5f);
    }
    const Acts a = make_acts(x, k, 1, std::vector<bool>(kKqTile, false), KqActLayout::i8_quads);
    const auto out = run(**twin, w, rb, a);
    check_against_weights(type, w, rb, a, out, 2e-6);
    auto vec = create_gemm_kq_avx512_i8(type, cpu);
    if (!vec) continue;  // Avx512EqualsTwinBitForBit reports the skip
    const auto got = run(**vec, w, rb, a);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], out[i]) << (*vec)->name() << " output " << i;
  }
}

TEST(GemmKqI8, RoundsActivationsPer32Elements) {
  std::vector<float> x(kKqSuper);
  for (int i = 0; i < kKqSuper; ++i) x[i] = (i / 32 + 1) * 0.01f * static_cast<float>((i * 37) % 23 - 11);
  ActBlockQ8_K32 fast, plain;
  quantize_act_row(ActFormat::q8_k32, x.data(), &fast, kKqSuper);
  quantize_act_row_ref(ActFormat::q8_k32, x.data(), &plain, kKqSuper);
  EXPECT_EQ(std::memcmp(&fast, &plain, sizeof(fast)), 0) << "the AVX2 body's bytes differ";
  for (int j = 0; j < 8; ++j) {
    float amax = 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * j + i]));
    EXPECT_EQ(plain.d[j], amax / 127.0f) << "sub-block " << j;
    for (int i = 0; i < 32; ++i) {
      EXPECT_LE(std::fabs(plain.d[j] * plain.q[32 * j + i] - x[32 * j + i]), 0.5f * plain.d[j] * 1.0001f);
      sum += plain.q[32 * j + i];
    }
    EXPECT_EQ(plain.qsum[j], sum) << "sub-block " << j;
  }
}

TEST(GemmKqI8, RefusesTypesAndCpusWithoutTheKernel) {
  auto q6 = create_gemm_kq_i8_ref(GGMLType::Q6_K);
  ASSERT_FALSE(q6.has_value());
  EXPECT_NE(q6.status().message().find("Q6_K"), std::string::npos);
  CpuIsa none;
  auto vec = create_gemm_kq_avx512_i8(GGMLType::Q4_K, none);
  ASSERT_FALSE(vec.has_value());
  EXPECT_NE(vec.status().message().find("avx512_vnni"), std::string::npos);
  auto vq6 = create_gemm_kq_avx512_i8(GGMLType::Q6_K, detect_cpu_isa());
  ASSERT_FALSE(vq6.has_value());
  EXPECT_NE(vq6.status().message().find("Q6_K"), std::string::npos);
}

TEST(GemmKqI8, Avx512EqualsTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!(cpu.avx512f && cpu.avx512bw && cpu.avx512_vnni))
    GTEST_SKIP() << "this CPU lacks AVX-512 VNNI (avx512f, avx512bw, avx512_vnni)";
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_i8_ref(type);
    auto vec = create_gemm_kq_avx512_i8(type, cpu);
    ASSERT_TRUE(twin.has_value());
    ASSERT_TRUE(vec.has_value()) << vec.status().message();
    expect_equals_twin(**twin, **vec, type, 19, 21);
  }
}

TEST(GemmKq, AmxEqualsTwinBitForBit) {
  const CpuIsa cpu = detect_cpu_isa();
  if (!isa_tier_supported(IsaTier::amx, cpu)) GTEST_SKIP() << "this CPU lacks the amx tier";
  for (GGMLType type : {GGMLType::Q4_K, GGMLType::Q5_K}) {
    auto twin = create_gemm_kq_ref(type);
    auto amx = create_gemm_kq_amx(type, cpu);
    ASSERT_TRUE(twin.has_value());
    ASSERT_TRUE(amx.has_value()) << amx.status().message();
    expect_equals_twin(**twin, **amx, type, 5, 8);
  }
}

}  // namespace
}  // namespace ktx::cpu
