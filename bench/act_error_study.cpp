// act_error_study: how much each activation-rounding scheme of the routed experts moves the
// logits of the shipped models, measured the way `ktx-run eval` judges activation-quantizing
// kernels (issue 3: per file, mean KL(ref || ours) over every prefill position and top-1
// agreement where the reference's top-2 gap exceeds 1e-3).
//
// The model runs the float32 reference engine; a trace hook replaces every routed-expert
// output (blk.N.ffn_moe_out) by an exact MoE (double sums, like cpu::moe_reference) whose
// inputs x (gate/up) and h = SiLU(gate)*up (down) are rounded by the variant under study. The
// rounding schemes are simulated here (a private copy of the block quantizer with other block
// sizes, scale choices and precisions), except "kernel", which calls the real round_act_row
// with the formats the decode kernels read (act_format_for: int16-grade q16_0 / q16_k; the
// prefill kernels read q16_0 everywhere, which is "kernel" bit for bit on the Q8_0 files).
// The int8 rows are what the kernels read before: every one misses the KL bound. The hook also recomputes each
// layer's routing from the router logits it saw and compares it with the float32 run's, so
// that the error can be split into positions where some layer chose other experts and
// positions where none did.
// A lab tool, not a test: it prints a table and judges nothing.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "runtime/cpu/act_quant.h"
#include "runtime/cpu/moe_ref.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/engine_internal.h"
#include "tools/ktx-run/eval/eval.h"

namespace ktx {
namespace {

// One way of rounding an activation row.
struct Rounding {
  enum Kind { none, kernel, integer, bf16 } kind = none;
  int block = 32;      // integer: elements per scale
  int qmax = 127;      // integer: q in [-qmax, qmax] (or [-qmax-1, qmax] with use_m128)
  bool mse = false;    // integer: scale searched to minimize the block's squared error
  bool use_m128 = false;  // integer: d = amax / (qmax + 1), the extreme element may be -128
};

struct Variant {
  std::string name;
  Rounding x, h;  // gate/up input, down input
};

float bf16_round(float v) {
  uint32_t u = std::bit_cast<uint32_t>(v);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return std::bit_cast<float>(u & 0xffff0000u);
}

// Rounds one block with scale d; returns its squared error (x untouched if `apply` is false).
double round_block(float* x, int n, float d, int lo, int hi, bool apply) {
  double err = 0.0;
  for (int i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(x[i] / d), float(lo), float(hi));
    const double e = double(q) * d - x[i];
    err += e * e;
    if (apply) x[i] = q * d;
  }
  return err;
}

void round_integer(const Rounding& r, float* x, int64_t n) {
  for (int64_t b0 = 0; b0 < n; b0 += r.block) {
    const int bn = static_cast<int>(std::min<int64_t>(r.block, n - b0));
    float* v = x + b0;
    float amax = 0.0f;
    for (int i = 0; i < bn; ++i) amax = std::max(amax, std::fabs(v[i]));
    if (amax == 0.0f) continue;
    const int lo = r.use_m128 ? -r.qmax - 1 : -r.qmax;
    float d = amax / float(r.use_m128 ? r.qmax + 1 : r.qmax);
    if (r.mse) {  // shrink the scale (clipping the largest elements) while the error drops
      double best = round_block(v, bn, d, lo, r.qmax, false);
      float best_d = d;
      for (int s = 1; s <= 30; ++s) {
        const float ds = d * (1.0f - 0.01f * s);
        const double e = round_block(v, bn, ds, lo, r.qmax, false);
        if (e < best) best = e, best_d = ds;
      }
      d = best_d;
    }
    round_block(v, bn, d, lo, r.qmax, true);
  }
}

void apply_rounding(const Rounding& r, cpu::ActFormat kernel_fmt, float* x, int64_t n) {
  switch (r.kind) {
    case Rounding::none: return;
    case Rounding::kernel: cpu::round_act_row(kernel_fmt, x, n); return;
    case Rounding::bf16: for (int64_t i = 0; i < n; ++i) x[i] = bf16_round(x[i]); return;
    case Rounding::integer: round_integer(r, x, n); return;
  }
}

Rounding kernel() { return {Rounding::kernel}; }
Rounding none() { return {Rounding::none}; }
Rounding bf16() { return {Rounding::bf16}; }
Rounding int8(int block, bool mse = false, bool m128 = false) {
  return {Rounding::integer, block, 127, mse, m128};
}
Rounding int16(int block) { return {Rounding::integer, block, 32767}; }

std::vector<Variant> all_variants() {
  return {
      {"f32", none(), none()},
      {"kernel", kernel(), kernel()},
      {"kernel-x-only", kernel(), none()},
      {"kernel-h-only", none(), kernel()},
      {"i8b16", int8(16), int8(16)},
      {"i8b32", int8(32), int8(32)},
      {"i8b256", int8(256), int8(256)},
      {"i8b32-mse", int8(32, true), int8(32, true)},
      {"i8b32-m128", int8(32, false, true), int8(32, false, true)},
      {"i16b32", int16(32), int16(32)},
      {"i16b256", int16(256), int16(256)},
      {"bf16", bf16(), bf16()},
      {"x-kernel,h-i16b256", kernel(), int16(256)},
      {"x-i16b256,h-kernel", int16(256), kernel()},
      {"x-kernel,h-bf16", kernel(), bf16()},
      {"x-bf16,h-kernel", bf16(), kernel()},
      {"x-bf16,h-i16b256", bf16(), int16(256)},
      {"x-i16b256,h-bf16", int16(256), bf16()},
      {"i16-row", int16(1 << 30), int16(1 << 30)},
      {"i12b32", {Rounding::integer, 32, 2047}, {Rounding::integer, 32, 2047}},
      // The stacked-plane prefill kernels' grades: v = m·hi + lo per 256 elements with
      // |v| <= 127·m + m/2 for m = 16 (Q4_K weights), 8 (Q5_K), 4 (Q6_K).
      {"i12b256", {Rounding::integer, 256, 2032}, {Rounding::integer, 256, 2032}},
      {"i11b256", {Rounding::integer, 256, 1016}, {Rounding::integer, 256, 1016}},
      {"i10b256", {Rounding::integer, 256, 508}, {Rounding::integer, 256, 508}},
  };
}

// Routed-expert weights of one layer as float32 rows (the engine's f32 cache or a dequantized
// copy).
struct LayerExperts {
  const Weight *gate, *up, *down;
  const float* bias = nullptr;
  std::vector<float> bias_buf;
  cpu::ActFormat fx_gate, fx_up, fh;
};

class Study {
 public:
  explicit Study(const Model& m) : c_(m.config()) {
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      if (c_.layer_is_dense(il)) continue;
      const std::string b = fmt::format("blk.{}.", il);
      LayerExperts& L = layers_[il];
      L.gate = &m.impl().w(b + "ffn_gate_exps.weight");
      L.up = &m.impl().w(b + "ffn_up_exps.weight");
      L.down = &m.impl().w(b + "ffn_down_exps.weight");
      if (const Weight* bw = m.impl().find(b + "exp_probs_b.bias")) {
        L.bias_buf.resize(bw->row_len());
        const float* p = bw->row(0, L.bias_buf.data());
        L.bias_buf.assign(p, p + bw->row_len());
        L.bias = L.bias_buf.data();
      }
      L.fx_gate = cpu::act_format_for(L.gate->info().type, true);
      L.fx_up = cpu::act_format_for(L.up->info().type, true);
      L.fh = cpu::act_format_for(L.down->info().type, true);
    }
  }

