// The GPU attention kernels (runtime/cuda/attention.h) against plain references written here
// in double, over shape tables with tails: positions n_past in {0, 1, 37, 300} and n_tok in
// {1, 3, 8, 33} (33 crosses token blocks and key tiles), GQA head dims 64/128/192/256 with
// groups 1, 2, 8 (and 16), MLA with kv_lora 64/512, rope 16/64, 4/16/128 heads, forced and
// planned key splits. Cache rows past the call's last position hold NaN, so reading one fails.
// Without a device the GPU tests skip; the entry-point, shape-check and workspace tests run
// everywhere.
//
// Bounds (and why):
//   RoPE: the kernel gets the float table the backend uploads; cos/sin of the double angle
//     rounded to float as the engine does, so only the final x0·c − x1·s differs (FMA
//     contraction): |got − want| <= 2e-6 · (|x0| + |x1|).
//   KV store, bias add: exact (f16 round-to-nearest-even is fp32_to_fp16's; one float add).
//   Per-head GEMVs: weights decode to dequantize_row's floats; float sums in another order:
//     |got − want| <= 1e-5 · Σ|w·x| + 1e-6 (want in double).
//   Cores: the same f16 cache values as the reference; float dot products (<= 576 terms), an
//     online softmax and a float weighted sum (<= 333 keys) against double: values ~N(0, 1),
//     |got − want| <= 5e-5. Different split counts agree within 2e-6 (only the merge order of
//     the partial sums differs).
#include <cmath>
#include <cstring>
#include <limits>

#include "attn_test_util.h"

namespace ktx {
std::vector<double> rope_frequencies(const ModelConfig& c);  // runtime/engine/ops.cpp
}

namespace ktx::cuda {
namespace {

using namespace attn_test;

constexpr uint16_t kNanF16 = 0x7E00;

TEST(CudaAttention, CubinHoldsEveryAttentionEntryPoint) {
  auto cubin = compile_kernels("sm_90a");
  ASSERT_TRUE(cubin) << cubin.status().message();
  const std::string img(cubin->begin(), cubin->end());
  std::vector<std::string> names = {"ktx_rope", "ktx_add_bias", "ktx_kv_store", "ktx_mla_kv_store", "ktx_head_norm_rope", "ktx_flash_combine",
                                    "ktx_flash_gqa_k64_v64", "ktx_flash_gqa_k128_v128",
                                    "ktx_flash_gqa_k192_v128", "ktx_flash_gqa_k192_v192",
                                    "ktx_flash_gqa_k256_v256", "ktx_flash_mla_l512_r64",
                                    "ktx_flash_mla_l512_r16", "ktx_flash_mla_l64_r64",
                                    "ktx_flash_mla_l64_r16"};
  for (const char* t : {"f32", "f16", "bf16", "q4_0", "q5_0", "q8_0", "q4_k", "q5_k", "q6_k"}) {
    names.push_back(std::string("ktx_gemv_heads_") + t);
    names.push_back(std::string("ktx_gemv_t_heads_") + t);
  }
  for (const std::string& n : names) EXPECT_NE(img.find(n + '\0'), std::string::npos) << n;
}

TEST(CudaAttention, LaunchersRejectBadShapesNamingThem) {
  const AttnKernels a;  // nothing bound: every call below must fail before it launches
  auto has = [](const Status& st, const char* text) {
    return !st && st.message().find(text) != std::string::npos;
  };
  const int32_t* pos = nullptr;
  GqaCoreDesc g{32, 1, 128, 128, 0.1f};
  EXPECT_TRUE(has(a.gqa(g, nullptr, 4096, nullptr, nullptr, 64, pos, 0, 1, nullptr, 4096, {}, nullptr),
                  "groups of 1..16"));
  g = {8, 2, 96, 96, 0.1f};
  EXPECT_TRUE(has(a.gqa(g, nullptr, 768, nullptr, nullptr, 64, pos, 0, 1, nullptr, 768, {}, nullptr),
                  "head dims k 96 v 96"));
  MlaCoreDesc m{16, 256, 64, 0.1f};
  EXPECT_TRUE(has(a.mla(m, nullptr, 4096, nullptr, 0, 0, nullptr, nullptr, 64, pos, 0, 1, nullptr,
                        4096, {}, nullptr),
                  "kv_lora 256 rope 64"));
  EXPECT_TRUE(has(a.rope(nullptr, 64, 1, 64, 0, 3, RopeStyle::Neox, nullptr, pos, 0, 1, nullptr),
                  "n_rot = 3"));
  EXPECT_TRUE(has(a.rope(nullptr, 64, 2, 64, 40, 32, RopeStyle::Neox, nullptr, pos, 0, 1, nullptr),
                  "run past a head"));
  EXPECT_TRUE(has(a.gemv_heads(GGMLType::Q8_0, nullptr, 0, 34, nullptr, 0, 0, nullptr, 0, 0, 4, 8,
                               100, 1, nullptr),
                  "no kernel for Q8_0"));
  EXPECT_TRUE(has(a.kv_store(nullptr, 64, 64, nullptr, 32, 16, pos, 0, 1, nullptr), "rows of 64"));
}

TEST(CudaAttention, LayersNameMissingAndMisshapenTensors) {
  ModelConfig c;
  c.attn = AttnKind::GQA;
  c.n_embd = 64; c.n_head = 4; c.n_head_kv = 2; c.head_dim_k = c.head_dim_v = 16; c.n_rot = 16;
  const Kernels k;
  const AttnKernels a;
  AttnWorkspace ws;
  TensorLookup none = [](const std::string& name) -> Expected<DevTensor> {
    return Error("no tensor '{}' on the device", name);
  };
  Status st = gqa_attention_layer(k, a, c, 3, none, nullptr, nullptr, nullptr, nullptr, nullptr,
                                  nullptr, 1, ws, nullptr);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("blk.3.attn_q.weight"), std::string::npos) << st.message();
  TensorLookup wrong = [](const std::string&) -> Expected<DevTensor> {
    return DevTensor{nullptr, GGMLType::F32, 64, 5, 256};
  };
  st = gqa_attention_layer(k, a, c, 3, wrong, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                           1, ws, nullptr);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("'blk.3.attn_q.weight' is 64 x 5, expected 64 x 64"), std::string::npos)
      << st.message();
  c.attn = AttnKind::MLA;
  ws.kind = AttnKind::MLA;
  c.kv_lora_rank = 64; c.qk_rope_dim = 16; c.qk_nope_dim = 16; c.v_head_dim = 16; c.q_lora_rank = 32;
  c.mla_layout = MlaLayout::KvB;
  st = mla_attention_layer(k, a, c, 0, none, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                           ws, nullptr);
  ASSERT_FALSE(st);
  EXPECT_NE(st.message().find("blk.0.attn_q_a.weight"), std::string::npos) << st.message();
  st = gqa_attention_layer(k, a, c, 0, none, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                           ws, nullptr);
  EXPECT_FALSE(st);
}

