// ChatTemplate: glue between the public API and the engine in chat_template_{lexer,parser,eval,
// ops,builtins}.cpp. Converts ChatMessage lists and JSON contexts into template values.
#include "runtime/text/chat_template.h"

#include <nlohmann/json.hpp>

#include "runtime/text/chat_template_ast.h"

namespace ktx {
namespace {

using jinja::Value;

Value from_json(const nlohmann::json& j, int depth) {
  if (depth > 64) return Value::none();  // deeper than any chat message; refuse to recurse
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return Value::integer(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      jinja::ValueList items;
      for (const auto& e : j) items.push_back(from_json(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      jinja::ValueDict entries;
      for (auto it = j.begin(); it != j.end(); ++it) entries.emplace_back(it.key(), from_json(*it, depth + 1));
      return Value::dict(std::move(entries));
    }
    default: return Value::none();
  }
}

Expected<std::string> run(const std::shared_ptr<const std::vector<jinja::Stmt>>& body,
                          const jinja::ValueDict& globals) {
  if (!body) return Error("chat template: render() called on a template that was never parsed");
  return jinja::evaluate(*body, globals, jinja::Limits{});
}

}  // namespace

Expected<ChatTemplate> ChatTemplate::parse(const std::string& source) {
  const jinja::Limits limits;
  KTX_ASSIGN_OR_RETURN(std::vector<jinja::Token> tokens, jinja::lex(source));
  KTX_ASSIGN_OR_RETURN(jinja::Body body, jinja::parse_template(tokens, limits));
  ChatTemplate t;
  t.body_ = std::make_shared<const jinja::Body>(std::move(body));
  t.source_ = source;
  return t;
}

Expected<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt, const std::string& bos_token,
                                           const std::string& eos_token) const {
  jinja::ValueList msgs;
  for (const ChatMessage& m : messages) {
    msgs.push_back(Value::dict({{"role", Value::string(m.role)}, {"content", Value::string(m.content)}}));
  }
  const jinja::ValueDict globals = {{"messages", Value::list(std::move(msgs))},
                                    {"add_generation_prompt", Value::boolean(add_generation_prompt)},
                                    {"bos_token", Value::string(bos_token)},
                                    {"eos_token", Value::string(eos_token)}};
  return run(body_, globals);
}

Expected<std::string> ChatTemplate::render_json(const nlohmann::json& context) const {
  if (!context.is_object())
    return Error("chat template: render context must be a JSON object, got {}", context.type_name());
  const Value v = from_json(context, 0);
  return run(body_, v.entries());
}

}  // namespace ktx
