// Sampler implementation. Candidates stay sorted by (logit descending, id ascending) once top-k
// or top-p has run, which makes every cut deterministic on ties. Probabilities are computed in
// double from max-subtracted logits so large logits cannot overflow exp().
#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace ktx {

namespace {

// Higher logit first; on equal logits the lower id first, so cuts never depend on sort order.
bool better(float a_logit, int32_t a_id, float b_logit, int32_t b_id) {
  if (a_logit != b_logit) return a_logit > b_logit;
  return a_id < b_id;
}

}  // namespace

Sampler::Sampler(SamplerParams p) : params_(p), rng_(p.seed) {}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n <= 0) return;
  history_.push_back(token);
  const size_t cap = static_cast<size_t>(params_.repeat_last_n);
  if (history_.size() > cap) history_.erase(history_.begin(), history_.end() - cap);
}

void Sampler::reset() {
  history_.clear();
  rng_ = SamplerRng(params_.seed);
}

Status Sampler::validate(const SamplerParams& p) {
  if (!std::isfinite(p.temperature))
    return Error("sampler: temperature must be a finite number (<= 0 means greedy), got {}",
                 p.temperature);
  if (p.top_k < 0) return Error("sampler: top_k must be >= 0 (0 = off), got {}", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    return Error("sampler: top_p must be in (0, 1] (1 = off), got {}", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return Error("sampler: min_p must be in [0, 1] (0 = off), got {}", p.min_p);
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty))
    return Error("sampler: repeat_penalty must be a finite number > 0 (1 = off), got {}",
                 p.repeat_penalty);
  if (p.repeat_last_n < 0)
    return Error("sampler: repeat_last_n must be >= 0 (0 = off), got {}", p.repeat_last_n);
  return Status::ok();
}

// Each distinct token in the window is penalised once, however often it occurred (llama.cpp).
void Sampler::apply_repeat_penalty() {
  const float pen = params_.repeat_penalty;
  if (pen == 1.0f || history_.empty()) return;
  std::unordered_set<int32_t> seen(history_.begin(), history_.end());
  for (Candidate& c : cand_) {
    if (!seen.count(c.id)) continue;
    c.logit = c.logit > 0.0f ? c.logit / pen : c.logit * pen;
  }
}

void Sampler::apply_top_k() {
  const int k = params_.top_k;
  auto cmp = [](const Candidate& a, const Candidate& b) {
    return better(a.logit, a.id, b.logit, b.id);
  };
  if (k > 0 && static_cast<size_t>(k) < cand_.size()) {
    std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), cmp);
    cand_.resize(static_cast<size_t>(k));
  } else {
    std::sort(cand_.begin(), cand_.end(), cmp);  // top-p below needs the order anyway
  }
}

// Softmax of the (sorted) candidates into probs_, returns nothing; probs_ sums to 1.
static void softmax(const std::vector<float>& logits, double inv_temp, std::vector<double>& probs) {
  probs.resize(logits.size());
  double max_l = -std::numeric_limits<double>::infinity();
  for (float l : logits) max_l = std::max(max_l, static_cast<double>(l));
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp((static_cast<double>(logits[i]) - max_l) * inv_temp);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
}

void Sampler::apply_top_p() {
  if (params_.top_p >= 1.0f || cand_.size() <= 1) return;
  std::vector<float> logits(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i) logits[i] = cand_[i].logit;
  softmax(logits, 1.0, probs_);
  double cum = 0.0;
  size_t keep = cand_.size();
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += probs_[i];
    if (cum >= params_.top_p) {
      keep = i + 1;
      break;
    }
  }
  cand_.resize(keep);
}

// p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p): no softmax needed.
void Sampler::apply_min_p() {
  if (params_.min_p <= 0.0f || cand_.size() <= 1) return;
  float max_l = -std::numeric_limits<float>::infinity();
  for (const Candidate& c : cand_) max_l = std::max(max_l, c.logit);
  const double threshold = static_cast<double>(max_l) + std::log(static_cast<double>(params_.min_p));
  std::erase_if(cand_, [&](const Candidate& c) { return static_cast<double>(c.logit) < threshold; });
}

int32_t Sampler::draw() {
  std::vector<float> logits(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i) logits[i] = cand_[i].logit;
  softmax(logits, 1.0 / static_cast<double>(params_.temperature), probs_);
  const double u = rng_.next_unit();
  double cum = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += probs_[i];
    if (u < cum) return cand_[i].id;
  }
  return cand_.back().id;  // u landed in the rounding slack above the last partial sum
}

int32_t Sampler::sample(const float* logits, int32_t n_vocab) {
  if (logits == nullptr || n_vocab <= 0) return -1;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  cand_.resize(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) {
    cand_[i] = {std::isnan(logits[i]) ? neg_inf : logits[i], i};
  }
  apply_repeat_penalty();

  // Greedy, or nothing finite to sample from: argmax with the lowest id on ties.
  const Candidate* best = &cand_[0];
  for (const Candidate& c : cand_) {
    if (better(c.logit, c.id, best->logit, best->id)) best = &c;
  }
  if (params_.temperature <= 0.0f || best->logit == neg_inf) return best->id;

  std::erase_if(cand_, [&](const Candidate& c) { return c.logit == neg_inf; });
  apply_top_k();
  apply_top_p();
  apply_min_p();
  return draw();
}

}  // namespace ktx
