// Comparing the engine with a transformers reference file (STEM.VARIANT.ref.gguf, format in
// ../shared/models/README.md): per-sequence logits error, top-1 agreement, KL, prefill vs
// decode agreement, greedy continuations, and the tokenizer cases. `ktx-run eval` and the
// engine tests are thin wrappers around run_eval.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/gguf/gguf.h"
#include "runtime/engine/engine.h"

namespace ktx {

struct RefSequence {
  std::vector<int32_t> tokens;
  std::vector<float> logits;   // [T][n_vocab]
  std::vector<int32_t> greedy; // 16 tokens transformers' greedy generate appends; empty if none
};

struct RefFile {
  std::string arch;            // ref.arch
  std::string model;           // ref.model + "." + ref.variant
  int64_t n_vocab = 0;
  std::vector<RefSequence> seqs;
  std::vector<std::vector<float>> hidden;  // sequence 0: [L][T * n_embd], L = 0..n_layer
  std::vector<std::pair<std::string, std::vector<int32_t>>> tok_cases;

  // Reads and checks every tensor's type and shape; checks that it belongs to a model of
  // `cfg`'s architecture and vocabulary (error says which differs).
  static Expected<RefFile> load(const GGUFFile& ref, const ModelConfig& cfg);
};

struct EvalOptions {
  double max_rel_l2 = 1e-4;          // per position, ||x - ref|| / ||ref||
  double max_prefill_decode = 1e-5;  // per position, relative L2 between the two runs
  double decisive_gap = 1e-3;        // top-1 compared where ref's top-2 gap exceeds this
  std::string dump_dir;              // if set: DIR/I.f32 = prefill logits of sequence I
  bool check_tokenizer = true;
};

struct SeqResult {
  int64_t index = 0;
  int64_t n_tokens = 0;
  double max_rel_l2 = 0.0;
  double max_abs = 0.0;
  int64_t top1_match = 0, top1_decisive = 0;
  double mean_kl = 0.0;
  double prefill_decode = 0.0;  // max relative L2 difference
  int greedy = -1;              // -1: no reference, 0: differs, 1: identical
  std::vector<int32_t> greedy_tokens;
  bool pass = false;
};

struct EvalResult {
  std::vector<SeqResult> seqs;
  int64_t tok_cases = 0;
  std::vector<std::string> tok_failures;  // one line per mismatching case
  bool pass = false;
};

Expected<EvalResult> run_eval(const Model& model, const RefFile& ref, const EvalOptions& opt);
// The compact table `ktx-run eval` prints, ending with a PASS/FAIL line.
std::string format_eval(const EvalResult& r, const std::string& title);

// Relative L2 distance ||a - b|| / ||b|| over n values (double accumulation).
double rel_l2(const float* a, const float* b, int64_t n);

}  // namespace ktx
