// ModelConfig::from_gguf: the one place that decides what a GGUF means. Metadata keys give the
// sizes; the tensors present decide the layout questions metadata leaves open (q_lora or not,
// which MLA up-projection layout, biases, q/k norms, shared experts, the expert FFN size when
// a file lacks the key). Every error names the key or tensor at fault.
#include <cmath>
#include <string>

#include "common/gguf/gguf.h"
#include "common/model/config.h"

namespace ktx {

const char* model_arch_name(ModelArch a) {
  switch (a) {
    case ModelArch::DeepSeek2: return "deepseek2";
    case ModelArch::Qwen3Moe: return "qwen3moe";
    case ModelArch::Qwen2Moe: return "qwen2moe";
    case ModelArch::Llama: return "llama";
  }
  return "unknown";
}

namespace {

// Typed reads under the architecture prefix ("qwen3moe.block_count").
struct Keys {
  const GGUFFile& f;
  std::string prefix;
  std::string key(const char* k) const { return prefix + k; }
  Expected<int64_t> i(const char* k) const { return f.get_int(key(k)); }
  Expected<int64_t> i_or(const char* k, int64_t d) const { return f.get_int_or(key(k), d); }
  Expected<double> f_or(const char* k, double d) const { return f.get_float_or(key(k), d); }
  Expected<double> fl(const char* k) const { return f.get_float(key(k)); }
  Expected<bool> b_or(const char* k, bool d) const { return f.get_bool_or(key(k), d); }
  bool has(const char* k) const { return f.has(key(k)); }
};

Status require_positive(const std::string& what, int64_t v) {
  if (v <= 0) return Error("{} must be positive, found {}", what, v);
  return Status::ok();
}

bool has_tensor(const GGUFFile& f, const std::string& name) {
  return f.find_tensor(name) != nullptr;
}

// Index of the first layer with routed experts (where MoE tensors can be inspected).
int64_t first_moe_layer(const ModelConfig& c) {
  return c.n_expert > 0 ? c.n_leading_dense : -1;
}

Expected<ModelArch> parse_arch(const GGUFFile& f) {
  KTX_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
  if (arch == "deepseek2") return ModelArch::DeepSeek2;
  if (arch == "qwen3moe") return ModelArch::Qwen3Moe;
  if (arch == "qwen2moe") return ModelArch::Qwen2Moe;
  if (arch == "llama") return ModelArch::Llama;
  return Error(
      "unsupported architecture '{}' (general.architecture); supported: deepseek2, qwen3moe, "
      "qwen2moe, llama (Mixtral)",
      arch);
}

Status decide_basics(const GGUFFile& f, const Keys& k, ModelConfig& c) {
  KTX_ASSIGN_OR_RETURN(c.name, f.get_string_or("general.name", ""));
  KTX_ASSIGN_OR_RETURN(c.n_embd, k.i("embedding_length"));
  KTX_ASSIGN_OR_RETURN(c.n_layer, k.i("block_count"));
  KTX_ASSIGN_OR_RETURN(c.n_ctx_train, k.i("context_length"));
  KTX_ASSIGN_OR_RETURN(double eps, k.fl("attention.layer_norm_rms_epsilon"));
  c.rms_eps = static_cast<float>(eps);
  KTX_RETURN_IF_ERROR(require_positive(k.key("embedding_length"), c.n_embd));
  KTX_RETURN_IF_ERROR(require_positive(k.key("block_count"), c.n_layer));
  KTX_RETURN_IF_ERROR(require_positive(k.key("context_length"), c.n_ctx_train));
  if (!(eps > 0.0 && eps < 1.0))
    return Error("{} must be in (0, 1), found {}", k.key("attention.layer_norm_rms_epsilon"), eps);

  // The embedding table is the authority on the vocabulary; a vocab_size key must agree.
  const GGUFTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) return Error("tensor 'token_embd.weight' is missing");
  if (embd->n_dims != 2 || embd->ne[0] != c.n_embd)
    return Error("tensor 'token_embd.weight': expected shape [{}, n_vocab], found {}", c.n_embd,
                 embd->shape_str());
  c.n_vocab = embd->ne[1];
  KTX_ASSIGN_OR_RETURN(int64_t vocab_key, k.i_or("vocab_size", c.n_vocab));
  if (vocab_key != c.n_vocab)
    return Error("{} = {} disagrees with tensor 'token_embd.weight' {} ({} rows)",
                 k.key("vocab_size"), vocab_key, embd->shape_str(), c.n_vocab);
  c.tied_output = !has_tensor(f, "output.weight");
  return Status::ok();
}

Status decide_rope(const Keys& k, ModelConfig& c) {
  KTX_ASSIGN_OR_RETURN(double base, k.f_or("rope.freq_base", 10000.0));
  if (!(base > 1.0)) return Error("{} must be > 1, found {}", k.key("rope.freq_base"), base);
  c.rope_freq_base = static_cast<float>(base);
  c.rope_style = (c.arch == ModelArch::Qwen3Moe || c.arch == ModelArch::Qwen2Moe)
                     ? RopeStyle::Neox : RopeStyle::Normal;
  KTX_ASSIGN_OR_RETURN(std::string type, k.f.get_string_or(k.key("rope.scaling.type"), "none"));
  KTX_ASSIGN_OR_RETURN(double factor, k.f_or("rope.scaling.factor", 1.0));
  if (type == "none" || (type == "yarn" && factor == 1.0)) {
    c.yarn = false;
  } else if (type == "yarn") {
    if (!(factor > 1.0))
      return Error("{} must be > 1 for yarn, found {}", k.key("rope.scaling.factor"), factor);
    c.yarn = true;
    c.rope_scale_factor = static_cast<float>(factor);
    KTX_ASSIGN_OR_RETURN(c.rope_orig_ctx, k.i("rope.scaling.original_context_length"));
    KTX_RETURN_IF_ERROR(require_positive(k.key("rope.scaling.original_context_length"),
                                         c.rope_orig_ctx));
    KTX_ASSIGN_OR_RETURN(double lm, k.f_or("rope.scaling.yarn_log_multiplier", 0.0));
    c.yarn_log_multiplier = static_cast<float>(lm);
  } else {
    return Error("{} = '{}' is not supported (supported: none, yarn)",
                 k.key("rope.scaling.type"), type);
  }
  return Status::ok();
}

Status decide_gqa(const GGUFFile& f, const Keys& k, ModelConfig& c) {
  c.attn = AttnKind::GQA;
  KTX_ASSIGN_OR_RETURN(c.head_dim_k, k.i_or("attention.key_length", c.n_embd / c.n_head));
  KTX_ASSIGN_OR_RETURN(c.head_dim_v, k.i_or("attention.value_length", c.head_dim_k));
  KTX_RETURN_IF_ERROR(require_positive(k.key("attention.key_length"), c.head_dim_k));
  KTX_RETURN_IF_ERROR(require_positive(k.key("attention.value_length"), c.head_dim_v));
  KTX_ASSIGN_OR_RETURN(c.n_rot, k.i_or("rope.dimension_count", c.head_dim_k));
  c.qkv_bias = has_tensor(f, "blk.0.attn_q.bias");
  c.qk_norm = has_tensor(f, "blk.0.attn_q_norm.weight");
  return Status::ok();
}

// MLA: sizes from keys, layout from the tensors of layer 0 (checked for all layers later).
Status decide_mla(const GGUFFile& f, const Keys& k, ModelConfig& c) {
  c.attn = AttnKind::MLA;
  const bool kv_b = has_tensor(f, "blk.0.attn_kv_b.weight");
  const bool split = has_tensor(f, "blk.0.attn_k_b.weight") &&
                     has_tensor(f, "blk.0.attn_v_b.weight");
  if (kv_b && split) c.mla_layout = MlaLayout::Both;
  else if (kv_b) c.mla_layout = MlaLayout::KvB;
  else if (split) c.mla_layout = MlaLayout::SplitKV;
  else
    return Error("deepseek2: layer 0 has neither 'blk.0.attn_kv_b.weight' nor both "
                 "'blk.0.attn_k_b.weight' and 'blk.0.attn_v_b.weight'");

  if (const GGUFTensorInfo* qa = f.find_tensor("blk.0.attn_q_a.weight")) {
    c.q_lora_rank = qa->ne[1];
    KTX_ASSIGN_OR_RETURN(int64_t key_rank, k.i_or("attention.q_lora_rank", c.q_lora_rank));
    if (key_rank != c.q_lora_rank)
      return Error("{} = {} disagrees with tensor 'blk.0.attn_q_a.weight' {}",
                   k.key("attention.q_lora_rank"), key_rank, qa->shape_str());
  } else if (has_tensor(f, "blk.0.attn_q.weight")) {
    c.q_lora_rank = 0;
  } else {
    return Error("deepseek2: layer 0 has neither 'blk.0.attn_q_a.weight' (q_lora) nor "
                 "'blk.0.attn_q.weight'");
  }
  KTX_ASSIGN_OR_RETURN(c.kv_lora_rank, k.i("attention.kv_lora_rank"));
  KTX_ASSIGN_OR_RETURN(c.qk_rope_dim, k.i("rope.dimension_count"));
  KTX_RETURN_IF_ERROR(require_positive(k.key("attention.kv_lora_rank"), c.kv_lora_rank));
  KTX_RETURN_IF_ERROR(require_positive(k.key("rope.dimension_count"), c.qk_rope_dim));
  // Files with the split layout store latent lengths in key_length/value_length and the
  // per-head lengths in the *_mla keys; older files store per-head lengths directly.
  const char* klen = k.has("attention.key_length_mla") ? "attention.key_length_mla"
                                                       : "attention.key_length";
  const char* vlen = k.has("attention.value_length_mla") ? "attention.value_length_mla"
                                                         : "attention.value_length";
  KTX_ASSIGN_OR_RETURN(int64_t key_len, k.i(klen));
  KTX_ASSIGN_OR_RETURN(c.v_head_dim, k.i(vlen));
  c.qk_nope_dim = key_len - c.qk_rope_dim;
  KTX_RETURN_IF_ERROR(require_positive(k.key(klen) + " - rope.dimension_count", c.qk_nope_dim));
  KTX_RETURN_IF_ERROR(require_positive(k.key(vlen), c.v_head_dim));
  c.head_dim_k = key_len;
  c.head_dim_v = c.v_head_dim;
  c.n_rot = c.qk_rope_dim;
  return Status::ok();
}

Status decide_moe(const GGUFFile& f, const Keys& k, ModelConfig& c) {
  KTX_ASSIGN_OR_RETURN(c.n_ff, k.i_or("feed_forward_length", 0));
  KTX_ASSIGN_OR_RETURN(c.n_expert, k.i_or("expert_count", 0));
  KTX_ASSIGN_OR_RETURN(c.n_leading_dense, k.i_or("leading_dense_block_count", 0));
  if (c.n_expert < 0) return Error("{} must be >= 0, found {}", k.key("expert_count"), c.n_expert);
  if (c.n_leading_dense < 0 || c.n_leading_dense > c.n_layer)
    return Error("{} = {} must be in [0, block_count = {}]", k.key("leading_dense_block_count"),
                 c.n_leading_dense, c.n_layer);
  if (c.n_expert == 0) {
    if (c.arch != ModelArch::Llama)
      return Error("{} is missing or 0: {} needs routed experts", k.key("expert_count"),
                   model_arch_name(c.arch));
    c.n_leading_dense = c.n_layer;
  }
  if (c.n_leading_dense > 0) KTX_RETURN_IF_ERROR(require_positive(k.key("feed_forward_length"), c.n_ff));
  if (c.n_expert == 0 || c.n_leading_dense == c.n_layer) return Status::ok();

  KTX_ASSIGN_OR_RETURN(c.n_expert_used, k.i("expert_used_count"));
  if (c.n_expert_used <= 0 || c.n_expert_used > c.n_expert)
    return Error("{} = {} must be in [1, expert_count = {}]", k.key("expert_used_count"),
                 c.n_expert_used, c.n_expert);
  const std::string blk = fmt::format("blk.{}.", first_moe_layer(c));
  const GGUFTensorInfo* gate = f.find_tensor(blk + "ffn_gate_exps.weight");
  if (!gate) return Error("tensor '{}ffn_gate_exps.weight' is missing", blk);
  c.n_ff_exp = gate->ne[1];
  KTX_ASSIGN_OR_RETURN(int64_t ff_key, k.i_or("expert_feed_forward_length", c.n_ff_exp));
  if (ff_key != c.n_ff_exp)
    return Error("{} = {} disagrees with tensor '{}ffn_gate_exps.weight' {}",
                 k.key("expert_feed_forward_length"), ff_key, blk, gate->shape_str());
  if (const GGUFTensorInfo* sh = f.find_tensor(blk + "ffn_gate_shexp.weight")) {
    c.n_ff_shexp = sh->ne[1];
    KTX_ASSIGN_OR_RETURN(c.n_expert_shared, k.i_or("expert_shared_count", 1));
  }
  c.shexp_gate = has_tensor(f, blk + "ffn_gate_inp_shexp.weight");

  // Routing. Defaults follow what each architecture's reference implementation does when a
  // file lacks the key (V2 files predate expert_gating_func; Qwen3-MoE always renormalizes).
  KTX_ASSIGN_OR_RETURN(int64_t gating, k.i_or("expert_gating_func", 1));
  if (gating != 1 && gating != 2)
    return Error("{} = {} is not supported (1 = softmax, 2 = sigmoid)",
                 k.key("expert_gating_func"), gating);
  c.gating = gating == 2 ? GatingFunc::Sigmoid : GatingFunc::Softmax;
  c.softmax_after_topk = c.arch == ModelArch::Llama;
  KTX_ASSIGN_OR_RETURN(c.expert_weights_norm,
                       k.b_or("expert_weights_norm", c.arch == ModelArch::Qwen3Moe));
  KTX_ASSIGN_OR_RETURN(double scale, k.f_or("expert_weights_scale", 1.0));
  // Some V2 files carry 0 for "unset".
  c.expert_weights_scale = scale == 0.0 ? 1.0f : static_cast<float>(scale);
  c.exp_probs_bias = has_tensor(f, blk + "exp_probs_b.bias");
  KTX_ASSIGN_OR_RETURN(c.n_expert_groups, k.i_or("expert_group_count", 1));
  KTX_ASSIGN_OR_RETURN(c.n_group_used, k.i_or("expert_group_used_count", c.n_expert_groups));
  if (c.n_expert_groups <= 0 || c.n_expert % c.n_expert_groups != 0)
    return Error("{} = {} must divide expert_count = {}", k.key("expert_group_count"),
                 c.n_expert_groups, c.n_expert);
  if (c.n_group_used <= 0 || c.n_group_used > c.n_expert_groups ||
      c.n_group_used * (c.n_expert / c.n_expert_groups) < c.n_expert_used)
    return Error("{} = {} must be in [1, {}] and its groups must hold expert_used_count = {} "
                 "experts", k.key("expert_group_used_count"), c.n_group_used,
                 c.n_expert_groups, c.n_expert_used);
  return Status::ok();
}

Status validate_attention(const Keys& k, ModelConfig& c) {
  KTX_ASSIGN_OR_RETURN(c.n_head, k.i("attention.head_count"));
  KTX_ASSIGN_OR_RETURN(c.n_head_kv, k.i_or("attention.head_count_kv", c.n_head));
  KTX_RETURN_IF_ERROR(require_positive(k.key("attention.head_count"), c.n_head));
  KTX_RETURN_IF_ERROR(require_positive(k.key("attention.head_count_kv"), c.n_head_kv));
  if (c.n_head % c.n_head_kv != 0)
    return Error("{} = {} must divide {} = {}", k.key("attention.head_count_kv"), c.n_head_kv,
                 k.key("attention.head_count"), c.n_head);
  return Status::ok();
}

}  // namespace

