// ModelConfig::check_tensors: every tensor a config needs, with its expected shape (ne order,
// row length first) and a weight type we can dequantize. The engine and the compiler rely on
// this having passed, so they can index tensors without re-checking.
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/model/config.h"

namespace ktx {
namespace {

std::string shape_of(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

Status expect_tensor(const GGUFFile& f, const std::string& name, const std::vector<int64_t>& ne) {
  const GGUFTensorInfo* t = f.find_tensor(name);
  if (!t) return Error("tensor '{}' is missing (expected shape {})", name, shape_of(ne));
  bool same = t->n_dims == ne.size();
  for (size_t i = 0; same && i < ne.size(); ++i) same = t->ne[i] == ne[i];
  if (!same)
    return Error("tensor '{}': expected shape {}, found {}", name, shape_of(ne), t->shape_str());
  return check_type_supported(static_cast<uint32_t>(t->type))
      .with_context(fmt::format("tensor '{}'", name));
}

Status check_gqa(const GGUFFile& f, const ModelConfig& c, const std::string& b) {
  const int64_t q = c.n_head * c.head_dim_k, kv = c.n_head_kv * c.head_dim_k;
  const int64_t v = c.n_head_kv * c.head_dim_v;
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q.weight", {c.n_embd, q}));
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_k.weight", {c.n_embd, kv}));
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_v.weight", {c.n_embd, v}));
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_output.weight", {c.n_head * c.head_dim_v, c.n_embd}));
  if (c.qkv_bias) {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q.bias", {q}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_k.bias", {kv}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_v.bias", {v}));
  }
  if (c.qk_norm) {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q_norm.weight", {c.head_dim_k}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_k_norm.weight", {c.head_dim_k}));
  }
  return Status::ok();
}

Status check_mla(const GGUFFile& f, const ModelConfig& c, const std::string& b) {
  const int64_t q = c.n_head * (c.qk_nope_dim + c.qk_rope_dim);
  if (c.q_lora_rank > 0) {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q_a.weight", {c.n_embd, c.q_lora_rank}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q_a_norm.weight", {c.q_lora_rank}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q_b.weight", {c.q_lora_rank, q}));
  } else {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_q.weight", {c.n_embd, q}));
  }
  KTX_RETURN_IF_ERROR(
      expect_tensor(f, b + "attn_kv_a_mqa.weight", {c.n_embd, c.kv_lora_rank + c.qk_rope_dim}));
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_kv_a_norm.weight", {c.kv_lora_rank}));
  if (c.mla_layout == MlaLayout::KvB || c.mla_layout == MlaLayout::Both)
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_kv_b.weight",
                                      {c.kv_lora_rank, c.n_head * (c.qk_nope_dim + c.v_head_dim)}));
  if (c.mla_layout == MlaLayout::SplitKV || c.mla_layout == MlaLayout::Both) {
    KTX_RETURN_IF_ERROR(
        expect_tensor(f, b + "attn_k_b.weight", {c.qk_nope_dim, c.kv_lora_rank, c.n_head}));
    KTX_RETURN_IF_ERROR(
        expect_tensor(f, b + "attn_v_b.weight", {c.kv_lora_rank, c.v_head_dim, c.n_head}));
  }
  return expect_tensor(f, b + "attn_output.weight", {c.n_head * c.v_head_dim, c.n_embd});
}

Status check_ffn(const GGUFFile& f, const ModelConfig& c, int64_t il, const std::string& b) {
  if (c.layer_is_dense(il)) {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_gate.weight", {c.n_embd, c.n_ff}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_up.weight", {c.n_embd, c.n_ff}));
    return expect_tensor(f, b + "ffn_down.weight", {c.n_ff, c.n_embd});
  }
  KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_gate_inp.weight", {c.n_embd, c.n_expert}));
  KTX_RETURN_IF_ERROR(
      expect_tensor(f, b + "ffn_gate_exps.weight", {c.n_embd, c.n_ff_exp, c.n_expert}));
  KTX_RETURN_IF_ERROR(
      expect_tensor(f, b + "ffn_up_exps.weight", {c.n_embd, c.n_ff_exp, c.n_expert}));
  KTX_RETURN_IF_ERROR(
      expect_tensor(f, b + "ffn_down_exps.weight", {c.n_ff_exp, c.n_embd, c.n_expert}));
  if (c.exp_probs_bias)
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "exp_probs_b.bias", {c.n_expert}));
  if (c.n_ff_shexp > 0) {
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_gate_shexp.weight", {c.n_embd, c.n_ff_shexp}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_up_shexp.weight", {c.n_embd, c.n_ff_shexp}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_down_shexp.weight", {c.n_ff_shexp, c.n_embd}));
  }
  if (c.shexp_gate)
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_gate_inp_shexp.weight", {c.n_embd}));
  return Status::ok();
}

}  // namespace

Status ModelConfig::check_tensors(const GGUFFile& f) const {
  KTX_RETURN_IF_ERROR(expect_tensor(f, "token_embd.weight", {n_embd, n_vocab}));
  KTX_RETURN_IF_ERROR(expect_tensor(f, "output_norm.weight", {n_embd}));
  if (!tied_output) KTX_RETURN_IF_ERROR(expect_tensor(f, "output.weight", {n_embd, n_vocab}));
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string b = fmt::format("blk.{}.", il);
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "attn_norm.weight", {n_embd}));
    KTX_RETURN_IF_ERROR(expect_tensor(f, b + "ffn_norm.weight", {n_embd}));
    KTX_RETURN_IF_ERROR(attn == AttnKind::MLA ? check_mla(f, *this, b) : check_gqa(f, *this, b));
    KTX_RETURN_IF_ERROR(check_ffn(f, *this, il, b));
  }
  return Status::ok();
}

}  // namespace ktx
