// Tensor lists and model metadata for the generator's presets. Shapes are in GGUF ne order
// (ne[0] = row length) and follow llama.cpp's tensor naming; initialization scales follow the
// usual 1/sqrt(fan_in) rule so that every matrix-vector product keeps unit-scale activations.
//
// Two exceptions keep routing honest (tokens spread over the experts as in a trained model,
// which benchmarks rely on). With random weights, attention is close to an average over the
// sequence, so its output is nearly the same vector for every token; added to the residual
// stream layer after layer, that shared part grows until every token's router sees the same
// input and picks the same few experts (measured on qwen3-30b-a3b --layers 8: one expert took
// 7.7x its share, 28% of a layer's experts got no token). So (1) token embeddings have unit
// scale per element, making each token's own vector the bulk of the residual stream, and
// (2) the projections that write into the stream (attn_output, ffn_down*) are scaled by
// 1/sqrt(2 n_layer) as GPT-2 initializes them, so all layers together add no more than the
// embedding carries. n_layer is the preset's full depth, so a --layers cut keeps the full
// model's tensors byte for byte.
#include "tools/ktx-run/gen/model_layout.h"

#include <fmt/format.h>

#include <cmath>

namespace ktx::gen_detail {
namespace {

// Collects tensors in file order and applies the type rules: 1-D tensors and the router stay
// F32 (as llama.cpp keeps them), matrices get the requested type or its fallback.
class PlanBuilder {
 public:
  PlanBuilder(GenModelPlan& plan, GGMLType type, int64_t n_layer_full)
      : plan_(plan), type_(type), residual_scale_(inv_sqrt(2 * n_layer_full)) {}

  void norm(const std::string& name, int64_t n) { add(name, GGMLType::F32, {n}, GenInit::Ones, 0); }
  void bias(const std::string& name, int64_t n, float std) {
    add(name, GGMLType::F32, {n}, GenInit::Small, std);
  }
  void router(const std::string& name, int64_t n_embd, int64_t n_expert) {
    add(name, GGMLType::F32, {n_embd, n_expert}, GenInit::Weight, inv_sqrt(n_embd));
  }
  // A weight matrix; fan_in defaults to the row length.
  void matrix(const std::string& name, std::vector<int64_t> ne, int64_t fan_in = 0) {
    const float std = inv_sqrt(fan_in > 0 ? fan_in : ne[0]);
    add(name, type_, std::move(ne), GenInit::Weight, std);
  }
  // A matrix whose output is added to the residual stream (see the file comment).
  void residual(const std::string& name, std::vector<int64_t> ne) {
    const float std = inv_sqrt(ne[0]) * residual_scale_;
    add(name, type_, std::move(ne), GenInit::Weight, std);
  }
  // Token embeddings: unit scale per element (see the file comment).
  void embedding(const std::string& name, int64_t n_embd, int64_t n_vocab) {
    add(name, type_, {n_embd, n_vocab}, GenInit::Weight, 1.0f);
  }
  Status status() const { return status_; }

 private:
  static float inv_sqrt(int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); }

  void add(const std::string& name, GGMLType requested, std::vector<int64_t> ne, GenInit init,
           float std) {
    GenTensor t;
    t.name = name;
    t.requested = requested;
    t.type = ne.size() == 1 ? requested : fallback_type(requested, ne[0]);
    t.ne = std::move(ne);
    t.init = init;
    t.std = std;
    Expected<uint64_t> row = ggml_row_bytes(t.type, t.ne[0]);
    if (!row) {
      if (status_.is_ok()) status_ = row.status().with_context("gen: tensor '" + name + "'");
      return;
    }
    t.n_bytes = *row * static_cast<uint64_t>(t.n_elements() / t.ne[0]);
    plan_.data_bytes += t.n_bytes;
    plan_.n_params += static_cast<uint64_t>(t.n_elements());
    plan_.tensors.push_back(std::move(t));
  }

