// The GPU attention layers (gqa_attention_layer, mla_attention_layer) against a float64
// reference of the CPU engine's layer functions built here from the same random weights
// (F32/F16/Q8_0/Q4_K, decoded by dequantize_row), and a prefill of T tokens against T decode
// steps. Each config runs three chained calls on one cache: 5 tokens at position 0, 20 at 5
// (more than the workspace's 16-token chunk: chunked projections and queries, the GEMM on the
// full chunk), 1 at 25.
//
// Configs: qwen2moe-like (q/k/v biases, neox, group 2, head 64), qwen3moe-like (q/k norms,
// neox, group 8, head 128, Q4_K output), llama/Mixtral-like (normal RoPE on 64 of 128 dims,
// YaRN table and scale); DeepSeek-like MLA with attn_kv_b and q_lora (YaRN), with split
// attn_k_b/attn_v_b and no q_lora, and a small one (kv_lora 64, rope 16, split, q_lora).
//
// Projections whose weights take the integer GEMV (Q8_0, Q4_K here) see x rounded to int16 per
// 32 elements on the device; the reference rounds its x the same way (project()), so both sides
// multiply the same values.
//
// Bounds (and why): the reference rounds k/v (MLA: latents, k_pe) to f16 exactly as the
// cache does, so both sides attend over the same cache except where the device's float value
// and the reference's double value round to neighbouring f16s (a float error straddling a
// rounding boundary: ~1 element in 4000, one f16 ulp). Such a flip moves a score by about
// 5e-4 · |q_i k_i| · scale; float-vs-double sums add ~1e-5 relative. So:
//   outputs: |got − want| <= 1e-3 · max|want| of the call;
//   caches: every element equals the reference's f16 or is one ulp from it, at most 0.5% of them
//   (differences under 1e-6, in subnormals, count as equal).
// Prefill vs decode: the caches are the same bits (per-token arithmetic does not depend on
// n_tok), outputs agree within 1e-5 · max|out| (key splits and token blocks differ).
#include <cmath>
#include <map>

#include "attn_test_util.h"

namespace ktx {
std::vector<double> rope_frequencies(const ModelConfig& c);  // runtime/engine/ops.cpp
}

