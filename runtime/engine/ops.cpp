// Elementwise pieces of the forward pass: RMSNorm, RoPE (normal = interleaved pairs, neox =
// halves; YaRN-corrected frequencies), SiLU. Reductions accumulate in double: they are short
// and this keeps the reference engine's own rounding far below the comparison bounds.
#include <cmath>
#include <numbers>

#include "runtime/engine/engine_internal.h"

namespace ktx {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

float* scratch(Scratch slot, int64_t n) {
  thread_local std::vector<float> bufs[static_cast<int>(Scratch::count)];
  std::vector<float>& b = bufs[static_cast<int>(slot)];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

const float* small_tensor(const Weight& w, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(w.row_len()));
  return w.row(0, buf.data());
}

namespace {

// YaRN (as in transformers' _compute_yarn_parameters): dims rotating fewer than beta_fast
// times over the original context keep their frequency, those rotating more than beta_slow
// times are interpolated by 1/factor, with a linear ramp between.
double yarn_correction_dim(double n_rot_turns, int64_t dim, double base, int64_t orig_ctx) {
  return dim * std::log(orig_ctx / (n_rot_turns * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

std::vector<double> rope_frequencies(const ModelConfig& c) {
  const int64_t half = c.n_rot / 2;
  std::vector<double> inv(half);
  const double base = c.rope_freq_base;
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(base, static_cast<double>(2 * i) / static_cast<double>(c.n_rot));
  if (!c.yarn) return inv;
  double low = std::floor(yarn_correction_dim(c.yarn_beta_fast, c.n_rot, base, c.rope_orig_ctx));
  double high = std::ceil(yarn_correction_dim(c.yarn_beta_slow, c.n_rot, base, c.rope_orig_ctx));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(c.n_rot - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation = 1.0 - ramp;
    inv[i] = inv[i] / c.rope_scale_factor * (1.0 - extrapolation) + inv[i] * extrapolation;
  }
  return inv;
}

void apply_rope(const ModelImpl& m, float* x, int64_t pos) { apply_rope_heads(m, x, 1, 0, pos); }

void apply_rope_heads(const ModelImpl& m, float* x, int64_t n_heads, int64_t head_stride,
                      int64_t pos) {
  const int64_t half = m.cfg.n_rot / 2;
  thread_local std::vector<float> cs, sn;  // the position's rotation, shared by every head
  cs.resize(static_cast<size_t>(half));
  sn.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * m.rope_inv_freq[i];
    cs[i] = static_cast<float>(std::cos(theta));
    sn[i] = static_cast<float>(std::sin(theta));
  }
  for (int64_t h = 0; h < n_heads; ++h) rotate(m, x + h * head_stride, cs.data(), sn.data());
}

void rotate(const ModelImpl& m, float* x, const float* cs_tab, const float* sn_tab) {
  const int64_t half = m.cfg.n_rot / 2;
  const bool neox = m.cfg.rope_style == RopeStyle::Neox;
  for (int64_t i = 0; i < half; ++i) {
    const float cs = cs_tab[i], sn = sn_tab[i];
    float* a = neox ? x + i : x + 2 * i;
    float* b = neox ? x + i + half : x + 2 * i + 1;
    const float x0 = *a, x1 = *b;
    *a = x0 * cs - x1 * sn;
    *b = x0 * sn + x1 * cs;
  }
}

}  // namespace ktx
