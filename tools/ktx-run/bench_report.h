// Results of `ktx-run bench` and their three renderings: the llama-bench style markdown table,
// the per-op and expert-load profile, and one JSON document. Kept apart from the runner
// (cmd_bench.cpp) so the numbers a user reads and the numbers a script parses come from the
// same structs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"

namespace ktx::cli {

// What the header lines say about the run; also the JSON "header" object.
struct BenchHeader {
  std::string cpu;           // CPU model name
  int threads = 0;           // threads the engine runs
  std::string isa_tier;      // strongest kernel tier this CPU supports
  std::string plan_path;
  std::string gguf_path;
  std::string arch;          // general.architecture
  int64_t n_layer = 0;
  int64_t n_vocab = 0;
  uint64_t gguf_bytes = 0;
  int64_t n_ctx = 0;         // context of every session the bench made
  int repetitions = 0;
  std::string kernels;       // Model::kernel_summary(), one line per kernel set
  std::string memory;        // memory_summary() of the model and a session of n_ctx
};

// One test ("pp512" or "tg128"): its token counts and one tokens/s value per timed repetition.
struct BenchTest {
  std::string name;
  int64_t n_prompt = 0;      // tokens of the one prefill call (pp tests)
  int64_t n_gen = 0;         // single-token decode steps (tg tests)
  std::vector<double> samples_ts;
  double seconds = 0;        // wall time of all timed repetitions
  OpProfile profile;         // summed over the timed repetitions (when --profile)

  int64_t n_tokens() const { return n_prompt > 0 ? n_prompt : n_gen; }
};

// Mean and sample standard deviation (0 for fewer than two samples).
double mean_of(const std::vector<double>& v);
double stddev_of(const std::vector<double>& v);

// Expert-load statistics of one MoE layer (or of all layers together).
struct ExpertSpread {
  int64_t n_expert = 0;
  int64_t min = 0, max = 0;
  double mean = 0;
  double max_over_mean = 0;  // 0 when no token was routed
  int64_t unused = 0;        // experts that received no token
};
ExpertSpread expert_spread(const std::vector<int64_t>& tokens_per_expert);

// "host: ...", "plan: ...", "model: ...", "kernels:" and the kernel lines.
std::string format_header(const BenchHeader& h);
// The markdown table, one row per test.
std::string format_table(const BenchHeader& h, const std::vector<BenchTest>& tests);
// Per test: op kinds (ms per run, share of the wall time, calls per run), then the expert load
// per MoE layer and one summary line. Empty when no test carries a profile.
std::string format_profile(const std::vector<BenchTest>& tests, int repetitions);
// The whole result as one JSON document (profile included when `with_profile`).
std::string format_json(const BenchHeader& h, const std::vector<BenchTest>& tests,
                        bool with_profile);

}  // namespace ktx::cli
