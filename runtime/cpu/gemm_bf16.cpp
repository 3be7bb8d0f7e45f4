// The AMX-BF16 prefill GEMM's driver, its plain twin and the portable dequantizer (gemm_bf16.h).
#include "runtime/cpu/gemm_bf16.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/hw/cpu_features.h"

namespace ktx::cpu {
namespace {

constexpr int64_t kMaxTaskTokens = 512;       // tokens of one task (its acts slab stays in L2)
constexpr int64_t kMaxTaskRows = 128;         // weight rows of one task
constexpr int64_t kTile = 16;

// A grow-only buffer on a 64-byte boundary: a tile row that straddles two cache lines costs
// two line accesses, which halves the tile unit's speed.
template <typename T>
class AlignedBuf {
 public:
  T* get(size_t n) {
    if (n > cap_) {
      const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      p_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      cap_ = n;
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p_;
  size_t cap_ = 0;
};

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t block_elems(GGMLType type) {
  int64_t elems = 0, bytes = 0;
  ggml_type_block(static_cast<uint32_t>(type), &elems, &bytes);
  return elems;
}

void dequant_rows_plain(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                        int64_t k0, int64_t n, uint16_t* dst, int64_t ld) {
  int64_t elems = 0, bytes = 0;
  ggml_type_block(static_cast<uint32_t>(type), &elems, &bytes);
  thread_local std::vector<float> tmp;
  tmp.resize(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(type, w + static_cast<size_t>(r) * row_bytes + k0 / elems * bytes, tmp.data(), n);
    for (int64_t i = 0; i < n; ++i) dst[r * ld + i] = round_bf16(tmp[static_cast<size_t>(i)]);
  }
}

}  // namespace

const char* bf16_precision_name(Bf16Precision p) {
  return p == Bf16Precision::bf16 ? "bf16" : "bf16x3";
}

void dequant_rows_bf16x2(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                         int64_t k0, int64_t n, uint16_t* hi, uint16_t* lo, int64_t ld) {
  int64_t elems = 0, bytes = 0;
  ggml_type_block(static_cast<uint32_t>(type), &elems, &bytes);
  thread_local std::vector<float> tmp;
  tmp.resize(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(type, w + static_cast<size_t>(r) * row_bytes + k0 / elems * bytes, tmp.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const float v = tmp[static_cast<size_t>(i)];
      hi[r * ld + i] = round_bf16(v);
      lo[r * ld + i] = round_bf16(v - bf16_to_fp32(hi[r * ld + i]));
    }
  }
}

uint16_t round_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7f800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);
  return fp32_to_bf16(f);
}

bool gemm_bf16_available(const CpuIsa& cpu) {
  return cpu.amx_tile && cpu.amx_bf16 && cpu.avx512f && cpu.avx512bw && cpu.avx512vl &&
         cpu.avx512_bf16 && cpu.f16c && cpu.fma && request_amx_permission();
}

bool gemm_bf16_supported(GGMLType type, int64_t k) {
  if (!ggml_type_supported(static_cast<uint32_t>(type)) || k <= 0 || k % kBf16Step != 0) return false;
  const int64_t be = block_elems(type);
  return be > 0 && k % be == 0 && kBf16Slab % be == 0;
}

void dequant_rows_bf16(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                       int64_t k0, int64_t n, uint16_t* dst, int64_t ld, bool vector) {
  if (vector && bf16_detail::dequant_has_avx512(type))
    bf16_detail::dequant_block_rows_avx512(type, w, row_bytes, rows, k0, n, dst, ld);
  else
    dequant_rows_plain(type, w, row_bytes, rows, k0, n, dst, ld);
}

void gemm_bf16_run(ThreadPool& pool, GGMLType type, const uint8_t* w, size_t row_bytes,
                   int64_t k, const float* x, int64_t ld_x, int64_t n_tok, float* dst,
                   int64_t ld_dst, int64_t n_out, Bf16Precision precision) {
  if (n_tok <= 0 || n_out <= 0) return;
  const bool split = precision == Bf16Precision::bf16x3;
  const int64_t steps = k / kBf16Step;
  const int64_t m_pad = round_up(n_tok, 2 * kTile);
  const int64_t n_groups = m_pad / kTile;
  // The activations as B tiles, shared by every task.
  thread_local AlignedBuf<uint16_t> acts_buf;
  const int64_t b_lo_off = split ? n_groups * steps * 512 : 0;  // residual tiles after the hi ones
  uint16_t* acts = acts_buf.get(static_cast<size_t>((split ? 2 : 1) * n_groups * steps * 512));
  const int64_t pack_tasks = std::min<int64_t>(n_groups, 4 * pool.size());
  pool.parallel_for(pack_tasks, [&](int64_t i) {
    bf16_detail::pack_acts_avx512(x, ld_x, n_tok, k, n_groups * i / pack_tasks,
                                  n_groups * (i + 1) / pack_tasks, acts, b_lo_off);
  });

  // Tasks: (rows R, tokens T). Fewer rows per task while there are not ~2 tasks per thread.
  const int64_t tok_block = std::min(kMaxTaskTokens, m_pad);
  const int64_t n_tb = (m_pad + tok_block - 1) / tok_block;
  int64_t row_block = kMaxTaskRows;
  while (row_block > 2 * kTile && ((n_out + row_block - 1) / row_block) * n_tb < 2 * pool.size())
    row_block /= 2;
  const int64_t n_rb = (n_out + row_block - 1) / row_block;
  const bool vec = bf16_detail::dequant_has_avx512(type);
  pool.parallel_for(n_rb * n_tb, [&](int64_t task) {
    const int64_t r0 = (task / n_tb) * row_block, t0 = (task % n_tb) * tok_block;
    const int64_t rows = std::min(row_block, n_out - r0);
    const int64_t row_pairs = (rows + 2 * kTile - 1) / (2 * kTile);
    const int64_t toks = std::min(tok_block, m_pad - t0);
    const int64_t ld_acc = tok_block + kTile;  // skews C tile rows across L1 sets
    thread_local AlignedBuf<uint16_t> a_buf, tmp_buf;
    thread_local AlignedBuf<float> acc_buf;
    const int64_t a_lo_off = split ? 2 * kTile * kBf16Slab : 0;
    uint16_t* a_tiles = a_buf.get(static_cast<size_t>((split ? 2 : 1) * 2 * kTile * kBf16Slab));
    uint16_t* row_tmp = tmp_buf.get(static_cast<size_t>(2 * kBf16Slab));
    float* acc = acc_buf.get(static_cast<size_t>(kMaxTaskRows * (kMaxTaskTokens + kTile)));
    bf16_detail::tile_configure();
    for (int64_t k0 = 0; k0 < k; k0 += kBf16Slab) {
      const int64_t kn = std::min(kBf16Slab, k - k0), slab_steps = kn / kBf16Step;
      for (int64_t rp = 0; rp < row_pairs; ++rp) {
        // The row pair's slab as A tiles (L1): rows 0..15 step by step, then rows 16..31.
        const int64_t rr = std::min(2 * kTile, rows - 2 * kTile * rp);
        const uint8_t* wr = w + static_cast<size_t>(r0 + 2 * kTile * rp) * row_bytes;
        if (vec) {
          bf16_detail::dequant_a_tiles_avx512(type, wr, row_bytes, rr, k0, kn, a_tiles, a_lo_off);
        } else {
          for (int64_t r = 0; r < 2 * kTile; ++r) {
            uint16_t* base = a_tiles + (r / kTile) * slab_steps * 512 + (r % kTile) * kBf16Step;
            if (r < rr) {
              if (split) dequant_rows_bf16x2(type, wr + static_cast<size_t>(r) * row_bytes, row_bytes, 1, k0, kn, row_tmp, row_tmp + kn, kn);
              else dequant_rows_plain(type, wr + static_cast<size_t>(r) * row_bytes, row_bytes, 1, k0, kn, row_tmp, kn);
            }
            for (int64_t st = 0; st < slab_steps; ++st) {
              for (int part = 0; part < (split ? 2 : 1); ++part) {
                uint16_t* d = base + part * a_lo_off + st * 512;
                if (r < rr) std::memcpy(d, row_tmp + part * kn + st * kBf16Step, kBf16Step * 2);
                else std::memset(d, 0, kBf16Step * 2);
              }
            }
          }
        }
        bf16_detail::tile_pass_amx(a_tiles, a_lo_off, slab_steps,
                                   acts + ((t0 / kTile) * steps + k0 / kBf16Step) * 512, b_lo_off, steps * 512,
                                   toks / (2 * kTile), acc + 2 * kTile * rp * ld_acc, ld_acc,
                                   k0 == 0);
      }
    }
    bf16_detail::tile_release();
    bf16_detail::store_transposed_avx512(acc, ld_acc, rows, std::min(toks, n_tok - t0),
                                         dst + t0 * ld_dst + r0, ld_dst);
  });
}

void gemm_bf16_reference(GGMLType type, const uint8_t* w, size_t row_bytes, int64_t k,
                         const float* x, int64_t ld_x, int64_t n_tok, float* dst,
                         int64_t ld_dst, int64_t n_out, Bf16Precision precision) {
  const bool split = precision == Bf16Precision::bf16x3;
  std::vector<uint16_t> whi(static_cast<size_t>(k)), wlo(static_cast<size_t>(k));
  std::vector<float> xhi(static_cast<size_t>(n_tok * k)), xlo(static_cast<size_t>(n_tok * k));
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      const float v = x[t * ld_x + i];
      xhi[t * k + i] = bf16_to_fp32(round_bf16(v));
      xlo[t * k + i] = split ? bf16_to_fp32(round_bf16(v - xhi[t * k + i])) : 0.0f;
    }
  }
  for (int64_t r = 0; r < n_out; ++r) {
    dequant_rows_bf16x2(type, w + static_cast<size_t>(r) * row_bytes, row_bytes, 1, 0, k, whi.data(), wlo.data(), k);
    for (int64_t t = 0; t < n_tok; ++t) {
      double s = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        const double h = bf16_to_fp32(whi[i]);
        s += h * xhi[t * k + i];
        if (split) s += h * xlo[t * k + i] + static_cast<double>(bf16_to_fp32(wlo[i])) * xhi[t * k + i];
      }
      dst[t * ld_dst + r] = static_cast<float>(s);
    }
  }
}

}  // namespace ktx::cpu
