// Direct random filling of tensor data (see fill.h). For each quantized type the scale of one
// unit of d is computed from the distribution of the random quant values and of the chosen
// sub-block scales, so d = std / unit gives the target standard deviation. Types with a min or
// offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) get it set to cancel the mean of the unsigned quants.
#include "tools/ktx-run/gen/fill.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "common/quant/quant.h"

namespace ktx::gen_detail {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;

// Ranges of the sub-block scales the generator picks (magnitudes; Q3_K/Q6_K get random signs).
constexpr int kQ2Lo = 8, kQ2Hi = 15;      // 4-bit scale nibble
constexpr int kQ3Lo = 16, kQ3Hi = 31;     // |scale - 32|
constexpr int kK4Lo = 32, kK4Hi = 63;     // Q4_K/Q5_K 6-bit scale (the min equals it)
constexpr int kQ6Lo = 32, kQ6Hi = 63;     // |int8 scale|

// Mean of k^2 over the integers lo..hi.
double mean_sq(int lo, int hi) {
  double s = 0;
  for (int k = lo; k <= hi; ++k) s += double(k) * k;
  return s / (hi - lo + 1);
}
// Variance of a uniform integer with n levels.
double level_var(int n) { return (double(n) * n - 1.0) / 12.0; }

// Root mean square of the dequantized values per unit of d, and the mean of the raw unsigned
// quant value that a min/offset has to cancel (0 for signed types).
struct Unit {
  double rms = 1.0;
  double q_mean = 0.0;
};

Unit unit_of(GGMLType type) {
  switch (type) {
    case GGMLType::Q4_0: return {std::sqrt(level_var(16) + 0.25), 0};
    case GGMLType::Q4_1: return {std::sqrt(level_var(16)), 7.5};
    case GGMLType::Q5_0: return {std::sqrt(level_var(32) + 0.25), 0};
    case GGMLType::Q5_1: return {std::sqrt(level_var(32)), 15.5};
    case GGMLType::Q8_0: return {std::sqrt(level_var(256) + 0.25), 0};
    case GGMLType::Q2_K: return {std::sqrt(mean_sq(kQ2Lo, kQ2Hi) * level_var(4)), 1.5};
    case GGMLType::Q3_K: return {std::sqrt(mean_sq(kQ3Lo, kQ3Hi) * (level_var(8) + 0.25)), 0};
    case GGMLType::Q4_K: return {std::sqrt(mean_sq(kK4Lo, kK4Hi) * level_var(16)), 7.5};
    case GGMLType::Q5_K: return {std::sqrt(mean_sq(kK4Lo, kK4Hi) * level_var(32)), 15.5};
    case GGMLType::Q6_K: return {std::sqrt(mean_sq(kQ6Lo, kQ6Hi) * (level_var(64) + 0.25)), 0};
    default: return {};
  }
}

bool is_quantized(GGMLType t) {
  return t != GGMLType::F32 && t != GGMLType::F16 && t != GGMLType::BF16;
}

// Per-tensor constants: fp16 d and the fp16 min (dmin, or m = -mean for Q4_1/Q5_1).
struct Recipe {
  GGMLType type;
  GenInit init;
  float std;
  uint16_t d = 0, min = 0;
};

Recipe make_recipe(const GenTensor& t) {
  Recipe r{t.type, t.init, t.std};
  if (!is_quantized(t.type)) return r;
  const Unit u = unit_of(t.type);
  r.d = fp32_to_fp16(static_cast<float>(t.std / u.rms));
  const float d = fp16_to_fp32(r.d);
  const bool negative_offset = t.type == GGMLType::Q4_1 || t.type == GGMLType::Q5_1;
  r.min = fp32_to_fp16(static_cast<float>((negative_offset ? -u.q_mean : u.q_mean) * d));
  return r;
}

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

void pack_scale_min_k4(const uint8_t sc[8], const uint8_t mn[8], uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

// Inverse of the Q3_K scale unpacking in QUANTS.md (u: sixteen 6-bit values, bias 32).
void pack_scales_q3_k(const uint8_t u[16], uint8_t* q) {
  for (int i = 0; i < 4; ++i) {
    q[i] = static_cast<uint8_t>((u[i] & 15) | ((u[8 + i] & 15) << 4));
    q[4 + i] = static_cast<uint8_t>((u[4 + i] & 15) | ((u[12 + i] & 15) << 4));
    q[8 + i] = static_cast<uint8_t>((u[i] >> 4) | ((u[4 + i] >> 4) << 2) |
                                    ((u[8 + i] >> 4) << 4) | ((u[12 + i] >> 4) << 6));
  }
}

// Set the scale fields of one block whose quant bits are already random.
void fix_block(const Recipe& r, Rng& rng, uint8_t* b) {
  switch (r.type) {
    case GGMLType::Q4_0: case GGMLType::Q5_0: case GGMLType::Q8_0:
      // The signed quants run -8..7 (-16..15, -128..127): a mean of -d/2. A random sign of d
      // per block (ggml's own quantizer produces negative d too) cancels it across blocks.
      put16(b, static_cast<uint16_t>(r.d ^ ((rng.next() & 1) << 15)));
      return;
    case GGMLType::Q4_1: case GGMLType::Q5_1:
      put16(b, r.d);
      put16(b + 2, r.min);
      return;
    case GGMLType::Q2_K:  // scales[16] qs[64] d dmin
      for (int i = 0; i < 16; ++i) {
        const int s = rng.range(kQ2Lo, kQ2Hi);
        b[i] = static_cast<uint8_t>(s | (s << 4));  // min nibble = scale: dmin*s cancels 1.5*d*s
      }
      put16(b + 80, r.d);
      put16(b + 82, r.min);
      return;
    case GGMLType::Q3_K: {  // hmask[32] qs[64] scales[12] d
      uint8_t u[16];
      for (uint8_t& v : u) {
        const int m = rng.range(kQ3Lo, kQ3Hi);
        v = static_cast<uint8_t>(32 + ((rng.next() & 1) ? m : -m));
      }
      pack_scales_q3_k(u, b + 96);
      put16(b + 108, r.d);
      return;
    }
    case GGMLType::Q4_K: case GGMLType::Q5_K: {  // d dmin scales[12] ...
      uint8_t sc[8];
      for (uint8_t& v : sc) v = static_cast<uint8_t>(rng.range(kK4Lo, kK4Hi));
      put16(b, r.d);
      put16(b + 2, r.min);
      pack_scale_min_k4(sc, sc, b + 4);
      return;
    }
    case GGMLType::Q6_K:  // ql[128] qh[64] scales[16] d
      for (int i = 0; i < 16; ++i) {
        const int m = rng.range(kQ6Lo, kQ6Hi);
        b[192 + i] = static_cast<uint8_t>(static_cast<int8_t>((rng.next() & 1) ? m : -m));
      }
      put16(b + 208, r.d);
      return;
    default:
      return;
  }
}

float draw_value(const Recipe& r, Rng& rng) {
  if (r.init == GenInit::Ones) return 1.0f;
  // Uniform on [-a, a] has standard deviation a / sqrt(3).
  const float a = r.std * 1.7320508f;
  return (2.0f * rng.uniform() - 1.0f) * a;
}

void fill_float_chunk(const Recipe& r, Rng& rng, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = draw_value(r, rng);
    if (r.type == GGMLType::F32) {
      std::memcpy(dst + 4 * i, &v, 4);
    } else {
      put16(dst + 2 * i, r.type == GGMLType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v));
    }
  }
}

}  // namespace

