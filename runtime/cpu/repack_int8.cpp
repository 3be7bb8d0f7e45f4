// repack_int8: see repack_int8.h. Each row is dequantized by the reference (the oracle every
// path must match), the (scale, bias) of each 32-element block is read from the GGUF block
// header, and the integer level of each element is recovered as (w - bias) / scale and checked
// to reproduce w exactly, so a layout or header misread fails at load, not as wrong outputs.
#include "runtime/cpu/repack_int8.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/quant/quant_blocks.h"
#include "runtime/cpu/jit/gemm_kq_kernel.h"

namespace ktx::cpu {
namespace {

struct BlockAffine {
  float scale = 0.0f;
  float bias = 0.0f;
};

using quant_detail::half_at;

// (scale, bias) of 32-element block j of a row, in the association dequantize_row uses.
BlockAffine block_affine(GGMLType type, const uint8_t* row, int64_t j) {
  switch (type) {
    case GGMLType::Q8_0: return {half_at(row + j * 34), 0.0f};
    case GGMLType::Q4_0: return {half_at(row + j * 18), 0.0f};
    case GGMLType::Q5_0: return {half_at(row + j * 22), 0.0f};
    case GGMLType::Q4_1: return {half_at(row + j * 20), half_at(row + j * 20 + 2)};
    case GGMLType::Q5_1: return {half_at(row + j * 24), half_at(row + j * 24 + 2)};
    case GGMLType::Q4_K:
    case GGMLType::Q5_K: {
      const int64_t sb_bytes = type == GGMLType::Q4_K ? 144 : 176;
      const uint8_t* sb = row + (j / 8) * sb_bytes;  // d, dmin, scales[12] lead both layouts
      uint8_t sc, mn;
      quant_detail::unpack_scale_min_k4(sb + 4, static_cast<int>(j % 8), &sc, &mn);
      return {half_at(sb) * sc, -(half_at(sb + 2) * mn)};
    }
    default: return {};
  }
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Level of each element of one block; false (with the bad index) when w is not scale*q+bias.
bool block_levels(const float* w, BlockAffine a, int8_t* q, int* bad) {
  for (int i = 0; i < kRepackBlock; ++i) {
    float level = a.scale != 0.0f ? std::nearbyint((w[i] - a.bias) / a.scale) : 0.0f;
    if (level < -128.0f || level > 127.0f || a.scale * level + a.bias != w[i]) {
      *bad = i;
      return false;
    }
    q[i] = static_cast<int8_t>(level);
  }
  return true;
}

}  // namespace

float RepackedMatrix::at(int64_t r, int64_t kk) const {
  const int64_t p = r / kRepackPanel, n = r % kRepackPanel, b = kk / kRepackBlock;
  const int64_t e = kk % kRepackBlock;
  const int8_t v = panel_q(p)[b * kRepackTileBytes + (e / 4) * 64 + n * 4 + e % 4];
  const int64_t s = b * kRepackPanel + n;
  return panel_scale(p)[s] * v + panel_bias(p)[s];
}

bool repack_int8_supported(GGMLType type) {
  switch (type) {
    case GGMLType::Q8_0: case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q5_0:
    case GGMLType::Q5_1: case GGMLType::Q4_K: case GGMLType::Q5_K: return true;
    default: return false;
  }
}

Expected<RepackedMatrix> repack_int8(GGMLType type, const void* data, int64_t rows, int64_t k,
                                     const std::string& what) {
  const std::string tname = ggml_type_name(static_cast<uint32_t>(type));
  if (!repack_int8_supported(type)) {
    return Error("{}: type {} has no exact int8 repack with 32-element scales (supported: "
                 "Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K)", what, tname);
  }
  auto row_bytes = ggml_row_bytes(type, k);
  if (!row_bytes || k % kRepackBlock != 0 || rows <= 0) {
    return Error("{}: {} rows of {} elements of {}: expected rows > 0 and k a whole number of "
                 "blocks", what, rows, k, tname);
  }
  RepackedMatrix m;
  m.rows = rows, m.k = k, m.blocks = k / kRepackBlock;
  m.panels = round_up(rows, kRepackRowAlign) / kRepackPanel;
  const size_t q_bytes = static_cast<size_t>(m.panels * m.blocks * kRepackTileBytes);
  const size_t s_bytes = static_cast<size_t>(m.panels * m.blocks * kRepackPanel) * sizeof(float);
  auto* raw = static_cast<uint8_t*>(std::aligned_alloc(64, q_bytes + 2 * s_bytes));
  if (!raw) return Error("{}: cannot allocate {} bytes for the repacked weights", what, q_bytes);
  std::memset(raw, 0, q_bytes + 2 * s_bytes);
  m.storage.reset(raw, [](uint8_t* p) { std::free(p); });
  auto* q = reinterpret_cast<int8_t*>(raw);
  auto* scale = reinterpret_cast<float*>(raw + q_bytes);
  auto* bias = reinterpret_cast<float*>(raw + q_bytes + s_bytes);
  m.q = q, m.scale = scale, m.bias = bias;
  std::vector<float> w(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    const auto* src = static_cast<const uint8_t*>(data) + r * row_bytes.value();
    dequantize_row(type, src, w.data(), k);
    const int64_t p = r / kRepackPanel, n = r % kRepackPanel;
    for (int64_t b = 0; b < m.blocks; ++b) {
      const BlockAffine a = block_affine(type, src, b);
      int8_t lv[kRepackBlock];
      int bad = 0;
      if (!block_levels(w.data() + b * kRepackBlock, a, lv, &bad)) {
        return Error("{}: row {} element {} of {}: value {} is not scale {} * level + bias {}",
                     what, r, b * kRepackBlock + bad, tname, w[b * kRepackBlock + bad], a.scale,
                     a.bias);
      }
      int8_t* tile = q + (p * m.blocks + b) * kRepackTileBytes;
      for (int e = 0; e < kRepackBlock; ++e) tile[(e / 4) * 64 + n * 4 + e % 4] = lv[e];
      scale[(p * m.blocks + b) * kRepackPanel + n] = a.scale;
      bias[(p * m.blocks + b) * kRepackPanel + n] = a.bias;
      m.has_bias = m.has_bias || a.bias != 0.0f;
    }
  }
  return m;
}

bool prefill_gate_up_in_place(const MoeDesc& desc) {
  return gemm_kq_supported(desc.gate_type) && gemm_kq_supported(desc.up_type);
}

bool prefill_down_in_place(const MoeDesc& desc) {
  return gemm_kq_supported(desc.down_type) || !repack_int8_supported(desc.down_type);
}

Expected<RepackedMoe> repack_moe(const MoeDesc& desc, const MoeWeights& weights,
                                 ThreadPool& pool) {
  KTX_RETURN_IF_ERROR(desc.validate());
  RepackedMoe out;
  out.desc = desc;
  const int64_t E = desc.n_expert, K = desc.n_embd, N = desc.n_ff;
  // Matrix kinds 0 gate, 1 up, 2 down: raw pointers for those read in place.
  const bool in_place[3] = {prefill_gate_up_in_place(desc), prefill_gate_up_in_place(desc),
                            prefill_down_in_place(desc)};
  const GGMLType types[3] = {desc.gate_type, desc.up_type, desc.down_type};
  const void* bases[3] = {weights.gate, weights.up, weights.down};
  std::vector<RepackedMatrix>* packed[3] = {&out.gate, &out.up, &out.down};
  std::vector<const uint8_t*>* raw[3] = {&out.gate_raw, &out.up_raw, &out.down_raw};
  std::vector<int> repacked;
  for (int which = 0; which < 3; ++which) {
    const int64_t rows = which == 2 ? K : N, k = which == 2 ? N : K;
    const uint64_t rb = ggml_row_bytes(types[which], k).value();
    if (in_place[which]) {
      for (int64_t e = 0; e < E; ++e) {
        raw[which]->push_back(static_cast<const uint8_t*>(bases[which]) + e * rows * rb);
      }
    } else {
      packed[which]->resize(static_cast<size_t>(E));
      repacked.push_back(which);
    }
  }
  const auto mats = static_cast<int64_t>(repacked.size());
  std::vector<Status> status(static_cast<size_t>(mats * E), Status::ok());
  pool.parallel_for(mats * E, [&](int64_t task) {
    const int64_t e = task / mats;
    const int which = repacked[task % mats];
    const int64_t rows = which == 2 ? K : N, k = which == 2 ? N : K;
    const uint64_t rb = ggml_row_bytes(types[which], k).value();
    const char* name = which == 0 ? "gate" : which == 1 ? "up" : "down";
    auto m = repack_int8(types[which], static_cast<const uint8_t*>(bases[which]) + e * rows * rb,
                         rows, k, fmt::format("repack {} expert {}", name, e));
    if (!m) {
      status[task] = m.status();
      return;
    }
    (*packed[which])[e] = std::move(m).value();
  });
  for (const Status& s : status) KTX_RETURN_IF_ERROR(s);
  return out;
}

}  // namespace ktx::cpu
