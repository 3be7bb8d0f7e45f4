// Building a Tokenizer: reading tokenizer.ggml.* from a GGUF, validating it (every error names
// the key and what was expected), and indexing tokens, merges and special tokens. Also the
// small queries (token lookup, end-of-generation detection).
#include "runtime/text/tokenizer.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "common/gguf/gguf.h"

namespace ktx {

namespace {

// Read an optional token id key; -1 when absent.
Expected<int32_t> optional_id(const GGUFFile& f, std::string_view key) {
  KTX_ASSIGN_OR_RETURN(int64_t v, f.get_int_or(key, -1));
  return static_cast<int32_t>(v);
}

// Names of end-of-turn control tokens across model families (DeepSeek writes its bars as
// U+FF5C FULLWIDTH VERTICAL LINE).
constexpr std::array<std::string_view, 11> kEndOfGenerationNames = {
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>",
    "</s>", "<|end▁of▁sentence|>", "<｜end▁of▁sentence｜>", "<|return|>", "<EOT>",
};

}  // namespace

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GGUFFile& f) {
  VocabData v;
  KTX_ASSIGN_OR_RETURN(v.model, f.get_string("tokenizer.ggml.model"));
  KTX_ASSIGN_OR_RETURN(v.pre, f.get_string_or("tokenizer.ggml.pre", "default"));
  KTX_ASSIGN_OR_RETURN(v.tokens, f.get_string_array("tokenizer.ggml.tokens"));
  if (f.has("tokenizer.ggml.token_type")) {
    KTX_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.get_int_array("tokenizer.ggml.token_type"));
    v.types.assign(types.begin(), types.end());
  }
  if (f.has("tokenizer.ggml.scores")) {
    KTX_ASSIGN_OR_RETURN(std::vector<double> scores, f.get_float_array("tokenizer.ggml.scores"));
    v.scores.assign(scores.begin(), scores.end());
  }
  if (f.has("tokenizer.ggml.merges")) {
    KTX_ASSIGN_OR_RETURN(v.merges, f.get_string_array("tokenizer.ggml.merges"));
  }
  KTX_ASSIGN_OR_RETURN(v.bos_id, optional_id(f, "tokenizer.ggml.bos_token_id"));
  KTX_ASSIGN_OR_RETURN(v.eos_id, optional_id(f, "tokenizer.ggml.eos_token_id"));
  KTX_ASSIGN_OR_RETURN(v.unk_id, optional_id(f, "tokenizer.ggml.unknown_token_id"));
  KTX_ASSIGN_OR_RETURN(v.eot_id, optional_id(f, "tokenizer.ggml.eot_token_id"));
  KTX_ASSIGN_OR_RETURN(v.eom_id, optional_id(f, "tokenizer.ggml.eom_token_id"));
  if (f.has("tokenizer.ggml.add_bos_token")) {
    KTX_ASSIGN_OR_RETURN(bool add_bos, f.get_bool("tokenizer.ggml.add_bos_token"));
    v.add_bos = add_bos;
  }
  KTX_ASSIGN_OR_RETURN(v.add_space_prefix, f.get_bool_or("tokenizer.ggml.add_space_prefix", true));
  KTX_ASSIGN_OR_RETURN(v.chat_template, f.get_string_or("tokenizer.chat_template", ""));
  auto tok = from_vocab(std::move(v));
  if (!tok) return tok.status().with_context(f.path());
  return tok;
}

Expected<std::unique_ptr<Tokenizer>> Tokenizer::from_vocab(VocabData vocab) {
  std::unique_ptr<Tokenizer> tok(new Tokenizer(std::move(vocab)));
  KTX_RETURN_IF_ERROR(tok->init());
  return tok;
}