ModelConfig deepseek_v3_attention() {
  ModelConfig c;
  c.attn = AttnKind::MLA;
  c.n_embd = 7168; c.n_head = 128; c.n_head_kv = 128; c.q_lora_rank = 1536; c.kv_lora_rank = 512;
  c.qk_nope_dim = 128; c.qk_rope_dim = 64; c.v_head_dim = 128; c.head_dim_k = 192;
  c.head_dim_v = 128; c.n_rot = 64; c.mla_layout = MlaLayout::SplitKV;
  return c;
}

TEST(CudaAttention, WorkspaceSizeFollowsShapesNotPrefillLength) {
  const ModelConfig ds = deepseek_v3_attention();
  const int64_t b64 = AttnWorkspace::bytes_for(ds, 64, 4096);
  // q_abs and o_lat alone are 64 x 128 x 512 floats each.
  EXPECT_GE(b64, 2 * 64 * 128 * 512 * 4);
  EXPECT_EQ(AttnWorkspace::bytes_for(ds, 4096, 4096), b64) << "queries run in kAttnChunk chunks";
  EXPECT_LT(AttnWorkspace::bytes_for(ds, 1, 4096), b64);
  ModelConfig qw;  // Qwen3-30B-A3B
  qw.attn = AttnKind::GQA;
  qw.n_embd = 2048; qw.n_head = 32; qw.n_head_kv = 4; qw.head_dim_k = qw.head_dim_v = 128; qw.n_rot = 128;
  EXPECT_GE(AttnWorkspace::bytes_for(qw, 8, 32768), (8 * 32 * 128 * 2 + 8 * 4 * 128 * 2) * 4);
  // Split partials exist exactly when the plan splits.
  const GqaCoreDesc d{32, 4, 128, 128, 0.1f};
  EXPECT_GT(gqa_splits(d, 1, 32768), 1);
  EXPECT_EQ(gqa_splits(d, 1, 63), 1);  // under two splits of 32 keys
  EXPECT_EQ(flash_partial_floats(1, 8, 32, 128), 0);
}

// ---- RoPE, KV store, bias ----

// The float table the backend uploads: the engine's rope_frequencies (YaRN as DeepSeek-V3
// configures it when yarn).
std::vector<float> rope_table(int64_t n_rot, bool yarn) {
  ModelConfig c;
  c.n_rot = n_rot;
  c.rope_freq_base = 10000.0f;
  c.yarn = yarn;
  c.rope_scale_factor = 40.0f;
  c.rope_orig_ctx = 4096;
  const std::vector<double> f = rope_frequencies(c);
  return std::vector<float>(f.begin(), f.end());
}

