// The per-file bounds `ktx-run eval` applies to activation-rounding paths (eval_bounds.cpp):
// the table in code is the README's table (parsed here from ../shared/models/README.md, so a
// change to one without the other fails), an unknown file gets the tightest bound of every
// column, and the verdict judge_eval reaches from crafted per-sequence results: a file between
// its own bound and the generic 5e-4 that eval used before fails, the float32 bounds are
// untouched.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tools/ktx-run/eval/eval.h"

namespace ktx {
namespace {

const char* const kShipped[] = {"qwen3moe.Q8_0", "qwen3moe.Q4_K_M", "qwen2moe.Q8_0",
                                "qwen2moe.Q4_K_M", "mixtral.Q8_0",  "mixtral.Q4_K_M",
                                "dsv3.Q8_0",     "dsv3.Q4_K_M"};

std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string c;
  while (std::getline(ss, c, '|')) {
    const size_t b = c.find_first_not_of(' '), e = c.find_last_not_of(' ');
    out.push_back(b == std::string::npos ? "" : c.substr(b, e - b + 1));
  }
  return out;
}

// The README's rows "| file | ik mean KL | its top-1 | bound KL | bound top-1 |": file -> the
// last two cells ("4.1e-4", "98.2 %").
std::map<std::string, std::pair<double, double>> readme_bounds() {
  std::ifstream in(std::string(KTX_SHARED_DIR) + "/models/README.md");
  std::map<std::string, std::pair<double, double>> rows;
  std::string line;
  while (std::getline(in, line)) {
    const std::vector<std::string> c = cells(line);
    // "| a | b | c | d | e |" splits into "", a, b, c, d, e.
    if (c.size() != 6) continue;
    for (const char* f : kShipped)
      if (c[1] == f) rows[f] = {std::stod(c[4]), std::stod(c[5]) / 100.0};
  }
  return rows;
}

TEST(EvalBounds, TableIsTheReadmes) {
  const auto readme = readme_bounds();
  ASSERT_EQ(readme.size(), std::size(kShipped)) << "rows of the README's per-file table";
  EXPECT_EQ(file_bounds().size(), std::size(kShipped));
  for (const char* f : kShipped) {
    const BoundChoice b = bound_for_file(f);
    ASSERT_TRUE(b.known) << f;
    EXPECT_EQ(b.bound.file, f);
    EXPECT_DOUBLE_EQ(b.bound.max_mean_kl, readme.at(f).first) << f;
    EXPECT_DOUBLE_EQ(b.bound.min_top1, readme.at(f).second) << f;
  }
}

TEST(EvalBounds, UnknownFileGetsTheTightestOfEveryColumn) {
  for (const std::string f : {"llama.Q8_0", "?.?", "", "dsv3", "DSV3.Q8_0"}) {
    const BoundChoice b = bound_for_file(f);
    EXPECT_FALSE(b.known) << f;
    EXPECT_DOUBLE_EQ(b.bound.max_mean_kl, 4.1e-4) << f;  // qwen3moe.Q8_0, dsv3
    EXPECT_DOUBLE_EQ(b.bound.min_top1, 0.990) << f;      // mixtral.Q8_0
    for (const FileBound& r : file_bounds()) {
      EXPECT_LE(b.bound.max_mean_kl, r.max_mean_kl) << r.file;
      EXPECT_GE(b.bound.min_top1, r.min_top1) << r.file;
    }
  }
}

TEST(EvalBounds, DecisionAtTheEdges) {
  const FileBound dsv3 = bound_for_file("dsv3.Q8_0").bound;
  EXPECT_TRUE(bound_met(dsv3, 4.1e-4, 982, 1000));
  EXPECT_FALSE(bound_met(dsv3, 4.2e-4, 1000, 1000));   // under the old 5e-4, over 4.1e-4
  EXPECT_FALSE(bound_met(dsv3, 1e-8, 981, 1000));      // top-1 98.1% < 98.2%
  EXPECT_TRUE(bound_met(dsv3, 0.0, 0, 0));             // no decisive position
  const FileBound qwen2 = bound_for_file("qwen2moe.Q8_0").bound;
  EXPECT_TRUE(bound_met(qwen2, 2.0e-3, 990, 1000));    // over 5e-4, within its 2.1e-3
  EXPECT_FALSE(bound_met(qwen2, 2.2e-3, 1000, 1000));
}

// Two sequences of a quantized path, every per-sequence check passed; the file decides.
EvalResult quantized_result(double kl0, double kl1, int64_t miss) {
  EvalResult r;
  SeqResult a, b;
  a.index = 0, a.n_tokens = 100, a.mean_kl = kl0, a.top1_match = 100 - miss, a.top1_decisive = 100;
  b.index = 1, b.n_tokens = 300, b.mean_kl = kl1, b.top1_match = 300, b.top1_decisive = 300;
  a.pass = b.pass = true;
  a.oracle = b.oracle = -1.0;
  r.seqs = {a, b};
  return r;
}

TEST(EvalBounds, JudgeUsesTheFilesRow) {
  EvalOptions q;
  q.quantized = true;
  // Mean KL over all 400 positions: (100 * 1.2e-3 + 300 * 2e-4) / 400 = 4.5e-4.
  EvalResult r = quantized_result(1.2e-3, 2e-4, 0);
  judge_eval(r, "dsv3.Q8_0", q);
  EXPECT_NEAR(r.mean_kl, 4.5e-4, 1e-12);
  EXPECT_FALSE(r.targets_met);
  EXPECT_FALSE(r.pass) << "4.5e-4 passed the old generic 5e-4 but not dsv3's 4.1e-4";
  std::string out = format_eval(r, "t");
  EXPECT_NE(out.find("bound: mean_kl <= 4.1e-04, top1 >= 98.2% (row dsv3.Q8_0 of the per-file "
                     "table"), std::string::npos) << out;
  EXPECT_NE(out.find("NOT MET"), std::string::npos) << out;
  EXPECT_NE(out.find("\nFAIL\n"), std::string::npos) << out;

  judge_eval(r, "mixtral.Q8_0", q);  // judging again starts over, under 1.4e-3
  EXPECT_EQ(r.top1_decisive, 400);
  EXPECT_TRUE(r.targets_met);
  EXPECT_TRUE(r.pass);
  EXPECT_NE(format_eval(r, "t").find("\nPASS\n"), std::string::npos);

  // One top-1 miss in 400 (99.75%) meets mixtral.Q8_0's 99%; five (98.75%) do not.
  r = quantized_result(1e-5, 1e-5, 5);
  judge_eval(r, "mixtral.Q8_0", q);
  EXPECT_FALSE(r.pass);
  judge_eval(r, "qwen3moe.Q8_0", q);  // 98.2%
  EXPECT_TRUE(r.pass);

  // An unknown file is held to the tightest bounds, and the output says so.
  r = quantized_result(4.5e-4, 4.5e-4, 0);
  judge_eval(r, "newmodel.Q8_0", q);
  EXPECT_FALSE(r.pass);
  out = format_eval(r, "t");
  EXPECT_NE(out.find("no row for 'newmodel.Q8_0' in the per-file table: the tightest of all rows"),
            std::string::npos) << out;
}

TEST(EvalBounds, OracleAndFloatPathsAreNotJudgedByTheTable) {
  // With an oracle the targets are reported, the sequences (oracle distance) decide.
  EvalOptions q;
  q.quantized = true;
  Model* fake_oracle = reinterpret_cast<Model*>(&q);  // only compared with null
  q.oracle = fake_oracle;
  EvalResult r = quantized_result(1e-2, 1e-2, 0);
  judge_eval(r, "dsv3.Q8_0", q);
  EXPECT_FALSE(r.targets_met);
  EXPECT_TRUE(r.pass);
  EXPECT_NE(format_eval(r, "t").find("not met (reported)"), std::string::npos);
  // Float32 paths: the per-sequence checks alone; no per-file line.
  EvalOptions f;
  r = quantized_result(1e-2, 1e-2, 0);
  judge_eval(r, "dsv3.Q8_0", f);
  EXPECT_TRUE(r.pass);
  EXPECT_EQ(format_eval(r, "t").find("bound: mean_kl"), std::string::npos);
  r.seqs[1].pass = false;
  judge_eval(r, "dsv3.Q8_0", f);
  EXPECT_FALSE(r.pass);
  EXPECT_EQ(f.max_rel_l2, 1e-4);  // the README's float32 bounds, as before
  EXPECT_EQ(f.max_prefill_decode, 1e-5);
}

}  // namespace
}  // namespace ktx
