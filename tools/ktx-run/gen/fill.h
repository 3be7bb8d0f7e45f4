// Internal to runtime/gen: fills a tensor's bytes with random values of a target scale.
// Quantized tensors are filled block by block, directly: the quant fields get uniform random
// bits and only the scale fields (d, dmin, packed sub-block scales) are set, chosen so the
// dequantized values are zero-mean with the requested standard deviation. This avoids a float
// pass and a quantizer, so generation runs at memory speed.
//
// Determinism: the data is cut into fixed chunks (about 1 MiB of whole blocks), and chunk c of
// a tensor draws from a generator seeded by (seed, tensor name, c). Threads take chunks in any
// order, so the bytes never depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/util/rng.h"
#include "tools/ktx-run/gen/generate.h"

namespace ktx::gen_detail {

// Weights come from the project's one generator (common/util/rng.h), plus two helpers.
class Rng : public Xoshiro256 {
 public:
  using Xoshiro256::Xoshiro256;
  uint64_t next() { return next_u64(); }
  // Uniform in [0, 1).
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
  // Uniform integer in [lo, hi].
  int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<uint64_t>(hi - lo + 1)); }
};
using ::ktx::splitmix64;
// Stable 64-bit hash of a tensor name (FNV-1a), so a tensor's data depends on its name and
// not on its position in the file.
uint64_t name_hash(const char* s, size_t n);

// Fill all of t's data (dst holds t.n_bytes). n_threads <= 1 runs on the calling thread.
void fill_tensor(const GenTensor& t, uint64_t seed, uint8_t* dst, int n_threads);

// The standard deviation the dequantized values of a Weight tensor of this type have when the
// generator targets `std` (the fp16 rounding of the block scale included). Used by tests.
float expected_std(GGMLType type, float std);

}  // namespace ktx::gen_detail