TEST(CudaAttention, RopeMatchesReference) {
  KTX_NEED_GPU(g);
  struct Case { int64_t n_heads, head_stride, offset, n_rot; };
  const Case cases[] = {{4, 128, 0, 128}, {3, 64, 0, 32}, {16, 192, 128, 64}, {1, 64, 512, 64}};
  for (const Case& c : cases)
    for (RopeStyle style : {RopeStyle::Normal, RopeStyle::Neox})
      for (bool yarn : {false, true})
        for (int64_t n_past : {0, 1, 37, 300})
          for (int64_t n_tok : {1, 3, 8, 33}) {
            SCOPED_TRACE(::testing::Message() << "heads " << c.n_heads << " stride " << c.head_stride
                         << " offset " << c.offset << " n_rot " << c.n_rot << " neox "
                         << (style == RopeStyle::Neox) << " yarn " << yarn << " n_past " << n_past
                         << " n_tok " << n_tok);
            const int64_t ld = c.offset + c.n_heads * c.head_stride + 3;
            auto x = random_floats(static_cast<size_t>(n_tok * ld), 1.0f, static_cast<uint32_t>(n_tok + 7 * n_past));
            const auto tab = rope_table(c.n_rot, yarn);
            auto dx = upload(x);
            auto dt = upload(tab);
            auto dp = upload_pos(static_cast<int32_t>(n_past - 2));
            // t_base 2: positions are *d_pos + 2 + t.
            ASSERT_TRUE(g->a.rope(dx.as<float>(), ld, c.n_heads, c.head_stride, c.offset, c.n_rot,
                                  style, dt.as<float>(), dp.as<int32_t>(), 2, n_tok, nullptr));
            const auto y = download<float>(dx, x.size());
            const int64_t half = c.n_rot / 2;
            std::vector<float> want = x;
            std::vector<double> bound(x.size(), 0.0);  // elements not rotated stay exact
            for (int64_t t = 0; t < n_tok; ++t)
              for (int64_t h = 0; h < c.n_heads; ++h) {
                const int64_t v0 = t * ld + c.offset + h * c.head_stride;
                for (int64_t i = 0; i < half; ++i) {
                  const double th = static_cast<double>(n_past + t) * static_cast<double>(tab[i]);
                  const float cs = static_cast<float>(std::cos(th)), sn = static_cast<float>(std::sin(th));
                  const int64_t ia = v0 + (style == RopeStyle::Neox ? i : 2 * i);
                  const int64_t ib = ia + (style == RopeStyle::Neox ? half : 1);
                  const float x0 = x[ia], x1 = x[ib];
                  want[ia] = x0 * cs - x1 * sn;
                  want[ib] = x0 * sn + x1 * cs;
                  bound[ia] = bound[ib] = 2e-6 * (std::fabs(x0) + std::fabs(x1));
                }
              }
            for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], want[i], bound[i]) << "element " << i;
          }
}

TEST(CudaAttention, KvStoreRoundsLikeTheCpuCacheAndStaysInItsRows) {
  KTX_NEED_GPU(g);
  for (int64_t n_past : {0, 1, 37, 300})
    for (int64_t n_tok : {1, 3, 8, 33}) {
      const int64_t width = 80, ld_cache = 96, ld_src = 83, n_ctx = n_past + n_tok + 2;
      auto src = random_floats(static_cast<size_t>(n_tok * ld_src), 300.0f, static_cast<uint32_t>(n_tok));
      src[5] = 70000.0f;    // overflows f16: inf, as fp32_to_fp16
      src[6] = 1.0009765625f + 0.00048828125f;  // a tie: rounds to even
      std::vector<uint16_t> cache(static_cast<size_t>(n_ctx * ld_cache), 0x1234);
      auto ds = upload(src);
      auto dc = upload(cache);
      auto dp = upload_pos(static_cast<int32_t>(n_past));
      ASSERT_TRUE(g->a.kv_store(ds.as<float>(), ld_src, width, dc.get(), ld_cache, n_ctx,
                                dp.as<int32_t>(), 0, n_tok, nullptr));
      const auto got = download<uint16_t>(dc, cache.size());
      for (int64_t r = 0; r < n_ctx; ++r)
        for (int64_t i = 0; i < ld_cache; ++i) {
          const int64_t t = r - n_past;
          const uint16_t want = (t >= 0 && t < n_tok && i < width) ? fp32_to_fp16(src[t * ld_src + i]) : 0x1234;
          ASSERT_EQ(got[r * ld_cache + i], want) << "n_past " << n_past << " row " << r << " col " << i;
        }
      // Rows at or past n_ctx are dropped, not written out of bounds.
      auto dp2 = upload_pos(static_cast<int32_t>(n_ctx - 1));
      ASSERT_TRUE(g->a.kv_store(ds.as<float>(), ld_src, width, dc.get(), ld_cache, n_ctx,
                                dp2.as<int32_t>(), 0, 2, nullptr));
      const auto got2 = download<uint16_t>(dc, cache.size());
      for (int64_t i = 0; i < width; ++i)
        ASSERT_EQ(got2[(n_ctx - 1) * ld_cache + i], fp32_to_fp16(src[i]));
    }
}

