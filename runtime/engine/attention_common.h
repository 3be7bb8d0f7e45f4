// Helpers shared by the two attention kinds (attention.cpp, attention_mla.cpp).
#pragma once

#include <cstdint>

namespace ktx {

// Numerically stable softmax of n scores, in place.
void softmax_inplace(float* s, int64_t n);
// Per-thread scratch of at least n floats (attention scores of one query).
float* attention_scratch(int64_t n);

}  // namespace ktx
