// host.toml: round trip through to_toml/from_toml, the example profiles in plans/, and each
// class of error (syntax with line:col, wrong type, unknown key, missing key, out of range,
// other schema versions), each message naming the key and what was found.
#include <gtest/gtest.h>

#include <string>

#include "common/hw/hw_profile.h"
#include "test/unit/hw/hw_test_util.h"

namespace ktx {
namespace {

HwProfile sample_profile() {
  HwProfile p;
  p.hostname = "box \"7\"";  // quotes must survive escaping
  p.cpu.model_name = "Test CPU @ 2.0GHz";
  p.cpu.sockets = 2;
  p.cpu.physical_cores = 48;
  p.cpu.logical_cpus = 96;
  p.cpu.numa_nodes = 2;
  p.cpu.l1d_bytes = 48 << 10;
  p.cpu.l2_bytes = 2 << 20;
  p.cpu.l3_bytes = 210ull << 20;
  p.cpu.isa.avx2 = p.cpu.isa.fma = p.cpu.isa.avx512f = p.cpu.isa.amx_int8 = true;
  p.memory.total_bytes = 512ull << 30;
  p.memory.read_bw_gbs = 271.3456789;
  p.gpus.push_back({"GPU A", "sm_90a", 80ull << 30, 3352.5, 55.25, 18.5});
  p.gpus.push_back({"GPU B", "sm_89", 24ull << 30, 1008.0, 0.1});
  p.budgets.threads = 40;
  p.budgets.context = 32768;
  p.budgets.host_reserve_bytes = 0;
  return p;
}

using hw_test::kMinimal;
using hw_test::parse_error;


TEST(HwProfile, RoundTrip) {
  const HwProfile p = sample_profile();
  auto back = HwProfile::from_toml_string(p.to_toml(), "rt.toml");
  ASSERT_TRUE(back.has_value()) << back.status().message() << "\n" << p.to_toml();
  EXPECT_TRUE(*back == p) << back->to_toml();
  EXPECT_EQ(back->to_toml(), p.to_toml());  // stable text
}

TEST(HwProfile, SaveAndLoad) {
  const std::string path = std::string(KTX_BINARY_DIR) + "/hw_test_profile.toml";
  const HwProfile p = sample_profile();
  ASSERT_TRUE(p.save(path).is_ok());
  auto back = HwProfile::load(path);
  ASSERT_TRUE(back.has_value()) << back.status().message();
  EXPECT_TRUE(*back == p);
  auto missing = HwProfile::load(path + ".nope");
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.status().message().find(".nope: cannot open"), std::string::npos);
}

TEST(HwProfile, MinimalProfileGetsDocumentedDefaults) {
  auto p = HwProfile::from_toml_string(kMinimal, "host.toml");
  ASSERT_TRUE(p.has_value()) << p.status().message();
  EXPECT_EQ(p->cpu.physical_cores, 8);
  EXPECT_EQ(p->cpu.logical_cpus, 8);  // defaults to physical_cores
  EXPECT_EQ(p->cpu.sockets, 1);
  EXPECT_DOUBLE_EQ(p->memory.read_bw_gbs, 20.0);  // integer accepted for a float key
  EXPECT_TRUE(p->gpus.empty());
  EXPECT_TRUE(p->cpu.isa.names().empty());
  EXPECT_TRUE(p->budgets == Budgets{});
}

TEST(HwProfile, ExampleProfilesLoad) {
  const std::string dir = std::string(KTX_SOURCE_DIR) + "/plans/";
  auto spr = HwProfile::load(dir + "spr-h100.toml");
  ASSERT_TRUE(spr.has_value()) << spr.status().message();
  EXPECT_TRUE(spr->cpu.isa.amx_int8 && spr->cpu.isa.amx_bf16 && spr->cpu.isa.avx512f);
  ASSERT_EQ(spr->gpus.size(), 1u);
  EXPECT_EQ(spr->gpus[0].arch, "sm_90a");
  EXPECT_DOUBLE_EQ(spr->gpus[0].gemm_tflops, 20.0);
  auto epyc = HwProfile::load(dir + "epyc-4090.toml");
  ASSERT_TRUE(epyc.has_value()) << epyc.status().message();
  EXPECT_TRUE(epyc->cpu.isa.avx512f && !epyc->cpu.isa.amx_tile);
  ASSERT_EQ(epyc->gpus.size(), 1u);
  EXPECT_EQ(epyc->gpus[0].arch, "sm_89");
  auto laptop = HwProfile::load(dir + "avx2-cpuonly.toml");
  ASSERT_TRUE(laptop.has_value()) << laptop.status().message();
  EXPECT_TRUE(laptop->cpu.isa.avx2 && !laptop->cpu.isa.avx512f);
  EXPECT_TRUE(laptop->gpus.empty());
  for (const HwProfile* p : {&*spr, &*epyc, &*laptop}) {
    auto again = HwProfile::from_toml_string(p->to_toml(), p->hostname);
    ASSERT_TRUE(again.has_value()) << again.status().message();
    EXPECT_TRUE(*again == *p) << p->hostname;
  }
}

TEST(HwProfile, SyntaxErrorHasLineAndColumn) {
  const std::string msg = parse_error("schema_version = 1\n[cpu]\nphysical_cores = = 3\n");
  EXPECT_EQ(msg.rfind("host.toml:3:", 0), 0u) << msg;
}

TEST(HwProfile, WrongTypeNamesKeyAndFoundType) {
  std::string text = kMinimal;
  text.replace(text.find("physical_cores = 8"), 18, "physical_cores = \"x\"");
  const std::string msg = parse_error(text);
  EXPECT_NE(msg.find("host.toml:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu.physical_cores: expected an integer, found string \"x\""),
            std::string::npos)
      << msg;
  EXPECT_NE(parse_error(kMinimal + "[cpu.isa]\navx2 = 1\n")
                .find("cpu.isa.avx2: expected true or false, found integer"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[budgets]\ncontext = 1.5\n")
                .find("budgets.context: expected an integer, found float"),
            std::string::npos);
}

TEST(HwProfile, UnknownKeysAreRejected) {
  EXPECT_NE(parse_error(kMinimal + "[budgets]\nthreds = 4\n")
                .find("budgets.threds: unknown key (known keys in [budgets]: "),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[cpu.isa]\navx512fp16 = true\n")
                .find("cpu.isa.avx512fp16: unknown ISA feature"),
            std::string::npos);
  EXPECT_NE(parse_error("memroy_gb = 3\n" + kMinimal).find("memroy_gb: unknown key"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[[gpu]]\narch = \"sm_89\"\nmemory_bytes = 5\nvram = 3\n")
                .find("gpu[0].vram: unknown key"),
            std::string::npos);
}

TEST(HwProfile, MissingRequiredKeys) {
  EXPECT_NE(parse_error("[cpu]\nphysical_cores = 1\n").find("host.toml: schema_version: required"),
            std::string::npos);
  std::string no_cores = kMinimal;
  no_cores.erase(no_cores.find("physical_cores = 8\n"), 19);
  EXPECT_NE(parse_error(no_cores).find("cpu.physical_cores: required key is missing"),
            std::string::npos);
  EXPECT_NE(parse_error("schema_version = 1\n[cpu]\nphysical_cores = 1\n").find("[memory]"),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[[gpu]]\nname = \"g\"\nmemory_bytes = 5\n")
                .find("gpu[0].arch: required key is missing"),
            std::string::npos);
}

TEST(HwProfile, OutOfRangeValues) {
  std::string text = kMinimal;
  text.replace(text.find("physical_cores = 8"), 18, "physical_cores = 0");
  EXPECT_NE(parse_error(text).find("cpu.physical_cores: expected an integer in [1, "),
            std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[budgets]\nthreads = -2\n").find("budgets.threads"),
            std::string::npos);
  std::string bw = kMinimal;
  bw.replace(bw.find("read_bw_gbs = 20"), 16, "read_bw_gbs = 0.0");
  EXPECT_NE(parse_error(bw).find("memory.read_bw_gbs: expected a number > 0"), std::string::npos);
  EXPECT_NE(parse_error(kMinimal + "[[gpu]]\narch = \"hopper\"\nmemory_bytes = 5\n")
                .find("gpu[0].arch: expected a CUDA arch like \"sm_90a\""),
            std::string::npos);
  // gemm_tflops is optional, but a number > 0 when present (absent = estimated by ktc).
  const std::string gpu = kMinimal + "[[gpu]]\narch = \"sm_90a\"\nmemory_bytes = 5\n";
  EXPECT_NE(parse_error(gpu + "gemm_tflops = 0\n").find("gpu[0].gemm_tflops: expected a number > 0, found 0"),
            std::string::npos);
  EXPECT_NE(parse_error(gpu + "gemm_tflops = -3.5\n").find("gpu[0].gemm_tflops: expected a number > 0"),
            std::string::npos);
  EXPECT_NE(parse_error(gpu + "gemm_tflops = \"fast\"\n")
                .find("gpu[0].gemm_tflops: expected a number, found string"),
            std::string::npos);
  auto measured = HwProfile::from_toml_string(gpu + "gemm_tflops = 21.5\n", "host.toml");
  ASSERT_TRUE(measured.has_value()) << measured.status().message();
  EXPECT_DOUBLE_EQ(measured->gpus[0].gemm_tflops, 21.5);
  auto absent = HwProfile::from_toml_string(gpu, "host.toml");
  ASSERT_TRUE(absent.has_value()) << absent.status().message();
  EXPECT_EQ(absent->gpus[0].gemm_tflops, 0.0);
  EXPECT_EQ(absent->to_toml().find("\ngemm_tflops"), std::string::npos);  // not written when unset
  std::string logical = kMinimal;
  logical.replace(logical.find("physical_cores = 8"), 18, "physical_cores = 8\nlogical_cpus = 4");
  EXPECT_NE(parse_error(logical).find("cpu.logical_cpus: expected an integer in [8, "),
            std::string::npos);
}

TEST(HwProfile, OtherSchemaVersionsAreRejected) {
  std::string text = kMinimal;
  text.replace(0, 18, "schema_version = 2");
  EXPECT_NE(parse_error(text).find("schema_version: this ktx reads schema_version = 1, found 2"),
            std::string::npos);
  text.replace(0, 18, "schema_version = \"1\"");
  EXPECT_NE(parse_error(text).find("found string \"1\""), std::string::npos);
}

}  // namespace
}  // namespace ktx