// The fused MLA cache store against the kernels it replaces, run one after another: the same
// f16 bits (the same norm thread count and sum order, the same rope arithmetic), rows of other
// positions untouched, rows at or past n_ctx dropped.
TEST(CudaAttention, MlaKvStoreIsNormRopeAndStoreInOneLaunch) {
  KTX_NEED_GPU(g);
  if (!g->a.has_mla_kv_store()) GTEST_FAIL() << "the cubin lacks ktx_mla_kv_store";
  struct Case { int64_t kvl, rope, pad; };
  const Case cases[] = {{512, 64, 0}, {64, 16, 0}, {128, 32, 0}, {512, 64, 3}};
  for (const Case& c : cases)
    for (RopeStyle style : {RopeStyle::Normal, RopeStyle::Neox})
      for (int64_t n_past : {0, 37})
        for (int64_t n_tok : {1, 3, 8, 33}) {
          SCOPED_TRACE(::testing::Message() << "kvl " << c.kvl << " rope " << c.rope << " pad "
                       << c.pad << " neox " << (style == RopeStyle::Neox) << " n_past " << n_past
                       << " n_tok " << n_tok);
          const int64_t ld = c.kvl + c.rope + c.pad, n_ctx = n_past + n_tok + 2;
          const auto kv = random_floats(static_cast<size_t>(n_tok * ld), 3.0f, static_cast<uint32_t>(n_tok + c.kvl));
          const auto w = random_floats(static_cast<size_t>(c.kvl), 1.0f, 5);
          const auto tab = rope_table(c.rope, true);
          std::vector<uint16_t> fill(static_cast<size_t>(n_ctx * (c.kvl + c.rope)), 0x1234);
          auto dkv = upload(kv), dw = upload(w), dt = upload(tab);
          auto dp = upload_pos(static_cast<int32_t>(n_past));
          auto lat_a = upload(fill), pe_a = upload(fill), lat_b = upload(fill), pe_b = upload(fill);
          ASSERT_TRUE(g->a.mla_kv_store(dkv.as<float>(), ld, c.kvl, c.rope, dw.as<float>(), 1e-6f,
                                        style, dt.as<float>(), lat_a.get(), pe_a.get(), n_ctx,
                                        dp.as<int32_t>(), 0, n_tok, nullptr));
          // The unfused sequence: norm into a float row, rope in place, two stores.
          auto scratch = upload(kv);
          auto lat_f = upload(std::vector<float>(static_cast<size_t>(n_tok * c.kvl), 0.0f));
          ASSERT_TRUE(g->k.rms_norm(scratch.as<float>(), ld, dw.as<float>(), lat_f.as<float>(),
                                    c.kvl, n_tok, c.kvl, 1e-6f, nullptr));
          ASSERT_TRUE(g->a.rope(scratch.as<float>() + c.kvl, ld, 1, c.rope, 0, c.rope, style,
                                dt.as<float>(), dp.as<int32_t>(), 0, n_tok, nullptr));
          ASSERT_TRUE(g->a.kv_store(lat_f.as<float>(), c.kvl, c.kvl, lat_b.get(), c.kvl, n_ctx,
                                    dp.as<int32_t>(), 0, n_tok, nullptr));
          ASSERT_TRUE(g->a.kv_store(scratch.as<float>() + c.kvl, ld, c.rope, pe_b.get(), c.rope,
                                    n_ctx, dp.as<int32_t>(), 0, n_tok, nullptr));
          const auto la = download<uint16_t>(lat_a, static_cast<size_t>(n_ctx * c.kvl));
          const auto lb = download<uint16_t>(lat_b, la.size());
          const auto pa = download<uint16_t>(pe_a, static_cast<size_t>(n_ctx * c.rope));
          const auto pb = download<uint16_t>(pe_b, pa.size());
          for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << "latent element " << i;
          for (size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pa[i], pb[i]) << "k_pe element " << i;
          for (int64_t i = 0; i < c.kvl; ++i) ASSERT_EQ(la[static_cast<size_t>(i)], n_past ? 0x1234 : lb[static_cast<size_t>(i)]);
          // Rows at or past n_ctx are dropped.
          auto dp2 = upload_pos(static_cast<int32_t>(n_ctx));
          ASSERT_TRUE(g->a.mla_kv_store(dkv.as<float>(), ld, c.kvl, c.rope, dw.as<float>(), 1e-6f,
                                        style, dt.as<float>(), lat_a.get(), pe_a.get(), n_ctx,
                                        dp2.as<int32_t>(), 0, n_tok, nullptr));
          EXPECT_EQ(download<uint16_t>(lat_a, la.size()), la);
          EXPECT_EQ(download<uint16_t>(pe_a, pa.size()), pa);
        }
}

