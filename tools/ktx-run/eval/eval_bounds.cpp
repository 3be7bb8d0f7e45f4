// The per-file bounds on activation-rounding paths, and the decision they make (eval.h).
//
// Source: ../shared/models/README.md, "What agreement is honest", the table "ik_llama.cpp mean
// KL / its top-1 / bound: mean KL <= / top-1 >=": the bound columns, which are what
// ik_llama.cpp (commit 8337e4cd, CPU, Q8_K/Q8_0 activations, f16 KV cache, -mla 3 -fa 1
// -fmoe 1) measured over these very sequences. Mixtral's rows are its numbers once its MoE
// residual bug is fixed; the dsv3 rows (ik_llama.cpp cannot run them) take the tightest bound
// of the others. Change a row here only together with that table.
#include <algorithm>

#include "tools/ktx-run/eval/eval.h"

namespace ktx {

const std::vector<FileBound>& file_bounds() {
  static const std::vector<FileBound> rows = {
      {"qwen3moe.Q8_0", 4.1e-4, 0.982},   {"qwen3moe.Q4_K_M", 7.1e-4, 0.977},
      {"qwen2moe.Q8_0", 2.1e-3, 0.982},   {"qwen2moe.Q4_K_M", 7.3e-4, 0.972},
      {"mixtral.Q8_0", 1.4e-3, 0.990},    {"mixtral.Q4_K_M", 1.2e-3, 0.977},
      {"dsv3.Q8_0", 4.1e-4, 0.982},       {"dsv3.Q4_K_M", 4.1e-4, 0.982},
  };
  return rows;
}

BoundChoice bound_for_file(const std::string& stem) {
  const std::vector<FileBound>& rows = file_bounds();
  for (const FileBound& r : rows)
    if (r.file == stem) return {r, true};
  FileBound tight{"", rows.front().max_mean_kl, rows.front().min_top1};
  for (const FileBound& r : rows) {
    tight.max_mean_kl = std::min(tight.max_mean_kl, r.max_mean_kl);
    tight.min_top1 = std::max(tight.min_top1, r.min_top1);
  }
  return {tight, false};
}

bool bound_met(const FileBound& b, double mean_kl, int64_t top1_match, int64_t top1_decisive) {
  const double top1 = top1_decisive > 0 ? static_cast<double>(top1_match) / top1_decisive : 1.0;
  return mean_kl <= b.max_mean_kl && top1 >= b.min_top1;
}

}  // namespace ktx
