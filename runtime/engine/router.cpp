// Expert selection for one token, following each architecture's reference implementation:
//   softmax (Qwen, DeepSeek-V2): p = softmax(logits); choose top-k of p; w = p[chosen]
//   softmax after top-k (Mixtral): choose top-k logits; w = softmax over those logits
//   sigmoid (DeepSeek-V3): p = sigmoid(logits); choose on p + exp_probs_b; w = p[chosen]
// With expert groups, only the best n_group_used groups compete (group score: sum of the top
// two biased scores for sigmoid routing as in V3, the max for softmax routing as in V2);
// experts outside them get choice score 0 as in transformers (the original DeepSeek code
// uses -inf; the two differ only when a kept score is negative). Weights are renormalized
// when expert_weights_norm, then scaled. Math in double: routing is tiny and near-ties
// should be decided as the float64 reference decides them where possible.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "runtime/engine/engine_internal.h"

namespace ktx {
namespace {

// Indices of the k largest values, largest first; ties go to the lower index.
std::vector<int32_t> top_k(const std::vector<double>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

void mask_groups(const ModelConfig& c, std::vector<double>& choice) {
  const int64_t per_group = c.n_expert / c.n_expert_groups;
  std::vector<double> group_score(c.n_expert_groups);
  for (int64_t g = 0; g < c.n_expert_groups; ++g) {
    std::vector<double> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
    std::sort(members.begin(), members.end(), std::greater<double>());
    group_score[g] = c.gating == GatingFunc::Sigmoid
                         ? members[0] + (per_group > 1 ? members[1] : 0.0) : members[0];
  }
  std::vector<int32_t> kept = top_k(group_score, c.n_group_used);
  std::vector<bool> keep(c.n_expert_groups, false);
  for (int32_t g : kept) keep[g] = true;
  for (int64_t e = 0; e < c.n_expert; ++e)
    if (!keep[e / per_group]) choice[e] = 0.0;
}

}  // namespace

void route_token(const ModelConfig& c, const float* logits, const float* bias, int32_t* experts,
                 float* weights, const int32_t* forced) {
  const int64_t n = c.n_expert, k = c.n_expert_used;
  std::vector<double> score(n);
  if (c.softmax_after_topk) {
    for (int64_t e = 0; e < n; ++e) score[e] = logits[e];
  } else if (c.gating == GatingFunc::Sigmoid) {
    for (int64_t e = 0; e < n; ++e) score[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[e])));
  } else {
    const double mx = *std::max_element(logits, logits + n);
    double sum = 0.0;
    for (int64_t e = 0; e < n; ++e) sum += score[e] = std::exp(logits[e] - mx);
    for (double& p : score) p /= sum;
  }
  std::vector<int32_t> chosen;
  if (forced) {
    chosen.assign(forced, forced + k);
  } else {
    std::vector<double> choice = score;
    if (bias)
      for (int64_t e = 0; e < n; ++e) choice[e] += bias[e];
    if (c.n_expert_groups > 1) mask_groups(c, choice);
    chosen = top_k(choice, k);
  }

  std::vector<double> w(k);
  if (c.softmax_after_topk) {
    const double mx = score[chosen[0]];
    double sum = 0.0;
    for (int64_t i = 0; i < k; ++i) sum += w[i] = std::exp(score[chosen[i]] - mx);
    for (double& x : w) x /= sum;
  } else {
    for (int64_t i = 0; i < k; ++i) w[i] = score[chosen[i]];
    if (c.expert_weights_norm) {
      const double sum = std::accumulate(w.begin(), w.end(), 0.0);
      for (double& x : w) x /= sum + 1e-20;
    }
  }
  for (int64_t i = 0; i < k; ++i) {
    experts[i] = chosen[i];
    weights[i] = static_cast<float>(w[i] * c.expert_weights_scale);
  }
}

}  // namespace ktx