uint64_t name_hash(const char* s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint8_t>(s[i])) * 0x100000001b3ull;
  return h;
}

float expected_std(GGMLType type, float std) {
  if (!is_quantized(type)) return std;
  return static_cast<float>(fp16_to_fp32(fp32_to_fp16(static_cast<float>(std / unit_of(type).rms))) *
                            unit_of(type).rms);
}

void fill_tensor(const GenTensor& t, uint64_t seed, uint8_t* dst, int n_threads) {
  const Recipe r = make_recipe(t);
  int64_t unit_elems = 1, unit_bytes = 4;
  ggml_type_block(static_cast<uint32_t>(t.type), &unit_elems, &unit_bytes);
  const bool quant = is_quantized(t.type);
  const uint64_t n_units = t.n_bytes / static_cast<uint64_t>(unit_bytes);
  const uint64_t chunk_units = std::max<uint64_t>(1, kChunkBytes / static_cast<uint64_t>(unit_bytes));
  const uint64_t n_chunks = (n_units + chunk_units - 1) / chunk_units;
  uint64_t mix = seed;
  const uint64_t base = splitmix64(mix) ^ name_hash(t.name.data(), t.name.size());

  auto do_chunk = [&](uint64_t c) {
    Rng rng(base + c * 0xD1B54A32D192ED03ull);
    const uint64_t u0 = c * chunk_units;
    const uint64_t nu = std::min(chunk_units, n_units - u0);
    uint8_t* p = dst + u0 * static_cast<uint64_t>(unit_bytes);
    if (!quant) {
      fill_float_chunk(r, rng, p, static_cast<int64_t>(nu));
      return;
    }
    rng.fill_bytes(p, nu * static_cast<uint64_t>(unit_bytes));
    for (uint64_t i = 0; i < nu; ++i) fix_block(r, rng, p + i * static_cast<uint64_t>(unit_bytes));
  };

  const uint64_t workers = std::min<uint64_t>(n_threads > 1 ? n_threads : 1, n_chunks);
  if (workers <= 1) {
    for (uint64_t c = 0; c < n_chunks; ++c) do_chunk(c);
    return;
  }
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (uint64_t w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      for (uint64_t c = next.fetch_add(1); c < n_chunks; c = next.fetch_add(1)) do_chunk(c);
    });
  }
  for (std::thread& th : pool) th.join();
}

}  // namespace ktx::gen_detail
