// AMX-BF16 and AVX-512 bodies of the prefill GEMM (gemm_bf16.h). Compiled with -mamx-tile
// -mamx-bf16 -mavx512f/bw/vl/bf16 -mfma -mf16c -ffp-contract=off (runtime/cpu/CMakeLists.txt)
// and entered only after gemm_bf16_available(). No implicit fma: the dequantizers must give
// dequantize_row's float bits (a·q − m as a product, then a difference) before rounding.
#include <immintrin.h>

#include <cstring>

#include "common/quant/quant_blocks.h"
#include "runtime/cpu/gemm_bf16.h"

namespace ktx::cpu::bf16_detail {
namespace {

using namespace ktx::quant_detail;

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0..7 all 16 rows x 64 bytes: C0..C3, A0 A1, B0 B1.
const TileConfig& tile_config() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int i = 0; i < 8; ++i) {
      c.colsb[i] = 64;
      c.rows[i] = 16;
    }
    return c;
  }();
  return cfg;
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// 32 floats (lo: elements 0..15, hi: 16..31) -> 32 bf16 at dst; with lo_off != 0 also the
// residuals v − bf16(v) (exact in float), rounded to bf16, at dst + lo_off (the split form).
inline __m512 bf16_widen(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store_bf16x32(uint16_t* dst, __m512 lo, __m512 hi, int64_t lo_off) {
  const __m512i r = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
  _mm512_storeu_si512(dst, r);
  if (lo_off) {
    const __m512 rl = _mm512_sub_ps(lo, bf16_widen(_mm512_castsi512_si256(r)));
    const __m512 rh = _mm512_sub_ps(hi, bf16_widen(_mm512_extracti64x4_epi64(r, 1)));
    _mm512_storeu_si512(dst + lo_off, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(rh, rl)));
  }
}

// 32 bytes of levels (uint8 or int8 per `sign`) -> 32 floats.
inline void widen32(__m256i q, bool sign, __m512* lo, __m512* hi) {
  const __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
  if (sign) {
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1));
  } else {
    *lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q0));
    *hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q1));
  }
}

// One sub-block of 32 unsigned levels: y = a·q − m, as dequantize_row forms it.
inline void affine32(__m256i q, float a, float m, uint16_t* dst, int64_t lo_off) {
  __m512 lo, hi;
  widen32(q, false, &lo, &hi);
  const __m512 va = _mm512_set1_ps(a), vm = _mm512_set1_ps(m);
  store_bf16x32(dst, _mm512_sub_ps(_mm512_mul_ps(va, lo), vm), _mm512_sub_ps(_mm512_mul_ps(va, hi), vm), lo_off);
}

inline void unpack_scale_min(const uint8_t* s, int j, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Block bodies: element i of the block goes to y + (i / 32)·cs + i % 32 (cs = 32: a plain row;
// cs = 512: successive A tiles of one row).
void q4k_block(const uint8_t* src, uint16_t* y, int64_t cs, int64_t lo_off) {
  BlockQ4_K b;
  std::memcpy(&b, src, sizeof(b));
  const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
  const __m256i low = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; ++c) {
    uint8_t sc0, mn0, sc1, mn1;
    unpack_scale_min(b.scales, 2 * c, &sc0, &mn0);
    unpack_scale_min(b.scales, 2 * c + 1, &sc1, &mn1);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    affine32(_mm256_and_si256(q, low), d * sc0, dmin * mn0, y + 2 * c * cs, lo_off);
    affine32(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), d * sc1, dmin * mn1, y + (2 * c + 1) * cs, lo_off);
  }
}

void q5k_block(const uint8_t* src, uint16_t* y, int64_t cs, int64_t lo_off) {
  BlockQ5_K b;
  std::memcpy(&b, src, sizeof(b));
  const float d = half_to_float(b.d), dmin = half_to_float(b.dmin);
  const __m256i low = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int c = 0; c < 4; ++c) {
    uint8_t sc0, mn0, sc1, mn1;
    unpack_scale_min(b.scales, 2 * c, &sc0, &mn0);
    unpack_scale_min(b.scales, 2 * c + 1, &sc1, &mn1);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
    const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, low), _mm256_slli_epi16(h0, 4));
    const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low),
                                       _mm256_slli_epi16(h1, 4));
    affine32(lo, d * sc0, dmin * mn0, y + 2 * c * cs, lo_off);
    affine32(hi, d * sc1, dmin * mn1, y + (2 * c + 1) * cs, lo_off);
  }
}