  GenModelPlan& plan_;
  GGMLType type_;
  float residual_scale_;
  Status status_;
};

std::string blk(int64_t il, const char* name) { return fmt::format("blk.{}.{}", il, name); }

void add_mla_attention(const PresetSpec& p, int64_t il, PlanBuilder& b) {
  const int64_t qk_head = p.qk_nope + p.qk_rope;
  b.matrix(blk(il, "attn_q_a.weight"), {p.n_embd, p.q_lora});
  b.norm(blk(il, "attn_q_a_norm.weight"), p.q_lora);
  b.matrix(blk(il, "attn_q_b.weight"), {p.q_lora, p.n_head * qk_head});
  b.matrix(blk(il, "attn_kv_a_mqa.weight"), {p.n_embd, p.kv_lora + p.qk_rope});
  b.norm(blk(il, "attn_kv_a_norm.weight"), p.kv_lora);
  // k_b is stored transposed ([nope, kv_lora] per head) but still maps the latent (kv_lora)
  // to the key, so its scale is that of a kv_lora fan-in.
  b.matrix(blk(il, "attn_k_b.weight"), {p.qk_nope, p.kv_lora, p.n_head}, p.kv_lora);
  b.matrix(blk(il, "attn_v_b.weight"), {p.kv_lora, p.v_head, p.n_head});
  b.residual(blk(il, "attn_output.weight"), {p.n_head * p.v_head, p.n_embd});
}

void add_gqa_attention(const PresetSpec& p, int64_t il, PlanBuilder& b) {
  b.matrix(blk(il, "attn_q.weight"), {p.n_embd, p.n_head * p.head_dim});
  b.matrix(blk(il, "attn_k.weight"), {p.n_embd, p.n_head_kv * p.head_dim});
  b.matrix(blk(il, "attn_v.weight"), {p.n_embd, p.n_head_kv * p.head_dim});
  b.residual(blk(il, "attn_output.weight"), {p.n_head * p.head_dim, p.n_embd});
  if (p.qk_norm) {
    b.norm(blk(il, "attn_q_norm.weight"), p.head_dim);
    b.norm(blk(il, "attn_k_norm.weight"), p.head_dim);
  }
}

void add_ffn(const PresetSpec& p, int64_t il, bool dense, PlanBuilder& b) {
  b.norm(blk(il, "ffn_norm.weight"), p.n_embd);
  if (dense) {
    b.matrix(blk(il, "ffn_gate.weight"), {p.n_embd, p.n_ff});
    b.matrix(blk(il, "ffn_up.weight"), {p.n_embd, p.n_ff});
    b.residual(blk(il, "ffn_down.weight"), {p.n_ff, p.n_embd});
    return;
  }
  b.router(blk(il, "ffn_gate_inp.weight"), p.n_embd, p.n_expert);
  // Selection-only bias of sigmoid routing; small next to the sigmoid scores it shifts.
  if (p.gating == 2) b.bias(blk(il, "exp_probs_b.bias"), p.n_expert, 0.01f);
  b.matrix(blk(il, "ffn_gate_exps.weight"), {p.n_embd, p.n_ff_exp, p.n_expert});
  b.matrix(blk(il, "ffn_up_exps.weight"), {p.n_embd, p.n_ff_exp, p.n_expert});
  b.residual(blk(il, "ffn_down_exps.weight"), {p.n_ff_exp, p.n_embd, p.n_expert});
  if (p.n_expert_shared > 0) {
    const int64_t n_ff_sh = p.n_ff_exp * p.n_expert_shared;
    b.matrix(blk(il, "ffn_gate_shexp.weight"), {p.n_embd, n_ff_sh});
    b.matrix(blk(il, "ffn_up_shexp.weight"), {p.n_embd, n_ff_sh});
    b.residual(blk(il, "ffn_down_shexp.weight"), {n_ff_sh, p.n_embd});
  }
}

// llama.cpp's rounded parameter notation ("2.4M", "997K", "37B"), as in general.size_label.
std::string rounded_count(double n) {
  const char* suffix = "K";
  double scaled = n * 1e-3;
  if (n > 1e12) { suffix = "T"; scaled = n * 1e-12; }
  else if (n > 1e9) { suffix = "B"; scaled = n * 1e-9; }
  else if (n > 1e6) { suffix = "M"; scaled = n * 1e-6; }
  const int int_digits = static_cast<int>(fmt::format("{}", std::llround(scaled)).size());
  const int frac = std::max(2 - int_digits, 0);
  return fmt::format("{:.{}f}{}", scaled, frac, suffix);
}

std::string size_label(const PresetSpec& p, const GenModelPlan& plan) {
  if (p.n_expert == 0) return rounded_count(static_cast<double>(plan.n_params));
  uint64_t expert_params = 0;
  for (const GenTensor& t : plan.tensors) {
    if (t.name.find("_exps.") != std::string::npos) expert_params += t.n_elements();
  }
  const double shared = static_cast<double>(plan.n_params - expert_params);
  const double per_expert = static_cast<double>(expert_params) / static_cast<double>(p.n_expert);
  return fmt::format("{}x{}", p.n_expert, rounded_count(shared + per_expert));
}

}  // namespace

