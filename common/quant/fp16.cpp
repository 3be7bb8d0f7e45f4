// IEEE binary16 and bfloat16 <-> binary32 conversions, done on the bits so the result is the
// same on every CPU and compiler (no dependence on F16C or the rounding mode). Widening is
// exact; narrowing rounds to nearest, ties to even, like the hardware ggml uses, so weights we
// write decode to the values ggml would have written.
#include <bit>
#include <cstdint>

#include "common/quant/quant.h"

namespace ktx {

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in binary32.
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 31) {
    // Inf, or NaN with its payload kept in the top mantissa bits.
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) {
    // NaN: stay NaN (quiet bit set so a payload of only low bits cannot turn into inf).
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs & 0x7fffffu) >> 13));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  const uint32_t exp = abs >> 23;
  if (exp >= 113) {
    // Normal half. Adding the carry of the rounding may step into the next exponent, which is
    // exactly the correctly rounded result (the overflow case was handled above).
    uint32_t r = ((exp - 112) << 10) | ((abs & 0x7fffffu) >> 13);
    const uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  if (abs <= 0x33000000u) return sign;  // <= 2^-25: rounds (ties to even) to zero
  // Subnormal half: value = m * 2^(exp-150), in units of 2^-24 that is m >> (126 - exp).
  const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - exp;  // 14..24
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) ++r;  // may become 0x400, the smallest normal
  return static_cast<uint16_t>(sign | r);
}

float bf16_to_fp32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: force quiet so it stays NaN
  }
  // Round to nearest even; finite values past the largest bf16 carry into inf, as they should.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace ktx
