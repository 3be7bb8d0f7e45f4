// Session::forward: one call runs a batch of tokens of one sequence through the whole model,
// block by block (attention, then FFN, each with its residual), and returns logits. Prefill
// and decode share this code; only n_tok differs.
#include <algorithm>

#include "runtime/engine/engine_internal.h"

namespace ktx {

Session::Session(const Model& m, int64_t n_ctx)
    : model_(m), n_ctx_(n_ctx > 0 ? n_ctx : m.n_ctx()), cache_(std::make_unique<SessionCache>()) {
  const ModelConfig& c = m.config();
  int64_t k_width, v_width;
  if (c.attn == AttnKind::MLA) {
    k_width = c.kv_lora_rank;  // normalized latent
    v_width = c.qk_rope_dim;   // roped shared key part
  } else {
    k_width = c.n_head_kv * c.head_dim_k;
    v_width = c.n_head_kv * c.head_dim_v;
  }
  cache_->layers.resize(static_cast<size_t>(c.n_layer));
  for (LayerCache& l : cache_->layers) {
    l.k.resize(static_cast<size_t>(n_ctx_ * k_width));
    l.v.resize(static_cast<size_t>(n_ctx_ * v_width));
  }
}

Session::~Session() = default;

Expected<std::vector<float>> Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  const ModelImpl& m = model_.impl();
  const ModelConfig& c = m.cfg;
  const int64_t T = static_cast<int64_t>(tokens.size()), D = c.n_embd;
  if (T == 0) return Error("engine: forward called with no tokens");
  if (n_past_ + T > n_ctx_)
    return Error("engine: context overflow: {} cached + {} new tokens exceed n_ctx = {}", n_past_,
                 T, n_ctx_);
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.n_vocab)
      return Error("engine: token id {} at index {} is out of range [0, {})", tokens[t], t, c.n_vocab);

  StepCtx s{m, *m.pool, n_past_, T, &trace_hook_, profile_};
  std::vector<float> x(T * D), h(T * D), y(T * D);  // [T, n_embd] each
  {
    OpTimer timer(profile_, "embed");
    const Weight& embd = m.w("token_embd.weight");
    for (int64_t t = 0; t < T; ++t) {
      const float* row = embd.row(tokens[t], &x[t * D]);
      if (row != &x[t * D]) std::copy_n(row, D, &x[t * D]);
    }
  }
  s.emit("inp_embd", x.data(), D);
  if (hidden_hook_) hidden_hook_(0, x, T);

  std::vector<float> buf;
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string b = fmt::format("blk.{}.", il);
    const float* attn_norm = small_tensor(m.w(b + "attn_norm.weight"), buf);
    for (int64_t t = 0; t < T; ++t) rms_norm(&x[t * D], attn_norm, &h[t * D], D, c.rms_eps);
    s.emit(b + "attn_norm", h.data(), D);
    LayerCache& lc = cache_->layers[il];
    {
      OpTimer timer(profile_, "attention");
      if (c.attn == AttnKind::MLA) attention_mla(s, il, h.data(), lc, y.data());
      else attention_gqa(s, il, h.data(), lc, y.data());
    }
    s.emit(b + "attn_out", y.data(), D);
    for (int64_t i = 0; i < T * D; ++i) x[i] += y[i];
    s.emit(b + "ffn_inp", x.data(), D);

    const float* ffn_norm = small_tensor(m.w(b + "ffn_norm.weight"), buf);
    for (int64_t t = 0; t < T; ++t) rms_norm(&x[t * D], ffn_norm, &h[t * D], D, c.rms_eps);
    s.emit(b + "ffn_norm", h.data(), D);
    if (c.layer_is_dense(il)) {
      OpTimer timer(profile_, "dense_ffn");
      ffn_dense(s, b, "", h.data(), y.data());
    } else KTX_RETURN_IF_ERROR(ffn_moe(s, il, h.data(), y.data()));
    s.emit(b + "ffn_out", y.data(), D);
    for (int64_t i = 0; i < T * D; ++i) x[i] += y[i];
    s.emit(b + "l_out", x.data(), D);
    if (hidden_hook_ && il + 1 < c.n_layer) hidden_hook_(il + 1, x, T);
  }

  const int64_t first = all_logits ? 0 : T - 1, n_out = T - first;
  const float* out_norm = small_tensor(m.w("output_norm.weight"), buf);
  for (int64_t t = 0; t < T; ++t) rms_norm(&x[t * D], out_norm, &h[t * D], D, c.rms_eps);
  s.emit("result_norm", h.data(), D);
  if (hidden_hook_) hidden_hook_(c.n_layer, h, T);
  std::vector<float> logits(n_out * c.n_vocab);  // [n_out, n_vocab]
  OpTimer timer(profile_, "lm_head");
  const Weight& out = m.w(c.tied_output ? "token_embd.weight" : "output.weight");
  matmul(*m.pool, out, &h[first * D], n_out, logits.data());
  n_past_ += T;
  return logits;
}

}  // namespace ktx