namespace ktx::cuda {
namespace {

using namespace attn_test;
using Vec = std::vector<double>;

struct Model {
  ModelConfig c;
  std::map<std::string, HostWeight> w;
  std::vector<float> inv_freq;  // the float table on the device
  TensorLookup lookup() const {
    return [this](const std::string& name) -> Expected<DevTensor> {
      auto it = w.find(name);
      if (it == w.end()) return Error("test: no tensor '{}'", name);
      return it->second.tensor();
    };
  }
  void add(const std::string& name, GGMLType type, int64_t row_len, int64_t n_rows, float scale) {
    w.emplace(name, make_weight(type, row_len, n_rows, scale, static_cast<uint32_t>(w.size() * 31 + 5)));
  }
  // A norm weight (~1) or bias as F32 [n].
  void add_vec(const std::string& name, int64_t n, float mean) {
    HostWeight v = make_weight(GGMLType::F32, n, 1, 0.1f, static_cast<uint32_t>(w.size() * 31 + 9));
    for (auto& x : v.deq) x += mean;
    std::vector<float> f(v.deq.begin(), v.deq.end());
    v.dev = upload(f);
    w.emplace(name, std::move(v));
  }
  const HostWeight& at(const std::string& n) const { return w.at(n); }
};

void finish_config(ModelConfig& c) {
  c.rope_freq_base = 10000.0f;
  c.attn_scale = static_cast<float>(1.0 / std::sqrt(double(c.head_dim_k)));
  if (c.yarn) {
    c.rope_scale_factor = 40.0f;
    c.rope_orig_ctx = 4096;
    c.yarn_log_multiplier = 0.1f;
    const double m = 1.0 + 0.1 * std::log(40.0);
    c.attn_scale = static_cast<float>(c.attn_scale * m * m);
  }
}

// ---- float64 reference of the engine's layers ----

Vec matvec(const HostWeight& w, const double* x, int64_t row0 = 0, int64_t n = -1) {
  if (n < 0) n = w.n_rows;
  Vec y(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t i = 0; i < w.row_len; ++i) s += double(w.row(row0 + r)[i]) * x[i];
    y[r] = s;
  }
  return y;
}
// A projection as the layer runs it: weights of a type with an integer GEMV (Q4_K, Q5_K, Q6_K,
// Q8_0) see x rounded like ktx_quantize_x16 (per 32 elements, in float: d = max|x| / 32767,
// q = rint(x · 32767 / max|x|)), the others x itself.
Vec project(const HostWeight& w, const double* x) {
  if (!gemv16_supported(w.type)) return matvec(w, x);
  std::vector<float> xf(x, x + w.row_len);
  const std::vector<double> r = gpu_test::x16_rounded(xf.data(), w.row_len);
  return matvec(w, r.data());
}
void rms_norm(double* x, const HostWeight& w, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * w.deq[i];
}
void rope(const Model& m, double* x, int64_t pos) {
  const int64_t half = m.c.n_rot / 2;
  const bool neox = m.c.rope_style == RopeStyle::Neox;
  for (int64_t i = 0; i < half; ++i) {
    const double th = double(pos) * double(m.inv_freq[i]);
    const double cs = static_cast<float>(std::cos(th)), sn = static_cast<float>(std::sin(th));
    double* a = neox ? x + i : x + 2 * i;
    double* b = neox ? x + i + half : x + 2 * i + 1;
    const double x0 = *a, x1 = *b;
    *a = x0 * cs - x1 * sn;
    *b = x0 * sn + x1 * cs;
  }
}
void store(std::vector<uint16_t>& cache, int64_t row, const double* x, int64_t width) {
  for (int64_t i = 0; i < width; ++i) cache[row * width + i] = fp32_to_fp16(static_cast<float>(x[i]));
}
// o = Σ_j softmax_j(score(j)) · val(j) over j <= last.
template <typename Score, typename Val>
Vec attend(int64_t last, int64_t width, Score score, Val val) {
  Vec p(static_cast<size_t>(last + 1)), o(static_cast<size_t>(width), 0.0);
  double mx = -1e300, sum = 0;
  for (int64_t j = 0; j <= last; ++j) mx = std::max(mx, p[j] = score(j));
  for (int64_t j = 0; j <= last; ++j) sum += p[j] = std::exp(p[j] - mx);
  for (int64_t j = 0; j <= last; ++j)
    for (int64_t i = 0; i < width; ++i) o[i] += p[j] / sum * val(j, i);
  return o;
}

struct RefCache {
  std::vector<uint16_t> k, v;
};

// The engine's attention_gqa: out [n_tok][n_embd].
std::vector<double> gqa_ref(const Model& m, int64_t il, const std::vector<float>& h, int64_t n_past,
                            int64_t n_tok, RefCache& cache) {
  const ModelConfig& c = m.c;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t E = c.n_embd, hd = c.head_dim_k, hv = c.head_dim_v;
  const int64_t nk = c.n_head_kv * hd, nv = c.n_head_kv * hv, group = c.n_head / c.n_head_kv;
  std::vector<Vec> qs;
  for (int64_t t = 0; t < n_tok; ++t) {
    const Vec x(h.begin() + t * E, h.begin() + (t + 1) * E);
    Vec q = project(m.at(b + "attn_q.weight"), x.data());
    Vec k = project(m.at(b + "attn_k.weight"), x.data());
    Vec v = project(m.at(b + "attn_v.weight"), x.data());
    if (c.qkv_bias) {
      for (size_t i = 0; i < q.size(); ++i) q[i] += m.at(b + "attn_q.bias").deq[i];
      for (size_t i = 0; i < k.size(); ++i) k[i] += m.at(b + "attn_k.bias").deq[i];
      for (size_t i = 0; i < v.size(); ++i) v[i] += m.at(b + "attn_v.bias").deq[i];
    }
    for (int64_t hh = 0; hh < c.n_head; ++hh) {
      if (c.qk_norm) rms_norm(q.data() + hh * hd, m.at(b + "attn_q_norm.weight"), hd, c.rms_eps);
      rope(m, q.data() + hh * hd, n_past + t);
    }
    for (int64_t hh = 0; hh < c.n_head_kv; ++hh) {
      if (c.qk_norm) rms_norm(k.data() + hh * hd, m.at(b + "attn_k_norm.weight"), hd, c.rms_eps);
      rope(m, k.data() + hh * hd, n_past + t);
    }
    store(cache.k, n_past + t, k.data(), nk);
    store(cache.v, n_past + t, v.data(), nv);
    qs.push_back(std::move(q));
  }
  std::vector<double> out;
  for (int64_t t = 0; t < n_tok; ++t) {
    Vec o;
    for (int64_t hh = 0; hh < c.n_head; ++hh) {
      const int64_t kvh = hh / group;
      const Vec oh = attend(
          n_past + t, hv,
          [&](int64_t j) {
            double s = 0;
            for (int64_t i = 0; i < hd; ++i) s += qs[t][hh * hd + i] * fp16_to_fp32(cache.k[j * nk + kvh * hd + i]);
            return s * c.attn_scale;
          },
          [&](int64_t j, int64_t i) { return double(fp16_to_fp32(cache.v[j * nv + kvh * hv + i])); });
      o.insert(o.end(), oh.begin(), oh.end());
    }
    const Vec y = project(m.at(b + "attn_output.weight"), o.data());
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

// The engine's attention_mla (absorbed): out [n_tok][n_embd].
std::vector<double> mla_ref(const Model& m, int64_t il, const std::vector<float>& h, int64_t n_past,
                            int64_t n_tok, RefCache& cache) {
  const ModelConfig& c = m.c;
  const std::string b = fmt::format("blk.{}.", il);
  const int64_t E = c.n_embd, H = c.n_head, kvl = c.kv_lora_rank, rope_d = c.qk_rope_dim;
  const int64_t nope = c.qk_nope_dim, vd = c.v_head_dim, dq = nope + rope_d;
  const bool split = c.mla_layout != MlaLayout::KvB;
  std::vector<Vec> qs;
  for (int64_t t = 0; t < n_tok; ++t) {
    const Vec x(h.begin() + t * E, h.begin() + (t + 1) * E);
    Vec q;
    if (c.q_lora_rank > 0) {
      Vec qa = project(m.at(b + "attn_q_a.weight"), x.data());
      rms_norm(qa.data(), m.at(b + "attn_q_a_norm.weight"), c.q_lora_rank, c.rms_eps);
      q = project(m.at(b + "attn_q_b.weight"), qa.data());
    } else {
      q = project(m.at(b + "attn_q.weight"), x.data());
    }
    for (int64_t hh = 0; hh < H; ++hh) rope(m, q.data() + hh * dq + nope, n_past + t);
    Vec kv = project(m.at(b + "attn_kv_a_mqa.weight"), x.data());
    rms_norm(kv.data(), m.at(b + "attn_kv_a_norm.weight"), kvl, c.rms_eps);
    rope(m, kv.data() + kvl, n_past + t);
    store(cache.k, n_past + t, kv.data(), kvl);
    store(cache.v, n_past + t, kv.data() + kvl, rope_d);
    qs.push_back(std::move(q));
  }
  std::vector<double> out;
  for (int64_t t = 0; t < n_tok; ++t) {
    Vec heads;
    for (int64_t hh = 0; hh < H; ++hh) {
      const double* qn = qs[t].data() + hh * dq;
      Vec qabs(static_cast<size_t>(kvl), 0.0);
      for (int64_t l = 0; l < kvl; ++l)
        for (int64_t n = 0; n < nope; ++n)
          qabs[l] += qn[n] * (split ? m.at(b + "attn_k_b.weight").row(hh * kvl + l)[n]
                                    : m.at(b + "attn_kv_b.weight").row(hh * (nope + vd) + n)[l]);
      const Vec ol = attend(
          n_past + t, kvl,
          [&](int64_t j) {
            double s = 0;
            for (int64_t l = 0; l < kvl; ++l) s += qabs[l] * fp16_to_fp32(cache.k[j * kvl + l]);
            for (int64_t i = 0; i < rope_d; ++i) s += qn[nope + i] * fp16_to_fp32(cache.v[j * rope_d + i]);
            return s * c.attn_scale;
          },
          [&](int64_t j, int64_t l) { return double(fp16_to_fp32(cache.k[j * kvl + l])); });
      const Vec oh = split ? matvec(m.at(b + "attn_v_b.weight"), ol.data(), hh * vd, vd)
                           : matvec(m.at(b + "attn_kv_b.weight"), ol.data(), hh * (nope + vd) + nope, vd);
      heads.insert(heads.end(), oh.begin(), oh.end());
    }
    const Vec y = project(m.at(b + "attn_output.weight"), heads.data());
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

// ---- the models ----

enum class Gqa { Qwen2, Qwen3, Llama };
Model gqa_model(Gqa kind) {
  Model m;
  ModelConfig& c = m.c;
  c.attn = AttnKind::GQA;
  c.n_embd = 256;
  GGMLType tq = GGMLType::F16, to = GGMLType::Q8_0;
  if (kind == Gqa::Qwen2) {
    c.n_head = 8; c.n_head_kv = 4; c.head_dim_k = c.head_dim_v = 64; c.n_rot = 64;
    c.qkv_bias = true; c.rope_style = RopeStyle::Neox;
  } else if (kind == Gqa::Qwen3) {
    c.n_head = 16; c.n_head_kv = 2; c.head_dim_k = c.head_dim_v = 128; c.n_rot = 128;
    c.qk_norm = true; c.rope_style = RopeStyle::Neox; tq = GGMLType::Q8_0; to = GGMLType::Q4_K;
  } else {
    c.n_head = 8; c.n_head_kv = 2; c.head_dim_k = c.head_dim_v = 128; c.n_rot = 64;
    c.rope_style = RopeStyle::Normal; c.yarn = true; tq = GGMLType::F32; to = GGMLType::F16;
  }
  finish_config(c);
  const int64_t nq = c.n_head * c.head_dim_k, nk = c.n_head_kv * c.head_dim_k;
  const int64_t nv = c.n_head_kv * c.head_dim_v;
  const std::string b = "blk.2.";
  m.add(b + "attn_q.weight", tq, c.n_embd, nq, 0.08f);
  m.add(b + "attn_k.weight", kind == Gqa::Qwen3 ? GGMLType::Q4_K : tq, c.n_embd, nk, 0.08f);
  m.add(b + "attn_v.weight", tq, c.n_embd, nv, 0.08f);
  m.add(b + "attn_output.weight", to, c.n_head * c.head_dim_v, c.n_embd, 0.05f);
  if (c.qkv_bias) {
    m.add_vec(b + "attn_q.bias", nq, 0.0f);
    m.add_vec(b + "attn_k.bias", nk, 0.0f);
    m.add_vec(b + "attn_v.bias", nv, 0.0f);
  }
  if (c.qk_norm) {
    m.add_vec(b + "attn_q_norm.weight", c.head_dim_k, 1.0f);
    m.add_vec(b + "attn_k_norm.weight", c.head_dim_k, 1.0f);
  }
  const auto f = rope_frequencies(c);
  m.inv_freq.assign(f.begin(), f.end());
  return m;
}

enum class Mla { KvBQLora, SplitNoQLora, SmallSplit };
Model mla_model(Mla kind) {
  Model m;
  ModelConfig& c = m.c;
  c.attn = AttnKind::MLA;
  c.n_embd = 256;
  c.rope_style = RopeStyle::Normal;
  if (kind == Mla::SmallSplit) {
    c.n_head = 4; c.kv_lora_rank = 64; c.qk_rope_dim = 16; c.qk_nope_dim = 32; c.v_head_dim = 32;
    c.q_lora_rank = 64; c.mla_layout = MlaLayout::SplitKV;
  } else {
    c.n_head = 16; c.kv_lora_rank = 512; c.qk_rope_dim = 64; c.qk_nope_dim = 64; c.v_head_dim = 64;
    c.q_lora_rank = kind == Mla::KvBQLora ? 128 : 0;
    c.mla_layout = kind == Mla::KvBQLora ? MlaLayout::KvB : MlaLayout::SplitKV;
    c.yarn = kind == Mla::KvBQLora;
  }
  c.n_head_kv = c.n_head;
  c.head_dim_k = c.qk_nope_dim + c.qk_rope_dim;
  c.head_dim_v = c.v_head_dim;
  c.n_rot = c.qk_rope_dim;
  finish_config(c);
  const int64_t H = c.n_head, kvl = c.kv_lora_rank, nope = c.qk_nope_dim, vd = c.v_head_dim;
  const int64_t dq = nope + c.qk_rope_dim;
  const GGMLType t = kind == Mla::SplitNoQLora ? GGMLType::F16 : GGMLType::Q8_0;
  const std::string b = "blk.0.";
  if (c.q_lora_rank > 0) {
    m.add(b + "attn_q_a.weight", t, c.n_embd, c.q_lora_rank, 0.08f);
    m.add_vec(b + "attn_q_a_norm.weight", c.q_lora_rank, 1.0f);
    m.add(b + "attn_q_b.weight", t, c.q_lora_rank, H * dq, 0.1f);
  } else {
    m.add(b + "attn_q.weight", t, c.n_embd, H * dq, 0.08f);
  }
  m.add(b + "attn_kv_a_mqa.weight", t, c.n_embd, kvl + c.qk_rope_dim, 0.08f);
  m.add_vec(b + "attn_kv_a_norm.weight", kvl, 1.0f);
  if (c.mla_layout == MlaLayout::KvB) {
    m.add(b + "attn_kv_b.weight", t, kvl, H * (nope + vd), 0.06f);
  } else {
    m.add(b + "attn_k_b.weight", GGMLType::F16, nope, kvl * H, 0.1f);
    m.add(b + "attn_v_b.weight", t, kvl, vd * H, 0.06f);
  }
  m.add(b + "attn_output.weight", t, H * vd, c.n_embd, 0.05f);
  const auto f = rope_frequencies(c);
  m.inv_freq.assign(f.begin(), f.end());
  return m;
}

int64_t cache_width_k(const ModelConfig& c) {
  return c.attn == AttnKind::MLA ? c.kv_lora_rank : c.n_head_kv * c.head_dim_k;
}
int64_t cache_width_v(const ModelConfig& c) {
  return c.attn == AttnKind::MLA ? c.qk_rope_dim : c.n_head_kv * c.head_dim_v;
}

// The layer on the device for one call; d_pos / caches / workspace persist between calls.
struct DeviceLayer {
  Gpu& g;
  const Model& m;
  int64_t layer, n_ctx;
  AttnWorkspace ws;
  DeviceBuffer k, v, pos, inv;
  DeviceLayer(Gpu& gpu, const Model& model, int64_t il, int64_t ctx, int64_t max_tokens)
      : g(gpu), m(model), layer(il), n_ctx(ctx) {
    auto w = AttnWorkspace::create(m.c, max_tokens, n_ctx);
    EXPECT_TRUE(w) << w.status().message();
    ws = std::move(*w);
    k = upload(std::vector<uint16_t>(static_cast<size_t>(n_ctx * cache_width_k(m.c)), kNan));
    v = upload(std::vector<uint16_t>(static_cast<size_t>(n_ctx * cache_width_v(m.c)), kNan));
    pos = upload_pos(0);
    inv = upload(m.inv_freq);
  }
  static constexpr uint16_t kNan = 0x7E00;  // rows not yet written: reading one shows
  std::vector<float> call(const std::vector<float>& h, int64_t n_past, int64_t n_tok) {
    const int32_t p = static_cast<int32_t>(n_past);
    EXPECT_TRUE(pos.upload(&p, sizeof(p)));
    auto dh = upload(h);
    auto dout = upload(std::vector<float>(static_cast<size_t>(n_tok * m.c.n_embd), -3.0f));
    const auto fn = m.c.attn == AttnKind::MLA ? mla_attention_layer : gqa_attention_layer;
    const Status st = fn(g.k, g.a, m.c, layer, m.lookup(), inv.as<float>(), dh.as<float>(),
                         dout.as<float>(), k.get(), v.get(), pos.as<int32_t>(), n_tok, ws, nullptr);
    EXPECT_TRUE(st) << st.message();
    return download<float>(dout, static_cast<size_t>(n_tok * m.c.n_embd));
  }
};

void expect_cache_close(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want,
                        int64_t n_valid_elems, const char* what) {
  int64_t off_by_one = 0;
  for (int64_t i = 0; i < n_valid_elems; ++i) {
    // Values far below the cache's scale (~1) are f16 subnormals, whose ulps (6e-8) are below
    // the float error of their sums: differences under 1e-6 count as equal.
    if (std::fabs(fp16_to_fp32(got[i]) - fp16_to_fp32(want[i])) <= 1e-6f) continue;
    const int d = std::abs(int(got[i]) - int(want[i]));
    ASSERT_LE(d, 1) << what << " element " << i << ": " << fp16_to_fp32(got[i]) << " vs "
                    << fp16_to_fp32(want[i]);
    off_by_one += d;
  }
  EXPECT_LE(off_by_one, n_valid_elems / 200 + 1) << what << ": f16 rounding flips";
}

void check_layer(Gpu& g, const Model& m, int64_t il) {
  const int64_t E = m.c.n_embd, n_ctx = 40;
  DeviceLayer dev(g, m, il, n_ctx, 16);
  RefCache ref{std::vector<uint16_t>(static_cast<size_t>(n_ctx * cache_width_k(m.c))),
               std::vector<uint16_t>(static_cast<size_t>(n_ctx * cache_width_v(m.c)))};
  int64_t n_past = 0;
  // 20 tokens: chunks of 16 queries and 4; the first chunk's query and output projections take
  // the GEMM (kGemmMinTokens), the second's the GEMVs.
  for (int64_t n_tok : {5, 20, 1}) {
    SCOPED_TRACE(::testing::Message() << "call at " << n_past << " of " << n_tok << " tokens");
    const auto h = random_floats(static_cast<size_t>(n_tok * E), 1.0f, static_cast<uint32_t>(100 + n_past));
    const auto got = dev.call(h, n_past, n_tok);
    const auto want = m.c.attn == AttnKind::MLA ? mla_ref(m, il, h, n_past, n_tok, ref)
                                                : gqa_ref(m, il, h, n_past, n_tok, ref);
    double mx = 0;
    for (double x : want) mx = std::max(mx, std::fabs(x));
    ASSERT_GT(mx, 1e-3);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-3 * mx) << "token " << i / E << " element " << i % E;
    n_past += n_tok;
    const auto kc = download<uint16_t>(dev.k, ref.k.size()), vc = download<uint16_t>(dev.v, ref.v.size());
    expect_cache_close(kc, ref.k, n_past * cache_width_k(m.c), "k cache");
    expect_cache_close(vc, ref.v, n_past * cache_width_v(m.c), "v cache");
    for (size_t i = static_cast<size_t>(n_past * cache_width_k(m.c)); i < kc.size(); ++i)
      ASSERT_EQ(kc[i], DeviceLayer::kNan) << "k cache written past the call's rows";
  }
}

TEST(CudaAttentionLayers, GqaLayerMatchesReference) {
  KTX_NEED_GPU(g);
  g->k.set_mma(false);  // the layers' float math; the bf16 tensor-core GEMM has its own test
  for (Gqa kind : {Gqa::Qwen2, Gqa::Qwen3, Gqa::Llama}) {
    SCOPED_TRACE(kind == Gqa::Qwen2 ? "qwen2moe-like" : kind == Gqa::Qwen3 ? "qwen3moe-like" : "llama-like");
    check_layer(*g, gqa_model(kind), 2);
  }
}

TEST(CudaAttentionLayers, MlaLayerMatchesReferenceInBothLayouts) {
  KTX_NEED_GPU(g);
  g->k.set_mma(false);  // the layers' float math; the bf16 tensor-core GEMM has its own test
  for (Mla kind : {Mla::KvBQLora, Mla::SplitNoQLora, Mla::SmallSplit}) {
    SCOPED_TRACE(kind == Mla::KvBQLora ? "attn_kv_b + q_lora" : kind == Mla::SplitNoQLora
                                             ? "attn_k_b/attn_v_b, no q_lora" : "small split");
    check_layer(*g, mla_model(kind), 0);
  }
}

void check_prefill_equals_decode(Gpu& g, const Model& m, int64_t il) {
  const int64_t E = m.c.n_embd, T = 19, n_ctx = 24;
  const auto h = random_floats(static_cast<size_t>(T * E), 1.0f, 77);
  DeviceLayer pre(g, m, il, n_ctx, 8), dec(g, m, il, n_ctx, 1);
  const auto all = pre.call(h, 0, T);
  std::vector<float> steps;
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> ht(h.begin() + t * E, h.begin() + (t + 1) * E);
    const auto o = dec.call(ht, t, 1);
    steps.insert(steps.end(), o.begin(), o.end());
  }
  double mx = 0;
  for (float x : all) mx = std::max(mx, double(std::fabs(x)));
  for (size_t i = 0; i < all.size(); ++i)
    ASSERT_NEAR(steps[i], all[i], 1e-5 * mx) << "token " << i / E << " element " << i % E;
  const size_t nk = static_cast<size_t>(n_ctx * cache_width_k(m.c)), nv = static_cast<size_t>(n_ctx * cache_width_v(m.c));
  EXPECT_EQ(download<uint16_t>(pre.k, nk), download<uint16_t>(dec.k, nk)) << "k caches differ";
  EXPECT_EQ(download<uint16_t>(pre.v, nv), download<uint16_t>(dec.v, nv)) << "v caches differ";
}

TEST(CudaAttentionLayers, PrefillEqualsDecodeSteps) {
  KTX_NEED_GPU(g);
  g->k.set_mma(false);  // the layers' float math; the bf16 tensor-core GEMM has its own test
  {
    SCOPED_TRACE("qwen3moe-like GQA");
    check_prefill_equals_decode(*g, gqa_model(Gqa::Qwen3), 2);
  }
  {
    SCOPED_TRACE("MLA attn_kv_b + q_lora");
    check_prefill_equals_decode(*g, mla_model(Mla::KvBQLora), 0);
  }
}

}  // namespace
}  // namespace ktx::cuda

namespace ktx::cuda {
namespace {

// One call of 600 tokens (a streamed prefill's length) equals the same tokens in two calls of
// 512 and 88, on the qwen2moe-like layer (attention biases) and the qwen3moe-like one: on the
// GPU it says whether the attention is where the qwen2moe long-call defect of
// docs/performance.md lives. Under dev/cuda_emu it takes over 15 minutes: filter it out there.
TEST(CudaAttentionLayers, OneLongCallEqualsTwo) {
  KTX_NEED_GPU(g);
  g->k.set_mma(false);
  for (Gqa kind : {Gqa::Qwen2, Gqa::Qwen3}) {
    SCOPED_TRACE(kind == Gqa::Qwen2 ? "qwen2moe-like" : "qwen3moe-like");
    const Model m = gqa_model(kind);
    const int64_t E = m.c.n_embd, T = 600, n_ctx = 640;
    const auto h = random_floats(static_cast<size_t>(T * E), 1.0f, 5);
    DeviceLayer one(*g, m, 2, n_ctx, 640), two(*g, m, 2, n_ctx, 640);
    const auto a = one.call(h, 0, T);
    auto b = two.call(std::vector<float>(h.begin(), h.begin() + 512 * E), 0, 512);
    const auto b2 = two.call(std::vector<float>(h.begin() + 512 * E, h.end()), 512, T - 512);
    b.insert(b.end(), b2.begin(), b2.end());
    double mx = 0;
    for (float x : a) mx = std::max(mx, double(std::fabs(x)));
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_NEAR(a[i], b[i], 1e-5 * mx) << "token " << i / E << " element " << i % E;
  }
}

}  // namespace
}  // namespace ktx::cuda
