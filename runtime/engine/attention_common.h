// Helpers shared by the two attention kinds (attention.cpp, attention_mla.cpp).
#pragma once

#include <cstdint>

#include "runtime/cpu/attention.h"

namespace ktx {

using cpu::softmax_inplace;  // runtime/cpu/attention.h
// Per-thread scratch of at least n floats (attention scores of one query).
float* attention_scratch(int64_t n);

}  // namespace ktx