GGMLType fallback_type(GGMLType requested, int64_t ne0) {
  int64_t block = 1, bytes = 0;
  if (ggml_type_block(static_cast<uint32_t>(requested), &block, &bytes) && ne0 % block == 0) {
    return requested;
  }
  GGMLType alt = GGMLType::F16;
  switch (requested) {
    case GGMLType::Q2_K: case GGMLType::Q3_K: alt = GGMLType::Q4_0; break;
    case GGMLType::Q4_K: alt = GGMLType::Q5_0; break;
    case GGMLType::Q5_K: alt = GGMLType::Q5_1; break;
    case GGMLType::Q6_K: alt = GGMLType::Q8_0; break;
    default: break;
  }
  if (ggml_type_block(static_cast<uint32_t>(alt), &block, &bytes) && ne0 % block == 0) return alt;
  return GGMLType::F16;
}

LayerCounts layer_counts(const PresetSpec& p, int64_t requested) {
  LayerCounts c;
  c.n_layer = requested > 0 && requested < p.n_layer ? requested : p.n_layer;
  c.n_dense = std::min(p.n_leading_dense, c.n_layer);
  if (p.n_expert > 0 && c.n_layer < p.n_layer) c.n_dense = std::min(c.n_dense, c.n_layer - 1);
  if (c.n_dense < 0) c.n_dense = 0;
  return c;
}

Expected<GenModelPlan> build_plan(const PresetSpec& p, GGMLType type, int64_t n_layers) {
  GenModelPlan plan;
  plan.preset = p.name;
  plan.arch = p.arch;
  plan.n_vocab = p.n_vocab;
  const LayerCounts lc = layer_counts(p, n_layers);
  plan.n_layers = lc.n_layer;
  PlanBuilder b(plan, type, p.n_layer);
  b.embedding("token_embd.weight", p.n_embd, p.n_vocab);
  for (int64_t il = 0; il < lc.n_layer; ++il) {
    b.norm(blk(il, "attn_norm.weight"), p.n_embd);
    if (p.kv_lora > 0) {
      add_mla_attention(p, il, b);
    } else {
      add_gqa_attention(p, il, b);
    }
    add_ffn(p, il, p.n_expert == 0 || il < lc.n_dense, b);
  }
  b.norm("output_norm.weight", p.n_embd);
  b.matrix("output.weight", {p.n_embd, p.n_vocab});
  KTX_RETURN_IF_ERROR(b.status());
  return plan;
}

uint32_t llama_file_type(GGMLType type) {
  switch (type) {
    case GGMLType::F32: return 0;
    case GGMLType::F16: return 1;
    case GGMLType::Q4_0: return 2;
    case GGMLType::Q4_1: return 3;
    case GGMLType::Q8_0: return 7;
    case GGMLType::Q5_0: return 8;
    case GGMLType::Q5_1: return 9;
    case GGMLType::Q2_K: return 10;
    case GGMLType::Q3_K: return 11;  // Q3_K_S: every matrix Q3_K
    case GGMLType::Q4_K: return 14;  // Q4_K_S
    case GGMLType::Q5_K: return 16;  // Q5_K_S
    case GGMLType::Q6_K: return 18;
    case GGMLType::BF16: return 32;
    default: return 0;
  }
}

