// ModelConfig <-> JSON, the form a plan stores. Enums are written as strings so plan dumps
// read well; from_json requires every field, checks its type and range, and names the field
// at fault, because a plan file is user input.
#include <nlohmann/json.hpp>

#include <string>

#include "common/model/config.h"

namespace ktx {
namespace {

using nlohmann::json;

const char* attn_name(AttnKind a) { return a == AttnKind::MLA ? "mla" : "gqa"; }
const char* rope_name(RopeStyle r) { return r == RopeStyle::Neox ? "neox" : "normal"; }
const char* gating_name(GatingFunc g) { return g == GatingFunc::Sigmoid ? "sigmoid" : "softmax"; }
const char* mla_name(MlaLayout m) {
  switch (m) {
    case MlaLayout::None: return "none";
    case MlaLayout::KvB: return "kv_b";
    case MlaLayout::SplitKV: return "split_kv";
    case MlaLayout::Both: return "both";
  }
  return "none";
}

// Reads fields of one JSON object, remembering the first error.
class Reader {
 public:
  explicit Reader(const json& j) : j_(j) {}
  Status status() const { return st_; }

  const json* field(const char* key, bool (json::*is)() const, const char* what) {
    if (!st_) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) {
      st_ = Error("model config: field '{}' is missing", key);
      return nullptr;
    }
    if (!((*it).*is)()) {
      st_ = Error("model config: field '{}' must be {}, found {}", key, what, it->type_name());
      return nullptr;
    }
    return &*it;
  }
  void get(const char* key, int64_t& out, int64_t min_value = 0) {
    if (const json* v = field(key, &json::is_number_integer, "an integer")) {
      out = v->get<int64_t>();
      if (out < min_value) st_ = Error("model config: field '{}' must be >= {}, found {}", key, min_value, out);
    }
  }
  void get(const char* key, float& out) {
    if (const json* v = field(key, &json::is_number, "a number")) out = v->get<float>();
  }
  void get(const char* key, bool& out) {
    if (const json* v = field(key, &json::is_boolean, "a boolean")) out = v->get<bool>();
  }
  void get(const char* key, std::string& out) {
    if (const json* v = field(key, &json::is_string, "a string")) out = v->get<std::string>();
  }
  // Enum from its name: the candidates are tried in order.
  template <typename E, size_t N>
  void get_enum(const char* key, E& out, const E (&values)[N], const char* (*name)(E)) {
    std::string s;
    get(key, s);
    if (!st_) return;
    std::string allowed;
    for (E v : values) {
      if (s == name(v)) { out = v; return; }
      allowed += (allowed.empty() ? "" : ", ") + std::string(name(v));
    }
    st_ = Error("model config: field '{}' = '{}' is not one of: {}", key, s, allowed);
  }

 private:
  const json& j_;
  Status st_;
};

}  // namespace

nlohmann::json ModelConfig::to_json() const {
  json j;
  j["arch"] = model_arch_name(arch);
  j["name"] = name;
  j["n_vocab"] = n_vocab; j["n_embd"] = n_embd; j["n_layer"] = n_layer;
  j["n_ctx_train"] = n_ctx_train; j["rms_eps"] = rms_eps; j["tied_output"] = tied_output;
  j["attn"] = attn_name(attn); j["n_head"] = n_head; j["n_head_kv"] = n_head_kv;
  j["head_dim_k"] = head_dim_k; j["head_dim_v"] = head_dim_v;
  j["qkv_bias"] = qkv_bias; j["qk_norm"] = qk_norm;
  j["mla_layout"] = mla_name(mla_layout); j["q_lora_rank"] = q_lora_rank;
  j["kv_lora_rank"] = kv_lora_rank; j["qk_nope_dim"] = qk_nope_dim;
  j["qk_rope_dim"] = qk_rope_dim; j["v_head_dim"] = v_head_dim;
  j["rope_style"] = rope_name(rope_style); j["rope_freq_base"] = rope_freq_base;
  j["n_rot"] = n_rot; j["yarn"] = yarn; j["rope_scale_factor"] = rope_scale_factor;
  j["rope_orig_ctx"] = rope_orig_ctx; j["yarn_log_multiplier"] = yarn_log_multiplier;
  j["yarn_beta_fast"] = yarn_beta_fast; j["yarn_beta_slow"] = yarn_beta_slow;
  j["attn_scale"] = attn_scale;
  j["n_leading_dense"] = n_leading_dense; j["n_ff"] = n_ff; j["n_expert"] = n_expert;
  j["n_expert_used"] = n_expert_used; j["n_expert_shared"] = n_expert_shared;
  j["n_ff_exp"] = n_ff_exp; j["n_ff_shexp"] = n_ff_shexp; j["shexp_gate"] = shexp_gate;
  j["gating"] = gating_name(gating); j["softmax_after_topk"] = softmax_after_topk;
  j["expert_weights_norm"] = expert_weights_norm;
  j["expert_weights_scale"] = expert_weights_scale; j["exp_probs_bias"] = exp_probs_bias;
  j["n_expert_groups"] = n_expert_groups; j["n_group_used"] = n_group_used;
  return j;
}