  std::string kernel_formats() const {
    const LayerExperts& L = layers_.begin()->second;
    return fmt::format("gate {} up {} down {}", cpu::act_format_name(L.fx_gate),
                       cpu::act_format_name(L.fx_up), cpu::act_format_name(L.fh));
  }

  // Installs the hook on `sess` for sequence `seq`; record = store routing as the baseline.
  void attach(Session& sess, const Variant& v, int64_t seq, bool record) {
    sess.set_trace_hook([this, &v, seq, record](const std::string& name, const float* data,
                                                int64_t T, int64_t width) {
      int64_t il = -1;
      char what[64] = {};
      if (std::sscanf(name.c_str(), "blk.%ld.%63s", &il, what) != 2) return;
      const std::string w = what;
      if (w == "ffn_norm") h_in_.assign(data, data + T * width);
      else if (w == "ffn_moe_logits") logits_.assign(data, data + T * width);
      else if (w == "ffn_moe_out")  // dst is the engine's own mutable buffer
        replace_moe(il, v, seq, record, T, const_cast<float*>(data));
    });
  }

  // Per position of sequence `seq`: whether some layer's expert set differs from the baseline.
  std::vector<bool> flipped_positions(int64_t seq, int64_t T) const {
    std::vector<bool> out(T, false);
    for (const auto& [key, n] : flips_)
      if (std::get<0>(key) == seq) out[std::get<2>(key)] = true;
    return out;
  }
  int64_t layer_flips(int64_t seq) const {
    int64_t n = 0;
    for (const auto& [key, f] : flips_) n += std::get<0>(key) == seq;
    return n;
  }
  void clear_flips() { flips_.clear(); }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t>;  // seq, layer, position

