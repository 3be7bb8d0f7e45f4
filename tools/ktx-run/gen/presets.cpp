// The preset table of `ktx-run gen`. `tiny` is a small runnable deepseek2 model for the README
// demo (the same shape as ../shared/models/dsv3, newer split-MLA layout). The others are the
// published shapes of real models, used for performance work; their tokenizers are synthetic
// vocabularies of the real size with the family's pre-tokenizer name and control tokens.
#include "tools/ktx-run/gen/presets.h"

namespace ktx::gen_detail {
namespace {

const char* kTinyTemplate =
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

const char* kDeepSeekTemplate =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<\xef\xbd\x9cUser\xef\xbd\x9c>"
    "{{ m['content'] }}{% elif m['role'] == 'assistant' %}<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
    "{{ m['content'] }}<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
    "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>{% endif %}";

const char* kChatMLTemplate =
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

const char* kMistralTemplate =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}"
    " [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

PresetSpec tiny() {
  PresetSpec p;
  p.name = "tiny";
  p.description = "runnable demo model: deepseek2, MLA (split k_b/v_b), 1 dense + 2 MoE layers, "
                  "16 experts top-4, sigmoid groups, 512-token BPE vocabulary";
  p.arch = "deepseek2";
  p.model_name = "KTX Tiny";
  p.n_vocab = 512;
  p.n_embd = 256;
  p.n_layer = 3;
  p.n_head = 4;
  p.q_lora = 128;
  p.kv_lora = 128;
  p.qk_nope = 64;
  p.qk_rope = 32;
  p.v_head = 64;
  p.n_leading_dense = 1;
  p.n_ff = 512;
  p.n_expert = 16;
  p.n_expert_used = 4;
  p.n_expert_shared = 1;
  p.n_ff_exp = 256;
  p.gating = 2;
  p.weights_norm = true;
  p.weights_scale = 2.5f;
  p.n_group = 4;
  p.n_group_used = 2;
  p.write_vocab_size = true;
  p.write_rope_dims = true;
  p.tok.pre = "gpt-2";
  p.tok.controls = {"<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"};
  p.tok.chat_template = kTinyTemplate;
  return p;
}

PresetSpec deepseek_v3() {
  PresetSpec p;
  p.name = "deepseek-v3";
  p.description = "DeepSeek-V3/R1 671B shape: deepseek2, 61 layers (3 dense), MLA, "
                  "256 experts top-8 + 1 shared, YaRN x40";
  p.arch = "deepseek2";
  p.model_name = "DeepSeek V3 (random weights)";
  p.n_vocab = 129280;
  p.n_embd = 7168;
  p.n_layer = 61;
  p.n_ctx = 163840;
  p.n_head = 128;
  p.q_lora = 1536;
  p.kv_lora = 512;
  p.qk_nope = 128;
  p.qk_rope = 64;
  p.v_head = 128;
  p.yarn_factor = 40.0f;
  p.yarn_orig_ctx = 4096;
  p.yarn_log_mul = 0.1f;
  p.n_leading_dense = 3;
  p.n_ff = 18432;
  p.n_expert = 256;
  p.n_expert_used = 8;
  p.n_expert_shared = 1;
  p.n_ff_exp = 2048;
  p.gating = 2;
  p.weights_norm = true;
  p.weights_scale = 2.5f;
  p.n_group = 8;
  p.n_group_used = 4;
  p.write_vocab_size = true;
  p.write_rope_dims = true;
  p.tok.pre = "deepseek-v3";
  // U+FF5C and U+2581 as DeepSeek spells its special tokens.
  p.tok.controls = {"<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                    "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>",
                    "<\xef\xbd\x9cUser\xef\xbd\x9c>", "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"};
  p.tok.pad = 2;
  p.tok.chat_template = kDeepSeekTemplate;
  return p;
}

PresetSpec qwen3(const char* name, const char* desc, int64_t n_embd, int64_t n_layer,
                 int64_t n_head, int64_t n_ff, int64_t n_ff_exp) {
  PresetSpec p;
  p.name = name;
  p.description = desc;
  p.arch = "qwen3moe";
  p.model_name = std::string(name) + " (random weights)";
  p.n_vocab = 151936;
  p.n_embd = n_embd;
  p.n_layer = n_layer;
  p.n_ctx = 40960;
  p.rope_base = 1e6f;
  p.n_head = n_head;
  p.n_head_kv = 4;
  p.head_dim = 128;
  p.qk_norm = true;
  p.n_ff = n_ff;
  p.n_expert = 128;
  p.n_expert_used = 8;
  p.n_ff_exp = n_ff_exp;
  p.tok.pre = "qwen2";
  p.tok.controls = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  p.tok.controls_first = false;
  p.tok.bos = 0;
  p.tok.eos = 2;
  p.tok.pad = 0;
  p.tok.add_bos = false;
  p.tok.chat_template = kChatMLTemplate;
  return p;
}

PresetSpec mixtral() {
  PresetSpec p;
  p.name = "mixtral-8x7b";
  p.description = "Mixtral 8x7B shape: llama with 8 experts top-2, 32 layers, GQA 32/8, "
                  "SentencePiece vocabulary of 32000";
  p.arch = "llama";
  p.model_name = "Mixtral 8x7B (random weights)";
  p.n_vocab = 32000;
  p.n_embd = 4096;
  p.n_layer = 32;
  p.n_ctx = 32768;
  p.rope_base = 1e6f;
  p.rms_eps = 1e-5f;
  p.n_head = 32;
  p.n_head_kv = 8;
  p.head_dim = 128;
  p.n_ff = 14336;
  p.n_expert = 8;
  p.n_expert_used = 2;
  p.n_ff_exp = 14336;
  p.write_vocab_size = true;
  p.write_rope_dims = true;
  p.tok.kind = TokenizerKind::SentencePiece;
  p.tok.pre = "default";
  p.tok.controls = {"<unk>", "<s>", "</s>"};
  p.tok.bos = 1;
  p.tok.eos = 2;
  p.tok.chat_template = kMistralTemplate;
  return p;
}

}  // namespace

const std::vector<PresetSpec>& preset_table() {
  static const std::vector<PresetSpec> table = {
      tiny(),
      deepseek_v3(),
      qwen3("qwen3-30b-a3b",
            "Qwen3-30B-A3B shape: qwen3moe, 48 layers, GQA 32/4, 128 experts top-8", 2048, 48,
            32, 6144, 768),
      qwen3("qwen3-235b-a22b",
            "Qwen3-235B-A22B shape: qwen3moe, 94 layers, GQA 64/4, 128 experts top-8", 4096, 94,
            64, 12288, 1536),
      mixtral(),
  };
  return table;
}

const PresetSpec* find_preset(const std::string& name) {
  for (const PresetSpec& p : preset_table()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace ktx::gen_detail
