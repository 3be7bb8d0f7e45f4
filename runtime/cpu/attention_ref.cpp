// The plain twins of the attention kernels (attention.h) and the KV element conversions. The
// references widen the whole cache to f32 first and then follow the engine's scalar attention
// step by step (scores, max-subtracted softmax with a double sum, weighted sum of values), so
// with an f32 cache they are the engine's numbers and with f16/bf16/q8_0 they read exactly the
// values the fast kernels read.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/quant/quant.h"
#include "runtime/cpu/attention.h"

namespace ktx::cpu {

const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::f32: return "f32";
    case KvType::f16: return "f16";
    case KvType::bf16: return "bf16";
    case KvType::q8_0: return "q8_0";
  }
  return "?";
}

Expected<KvType> parse_kv_type(const std::string& name) {
  for (KvType t : {KvType::f32, KvType::f16, KvType::bf16, KvType::q8_0}) {
    if (name == kv_type_name(t)) return t;
  }
  return Error("unknown KV cache type '{}' (expected f32, f16, bf16 or q8_0)", name);
}

size_t kv_row_bytes(KvType t, int64_t n) {
  const auto un = static_cast<size_t>(n);
  switch (t) {
    case KvType::f32: return un * 4;
    case KvType::f16:
    case KvType::bf16: return un * 2;
    case KvType::q8_0: return static_cast<size_t>((n + kKvQ8Block - 1) / kKvQ8Block) * kKvQ8BlockBytes;
  }
  return 0;
}

void kv_store_row(KvType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case KvType::f32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case KvType::f16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(src[i]);
      return;
    }
    case KvType::bf16: {
      auto* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(src[i]);
      return;
    }
    case KvType::q8_0: {
      const int64_t full = n / kKvQ8Block * kKvQ8Block;
      if (full > 0) quantize_row(GGMLType::Q8_0, src, dst, full);
      if (full < n) {  // the zero-padded last block
        float tail[kKvQ8Block] = {};
        std::memcpy(tail, src + full, static_cast<size_t>(n - full) * sizeof(float));
        quantize_row(GGMLType::Q8_0, tail,
                     static_cast<uint8_t*>(dst) + full / kKvQ8Block * kKvQ8BlockBytes, kKvQ8Block);
      }
      return;
    }
  }
}

void kv_load_row(KvType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case KvType::f32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); return;
    case KvType::f16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case KvType::bf16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case KvType::q8_0: {
      const int64_t full = n / kKvQ8Block * kKvQ8Block;
      if (full > 0) dequantize_row(GGMLType::Q8_0, src, dst, full);
      if (full < n) {
        float tail[kKvQ8Block];
        dequantize_row(GGMLType::Q8_0,
                       static_cast<const uint8_t*>(src) + full / kKvQ8Block * kKvQ8BlockBytes,
                       tail, kKvQ8Block);
        std::memcpy(dst + full, tail, static_cast<size_t>(n - full) * sizeof(float));
      }
      return;
    }
  }
}

namespace {

// rows cache rows of cols elements of type t, widened to f32.
std::vector<float> widen(KvType t, KvRows src, int64_t rows, int64_t cols) {
  std::vector<float> f(static_cast<size_t>(rows * cols));  // [rows, cols]
  const size_t rb = kv_row_bytes(t, cols);
  for (int64_t r = 0; r < rows; ++r) kv_load_row(t, src.row(r, rb), f.data() + r * cols, cols);
  return f;
}

float dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// o[0..width) = sum_j p[j] * rows[j * stride + 0..width).
void weighted_sum(const float* p, const float* rows, int64_t stride, int64_t n_keys,
                  int64_t width, float* o) {
  std::fill(o, o + width, 0.0f);
  for (int64_t j = 0; j < n_keys; ++j) {
    const float* r = rows + j * stride;
    for (int64_t i = 0; i < width; ++i) o[i] += p[j] * r[i];
  }
}

}  // namespace

void softmax_inplace(float* s, int64_t n) {
  float mx = s[0];
  for (int64_t j = 1; j < n; ++j) mx = std::max(mx, s[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

void gqa_attention_ref(const GqaAttnDesc& d, const float* q, int64_t q_stride, KvRows k_cache,
                       KvRows v_cache, int64_t n_past, int64_t n_tok, float* out) {
  const int64_t n_pos = n_past + n_tok, hdk = d.head_dim_k, hdv = d.head_dim_v;
  const int64_t nk = d.n_head_kv * hdk, nv = d.n_head_kv * hdv, group = d.n_head / d.n_head_kv;
  const std::vector<float> k = widen(d.kv, k_cache, n_pos, nk);  // [n_pos, nk]
  const std::vector<float> v = widen(d.kv, v_cache, n_pos, nv);  // [n_pos, nv]
  std::vector<float> p(static_cast<size_t>(n_pos));
  for (int64_t t = 0; t < n_tok; ++t) {
    const int64_t n_keys = n_past + t + 1;
    for (int64_t h = 0; h < d.n_head; ++h) {
      const int64_t kvh = h / group;
      const float* qh = q + t * q_stride + h * hdk;
      for (int64_t j = 0; j < n_keys; ++j)
        p[j] = dot(qh, k.data() + j * nk + kvh * hdk, hdk) * d.scale;
      softmax_inplace(p.data(), n_keys);
      weighted_sum(p.data(), v.data() + kvh * hdv, nv, n_keys, hdv,
                   out + (t * d.n_head + h) * hdv);
    }
  }
}

void mla_attention_ref(const MlaAttnDesc& d, const float* q_abs, const float* q_pe,
                       int64_t q_pe_stride, int64_t q_pe_head_stride, KvRows latent, KvRows k_pe,
                       int64_t n_past, int64_t n_tok, float* o_lat) {
  const int64_t n_pos = n_past + n_tok, kvl = d.kv_lora, rope = d.rope;
  const std::vector<float> c = widen(d.kv, latent, n_pos, kvl);  // [n_pos, kv_lora]
  const std::vector<float> kpe = widen(d.kv, k_pe, n_pos, rope);  // [n_pos, rope]
  std::vector<float> p(static_cast<size_t>(n_pos));
  for (int64_t t = 0; t < n_tok; ++t) {
    const int64_t n_keys = n_past + t + 1;
    for (int64_t h = 0; h < d.n_head; ++h) {
      const float* qa = q_abs + (t * d.n_head + h) * kvl;
      const float* qp = q_pe + t * q_pe_stride + h * q_pe_head_stride;
      for (int64_t j = 0; j < n_keys; ++j)
        p[j] = (dot(qa, c.data() + j * kvl, kvl) + dot(qp, kpe.data() + j * rope, rope)) *
               d.scale;
      softmax_inplace(p.data(), n_keys);
      weighted_sum(p.data(), c.data(), kvl, n_keys, kvl, o_lat + (t * d.n_head + h) * kvl);
    }
  }
}

}  // namespace ktx::cpu