// GQA's fused per-head steps against add_bias, rms_norm, rope and kv_store run one after
// another: the same float queries and the same f16 cache bits.
TEST(CudaAttention, HeadNormRopeIsBiasNormRopeAndStoreInOneLaunch) {
  KTX_NEED_GPU(g);
  if (!g->a.has_head_norm_rope()) GTEST_FAIL() << "the cubin lacks ktx_head_norm_rope";
  struct Case { int64_t heads, hd, n_rot, dv; bool bias, norm; };
  const Case cases[] = {{4, 128, 128, 128, false, true}, {2, 64, 64, 64, true, false},
                        {3, 128, 64, 128, true, true},   {2, 256, 256, 256, false, false},
                        {2, 192, 64, 128, false, true}};
  for (const Case& c : cases)
    for (RopeStyle style : {RopeStyle::Normal, RopeStyle::Neox})
      for (int64_t n_tok : {1, 3, 8})
        for (bool keys : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "heads " << c.heads << " hd " << c.hd << " n_rot "
                       << c.n_rot << " bias " << c.bias << " norm " << c.norm << " neox "
                       << (style == RopeStyle::Neox) << " n_tok " << n_tok << " keys " << keys);
          const int64_t n_past = 5, n_ctx = n_past + n_tok + 1, ld = c.heads * c.hd, ldv = c.heads * c.dv;
          const auto x = random_floats(static_cast<size_t>(n_tok * ld), 2.0f, static_cast<uint32_t>(c.hd + n_tok));
          const auto v = random_floats(static_cast<size_t>(n_tok * ldv), 2.0f, 9);
          const auto bias = random_floats(static_cast<size_t>(ld), 0.5f, 3);
          const auto vbias = random_floats(static_cast<size_t>(ldv), 0.5f, 4);
          const auto w = random_floats(static_cast<size_t>(c.hd), 1.0f, 5);
          const auto tab = rope_table(c.n_rot, false);
          auto dx = upload(x), dv = upload(v), db = upload(bias), dvb = upload(vbias), dw = upload(w), dt = upload(tab);
          auto dp = upload_pos(static_cast<int32_t>(n_past));
          std::vector<uint16_t> fill_k(static_cast<size_t>(n_ctx * ld), 0x1234), fill_v(static_cast<size_t>(n_ctx * ldv), 0x1234);
          auto kc_a = upload(fill_k), vc_a = upload(fill_v), kc_b = upload(fill_k), vc_b = upload(fill_v);
          const float* bp = c.bias ? db.as<float>() : nullptr;
          const float* vbp = c.bias ? dvb.as<float>() : nullptr;
          const float* wp = c.norm ? dw.as<float>() : nullptr;
          AttnKernels::HeadV hv;
          if (keys) hv = {dv.as<float>(), ldv, c.dv, vbp, vc_a.get()};
          ASSERT_TRUE(g->a.head_norm_rope(dx.as<float>(), ld, c.heads, c.hd, bp, wp, 1e-6f, c.n_rot,
                                          style, dt.as<float>(), dp.as<int32_t>(), 0, n_tok,
                                          keys ? kc_a.get() : nullptr, n_ctx, hv, nullptr));
          // The unfused steps on copies.
          auto ux = upload(x), uv = upload(v);
          if (c.bias) ASSERT_TRUE(g->a.add_bias(ux.as<float>(), ld, db.as<float>(), ld, n_tok, nullptr));
          if (c.norm)
            ASSERT_TRUE(g->k.rms_norm(ux.as<float>(), c.hd, dw.as<float>(), ux.as<float>(), c.hd,
                                      n_tok * c.heads, c.hd, 1e-6f, nullptr));
          ASSERT_TRUE(g->a.rope(ux.as<float>(), ld, c.heads, c.hd, 0, c.n_rot, style, dt.as<float>(),
                                dp.as<int32_t>(), 0, n_tok, nullptr));
          if (!keys) {
            const auto got = download<float>(dx, x.size()), want = download<float>(ux, x.size());
            for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "query element " << i;
            continue;
          }
          EXPECT_EQ(download<float>(dx, x.size()), x) << "keys: x is left as it was";
          if (c.bias) ASSERT_TRUE(g->a.add_bias(uv.as<float>(), ldv, dvb.as<float>(), ldv, n_tok, nullptr));
          ASSERT_TRUE(g->a.kv_store(ux.as<float>(), ld, ld, kc_b.get(), ld, n_ctx, dp.as<int32_t>(), 0, n_tok, nullptr));
          ASSERT_TRUE(g->a.kv_store(uv.as<float>(), ldv, ldv, vc_b.get(), ldv, n_ctx, dp.as<int32_t>(), 0, n_tok, nullptr));
          const auto ka = download<uint16_t>(kc_a, fill_k.size()), kb = download<uint16_t>(kc_b, fill_k.size());
          const auto va = download<uint16_t>(vc_a, fill_v.size()), vb = download<uint16_t>(vc_b, fill_v.size());
          for (size_t i = 0; i < ka.size(); ++i) ASSERT_EQ(ka[i], kb[i]) << "k cache element " << i;
          for (size_t i = 0; i < va.size(); ++i) ASSERT_EQ(va[i], vb[i]) << "v cache element " << i;
        }
}

TEST(CudaAttention, BiasAddBroadcastsOverTokens) {
  KTX_NEED_GPU(g);
  const int64_t n = 1000, ld = 1003, n_tok = 5;
  auto x = random_floats(static_cast<size_t>(n_tok * ld), 1.0f, 1);
  const auto b = random_floats(static_cast<size_t>(n), 1.0f, 2);
  auto dx = upload(x);
  auto db = upload(b);
  ASSERT_TRUE(g->a.add_bias(dx.as<float>(), ld, db.as<float>(), n, n_tok, nullptr));
  const auto y = download<float>(dx, x.size());
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = 0; i < ld; ++i)
      ASSERT_EQ(y[t * ld + i], i < n ? x[t * ld + i] + b[i] : x[t * ld + i]) << t << "," << i;
}