Expected<ModelConfig> ModelConfig::from_gguf(const GGUFFile& f) {
  ModelConfig c;
  KTX_ASSIGN_OR_RETURN(c.arch, parse_arch(f));
  const Keys k{f, std::string(model_arch_name(c.arch)) + "."};
  KTX_RETURN_IF_ERROR(decide_basics(f, k, c));
  KTX_RETURN_IF_ERROR(validate_attention(k, c));
  KTX_RETURN_IF_ERROR(decide_rope(k, c));
  if (c.arch == ModelArch::DeepSeek2) {
    KTX_RETURN_IF_ERROR(decide_mla(f, k, c));
  } else {
    KTX_RETURN_IF_ERROR(decide_gqa(f, k, c));
  }
  if (c.n_rot <= 0 || c.n_rot % 2 != 0 || c.n_rot > c.head_dim_k)
    return Error("{} = {} must be even and in [2, {}]", k.key("rope.dimension_count"), c.n_rot,
                 c.head_dim_k);
  KTX_RETURN_IF_ERROR(decide_moe(f, k, c));
  // Softmax scale: 1/sqrt(d); YaRN's mscale enters squared (once for q, once for k).
  double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim_k));
  if (c.yarn) {
    const double mscale = 1.0 + c.yarn_log_multiplier * std::log(c.rope_scale_factor);
    scale *= mscale * mscale;
  }
  c.attn_scale = static_cast<float>(scale);
  KTX_RETURN_IF_ERROR(c.check_tensors(f));
  return c;
}

}  // namespace ktx
