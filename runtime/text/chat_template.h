// Chat templates: the Jinja programs shipped in GGUF metadata (tokenizer.chat_template) that turn
// a conversation into the prompt text a model was trained on. We implement the subset of Jinja
// that real templates use (DeepSeek-V3, Qwen3, Mixtral): if/elif/else, for (loop.*, filters,
// else), set and namespace(), tests, filters, string/dict methods, slicing, raise_exception().
// Rendering follows transformers' apply_chat_template (trim_blocks and lstrip_blocks on).
// Parsing and rendering never abort or throw on user input and are bounded in time and output.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace ktx {

namespace jinja {
struct Stmt;
}

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool"
  std::string content;
};

class ChatTemplate {
 public:
  // Syntax errors read "chat template: line 3 col 14: expected '%}' after ...".
  static Expected<ChatTemplate> parse(const std::string& source);

  // Renders with the variables messages (dicts with role/content), add_generation_prompt,
  // bos_token and eos_token. raise_exception('msg') in the template becomes an error with msg.
  Expected<std::string> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const std::string& bos_token, const std::string& eos_token) const;

  // Full control over the variables: every key of the JSON object `context` becomes a template
  // variable (e.g. messages carrying tool_calls or a null content, tools, enable_thinking).
  // Objects become dicts with nlohmann's key order (sorted), which only tojson output shows.
  Expected<std::string> render_json(const nlohmann::json& context) const;

  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<const std::vector<jinja::Stmt>> body_;
  std::string source_;
};

}  // namespace ktx