// ---- per-head GEMVs ----

TEST(CudaAttention, GemvHeadsMatchReference) {
  KTX_NEED_GPU(g);
  struct Case { GGMLType type; int64_t heads, rows_per_head, k; };
  const Case cases[] = {{GGMLType::Q8_0, 4, 64, 128}, {GGMLType::F16, 16, 96, 64},
                        {GGMLType::F32, 3, 512, 32}, {GGMLType::Q4_K, 2, 37, 512},
                        {GGMLType::BF16, 5, 256, 96}, {GGMLType::Q5_0, 3, 37, 128}};
  for (const Case& c : cases)
    for (int64_t n_tok : {1, 3, 8}) {
      SCOPED_TRACE(::testing::Message() << ggml_type_name(static_cast<uint32_t>(c.type)) << " heads "
                   << c.heads << " rows " << c.rows_per_head << " k " << c.k << " tokens " << n_tok);
      // gemv_heads: head h's rows are [h·(rows + 2), +rows) of a tensor with 2 spare rows per head.
      const int64_t stride_rows = c.rows_per_head + 2;
      const HostWeight w = make_weight(c.type, c.k, c.heads * stride_rows, 0.1f, 11);
      const int64_t head_x = c.k + 4, ld_x = c.heads * head_x + 1;
      const int64_t head_y = c.rows_per_head + 1, ld_y = c.heads * head_y + 2;
      const auto x = random_floats(static_cast<size_t>(n_tok * ld_x), 1.0f, 5);
      auto dx = upload(x);
      auto dy = upload(std::vector<float>(static_cast<size_t>(n_tok * ld_y), -7.0f));
      ASSERT_TRUE(g->a.gemv_heads(c.type, w.dev.get(), stride_rows * w.row_bytes, w.row_bytes,
                                  dx.as<float>(), ld_x, head_x, dy.as<float>(), ld_y, head_y,
                                  c.heads, c.rows_per_head, c.k, n_tok, nullptr));
      auto y = download<float>(dy, static_cast<size_t>(n_tok * ld_y));
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t h = 0; h < c.heads; ++h)
          for (int64_t r = 0; r < head_y; ++r) {
            const float got = y[t * ld_y + h * head_y + r];
            if (r >= c.rows_per_head) {
              ASSERT_EQ(got, -7.0f) << "wrote past a head's rows";
              continue;
            }
            double s = 0, sa = 0;
            for (int64_t i = 0; i < c.k; ++i) {
              const double p = double(w.row(h * stride_rows + r)[i]) * x[t * ld_x + h * head_x + i];
              s += p;
              sa += std::fabs(p);
            }
            ASSERT_NEAR(got, s, 1e-5 * sa + 1e-6) << "t " << t << " h " << h << " r " << r;
          }
      // gemv_t_heads on the same tensor: head h's n_in = rows_per_head rows, n_out = k columns.
      const int64_t hy2 = c.k + 3, ly2 = c.heads * hy2;
      const int64_t hx2 = c.rows_per_head + 1, lx2 = c.heads * hx2;
      const auto x2 = random_floats(static_cast<size_t>(n_tok * lx2), 1.0f, 6);
      auto dx2 = upload(x2);
      auto dy2 = upload(std::vector<float>(static_cast<size_t>(n_tok * ly2), -7.0f));
      ASSERT_TRUE(g->a.gemv_t_heads(c.type, w.dev.get(), stride_rows * w.row_bytes, w.row_bytes,
                                    dx2.as<float>(), lx2, hx2, dy2.as<float>(), ly2, hy2, c.heads,
                                    c.rows_per_head, c.k, n_tok, nullptr));
      y = download<float>(dy2, static_cast<size_t>(n_tok * ly2));
      for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t h = 0; h < c.heads; ++h)
          for (int64_t col = 0; col < hy2; ++col) {
            const float got = y[t * ly2 + h * hy2 + col];
            if (col >= c.k) {
              ASSERT_EQ(got, -7.0f) << "wrote past a head's columns";
              continue;
            }
            double s = 0, sa = 0;
            for (int64_t n = 0; n < c.rows_per_head; ++n) {
              const double p = double(w.row(h * stride_rows + n)[col]) * x2[t * lx2 + h * hx2 + n];
              s += p;
              sa += std::fabs(p);
            }
            ASSERT_NEAR(got, s, 1e-5 * sa + 1e-6) << "t " << t << " h " << h << " col " << col;
          }
    }
}

// ---- attention cores ----

// n_rows f16 cache rows of width: rows < n_valid random ~N(0, 1), the rest NaN.
std::vector<uint16_t> cache_rows(int64_t n_rows, int64_t n_valid, int64_t width, uint32_t seed) {
  const auto f = random_floats(static_cast<size_t>(n_rows * width), 1.0f, seed);
  std::vector<uint16_t> h(f.size());
  for (size_t i = 0; i < f.size(); ++i)
    h[i] = static_cast<int64_t>(i) < n_valid * width ? fp32_to_fp16(f[i]) : kNanF16;
  return h;
}

