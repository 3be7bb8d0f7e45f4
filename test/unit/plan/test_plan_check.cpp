// check_plan_gguf and check_plan_host: a plan refuses the wrong model file (naming both sides
// and the re-plan command) and hosts that lack an ISA feature or GPU arch it assumes.
#include "common/hw/hw_profile.h"
#include "test/unit/plan/plan_test_util.h"

namespace ktx {
namespace {

HwProfile example(const char* name) {
  auto p = HwProfile::load(std::string(KTX_SOURCE_DIR) + "/plans/" + name);
  EXPECT_TRUE(p.has_value()) << p.status().message();
  return p.has_value() ? *p : HwProfile{};
}

TEST(PlanCheck, SameGgufPasses) {
  const std::string path = test::model_path("qwen3moe.Q8_0.gguf");
  const Plan plan = test::make_plan(path);
  auto f = GGUFFile::open(path);
  ASSERT_TRUE(f.has_value()) << f.status().message();
  EXPECT_TRUE(check_plan_gguf(plan, **f).is_ok());
}

TEST(PlanCheck, OtherGgufNamesBothAndHowToReplan) {
  const std::string planned = test::model_path("qwen3moe.Q8_0.gguf");
  const std::string other = test::model_path("qwen3moe.Q4_K_M.gguf");
  const Plan plan = test::make_plan(planned);
  auto f = GGUFFile::open(other);
  ASSERT_TRUE(f.has_value()) << f.status().message();
  const Status st = check_plan_gguf(plan, **f);
  ASSERT_FALSE(st.is_ok());
  const std::string& m = st.message();
  EXPECT_NE(m.find("plan was made for " + planned), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(plan.gguf.total_size)), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string((*f)->total_size())), std::string::npos) << m;
  EXPECT_NE(m.find("re-run: ktc plan --hw host.toml " + other + " -o PLAN"), std::string::npos)
      << m;
}

TEST(PlanCheck, SameSizeOtherHashIsRefused) {
  const std::string path = test::model_path("mixtral.Q8_0.gguf");
  Plan plan = test::make_plan(path);
  auto f = GGUFFile::open(path);
  ASSERT_TRUE(f.has_value());
  plan.gguf.hash[0] = plan.gguf.hash[0] == '0' ? '1' : '0';
  const Status st = check_plan_gguf(plan, **f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find(plan.gguf.hash.substr(0, 16)), std::string::npos) << st.message();
  EXPECT_NE(st.message().find((*f)->identity_hash().substr(0, 16)), std::string::npos);
}

TEST(PlanCheck, MissingIsaFeaturesAreNamed) {
  Plan plan;
  plan.hw.cpu_isa = {"avx2", "avx512f", "amx_int8"};
  const HwProfile laptop = example("avx2-cpuonly.toml");
  const Status st = check_plan_host(plan, laptop.cpu.isa);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("this host lacks: avx512f, amx_int8 (host has: avx2, fma, f16c)"),
            std::string::npos)
      << st.message();
  EXPECT_TRUE(check_plan_host(plan, example("spr-h100.toml").cpu.isa).is_ok());
  plan.hw.cpu_isa.push_back("avx10_2");
  const Status unknown = check_plan_host(plan, example("spr-h100.toml").cpu.isa);
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.message().find("does not know: avx10_2"), std::string::npos);
}

TEST(PlanCheck, GpuArchMustBeOnTheHost) {
  Plan plan;
  plan.hw.cpu_isa = {"avx2"};
  plan.hw.gpu_arch = "sm_90a";
  EXPECT_TRUE(check_plan_host(plan, example("spr-h100.toml")).is_ok());
  const Status on_4090 = check_plan_host(plan, example("epyc-4090.toml"));
  ASSERT_FALSE(on_4090.is_ok());
  EXPECT_NE(on_4090.message().find("GPU of arch sm_90a, this host has only sm_89"),
            std::string::npos)
      << on_4090.message();
  const Status cpu_only = check_plan_host(plan, example("avx2-cpuonly.toml"));
  ASSERT_FALSE(cpu_only.is_ok());
  EXPECT_NE(cpu_only.message().find("no GPU"), std::string::npos);
  plan.hw.gpu_arch = "sm_90";  // generic sm_90 code runs on an sm_90a part
  EXPECT_TRUE(check_plan_host(plan, example("spr-h100.toml")).is_ok());
  plan.hw.gpu_arch = "";
  EXPECT_TRUE(check_plan_host(plan, example("avx2-cpuonly.toml")).is_ok());
}

}  // namespace
}  // namespace ktx