// 32 signed levels with a scale per 16: y = (d·sc)·q.
inline void scaled32(__m256i q, float s0, float s1, uint16_t* dst, int64_t lo_off) {
  __m512 lo, hi;
  widen32(q, true, &lo, &hi);
  store_bf16x32(dst, _mm512_mul_ps(_mm512_set1_ps(s0), lo), _mm512_mul_ps(_mm512_set1_ps(s1), hi), lo_off);
}

void q6k_block(const uint8_t* src, uint16_t* y, int64_t cs, int64_t lo_off) {
  BlockQ6_K b;
  std::memcpy(&b, src, sizeof(b));
  const float d = half_to_float(b.d);
  const __m256i low = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const __m256i bias = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    const int8_t* sc = b.scales + 8 * h;
    const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, low),
                                       _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    const __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, low),
                                       _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                                       _mm256_and_si256(qh, m30));
    const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    uint16_t* o = y + 4 * h * cs;
    // dequantize_row: d * float(sc) * float(q), i.e. (d·sc)·q.
    scaled32(_mm256_sub_epi8(q1, bias), d * static_cast<float>(sc[0]), d * static_cast<float>(sc[1]), o, lo_off);
    scaled32(_mm256_sub_epi8(q2, bias), d * static_cast<float>(sc[2]), d * static_cast<float>(sc[3]), o + cs, lo_off);
    scaled32(_mm256_sub_epi8(q3, bias), d * static_cast<float>(sc[4]), d * static_cast<float>(sc[5]), o + 2 * cs, lo_off);
    scaled32(_mm256_sub_epi8(q4, bias), d * static_cast<float>(sc[6]), d * static_cast<float>(sc[7]), o + 3 * cs, lo_off);
  }
}

void q8_0_block(const uint8_t* src, uint16_t* y, int64_t, int64_t lo_off) {
  BlockQ8_0 b;
  std::memcpy(&b, src, sizeof(b));
  const float d = half_to_float(b.d);
  __m512 lo, hi;
  widen32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)), true, &lo, &hi);
  const __m512 vd = _mm512_set1_ps(d);  // dequantize_row: float(q) * d
  store_bf16x32(y, _mm512_mul_ps(lo, vd), _mm512_mul_ps(hi, vd), lo_off);
}

void f32_block(const uint8_t* src, uint16_t* y, int64_t, int64_t lo_off) {
  const float* f = reinterpret_cast<const float*>(src);
  store_bf16x32(y, _mm512_loadu_ps(f), _mm512_loadu_ps(f + 16), lo_off);
}

void f16_block(const uint8_t* src, uint16_t* y, int64_t, int64_t lo_off) {
  const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
  const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 32)));
  store_bf16x32(y, lo, hi, lo_off);
}

void bf16_block(const uint8_t* src, uint16_t* y, int64_t, int64_t lo_off) {
  // Already bf16; only subnormals change (flushed, as the conversion would).
  const __m512i v = _mm512_loadu_si512(src);
  const __m512i exp = _mm512_and_si512(v, _mm512_set1_epi16(0x7F80));
  const __mmask32 sub = _mm512_cmpeq_epi16_mask(exp, _mm512_setzero_si512());
  const __m512i flushed = _mm512_and_si512(v, _mm512_set1_epi16(static_cast<int16_t>(0x8000)));
  _mm512_storeu_si512(y, _mm512_mask_mov_epi16(v, sub, flushed));
  if (lo_off) _mm512_storeu_si512(y + lo_off, _mm512_setzero_si512());  // exact: no residual
}

using BlockFn = void (*)(const uint8_t*, uint16_t*, int64_t, int64_t);

struct BlockKind {
  BlockFn fn;
  int64_t elems, bytes;
};

bool block_kind(GGMLType type, BlockKind* k) {
  switch (type) {
    case GGMLType::Q4_K: *k = {q4k_block, 256, sizeof(BlockQ4_K)}; return true;
    case GGMLType::Q5_K: *k = {q5k_block, 256, sizeof(BlockQ5_K)}; return true;
    case GGMLType::Q6_K: *k = {q6k_block, 256, sizeof(BlockQ6_K)}; return true;
    case GGMLType::Q8_0: *k = {q8_0_block, 32, sizeof(BlockQ8_0)}; return true;
    case GGMLType::F32: *k = {f32_block, 32, 128}; return true;
    case GGMLType::F16: *k = {f16_block, 32, 64}; return true;
    case GGMLType::BF16: *k = {bf16_block, 32, 64}; return true;
    default: return false;
  }
}

}  // namespace

bool dequant_has_avx512(GGMLType type) {
  BlockKind k;
  return block_kind(type, &k);
}