// Softmax-weighted sum in double: o[c] = Σ_j softmax(scores)_j · val(j, c).
template <typename Score, typename Val>
void attend_ref(int64_t n_keys, int64_t width, Score score, Val val, double* o) {
  std::vector<double> p(static_cast<size_t>(n_keys));
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n_keys; ++j) mx = std::max(mx, p[j] = score(j));
  double sum = 0;
  for (int64_t j = 0; j < n_keys; ++j) sum += p[j] = std::exp(p[j] - mx);
  for (int64_t c = 0; c < width; ++c) o[c] = 0;
  for (int64_t j = 0; j < n_keys; ++j)
    for (int64_t c = 0; c < width; ++c) o[c] += p[j] / sum * val(j, c);
}

struct GqaRun {
  std::vector<float> out;  // [n_tok][n_head * dv] (ld = n_head * dv + 5)
  int64_t ld = 0;
};

// Runs the GQA core on a fresh cache; returns the output and checks it against the reference
// when `check`.
GqaRun run_gqa(Gpu& g, const GqaCoreDesc& d, int64_t n_past, int64_t n_tok, int64_t n_split,
               bool check) {
  const int64_t nk = d.n_head_kv * d.head_dim_k, nv = d.n_head_kv * d.head_dim_v;
  const int64_t n_valid = n_past + n_tok, n_ctx = n_valid + 7;
  const int64_t ld_q = d.n_head * d.head_dim_k + 3;
  GqaRun r;
  r.ld = d.n_head * d.head_dim_v + 5;
  const auto q = random_floats(static_cast<size_t>(n_tok * ld_q), 2.0f, 17);
  const auto kc = cache_rows(n_ctx, n_valid, nk, 18), vc = cache_rows(n_ctx, n_valid, nv, 19);
  auto dq = upload(q);
  auto dk = upload(kc);
  auto dv = upload(vc);
  auto dpos = upload_pos(static_cast<int32_t>(n_past - 1));  // t_base 1
  const int64_t splits = n_split > 0 ? n_split : gqa_splits(d, n_tok, n_ctx);
  auto part = upload(std::vector<float>(static_cast<size_t>(
      std::max<int64_t>(1, flash_partial_floats(splits, n_tok, d.n_head, d.head_dim_v))), NAN));
  auto dout = upload(std::vector<float>(static_cast<size_t>(n_tok * r.ld), -9.0f));
  const Status st = g.a.gqa(d, dq.as<float>(), ld_q, dk.get(), dv.get(), n_ctx, dpos.as<int32_t>(), 1,
                            n_tok, dout.as<float>(), r.ld, {part.as<float>(), flash_partial_floats(splits, n_tok, d.n_head, d.head_dim_v)},
                            nullptr, n_split);
  EXPECT_TRUE(st) << st.message();
  r.out = download<float>(dout, static_cast<size_t>(n_tok * r.ld));
  if (!check) return r;
  const auto k = widen_f16(kc), v = widen_f16(vc);
  const int64_t group = d.n_head / d.n_head_kv;
  std::vector<double> o(static_cast<size_t>(d.head_dim_v));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t h = 0; h < d.n_head; ++h) {
      const int64_t kvh = h / group;
      const float* qh = q.data() + t * ld_q + h * d.head_dim_k;
      attend_ref(
          n_past + t + 1, d.head_dim_v,
          [&](int64_t j) {
            double s = 0;
            for (int64_t i = 0; i < d.head_dim_k; ++i) s += double(qh[i]) * k[j * nk + kvh * d.head_dim_k + i];
            return s * d.scale;
          },
          [&](int64_t j, int64_t c) { return double(v[j * nv + kvh * d.head_dim_v + c]); }, o.data());
      for (int64_t c = 0; c < d.head_dim_v; ++c) {
        const float got = r.out[t * r.ld + h * d.head_dim_v + c];
        if (!(std::fabs(got - o[c]) <= 5e-5)) {
          ADD_FAILURE() << "t " << t << " head " << h << " col " << c << ": got " << got << " want " << o[c];
          return r;
        }
      }
    }
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t i = d.n_head * d.head_dim_v; i < r.ld; ++i)
      EXPECT_EQ(r.out[t * r.ld + i], -9.0f) << "past the row";
  return r;
}

TEST(CudaAttention, GqaCoreMatchesReference) {
  KTX_NEED_GPU(g);
  const std::pair<int64_t, int64_t> dims[] = {{64, 64}, {128, 128}, {192, 128}, {192, 192}, {256, 256}};
  for (auto [dk, dv] : dims)
    for (int64_t group : {1, 2, 8, 16})
      for (int64_t n_past : {0, 1, 37, 300})
        for (int64_t n_tok : {1, 3, 8, 33}) {
          if (group == 16 && dk != 128) continue;
          const GqaCoreDesc d{2 * group, 2, dk, dv, static_cast<float>(1.0 / std::sqrt(double(dk)))};
          SCOPED_TRACE(::testing::Message() << "dk " << dk << " dv " << dv << " group " << group
                       << " n_past " << n_past << " n_tok " << n_tok);
          run_gqa(*g, d, n_past, n_tok, 0, true);
          if (n_past == 300) run_gqa(*g, d, n_past, n_tok, 3, true);  // forced splits
          if (::testing::Test::HasFailure()) return;
        }
}

