// Internal to runtime/gen: the preset table. A PresetSpec holds the hyperparameters of one model
// shape in the terms of GGUF metadata; model_layout.cpp turns it into tensors and keys, and
// vocab_gen.cpp builds its tokenizer. Values for the real shapes are the published configs of
// the models (config.json) as llama.cpp's converter writes them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktx::gen_detail {

enum class TokenizerKind {
  Gpt2,         // byte-level BPE (tokenizer.ggml.model "gpt2")
  SentencePiece // SentencePiece BPE with byte fallback (tokenizer.ggml.model "llama")
};

struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::Gpt2;
  std::string pre;                       // tokenizer.ggml.pre
  std::vector<std::string> controls;     // control tokens
  bool controls_first = true;            // ids 0.. (else the last ids of the vocabulary)
  int bos = 0, eos = 1;                  // indexes into `controls`
  int pad = -1;                          // index into `controls`, -1: no padding key
  bool add_bos = true;
  std::string chat_template;
};

struct PresetSpec {
  std::string name;
  std::string description;
  std::string arch;          // deepseek2 | qwen3moe | llama
  std::string model_name;    // general.name
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ctx = 4096;
  float rms_eps = 1e-6f;
  float rope_base = 10000.0f;

  // Attention (GQA).
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  bool qk_norm = false;      // qwen3moe

  // MLA (deepseek2, split attn_k_b/attn_v_b layout).
  int64_t q_lora = 0;
  int64_t kv_lora = 0;
  int64_t qk_nope = 0;
  int64_t qk_rope = 0;
  int64_t v_head = 0;
  float yarn_factor = 0.0f;  // 0: no rope scaling keys
  int64_t yarn_orig_ctx = 0;
  float yarn_log_mul = 0.0f;

  // FFN / MoE.
  int64_t n_leading_dense = 0;
  int64_t n_ff = 0;          // dense FFN (and the feed_forward_length key)
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;
  int64_t n_ff_exp = 0;
  int gating = 0;            // expert_gating_func: 0 absent, 1 softmax, 2 sigmoid
  bool weights_norm = false;
  float weights_scale = 0.0f;  // 0: key absent
  int64_t n_group = 0, n_group_used = 0;
  bool write_vocab_size = false;     // {arch}.vocab_size (deepseek2, llama write it)
  bool write_rope_dims = false;      // {arch}.rope.dimension_count

  TokenizerSpec tok;
};

// All presets, in display order.
const std::vector<PresetSpec>& preset_table();
const PresetSpec* find_preset(const std::string& name);

}  // namespace ktx::gen_detail
