// The engine's fast routed-expert path (runtime/engine/moe_fast.h) on shipped models: with
// kernel descriptors for every MoE layer, logits match the kernels' oracle (same activation
// rounding, exact sums) for decode-sized and prefill-sized calls; descriptors that do not match
// the model, that the CPU cannot run or that do not parse are refused at load naming the layer;
// plans' kernel attributes are read back per layer.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/hw/cpu_features.h"
#include "common/kernels/kernel_desc.h"
#include "runtime/cpu/repack_int8.h"
#include "runtime/engine/engine.h"

namespace ktx {
namespace {

const std::string kModels = std::string(KTX_SHARED_DIR) + "/models/";

struct Loaded {
  std::shared_ptr<const GGUFFile> gguf;
  ModelConfig cfg;
};

Loaded open_model(const std::string& stem) {
  auto f = GGUFFile::open(kModels + stem + ".gguf");
  EXPECT_TRUE(f.has_value()) << f.status().message();
  Loaded l;
  l.gguf = std::shared_ptr<const GGUFFile>(std::move(*f));
  auto cfg = ModelConfig::from_gguf(*l.gguf);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  l.cfg = *cfg;
  return l;
}

// Descriptors for every MoE layer from its tensors, at this CPU's best tier; prefill where the
// types repack exactly.
std::map<int64_t, MoeKernelAttrs> kernels_for(const Loaded& l) {
  std::map<int64_t, MoeKernelAttrs> out;
  const cpu::IsaTier tier = cpu::best_isa_tier(detect_cpu_isa());
  for (int64_t il = 0; il < l.cfg.n_layer; ++il) {
    if (l.cfg.layer_is_dense(il)) continue;
    auto type = [&](const char* what) {
      return l.gguf->find_tensor(fmt::format("blk.{}.ffn_{}_exps.weight", il, what))->type;
    };
    cpu::MoeDesc d{l.cfg.n_embd, l.cfg.n_ff_exp, l.cfg.n_expert, l.cfg.n_expert_used,
                   type("gate"), type("up"), type("down"), 4, tier};
    MoeKernelAttrs k{d.to_string(), cpu::MoeConfig{16, 2, 2}.to_string(), "reference", ""};
    // As the planner: on AMX gate and up must repack (a Q6_K down runs a GEMV inside); on
    // AVX-512 all three must be read in place (K-quant gate/up; no int8 repack); AVX2: none.
    const bool amx = tier == cpu::IsaTier::amx && cpu::repack_int8_supported(d.gate_type) &&
                     cpu::repack_int8_supported(d.up_type);
    const bool avx512 = tier == cpu::IsaTier::avx512 && cpu::prefill_gate_up_in_place(d) &&
                        cpu::prefill_down_in_place(d);
    if (amx || avx512) {
      d.max_tokens = 64;
      k.prefill = d.to_string();
      k.prefill_config = cpu::MoeConfig{32, 2, 2}.to_string();
    }
    out[il] = k;
  }
  return out;
}

double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

class FastMoe : public ::testing::TestWithParam<const char*> {};

// The kernels against their oracle (moe_reference with the kernels' activation rounding) through
// the whole model: float reassociation gives ~1e-6 per position; an activation element landing
// on the other side of an int8 rounding boundary moves a position by up to ~8e-3; a wrong
// kernel by O(0.1..1). Against the float32 engine they must differ (the rounding is applied); how
// much is a property of the model (router near-ties), judged by `ktx-run eval`, not here.
TEST_P(FastMoe, MatchesItsOracleForDecodeAndPrefillCalls) {
  const Loaded l = open_model(GetParam());
  EngineOptions ref_opt;
  ref_opt.threads = 2;
  auto ref = Model::load(l.cfg, l.gguf, ref_opt);
  ASSERT_TRUE(ref.has_value()) << ref.status().message();
  EngineOptions fast_opt = ref_opt;
  fast_opt.moe_kernels = kernels_for(l);
  ASSERT_FALSE(fast_opt.moe_kernels.empty());
  auto fast = Model::load(l.cfg, l.gguf, fast_opt);
  ASSERT_TRUE(fast.has_value()) << fast.status().message();
  EngineOptions oracle_opt = fast_opt;
  oracle_opt.moe_oracle = true;
  auto oracle = Model::load(l.cfg, l.gguf, oracle_opt);
  ASSERT_TRUE(oracle.has_value()) << oracle.status().message();
  EXPECT_FALSE((*ref)->quantizes_activations());
  EXPECT_TRUE((*fast)->quantizes_activations());
  EXPECT_NE((*fast)->kernel_summary().find("decode: gate="), std::string::npos)
      << (*fast)->kernel_summary();

  // 3 tokens: decode kernels (max_tokens 4); 24 tokens: prefill where the layer has it.
  const int64_t V = l.cfg.n_vocab;
  for (int64_t n : {3, 24}) {
    std::vector<int32_t> toks(n);
    for (int64_t i = 0; i < n; ++i) toks[i] = static_cast<int32_t>((i * 37 + 11) % V);
    Session rs(**ref), fs(**fast), os(**oracle);
    auto rl = rs.forward(toks, true);
    auto fl = fs.forward(toks, true);
    auto ol = os.forward(toks, true);
    ASSERT_TRUE(rl.has_value()) << rl.status().message();
    ASSERT_TRUE(fl.has_value()) << fl.status().message();
    ASSERT_TRUE(ol.has_value()) << ol.status().message();
    double worst = 0;
    for (int64_t t = 0; t < n; ++t) worst = std::max(worst, rel_l2(&(*fl)[t * V], &(*ol)[t * V], V));
    EXPECT_LT(worst, 1e-3) << n << " tokens";  // EvalOptions::max_oracle_rel_l2
    EXPECT_NE(*rl, *fl) << n << " tokens: the fast path did not run";
    EXPECT_NE(*rl, *ol) << n << " tokens: the oracle applied no rounding";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FastMoe,
                         ::testing::Values("qwen3moe.Q8_0", "dsv3.Q4_K_M", "mixtral.Q4_K_M"));

TEST(FastMoeLoad, RefusesADescriptorThatDoesNotMatchTheTensors) {
  const Loaded l = open_model("qwen3moe.Q8_0");
  EngineOptions opt;
  opt.threads = 1;
  opt.moe_kernels = kernels_for(l);
  auto& k = opt.moe_kernels.begin()->second;
  auto d = cpu::MoeDesc::parse(k.decode);
  ASSERT_TRUE(d.has_value());
  d->down_type = GGMLType::Q4_0;
  k.decode = d->to_string();
  auto m = Model::load(l.cfg, l.gguf, opt);
  ASSERT_FALSE(m.has_value());
  const std::string msg = m.status().message();
  EXPECT_NE(msg.find(fmt::format("blk.{}.ffn_moe", opt.moe_kernels.begin()->first)), std::string::npos) << msg;
  EXPECT_NE(msg.find("ffn_down_exps.weight' is Q8_0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expects Q4_0"), std::string::npos) << msg;
}

TEST(FastMoeLoad, RefusesATierThisCpuLacks) {
  const Loaded l = open_model("qwen3moe.Q8_0");
  EngineOptions opt;
  opt.threads = 1;
  opt.moe_kernels = kernels_for(l);
  CpuIsa avx2_only;  // stands for a CPU without AVX-512 and AMX, whatever this one has
  avx2_only.avx2 = avx2_only.fma = avx2_only.f16c = true;
  opt.cpu_isa = avx2_only;
  auto& k = opt.moe_kernels.begin()->second;
  k.decode.replace(k.decode.rfind("isa=") + 4, std::string::npos, "avx512");
  auto m = Model::load(l.cfg, l.gguf, opt);
  ASSERT_FALSE(m.has_value());
  const std::string msg = m.status().message();
  EXPECT_NE(msg.find("kernel tier 'avx512' is not supported by this CPU"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("avx512f"), std::string::npos) << "the restricted features are listed: " << msg;
}

TEST(FastMoeLoad, RefusesMalformedStringsAndLayersWithoutExperts) {
  const Loaded l = open_model("dsv3.Q8_0");  // layer 0 is dense
  EngineOptions opt;
  opt.threads = 1;
  opt.moe_kernels = kernels_for(l);
  const MoeKernelAttrs good = opt.moe_kernels.begin()->second;
  opt.moe_kernels.begin()->second.decode_config = "cfg:rows_per_task=16,unroll=2";
  auto m = Model::load(l.cfg, l.gguf, opt);
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.status().message().find("threads"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("kernel_decode"), std::string::npos) << m.status().message();

  opt.moe_kernels = {{0, good}};
  m = Model::load(l.cfg, l.gguf, opt);
  ASSERT_FALSE(m.has_value());
  EXPECT_NE(m.status().message().find("layer 0, which has no routed experts"), std::string::npos)
      << m.status().message();
}

TEST(FastMoeLoad, PlanAttributesAreReadBackPerLayer) {
  Plan plan;
  PlanOp moe;
  moe.name = "blk.2.ffn_moe";
  moe.kind = "routed_experts";
  moe.layer = 2;
  moe.attrs = {{"kernel_decode", "moe:a"}, {"config_decode", "cfg:b"},
               {"kernel_prefill", "reference"}};
  PlanOp ref = moe;
  ref.name = "blk.3.ffn_moe";
  ref.layer = 3;
  ref.attrs = {{"kernel", "reference"}};
  plan.program = {moe, ref};
  auto k = moe_kernels_from_plan(plan);
  ASSERT_TRUE(k.has_value()) << k.status().message();
  ASSERT_EQ(k->size(), 1u);
  EXPECT_EQ(k->at(2).decode, "moe:a");
  EXPECT_EQ(k->at(2).decode_config, "cfg:b");
  EXPECT_EQ(k->at(2).prefill, "reference");

  plan.program[0].attrs.erase("config_decode");
  k = moe_kernels_from_plan(plan);
  ASSERT_FALSE(k.has_value());
  EXPECT_NE(k.status().message().find("'blk.2.ffn_moe'"), std::string::npos) << k.status().message();
}

}  // namespace
}  // namespace ktx