TEST(CudaAttention, SplitCountOnlyChangesRounding) {
  KTX_NEED_GPU(g);
  const GqaCoreDesc d{16, 2, 128, 128, 0.088f};
  const GqaRun one = run_gqa(*g, d, 300, 3, 1, true);
  for (int64_t s : {2, 5, 13, 32}) {
    const GqaRun r = run_gqa(*g, d, 300, 3, s, false);
    for (size_t i = 0; i < one.out.size(); ++i)
      ASSERT_NEAR(r.out[i], one.out[i], 2e-6) << s << " splits, element " << i;
  }
}

// MLA core over a latent cache [n_ctx][kvl] and k_pe cache [n_ctx][rope].
void run_mla(Gpu& g, const MlaCoreDesc& d, int64_t n_past, int64_t n_tok, int64_t n_split) {
  const int64_t H = d.n_head, kvl = d.kv_lora, rope = d.rope;
  const int64_t n_valid = n_past + n_tok, n_ctx = n_valid + 5;
  const int64_t ld_qa = H * kvl + 2, q_pe_head = rope + 3, ld_qpe = H * q_pe_head + 1, ld_out = H * kvl + 4;
  const auto qa = random_floats(static_cast<size_t>(n_tok * ld_qa), 1.0f, 21);
  const auto qp = random_floats(static_cast<size_t>(n_tok * ld_qpe), 1.0f, 22);
  const auto lat = cache_rows(n_ctx, n_valid, kvl, 23), kpe = cache_rows(n_ctx, n_valid, rope, 24);
  auto dqa = upload(qa);
  auto dqp = upload(qp);
  auto dl = upload(lat);
  auto dk = upload(kpe);
  auto dpos = upload_pos(static_cast<int32_t>(n_past));
  const int64_t splits = n_split > 0 ? n_split : mla_splits(d, n_tok, n_ctx);
  const int64_t pf = flash_partial_floats(splits, n_tok, H, kvl);
  auto part = upload(std::vector<float>(static_cast<size_t>(std::max<int64_t>(1, pf)), NAN));
  auto dout = upload(std::vector<float>(static_cast<size_t>(n_tok * ld_out), -9.0f));
  const Status st = g.a.mla(d, dqa.as<float>(), ld_qa, dqp.as<float>(), ld_qpe, q_pe_head, dl.get(),
                            dk.get(), n_ctx, dpos.as<int32_t>(), 0, n_tok, dout.as<float>(), ld_out,
                            {part.as<float>(), pf}, nullptr, n_split);
  ASSERT_TRUE(st) << st.message();
  const auto out = download<float>(dout, static_cast<size_t>(n_tok * ld_out));
  const auto c = widen_f16(lat), kp = widen_f16(kpe);
  std::vector<double> o(static_cast<size_t>(kvl));
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const float* a = qa.data() + t * ld_qa + h * kvl;
      const float* b = qp.data() + t * ld_qpe + h * q_pe_head;
      attend_ref(
          n_past + t + 1, kvl,
          [&](int64_t j) {
            double s = 0;
            for (int64_t i = 0; i < kvl; ++i) s += double(a[i]) * c[j * kvl + i];
            for (int64_t i = 0; i < rope; ++i) s += double(b[i]) * kp[j * rope + i];
            return s * d.scale;
          },
          [&](int64_t j, int64_t col) { return double(c[j * kvl + col]); }, o.data());
      for (int64_t col = 0; col < kvl; ++col) {
        const float got = out[t * ld_out + h * kvl + col];
        ASSERT_TRUE(std::fabs(got - o[col]) <= 5e-5)
            << "t " << t << " head " << h << " col " << col << ": got " << got << " want " << o[col];
      }
    }
    for (int64_t i = H * kvl; i < ld_out; ++i) ASSERT_EQ(out[t * ld_out + i], -9.0f) << "past the row";
  }
}

TEST(CudaAttention, MlaCoreMatchesReference) {
  KTX_NEED_GPU(g);
  for (int64_t kvl : {64, 512})
    for (int64_t rope : {16, 64})
      for (int64_t heads : {4, 16, 128})
        for (int64_t n_past : {0, 1, 37, 300})
          for (int64_t n_tok : {1, 3, 8, 33}) {
            // 128 heads: the real shape only, and not every prefill (the double reference is slow).
            if (heads == 128 && (kvl != 512 || rope != 64 || (n_tok == 33 && n_past != 300))) continue;
            const MlaCoreDesc d{heads, kvl, rope, static_cast<float>(1.2 / std::sqrt(double(kvl + rope)))};
            SCOPED_TRACE(::testing::Message() << "kv_lora " << kvl << " rope " << rope << " heads "
                         << heads << " n_past " << n_past << " n_tok " << n_tok);
            run_mla(*g, d, n_past, n_tok, 0);
            if (n_past == 300 && n_tok <= 3) run_mla(*g, d, n_past, n_tok, 7);
            if (::testing::Test::HasFailure()) return;
          }
}

}  // namespace
}  // namespace ktx::cuda