void write_model_keys(const PresetSpec& p, const GenModelPlan& plan, GGMLType type,
                      GGUFWriter& w) {
  const std::string a = p.arch + ".";
  const LayerCounts lc = layer_counts(p, plan.n_layers);
  const auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  w.set_str("general.architecture", p.arch);
  w.set_str("general.type", "model");
  w.set_str("general.name", p.model_name);
  w.set_str("general.size_label", size_label(p, plan));
  w.set_u32(a + "block_count", u32(lc.n_layer));
  w.set_u32(a + "context_length", u32(p.n_ctx));
  w.set_u32(a + "embedding_length", u32(p.n_embd));
  w.set_u32(a + "feed_forward_length", u32(p.n_ff));
  w.set_u32(a + "attention.head_count", u32(p.n_head));
  // Split-MLA files store the latent as one shared KV head (llama.cpp's newer layout).
  w.set_u32(a + "attention.head_count_kv", u32(p.kv_lora > 0 ? 1 : p.n_head_kv));
  w.set_f32(a + "rope.freq_base", p.rope_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", p.rms_eps);
  if (p.n_expert > 0) w.set_u32(a + "expert_used_count", u32(p.n_expert_used));
  w.set_u32("general.file_type", llama_file_type(type));
  if (p.n_leading_dense > 0) w.set_u32(a + "leading_dense_block_count", u32(lc.n_dense));
  if (p.write_vocab_size) w.set_u32(a + "vocab_size", u32(p.n_vocab));
  if (p.kv_lora > 0) {
    w.set_u32(a + "attention.q_lora_rank", u32(p.q_lora));
    w.set_u32(a + "attention.kv_lora_rank", u32(p.kv_lora));
    w.set_u32(a + "attention.key_length", u32(p.kv_lora + p.qk_rope));
    w.set_u32(a + "attention.value_length", u32(p.kv_lora));
  } else if (p.arch != "llama") {
    w.set_u32(a + "attention.key_length", u32(p.head_dim));
    w.set_u32(a + "attention.value_length", u32(p.head_dim));
  }
  if (p.n_expert > 0) {
    w.set_u32(a + "expert_count", u32(p.n_expert));
    if (p.arch != "llama") w.set_u32(a + "expert_feed_forward_length", u32(p.n_ff_exp));
  }
  if (p.n_expert_shared > 0) w.set_u32(a + "expert_shared_count", u32(p.n_expert_shared));
  if (p.weights_scale > 0) w.set_f32(a + "expert_weights_scale", p.weights_scale);
  if (p.gating != 0) {
    w.set_bool(a + "expert_weights_norm", p.weights_norm);
    w.set_u32(a + "expert_gating_func", static_cast<uint32_t>(p.gating));
  }
  if (p.write_rope_dims) {
    w.set_u32(a + "rope.dimension_count", u32(p.kv_lora > 0 ? p.qk_rope : p.head_dim));
  }
  if (p.yarn_factor > 0) {
    w.set_str(a + "rope.scaling.type", "yarn");
    w.set_f32(a + "rope.scaling.factor", p.yarn_factor);
    w.set_u32(a + "rope.scaling.original_context_length", u32(p.yarn_orig_ctx));
    w.set_f32(a + "rope.scaling.yarn_log_multiplier", p.yarn_log_mul);
  }
  if (p.n_group > 0) {
    w.set_u32(a + "expert_group_count", u32(p.n_group));
    w.set_u32(a + "expert_group_used_count", u32(p.n_group_used));
  }
  if (p.kv_lora > 0) {
    w.set_u32(a + "attention.key_length_mla", u32(p.qk_nope + p.qk_rope));
    w.set_u32(a + "attention.value_length_mla", u32(p.v_head));
  }
  w.set_u32("general.quantization_version", 2);
}

}  // namespace ktx::gen_detail
