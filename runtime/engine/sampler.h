// Token sampler: turns one row of logits into a token id. The chain is fixed and matches what
// llama.cpp users expect: repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
// The filters look at the untempered distribution, so temperature only reshapes what survived.
// The random source is our own xoshiro256** seeded through splitmix64, so a fixed seed gives the
// same token sequence on every platform and standard library (std::*_distribution does not).
#pragma once

#include <cstdint>
#include <vector>

#include "common/util/rng.h"
#include "common/util/status.h"

namespace ktx {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy (argmax after the penalty, lowest id on ties)
  int top_k = 40;               // keep the k most likely tokens; 0 = off
  float top_p = 0.95f;          // keep the smallest set whose probability reaches p; 1 = off
  float min_p = 0.05f;          // drop tokens below min_p * p(most likely); 0 = off
  float repeat_penalty = 1.0f;  // 1 = off; logit > 0 ? logit / p : logit * p (llama.cpp)
  int repeat_last_n = 64;       // how many accepted tokens the penalty looks back over; 0 = off
  uint64_t seed = 0;            // fixed seed -> reproducible draws
};

// The sampler draws from the project's one generator (common/util/rng.h).
using SamplerRng = Xoshiro256;

class Sampler {
 public:
  explicit Sampler(SamplerParams p);

  // Draws a token from logits[0, n_vocab). Returns -1 only when logits is null or n_vocab <= 0.
  // NaN logits count as -inf; if every logit is -inf the lowest id wins, as in greedy.
  int32_t sample(const float* logits, int32_t n_vocab);
  // Records a token the caller kept (prompt or generated) for the repetition penalty.
  void accept(int32_t token);
  // Forgets the history and restarts the random sequence from the seed.
  void reset();

  // Rejects parameters outside their documented ranges, naming the field and the value.
  static Status validate(const SamplerParams& p);

  const SamplerParams& params() const { return params_; }

 private:
  struct Candidate {
    float logit;
    int32_t id;
  };
  void apply_repeat_penalty();
  void apply_top_k();
  void apply_top_p();
  void apply_min_p();
  int32_t draw();

  SamplerParams params_;
  SamplerRng rng_;
  std::vector<int32_t> history_;     // accepted tokens, oldest first, at most repeat_last_n
  std::vector<Candidate> cand_;      // reused between calls to avoid a per-token allocation
  std::vector<double> probs_;        // scratch for the softmax
};

}  // namespace ktx