  void replace_moe(int64_t il, const Variant& v, int64_t seq, bool record, int64_t T, float* dst) {
    const LayerExperts& L = layers_.at(il);
    const int64_t D = c_.n_embd, E = c_.n_expert, K = c_.n_expert_used;
    std::vector<int32_t> chosen(K);
    std::vector<float> wts(K);
    for (int64_t t = 0; t < T; ++t) {
      route_token(c_, &logits_[t * E], L.bias, chosen.data(), wts.data());
      std::set<int32_t> set(chosen.begin(), chosen.end());
      const Key key{seq, il, t};
      if (record) base_[key] = set;
      else if (base_.count(key) && base_.at(key) != set) flips_[key] = 1;
      expert_mix(L, v, &h_in_[t * D], chosen, wts, &dst[t * D]);
    }
  }

  void expert_mix(const LayerExperts& L, const Variant& v, const float* x,
                  const std::vector<int32_t>& chosen, const std::vector<float>& wts, float* out) {
    const int64_t D = c_.n_embd, N = L.gate->n_rows() / c_.n_expert;
    std::vector<float> xg(x, x + D), xu(x, x + D), h(N), buf(std::max(D, N));
    apply_rounding(v.x, L.fx_gate, xg.data(), D);
    apply_rounding(v.x, L.fx_up, xu.data(), D);
    std::vector<double> acc(D, 0.0);
    auto dot = [](const float* a, const float* b, int64_t n) {
      double s = 0.0;
      for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
      return s;
    };
    for (size_t j = 0; j < chosen.size(); ++j) {
      const int64_t e = chosen[j];
      for (int64_t n = 0; n < N; ++n) {
        const float g = float(dot(L.gate->row(e * N + n, buf.data()), xg.data(), D));
        const float u = float(dot(L.up->row(e * N + n, buf.data()), xu.data(), D));
        h[n] = cpu::silu(g) * u;
      }
      apply_rounding(v.h, L.fh, h.data(), N);
      for (int64_t k = 0; k < D; ++k)
        acc[k] += double(wts[j]) * dot(L.down->row(e * D + k, buf.data()), h.data(), N);
    }
    for (int64_t k = 0; k < D; ++k) out[k] = float(acc[k]);
  }

  const ModelConfig& c_;
  std::map<int64_t, LayerExperts> layers_;
  std::vector<float> h_in_, logits_;
  std::map<Key, std::set<int32_t>> base_;
  std::map<Key, int> flips_;
};