Expected<ModelConfig> ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return Error("model config: expected a JSON object, found {}", j.type_name());
  ModelConfig c;
  Reader r(j);
  static constexpr ModelArch kArchs[] = {ModelArch::DeepSeek2, ModelArch::Qwen3Moe,
                                         ModelArch::Qwen2Moe, ModelArch::Llama};
  static constexpr AttnKind kAttn[] = {AttnKind::GQA, AttnKind::MLA};
  static constexpr RopeStyle kRope[] = {RopeStyle::Normal, RopeStyle::Neox};
  static constexpr GatingFunc kGating[] = {GatingFunc::Softmax, GatingFunc::Sigmoid};
  static constexpr MlaLayout kMla[] = {MlaLayout::None, MlaLayout::KvB, MlaLayout::SplitKV,
                                       MlaLayout::Both};
  r.get_enum("arch", c.arch, kArchs, model_arch_name);
  r.get("name", c.name);
  r.get("n_vocab", c.n_vocab, 1); r.get("n_embd", c.n_embd, 1); r.get("n_layer", c.n_layer, 1);
  r.get("n_ctx_train", c.n_ctx_train, 1); r.get("rms_eps", c.rms_eps);
  r.get("tied_output", c.tied_output);
  r.get_enum("attn", c.attn, kAttn, attn_name);
  r.get("n_head", c.n_head, 1); r.get("n_head_kv", c.n_head_kv, 1);
  r.get("head_dim_k", c.head_dim_k, 1); r.get("head_dim_v", c.head_dim_v, 1);
  r.get("qkv_bias", c.qkv_bias); r.get("qk_norm", c.qk_norm);
  r.get_enum("mla_layout", c.mla_layout, kMla, mla_name);
  r.get("q_lora_rank", c.q_lora_rank); r.get("kv_lora_rank", c.kv_lora_rank);
  r.get("qk_nope_dim", c.qk_nope_dim); r.get("qk_rope_dim", c.qk_rope_dim);
  r.get("v_head_dim", c.v_head_dim);
  r.get_enum("rope_style", c.rope_style, kRope, rope_name);
  r.get("rope_freq_base", c.rope_freq_base); r.get("n_rot", c.n_rot, 1); r.get("yarn", c.yarn);
  r.get("rope_scale_factor", c.rope_scale_factor); r.get("rope_orig_ctx", c.rope_orig_ctx);
  r.get("yarn_log_multiplier", c.yarn_log_multiplier);
  r.get("yarn_beta_fast", c.yarn_beta_fast); r.get("yarn_beta_slow", c.yarn_beta_slow);
  r.get("attn_scale", c.attn_scale);
  r.get("n_leading_dense", c.n_leading_dense); r.get("n_ff", c.n_ff);
  r.get("n_expert", c.n_expert); r.get("n_expert_used", c.n_expert_used);
  r.get("n_expert_shared", c.n_expert_shared); r.get("n_ff_exp", c.n_ff_exp);
  r.get("n_ff_shexp", c.n_ff_shexp); r.get("shexp_gate", c.shexp_gate);
  r.get_enum("gating", c.gating, kGating, gating_name);
  r.get("softmax_after_topk", c.softmax_after_topk);
  r.get("expert_weights_norm", c.expert_weights_norm);
  r.get("expert_weights_scale", c.expert_weights_scale);
  r.get("exp_probs_bias", c.exp_probs_bias);
  r.get("n_expert_groups", c.n_expert_groups, 1); r.get("n_group_used", c.n_group_used, 1);
  KTX_RETURN_IF_ERROR(r.status());

  // Relations the engine relies on.
  if (c.n_head % c.n_head_kv != 0)
    return Error("model config: n_head_kv = {} must divide n_head = {}", c.n_head_kv, c.n_head);
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim_k)
    return Error("model config: n_rot = {} must be even and <= head_dim_k = {}", c.n_rot, c.head_dim_k);
  if (!(c.rms_eps > 0.0f) || !(c.attn_scale > 0.0f) || !(c.rope_freq_base > 1.0f))
    return Error("model config: rms_eps, attn_scale must be > 0 and rope_freq_base > 1");
  if ((c.attn == AttnKind::MLA) != (c.mla_layout != MlaLayout::None))
    return Error("model config: attn = '{}' does not match mla_layout = '{}'", attn_name(c.attn),
                 mla_name(c.mla_layout));
  if (c.attn == AttnKind::MLA && (c.kv_lora_rank <= 0 || c.qk_nope_dim <= 0 ||
                                  c.qk_rope_dim <= 0 || c.v_head_dim <= 0))
    return Error("model config: MLA needs positive kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim");
  if (c.n_leading_dense > c.n_layer)
    return Error("model config: n_leading_dense = {} exceeds n_layer = {}", c.n_leading_dense, c.n_layer);
  if (c.n_expert > 0 && c.n_leading_dense < c.n_layer &&
      (c.n_expert_used < 1 || c.n_expert_used > c.n_expert || c.n_ff_exp <= 0 ||
       c.n_expert % c.n_expert_groups != 0 || c.n_group_used > c.n_expert_groups))
    return Error("model config: inconsistent experts (n_expert = {}, n_expert_used = {}, "
                 "n_ff_exp = {}, n_expert_groups = {}, n_group_used = {})", c.n_expert,
                 c.n_expert_used, c.n_ff_exp, c.n_expert_groups, c.n_group_used);
  return c;
}

}  // namespace ktx