void dequant_block_rows_avx512(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                               int64_t k0, int64_t n, uint16_t* dst, int64_t ld) {
  BlockKind kind;
  if (!block_kind(type, &kind)) return;
  const int64_t b0 = k0 / kind.elems, nb = n / kind.elems;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = w + static_cast<size_t>(r) * row_bytes + b0 * kind.bytes;
    uint16_t* y = dst + r * ld;
    for (int64_t b = 0; b < nb; ++b) kind.fn(src + b * kind.bytes, y + b * kind.elems, 32, 0);
  }
}

void dequant_a_tiles_avx512(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                            int64_t k0, int64_t n, uint16_t* a, int64_t lo_off) {
  BlockKind kind;
  if (!block_kind(type, &kind)) return;
  const int64_t steps = n / 32, b0 = k0 / kind.elems, nb = n / kind.elems;
  const int64_t chunks = kind.elems / 32;  // A tiles one block spans
  for (int64_t r = 0; r < 32; ++r) {
    uint16_t* y = a + (r / 16) * steps * 512 + (r % 16) * 32;
    if (r >= rows) {
      for (int64_t s = 0; s < steps; ++s) {
        _mm512_store_si512(y + s * 512, _mm512_setzero_si512());
        if (lo_off) _mm512_store_si512(y + lo_off + s * 512, _mm512_setzero_si512());
      }
      continue;
    }
    const uint8_t* src = w + static_cast<size_t>(r) * row_bytes + b0 * kind.bytes;
    for (int64_t b = 0; b < nb; ++b) kind.fn(src + b * kind.bytes, y + b * chunks * 512, 512, lo_off);
  }
}

namespace {
// Butterfly transpose of a 16x16 block of 32-bit lanes: stage b swaps the off-diagonal b x b
// sub-blocks of every 2b x 2b block (b = 8, 4, 2, 1), two two-source permutes per row pair.
void transpose16_indices(__m512i* lo_idx, __m512i* hi_idx) {
  for (int st = 0; st < 4; ++st) {
    const int b = 8 >> st;
    alignas(64) int32_t lo[16], hi[16];
    for (int j = 0; j < 16; ++j) {
      const bool left = (j / b) % 2 == 0;
      lo[j] = left ? j : 16 + j - b;
      hi[j] = left ? j + b : 16 + j;
    }
    lo_idx[st] = _mm512_load_si512(lo);
    hi_idx[st] = _mm512_load_si512(hi);
  }
}

inline __m512 permute2(__m512 a, __m512i i, __m512 b) { return _mm512_permutex2var_ps(a, i, b); }
inline __m512i permute2(__m512i a, __m512i i, __m512i b) { return _mm512_permutex2var_epi32(a, i, b); }

template <typename V>
inline void transpose16(V* v, const __m512i* lo_idx, const __m512i* hi_idx) {
  for (int st = 0; st < 4; ++st) {
    const int b = 8 >> st;
    for (int i = 0; i < 16; ++i) {
      if ((i / b) % 2) continue;
      const V x = v[i], y = v[i + b];
      v[i] = permute2(x, lo_idx[st], y);
      v[i + b] = permute2(x, hi_idx[st], y);
    }
  }
}
}  // namespace

void pack_acts_avx512(const float* x, int64_t ld_x, int64_t n_tok, int64_t k, int64_t g0,
                      int64_t g1, uint16_t* acts, int64_t lo_off) {
  const int64_t steps = k / kBf16Step;
  __m512i lo_idx[4], hi_idx[4];
  transpose16_indices(lo_idx, hi_idx);
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t s = 0; s < steps; ++s) {
      // Row t: token t's 32 elements as 16 bf16 pairs; transposed, row p: pair p of 16 tokens.
      __m512i v[16], r[16];
      for (int64_t t = 0; t < 16; ++t) {
        const int64_t tok = 16 * g + t;
        if (tok < n_tok) {
          const float* src = x + tok * ld_x + s * kBf16Step;
          const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + 16);
          v[t] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
          if (lo_off) {
            const __m512 ra = _mm512_sub_ps(a, bf16_widen(_mm512_castsi512_si256(v[t])));
            const __m512 rb = _mm512_sub_ps(b, bf16_widen(_mm512_extracti64x4_epi64(v[t], 1)));
            r[t] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(rb, ra));
          }
        } else {
          v[t] = r[t] = _mm512_setzero_si512();
        }
      }
      transpose16(v, lo_idx, hi_idx);
      uint16_t* out = acts + (g * steps + s) * 512;
      for (int p = 0; p < 16; ++p) _mm512_store_si512(out + 32 * p, v[p]);
      if (lo_off) {
        transpose16(r, lo_idx, hi_idx);
        for (int p = 0; p < 16; ++p) _mm512_store_si512(out + lo_off + 32 * p, r[p]);
      }
    }
  }
}

