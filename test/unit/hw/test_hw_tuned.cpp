// host.toml [tuned]: entries round-trip (quoting of keys with '=' and ','), a profile without
// the table writes none, and bad entries (key without "moe:", value not a "cfg:" string) are
// refused naming the entry and what was found.
#include <gtest/gtest.h>

#include <string>

#include "common/hw/hw_profile.h"
#include "test/unit/hw/hw_test_util.h"

namespace ktx {
namespace {

using hw_test::kMinimal;
using hw_test::parse_error;

const char* kDesc =
    "moe:n_embd=7168,n_ff=2048,n_expert=256,top_k=8,gate=Q4_K,up=Q4_K,down=Q4_K,max_tokens=16,"
    "isa=avx512";


TEST(HwTuned, RoundTrip) {
  auto p = HwProfile::from_toml_string(kMinimal, "host.toml");
  ASSERT_TRUE(p.has_value()) << p.status().message();
  EXPECT_TRUE(p->tuned.empty());
  EXPECT_EQ(p->to_toml().find("[tuned]"), std::string::npos);
  p->tuned[kDesc] = "cfg:rows_per_task=32,unroll=1,threads=16";
  p->tuned["moe:n_embd=2048,other"] = "cfg:rows_per_task=8,unroll=2,threads=12";
  const std::string text = p->to_toml();
  EXPECT_NE(text.find("[tuned]"), std::string::npos);
  auto back = HwProfile::from_toml_string(text, "host.toml");
  ASSERT_TRUE(back.has_value()) << back.status().message() << "\n" << text;
  EXPECT_EQ(back->tuned, p->tuned);
  EXPECT_EQ(*back, *p);
}

TEST(HwTuned, HandWrittenTableIsRead) {
  auto p = HwProfile::from_toml_string(
      kMinimal + "[tuned]\n\"" + kDesc + "\" = \"cfg:rows_per_task=64,unroll=2,threads=0\"\n",
      "host.toml");
  ASSERT_TRUE(p.has_value()) << p.status().message();
  ASSERT_EQ(p->tuned.size(), 1u);
  EXPECT_EQ(p->tuned.at(kDesc), "cfg:rows_per_task=64,unroll=2,threads=0");
}

TEST(HwTuned, BadEntriesNameKeyAndFinding) {
  std::string e = parse_error(kMinimal + "[tuned]\n\"gemm:x\" = \"cfg:a\"\n");
  EXPECT_NE(e.find("host.toml:8:"), std::string::npos) << e;
  EXPECT_NE(e.find("tuned.\"gemm:x\""), std::string::npos) << e;
  EXPECT_NE(e.find("\"moe:\""), std::string::npos) << e;
  e = parse_error(kMinimal + "[tuned]\n\"moe:x\" = 3\n");
  EXPECT_NE(e.find("tuned.\"moe:x\""), std::string::npos) << e;
  EXPECT_NE(e.find("found integer"), std::string::npos) << e;
  e = parse_error(kMinimal + "[tuned]\n\"moe:x\" = \"rows=3\"\n");
  EXPECT_NE(e.find("\"cfg:\""), std::string::npos) << e;
  EXPECT_NE(e.find("found \"rows=3\""), std::string::npos) << e;
  e = parse_error("tuned = 5\n" + kMinimal);
  EXPECT_NE(e.find("tuned"), std::string::npos) << e;
  EXPECT_NE(e.find("expected a table"), std::string::npos) << e;
}

}  // namespace
}  // namespace ktx
