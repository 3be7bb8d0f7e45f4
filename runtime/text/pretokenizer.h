// Pre-tokenizers of byte-level BPE vocabularies: split text into the pieces BPE runs on, exactly
// as the model family's tokenizer.json regex (or regex sequence) would. Each family's regex is
// hand-coded as a matcher over code points with Unicode general categories (no std::regex: it
// knows no \p{..} classes and is slow). Selected by the GGUF key tokenizer.ggml.pre.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"

namespace ktx {

enum class PreTokenizerKind {
  kDefault,        // llama.cpp's fallback sequence for pre = "default"
  kGpt2,           // GPT-2 (also mpt, olmo, jais)
  kLlama3,         // Llama-3 (llama-bpe), dbrx, smaug
  kQwen2,          // Qwen2 / Qwen3: Llama-3's regex with single digits
  kDeepseekLlm,    // DeepSeek LLM (v1/v2): a sequence of six splits
  kDeepseekCoder,  // DeepSeek Coder
  kDeepseekV3,     // DeepSeek-V3 / R1
  kGpt4o,          // o200k (gpt-4o, gpt-oss)
  kFalcon,
  kStarcoder,      // starcoder, refact, smollm, command-r
};

// Map a tokenizer.ggml.pre value to its kind; the error lists every known name.
Expected<PreTokenizerKind> pre_tokenizer_from_name(std::string_view name);
std::string known_pre_tokenizer_names();

// Split `text` into pieces (views into `text`, in order, covering every byte of it).
std::vector<std::string_view> pre_tokenize(PreTokenizerKind kind, std::string_view text);

}  // namespace ktx