Status Tokenizer::init() {
  VocabData& v = vocab_;
  const size_t n = v.tokens.size();
  if (n == 0) return Error("tokenizer.ggml.tokens: empty vocabulary");
  if (v.model == "gpt2") {
    model_ = Model::kByteLevelBpe;
    KTX_ASSIGN_OR_RETURN(pre_, pre_tokenizer_from_name(v.pre));
    ignore_merges_ = pre_ == PreTokenizerKind::kLlama3;
  } else if (v.model == "llama") {
    model_ = Model::kSentencePiece;
  } else {
    return Error("tokenizer.ggml.model: unsupported tokenizer model '{}' (supported: gpt2, llama)",
                 v.model);
  }
  if (v.types.empty()) v.types.assign(n, static_cast<int32_t>(TokenType::kNormal));
  if (v.types.size() != n) {
    return Error("tokenizer.ggml.token_type: {} entries, expected one per token ({})",
                 v.types.size(), n);
  }
  if (v.scores.empty()) v.scores.assign(n, 0.0f);
  if (v.scores.size() != n) {
    return Error("tokenizer.ggml.scores: {} entries, expected one per token ({})", v.scores.size(),
                 n);
  }
  const std::array<std::pair<const char*, int32_t>, 5> ids = {{
      {"tokenizer.ggml.bos_token_id", v.bos_id}, {"tokenizer.ggml.eos_token_id", v.eos_id},
      {"tokenizer.ggml.unknown_token_id", v.unk_id}, {"tokenizer.ggml.eot_token_id", v.eot_id},
      {"tokenizer.ggml.eom_token_id", v.eom_id},
  }};
  for (const auto& [key, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return Error("{}: token id {} is outside the vocabulary [0, {})", key, id, n);
    }
  }
  add_bos_default_ = v.add_bos.value_or(model_ == Model::kSentencePiece);

  token_ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) token_ids_.emplace(v.tokens[i], static_cast<int32_t>(i));

  if (model_ == Model::kByteLevelBpe) {
    if (v.merges.empty()) return Error("tokenizer.ggml.merges: missing or empty for model 'gpt2'");
    merge_ranks_.reserve(v.merges.size());
    for (size_t r = 0; r < v.merges.size(); ++r) {
      const std::string& m = v.merges[r];
      if (m.size() < 3 || m.find(' ', 1) == std::string::npos) {
        return Error("tokenizer.ggml.merges[{}]: '{}' is not of the form 'left right'", r, m);
      }
      merge_ranks_.emplace(m, static_cast<int32_t>(r));
    }
  } else {
    byte_tokens_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      if (auto id = find_token(fmt::format("<0x{:02X}>", b))) byte_tokens_[b] = *id;
    }
  }

  // Tokens matched verbatim in the input: user-defined always; control and unknown only when
  // the caller asks for special-token parsing (filtered at match time).
  special_by_first_byte_.assign(256, {});
  for (size_t i = 0; i < n; ++i) {
    const auto t = static_cast<TokenType>(v.types[i]);
    if (v.tokens[i].empty()) continue;
    if (t == TokenType::kUserDefined || t == TokenType::kControl || t == TokenType::kUnknown) {
      special_by_first_byte_[static_cast<uint8_t>(v.tokens[i][0])].push_back(
          static_cast<int32_t>(i));
    }
  }
  for (auto& bucket : special_by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
      return v.tokens[a].size() > v.tokens[b].size();
    });
  }
  return Status::ok();
}

TokenType Tokenizer::type_of(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return TokenType::kUndefined;
  return static_cast<TokenType>(vocab_.types[id]);
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return false;
  if (id == vocab_.eos_id || id == vocab_.eot_id || id == vocab_.eom_id) return true;
  if (!is_control(id)) return false;
  const std::string& text = vocab_.tokens[id];
  return std::find(kEndOfGenerationNames.begin(), kEndOfGenerationNames.end(), text) !=
         kEndOfGenerationNames.end();
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  auto it = token_ids_.find(std::string(text));
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return {};
  return vocab_.tokens[id];
}

}  // namespace ktx