namespace {
inline void prefetch16(const uint16_t* p) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int l = 0; l < 16; ++l) _mm_prefetch(c + 64 * l, _MM_HINT_T0);
}
}  // namespace

void tile_pass_amx(const uint16_t* a, int64_t a_lo_off, int64_t steps, const uint16_t* acts,
                   int64_t b_lo_off, int64_t group_stride, int64_t n_tok_pairs, float* acc,
                   int64_t ld_acc, bool first) {
  const bool split = a_lo_off != 0;
  const int64_t c_stride = ld_acc * 4;
  const uint16_t* a0 = a;                // rows 0..15, step s at a0 + 512 s
  const uint16_t* a1 = a + steps * 512;  // rows 16..31
  // B tiles of (token pair tp, step s), and the pair two steps ahead for the prefetcher.
  auto b_at = [&](int64_t tp, int64_t s) { return acts + 2 * tp * group_stride + s * 512; };
  for (int64_t tp = 0; tp < n_tok_pairs; ++tp) {
    const uint16_t* b0 = b_at(tp, 0);
    const uint16_t* b1 = b0 + group_stride;
    float* c = acc + 32 * tp;
    if (first) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    } else {
      _tile_loadd(0, c, c_stride);
      _tile_loadd(1, c + 16, c_stride);
      _tile_loadd(2, c + 16 * ld_acc, c_stride);
      _tile_loadd(3, c + 16 * ld_acc + 16, c_stride);
    }
    for (int64_t s = 0; s < steps; ++s) {
      // The B tiles two steps on (this pair's or the next one's) into L1: A is already there
      // (just dequantized), B streams from L2, and a tile load waits for its lines.
      const int64_t ps = s + 2 < steps ? s + 2 : s + 2 - steps;
      const int64_t ptp = s + 2 < steps ? tp : tp + 1;
      const uint16_t* pf = ptp < n_tok_pairs ? b_at(ptp, ps) : nullptr;
      _tile_loadd(4, a0 + s * 512, 64);
      _tile_loadd(6, b0 + s * 512, 64);
      _tile_dpbf16ps(0, 4, 6);
      if (pf) prefetch16(pf);
      _tile_loadd(7, b1 + s * 512, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_loadd(5, a1 + s * 512, 64);
      _tile_dpbf16ps(2, 5, 6);
      if (pf) prefetch16(pf + group_stride);
      _tile_dpbf16ps(3, 5, 7);
      if (split) {
        // + A_hi·B_lo, then + A_lo·B_hi (A_lo·B_lo is below float rounding).
        _tile_loadd(6, b0 + b_lo_off + s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        if (pf) prefetch16(pf + b_lo_off);
        _tile_loadd(7, b1 + b_lo_off + s * 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
        if (pf) prefetch16(pf + b_lo_off + group_stride);
        _tile_loadd(4, a0 + a_lo_off + s * 512, 64);
        _tile_loadd(6, b0 + s * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b1 + s * 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + a_lo_off + s * 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, c, c_stride);
    _tile_stored(1, c + 16, c_stride);
    _tile_stored(2, c + 16 * ld_acc, c_stride);
    _tile_stored(3, c + 16 * ld_acc + 16, c_stride);
  }
}

void tile_configure() { _tile_loadconfig(&tile_config()); }

void tile_release() { _tile_release(); }

void store_transposed_avx512(const float* acc, int64_t ld_acc, int64_t rows, int64_t toks,
                             float* dst, int64_t ld_dst) {
  __m512i lo_idx[4], hi_idx[4];
  transpose16_indices(lo_idx, hi_idx);
  // Token-major: each token row gets its outputs as one contiguous run of stores.
  for (int64_t t0 = 0; t0 < toks; t0 += 16) {
    const int64_t nt = toks - t0 < 16 ? toks - t0 : 16;
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
      const __mmask16 cols = static_cast<__mmask16>(rows - r0 >= 16 ? 0xFFFF : (1u << (rows - r0)) - 1);
      __m512 v[16];
      for (int i = 0; i < 16; ++i) v[i] = _mm512_loadu_ps(acc + (r0 + i) * ld_acc + t0);
      transpose16(v, lo_idx, hi_idx);
      for (int64_t t = 0; t < nt; ++t) _mm512_mask_storeu_ps(dst + (t0 + t) * ld_dst + r0, cols, v[t]);
    }
  }
}

}  // namespace ktx::cpu::bf16_detail
