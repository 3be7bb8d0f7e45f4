// Vectorized elementwise math of the MoE drivers, identical in bits on every CPU: the AVX-512,
// AVX2 and plain C++ versions run the same float operations in the same order (std::fma where
// the vector code fuses), so a result never depends on which one the host picks.
//
// silu_mul: h = SiLU(g)·u = g / (1 + exp(−g)) · u with exp from a range reduction
// (n = nearbyint(y·log2 e), r = y − n·ln 2 in two fma steps) and the degree-7 Taylor polynomial
// of exp on |r| ≤ ln2/2 (truncation < 6e-9 relative), scaled by 2^n through the exponent bits;
// y = −g is clamped to [−87, 88] and g to ≥ −88 (SiLU is then g, or 0 within 6e-37). Within a few ulp of
// the libm formula (the test bounds it); about 10× faster than it per element.
#pragma once

#include <cstdint>

namespace ktx::cpu {

// h[i] = SiLU(g[i])·u[i] for i in [0, n); h may alias g or u.
void silu_mul(const float* g, const float* u, float* h, int64_t n);
// The plain C++ twin (same bits); also the fallback below AVX2.
void silu_mul_ref(const float* g, const float* u, float* h, int64_t n);

}  // namespace ktx::cpu
