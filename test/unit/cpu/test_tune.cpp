// The tuner on tiny shapes: candidates are valid and include the rule-of-thumb choice, a tune
// run writes one [tuned] entry per descriptor that reads back through HwProfile::load (with
// the rest of the profile unchanged), and missing or invalid profiles and bad options are
// refused with messages naming the file or the descriptor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "common/hw/cpu_features.h"
#include "tools/ktx-run/tune/tune.h"

namespace ktx::cpu {
namespace {

const std::string kProfile =
    "schema_version = 1\n"
    "hostname = \"tiny\"\n"
    "[cpu]\n"
    "physical_cores = 2\n"
    "[memory]\n"
    "total_bytes = 1000000\n"
    "read_bw_gbs = 12.5\n";

MoeDesc tiny_desc(GGMLType type, int64_t n_embd, int64_t n_ff) {
  MoeDesc d;
  d.n_embd = n_embd;
  d.n_ff = n_ff;
  d.n_expert = 6;
  d.top_k = 2;
  d.gate_type = d.up_type = d.down_type = type;
  d.max_tokens = 4;
  d.isa = best_isa_tier(detect_cpu_isa());
  return d;
}

TuneOptions tiny_options() {
  TuneOptions o;
  o.max_threads = 2;
  o.seconds = 0.02;
  o.tokens = 2;
  return o;
}

std::string temp_path(const std::string& name) {
  return std::string(KTX_BINARY_DIR) + "/test_tune_" + name;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

TEST(Tune, CandidatesAreValidAndIncludeTheDefaultRule) {
  const MoeDesc d = tiny_desc(GGMLType::Q8_0, 256, 64);
  const auto c = tune_candidates(d, 8);
  ASSERT_FALSE(c.empty());
  for (const auto& cfg : c) {
    EXPECT_TRUE(cfg.validate().is_ok()) << cfg.to_string();
    EXPECT_GE(cfg.threads, 1);
    EXPECT_LE(cfg.threads, 8);
  }
  const MoeConfig rule = select_moe_config(d, 8);
  EXPECT_TRUE(std::any_of(c.begin(), c.end(), [&](const MoeConfig& x) { return x == rule; }));
}

TEST(Tune, WritesTunedEntriesThatReadBack) {
  const std::string path = temp_path("ok.toml");
  write_file(path, kProfile);
  const std::vector<MoeDesc> descs = {tiny_desc(GGMLType::Q8_0, 256, 64),
                                      tiny_desc(GGMLType::Q4_K, 256, 256)};
  int results = 0;
  const Status st = tune_profile(path, descs, detect_cpu_isa(), tiny_options(),
                                 [&](const TuneResult& r) {
                                   ++results;
                                   ASSERT_FALSE(r.runs.empty());
                                   for (const auto& m : r.runs) {
                                     EXPECT_GT(m.us, 0.0);
                                     EXPECT_GT(m.gbs, 0.0);
                                     EXPECT_GE(m.us, r.winner().us);
                                   }
                                   EXPECT_NE(format_tune_table(r).find(r.desc.to_string()),
                                             std::string::npos);
                                 });
  ASSERT_TRUE(st.is_ok()) << st.message();
  EXPECT_EQ(results, 2);
  auto hw = HwProfile::load(path);
  ASSERT_TRUE(hw.has_value()) << hw.status().message();
  EXPECT_EQ(hw->hostname, "tiny");
  EXPECT_EQ(hw->memory.read_bw_gbs, 12.5);
  ASSERT_EQ(hw->tuned.size(), 2u);
  for (const auto& d : descs) {
    ASSERT_EQ(hw->tuned.count(d.to_string()), 1u) << d.to_string();
    auto cfg = MoeConfig::parse(hw->tuned.at(d.to_string()));
    ASSERT_TRUE(cfg.has_value()) << cfg.status().message();
    const auto cands = tune_candidates(d, 2);
    EXPECT_TRUE(std::any_of(cands.begin(), cands.end(), [&](const MoeConfig& x) {
      return x == *cfg;
    })) << cfg->to_string();
  }
  std::remove(path.c_str());
}

TEST(Tune, MissingOrInvalidProfileIsRefused) {
  const std::vector<MoeDesc> descs = {tiny_desc(GGMLType::Q8_0, 256, 64)};
  const std::string missing = temp_path("missing.toml");
  std::remove(missing.c_str());
  Status st = tune_profile(missing, descs, detect_cpu_isa(), tiny_options(), nullptr);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find(missing), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cannot open"), std::string::npos) << st.message();

  const std::string bad = temp_path("bad.toml");
  write_file(bad, "schema_version = 1\n[cpu]\nphysical_cores = \"x\"\n");
  st = tune_profile(bad, descs, detect_cpu_isa(), tiny_options(), nullptr);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find(bad + ":3:"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("cpu.physical_cores"), std::string::npos) << st.message();
  std::ifstream in(bad);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "schema_version = 1") << "a refused profile must not be rewritten";
  std::remove(bad.c_str());
}

TEST(Tune, BadOptionsNameTheDescriptor) {
  const MoeDesc d = tiny_desc(GGMLType::Q8_0, 256, 64);
  TuneOptions o = tiny_options();
  o.tokens = 5;  // above max_tokens = 4
  auto r = tune_moe_decode(d, detect_cpu_isa(), o);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find(d.to_string()), std::string::npos);
  EXPECT_NE(r.status().message().find("max_tokens=4"), std::string::npos);
  EXPECT_FALSE(moe_preset("llama").has_value());
  EXPECT_EQ(moe_preset("deepseek-v3").value().n_expert, 256);
}

}  // namespace
}  // namespace ktx::cpu
