// ModelConfig: the normalized description of a supported model, decided from a GGUF's
// metadata *and the tensors it holds* (e.g. which MLA layout, whether q_lora is present).
// The compiler's importer builds IR from it; the plan stores it (JSON); the runtime's engine
// executes it. One place decides what a file means.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace ktx {

class GGUFFile;

enum class ModelArch { DeepSeek2, Qwen3Moe, Qwen2Moe, Llama };
enum class AttnKind { GQA, MLA };
// Normal = interleaved pairs (GPT-J style, x[2i], x[2i+1]); Neox = halves (x[i], x[i+d/2]).
enum class RopeStyle { Normal, Neox };
enum class GatingFunc { Softmax, Sigmoid };
// How MLA's up-projections are stored: only attn_kv_b, only split attn_k_b/attn_v_b, or both.
enum class MlaLayout { None, KvB, SplitKV, Both };

const char* model_arch_name(ModelArch a);  // the GGUF general.architecture string

struct ModelConfig {
  ModelArch arch = ModelArch::Llama;
  std::string name;            // general.name if present

  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-6f;
  bool tied_output = false;    // no output.weight: lm_head = token_embd

  // Attention.
  AttnKind attn = AttnKind::GQA;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;       // GQA: KV heads; MLA: as stored in the file
  int64_t head_dim_k = 0;      // GQA: per-head q/k dim; MLA: nope + rope (per head)
  int64_t head_dim_v = 0;      // per-head v dim
  bool qkv_bias = false;       // attn_{q,k,v}.bias present (qwen2moe)
  bool qk_norm = false;        // attn_{q,k}_norm per-head RMSNorm (qwen3moe)

  // MLA (deepseek2).
  MlaLayout mla_layout = MlaLayout::None;
  int64_t q_lora_rank = 0;     // 0 = no q_lora (attn_q used directly)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_dim = 0;
  int64_t qk_rope_dim = 0;
  int64_t v_head_dim = 0;

  // RoPE.
  RopeStyle rope_style = RopeStyle::Neox;
  float rope_freq_base = 10000.0f;
  int64_t n_rot = 0;           // rotated dims per head
  // YaRN (rope.scaling.type == "yarn"); factor 1 / type "none" means no scaling.
  bool yarn = false;
  float rope_scale_factor = 1.0f;
  int64_t rope_orig_ctx = 0;
  float yarn_log_multiplier = 0.0f;  // rope.scaling.yarn_log_multiplier (0.1 for DeepSeek)
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float attn_scale = 0.0f;     // softmax scale actually used (1/sqrt(d) with YaRN mscale^2)

  // FFN / MoE.
  int64_t n_leading_dense = 0; // first layers with a dense FFN
  int64_t n_ff = 0;            // dense FFN hidden size
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;      // total shared-expert hidden size (0 = none)
  bool shexp_gate = false;     // qwen2moe: sigmoid(ffn_gate_inp_shexp . x) scales the shared expert
  GatingFunc gating = GatingFunc::Softmax;
  bool softmax_after_topk = false;  // Mixtral: softmax over the selected top-k logits
  bool expert_weights_norm = false; // renormalize selected weights to sum 1
  float expert_weights_scale = 1.0f;
  bool exp_probs_bias = false;      // exp_probs_b.bias added for selection only
  int64_t n_expert_groups = 1;
  int64_t n_group_used = 1;

  bool layer_is_dense(int64_t il) const { return n_expert == 0 || il < n_leading_dense; }

  // Decide everything from the file; errors name the key or tensor at fault and say what was
  // expected ("unsupported architecture 'phi3': supported are deepseek2, qwen3moe, ...").
  static Expected<ModelConfig> from_gguf(const GGUFFile& f);
  // Check that every tensor this config needs exists with the expected shape and a supported
  // type (error names the tensor, expected and found shape).
  Status check_tensors(const GGUFFile& f) const;

  nlohmann::json to_json() const;
  static Expected<ModelConfig> from_json(const nlohmann::json& j);
};

}  // namespace ktx
