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

// The bound on a file for paths that round activations: no worse than a mature engine on the
// same file (../shared/models/README.md, "What agreement is honest").
struct FileBound {
  std::string file;        // the row: model file stem, "qwen3moe.Q8_0"
  double max_mean_kl = 0;  // mean KL(ref || x) over every position <= this
  double min_top1 = 0;     // top-1 agreement (decisive positions) >= this
};
// The README's table, one row per shipped file.
const std::vector<FileBound>& file_bounds();
// What a reference file is judged by: its row, or for a stem without one the tightest bound of
// every column (lowest KL, highest top-1) with `known` false, so that a new file is held to
// the strictest agreement shown until its own row is measured.
struct BoundChoice {
  FileBound bound;
  bool known = false;
};
BoundChoice bound_for_file(const std::string& stem);
// The per-file decision: mean KL and top-1 rate within the bound (top-1 is 1 without any
// decisive position).
bool bound_met(const FileBound& b, double mean_kl, int64_t top1_match, int64_t top1_decisive);

// Float32 paths (the reference engine): every position within max_rel_l2, every decisive
// top-1 identical, prefill and decode within max_prefill_decode, greedy continuations
// identical.
// Paths that quantize activations (fast kernels, `quantized`), without an oracle: the file's
// mean KL(ref || x) over all positions and top-1 agreement over the decisive positions within
// its row of file_bounds() (bound_for_file of RefFile::model); worst relative L2, prefill vs
// decode (two kernel families, each rounding its own way) and greedy continuations are
// reported only.
// With an `oracle` (the same plan loaded with EngineOptions::moe_oracle: identical rounding,
// exact sums), the kernels themselves are judged: prefill and decode logits within
// max_oracle_rel_l2 of the oracle's at every position; the KL / top-1 targets are then
// reported as met or not. On the shipped random models rounding alone moves some routers past
// near-ties (one position jumps, the oracle jumps identically), which the file bounds count.
struct EvalOptions {
  double max_rel_l2 = 1e-4;          // per position, ||x - ref|| / ||ref||
  double max_prefill_decode = 1e-5;  // per position, relative L2 between the two runs
  bool quantized = false;
  const Model* oracle = nullptr;
  // Float reassociation alone gives ~1e-6; an activation element that lands on the other side
  // of a rounding boundary moves one position a little more (the int16-grade activations give
  // at most 2e-5 on the shipped models; int8 ones gave 8e-3); a wrong kernel moves every
  // position by O(0.1..1).
  double max_oracle_rel_l2 = 1e-3;
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
  double oracle = -1.0;         // max relative L2 to the oracle's logits (-1: no oracle)
  int greedy = -1;              // -1: no reference, 0: differs, 1: identical
  std::vector<int32_t> greedy_tokens;
  bool pass = false;
};

struct EvalResult {
  std::vector<SeqResult> seqs;
  // Over every position of the file.
  bool quantized = false;          // which bounds were applied (EvalOptions::quantized)
  double mean_kl = 0.0;
  int64_t top1_match = 0, top1_decisive = 0;
  double max_rel_l2 = 0.0, max_prefill_decode = 0.0, max_oracle = -1.0;
  std::string file;                // RefFile::model, "qwen3moe.Q8_0"
  BoundChoice file_bound;          // bound_for_file(file): what the file is judged by
  bool targets_met = false;        // quantized: mean KL and top-1 within file_bound
  bool with_oracle = false;        // compared with an oracle (EvalOptions::oracle)
  int64_t greedy_same = 0, greedy_total = 0;
  EvalOptions bounds;
  int64_t tok_cases = 0;
  std::vector<std::string> tok_failures;  // one line per mismatching case
  bool pass = false;
};

Expected<EvalResult> run_eval(const Model& model, const RefFile& ref, const EvalOptions& opt);
// The verdict on a file from its per-sequence results (r.seqs, r.tok_failures): the file-wide
// aggregates, its bound (bound_for_file(file)), targets_met and pass. run_eval ends with it.
void judge_eval(EvalResult& r, const std::string& file, const EvalOptions& opt);
// The compact table `ktx-run eval` prints, ending with a PASS/FAIL line.
std::string format_eval(const EvalResult& r, const std::string& title);

// Relative L2 distance ||a - b|| / ||b|| over n values (double accumulation).
double rel_l2(const float* a, const float* b, int64_t n);

}  // namespace ktx