double kl_div(const float* p_logits, const float* q_logits, int64_t n) {
  auto lsm = [n](const float* v) {
    const double mx = *std::max_element(v, v + n);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(double(v[i]) - mx);
    std::vector<double> o(n);
    for (int64_t i = 0; i < n; ++i) o[i] = v[i] - mx - std::log(s);
    return o;
  };
  const std::vector<double> lp = lsm(p_logits), lq = lsm(q_logits);
  double kl = 0.0;
  for (int64_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

struct FileStats {
  double kl_sum = 0.0, kl_flip = 0.0;
  int64_t pos = 0, pos_flip = 0, layer_flips = 0;
  int64_t top1 = 0, decisive = 0, miss_flip = 0;
  double miss_gap = 0.0;  // largest reference top-2 gap among the top-1 misses
};

Status run_variant(Study& st, const Model& m, const RefFile& ref, const Variant& v, bool record,
                   FileStats& fs) {
  const int64_t V = ref.n_vocab;
  st.clear_flips();
  for (size_t i = 0; i < ref.seqs.size(); ++i) {
    const RefSequence& rs = ref.seqs[i];
    const int64_t T = static_cast<int64_t>(rs.tokens.size());
    Session sess(m, T);
    st.attach(sess, v, static_cast<int64_t>(i), record);
    KTX_ASSIGN_OR_RETURN(std::vector<float> lg, sess.forward(rs.tokens, true));
    const std::vector<bool> fl = st.flipped_positions(static_cast<int64_t>(i), T);
    fs.layer_flips += st.layer_flips(static_cast<int64_t>(i));
    for (int64_t t = 0; t < T; ++t) {
      const float* a = &lg[t * V];
      const float* b = &rs.logits[t * V];
      const double kl = kl_div(b, a, V);
      fs.kl_sum += kl;
      ++fs.pos;
      if (fl[t]) fs.kl_flip += kl, ++fs.pos_flip;
      std::vector<float> s(b, b + V);
      std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
      if (double(s[0]) - s[1] <= 1e-3) continue;
      ++fs.decisive;
      const bool ok = std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
      fs.top1 += ok;
      fs.miss_flip += !ok && fl[t];
      if (!ok) fs.miss_gap = std::max(fs.miss_gap, double(s[0]) - s[1]);
    }
  }
  return Status::ok();
}

Status study_file(const std::string& dir, const std::string& stem,
                  const std::vector<Variant>& variants, int threads) {
  KTX_ASSIGN_OR_RETURN(auto g, GGUFFile::open(dir + "/" + stem + ".gguf"));
  std::shared_ptr<const GGUFFile> gguf(std::move(g));
  KTX_ASSIGN_OR_RETURN(ModelConfig cfg, ModelConfig::from_gguf(*gguf));
  EngineOptions opt;
  opt.threads = threads;
  KTX_ASSIGN_OR_RETURN(auto model, Model::load(cfg, gguf, opt));
  KTX_ASSIGN_OR_RETURN(auto rg, GGUFFile::open(dir + "/" + stem + ".ref.gguf"));
  KTX_ASSIGN_OR_RETURN(RefFile ref, RefFile::load(*rg, cfg));
  Study st(*model);
  const BoundChoice file_bound = bound_for_file(stem);  // what `ktx-run eval` judges it by
  FileStats base;
  KTX_RETURN_IF_ERROR(run_variant(st, *model, ref, Variant{"f32", none(), none()}, true, base));
  fmt::print("== {} (kernel formats: {}; ok = mean KL <= {:.1e}, top-1 >= {:.1f}%{})\n", stem,
             st.kernel_formats(), file_bound.bound.max_mean_kl, 100.0 * file_bound.bound.min_top1,
             file_bound.known ? "" : ", no row: the tightest");
  fmt::print("{:<22} {:>10} {:>8} {:>6} {:>9} {:>11} {:>9} {:>10} {:>5}\n", "variant",
             "mean_kl", "top1%", "miss", "miss_gap", "flip_pos", "lflips", "kl@flip%", "ok");
  for (const Variant& v : variants) {
    FileStats fs;
    KTX_RETURN_IF_ERROR(run_variant(st, *model, ref, v, false, fs));
    const double kl = fs.kl_sum / double(fs.pos);
    const double top1 = fs.decisive ? double(fs.top1) / fs.decisive : 1.0;
    fmt::print("{:<22} {:>10.3e} {:>8.2f} {:>6} {:>9.2e} {:>11} {:>9} {:>10.1f} {:>5}\n", v.name,
               kl, 100.0 * top1, fmt::format("{}/{}", fs.decisive - fs.top1, fs.miss_flip),
               fs.miss_gap,
               fmt::format("{}/{}", fs.pos_flip, fs.pos), fs.layer_flips,
               fs.kl_sum > 0 ? 100.0 * fs.kl_flip / fs.kl_sum : 0.0,
               bound_met(file_bound.bound, kl, fs.top1, fs.decisive) ? "yes" : "no");
    std::fflush(stdout);
  }
  return Status::ok();
}

}  // namespace
}  // namespace ktx

int main(int argc, char** argv) {
  CLI::App app{"Activation-rounding error study on the shipped models (see file header)"};
  std::string dir = "/work/shared/models";
  std::vector<std::string> stems = {"dsv3.Q8_0", "dsv3.Q4_K_M", "qwen3moe.Q8_0", "qwen3moe.Q4_K_M",
                                    "qwen2moe.Q8_0", "qwen2moe.Q4_K_M", "mixtral.Q8_0",
                                    "mixtral.Q4_K_M"};
  std::vector<std::string> only;
  int threads = 2;
  app.add_option("--models", dir, "folder with STEM.gguf and STEM.ref.gguf");
  app.add_option("--files", stems, "model stems to study");
  app.add_option("--variants", only, "variant names to run (default: all)");
  app.add_option("--threads", threads, "engine threads");
  CLI11_PARSE(app, argc, argv);
  std::vector<ktx::Variant> variants;
  for (const ktx::Variant& v : ktx::all_variants())
    if (only.empty() || std::find(only.begin(), only.end(), v.name) != only.end())
      variants.push_back(v);
  fmt::print("miss = top-1 misses / of them at positions where some layer chose other experts;\n"
             "flip_pos = positions with such a routing flip; lflips = (layer, position) flips;\n"
             "kl@flip% = share of the KL sum at flipped positions;\n"
             "miss_gap = largest reference top-2 gap among the misses\n");
  for (const std::string& s : stems) {
    ktx::Status st = ktx::study_file(dir, s, variants, threads);
    if (!st.ok()) {
      fmt::print(stderr, "{}: {}\n", s, st.message());
      return 1;
    }
  }
  return 0;
}
