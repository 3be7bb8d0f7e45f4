// Request parsing and validation for the OpenAI routes (protocol.h). Each field is checked
// where it is read, and the first problem found is the answer: a 400 naming the field and
// what was expected, never an exception escaping to the HTTP layer.
#include "runtime/serve/protocol.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace ktx::serve {
namespace {

using json = nlohmann::json;

ApiError bad(std::string param, std::string message, std::string code = "invalid_value") {
  ApiError e;
  e.param = std::move(param);
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

ApiError wrong_type(const std::string& param, const char* want, const json& got) {
  return bad(param, fmt::format("'{}' must be {}, got {}", param, want, type_name(got)),
             "invalid_type");
}

// Reads an optional number field in [lo, hi] (null = absent).
std::optional<ApiError> read_number(const json& body, const char* key, double lo, double hi,
                                    float& out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return wrong_type(key, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    return bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, v));
  out = static_cast<float>(v);
  return std::nullopt;
}

// Reads an optional integer field in [lo, hi] (null = absent); a float with an integral value
// is accepted (JavaScript clients send 1.0 as 1 anyway).
std::optional<ApiError> read_int(const json& body, const char* key, int64_t lo, int64_t hi,
                                 std::optional<int64_t>& out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return wrong_type(key, "an integer", *it);
  int64_t v;
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15)
      return bad(key, fmt::format("'{}' must be an integer, got {}", key, d), "invalid_type");
    v = static_cast<int64_t>(d);
  } else if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) {
    return bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi,
                                it->get<uint64_t>()));
  } else {
    v = it->get<int64_t>();
  }
  if (v < lo || v > hi)
    return bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, v));
  out = v;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const char* key, bool& out) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return wrong_type(key, "a boolean", *it);
  out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_stop(const json& body, const ProtocolLimits& lim, GenParams& g) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  std::vector<std::string> stop;
  if (it->is_string()) {
    stop.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const json& s = (*it)[i];
      if (!s.is_string()) return wrong_type(fmt::format("stop[{}]", i), "a string", s);
      stop.push_back(s.get<std::string>());
    }
  } else {
    return wrong_type("stop", "a string or an array of strings", *it);
  }
  if (stop.size() > lim.max_stop)
    return bad("stop", fmt::format("'stop' has {} strings, at most {} are allowed", stop.size(),
                                   lim.max_stop));
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) return bad(fmt::format("stop[{}]", i), "stop strings must not be empty");
    if (stop[i].size() > lim.max_stop_bytes)
      return bad(fmt::format("stop[{}]", i), fmt::format("stop string of {} bytes exceeds {}",
                                                         stop[i].size(), lim.max_stop_bytes));
  }
  g.stop = std::move(stop);
  return std::nullopt;
}

// Everything but the prompt: sampling, lengths, stop, streaming.
std::optional<ApiError> read_gen(const json& body, const ProtocolLimits& lim, GenParams& g) {
  SamplerParams& sp = g.sampling;
  sp.temperature = 1.0f, sp.top_p = 1.0f, sp.top_k = 0, sp.min_p = 0.0f;
  sp.repeat_penalty = 1.0f, sp.repeat_last_n = 64;
  std::optional<int64_t> v;
  if (auto e = read_int(body, "max_tokens", 1, lim.max_tokens, v)) return e;
  if (auto e = read_int(body, "max_completion_tokens", 1, lim.max_tokens, v)) return e;
  g.max_tokens = v.value_or(0);
  if (auto e = read_number(body, "temperature", 0, 2, sp.temperature)) return e;
  if (auto e = read_number(body, "top_p", 0, 1, sp.top_p)) return e;
  if (auto e = read_number(body, "min_p", 0, 1, sp.min_p)) return e;
  if (auto e = read_number(body, "presence_penalty", -2, 2, g.presence_penalty)) return e;
  if (auto e = read_number(body, "frequency_penalty", -2, 2, g.frequency_penalty)) return e;
  if (auto e = read_number(body, "repetition_penalty", 0.01, 10, sp.repeat_penalty)) return e;
  v.reset();
  if (auto e = read_int(body, "top_k", 0, 1 << 20, v)) return e;
  sp.top_k = static_cast<int>(v.value_or(0));
  v.reset();
  if (auto e = read_int(body, "seed", INT64_MIN, INT64_MAX, v)) return e;
  if (v) sp.seed = static_cast<uint64_t>(*v), g.seed_given = true;
  v.reset();
  if (auto e = read_int(body, "n", 1, 1 << 20, v)) return e;
  if (v && *v != 1) return bad("n", fmt::format("'n' must be 1 (got {}): one choice per request", *v));
  if (auto e = read_stop(body, lim, g)) return e;
  if (auto e = read_bool(body, "stream", g.stream)) return e;
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return wrong_type("stream_options", "an object", *it);
    auto u = it->find("include_usage");
    if (u != it->end() && !u->is_null()) {
      if (!u->is_boolean()) return wrong_type("stream_options.include_usage", "a boolean", *u);
      g.include_usage = u->get<bool>();
    }
  }
  bool logprobs = false;
  if (auto e = read_bool(body, "logprobs", logprobs)) return e;
  if (logprobs) return bad("logprobs", "'logprobs' is not supported by this server", "unsupported");
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string())
      return wrong_type("response_format", "an object with a string 'type'", *it);
    if ((*it)["type"] != "text")
      return bad("response_format", fmt::format("response_format type '{}' is not supported",
                                                (*it)["type"].get<std::string>()),
                 "unsupported");
  }
  if (auto st = Sampler::validate(sp); !st) return bad("", st.message());
  return std::nullopt;
}

// content: a string, null (assistant turns with tool calls), or text parts.
std::optional<ApiError> read_content(const json& msg, const std::string& at, const std::string& role,
                                     std::string& out) {
  auto it = msg.find("content");
  const std::string param = at + ".content";
  if (it == msg.end() || it->is_null()) {
    if (role == "assistant") return std::nullopt;
    return bad(param, fmt::format("'{}' is required for role '{}'", param, role), "missing_field");
  }
  if (it->is_string()) {
    out = it->get<std::string>();
    return std::nullopt;
  }
  if (!it->is_array()) return wrong_type(param, "a string or an array of content parts", *it);
  for (size_t j = 0; j < it->size(); ++j) {
    const json& part = (*it)[j];
    const std::string pp = fmt::format("{}[{}]", param, j);
    if (!part.is_object()) return wrong_type(pp, "an object", part);
    auto t = part.find("type");
    if (t == part.end() || !t->is_string())
      return bad(pp + ".type", fmt::format("'{}.type' must be a string", pp), "missing_field");
    if (*t != "text")
      return bad(pp + ".type", fmt::format("content part type '{}' is not supported (text only)",
                                           t->get<std::string>()), "unsupported");
    auto x = part.find("text");
    if (x == part.end() || !x->is_string())
      return bad(pp + ".text", fmt::format("'{}.text' must be a string", pp), "missing_field");
    out += x->get<std::string>();
  }
  return std::nullopt;
}

std::optional<ApiError> read_messages(const json& body, ApiRequest& out) {
  auto it = body.find("messages");
  if (it == body.end()) return bad("messages", "'messages' is required", "missing_field");
  if (!it->is_array()) return wrong_type("messages", "an array", *it);
  if (it->empty()) return bad("messages", "'messages' must not be empty");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string at = fmt::format("messages[{}]", i);
    if (!m.is_object()) return wrong_type(at, "an object", m);
    auto r = m.find("role");
    if (r == m.end()) return bad(at + ".role", fmt::format("'{}.role' is required", at), "missing_field");
    if (!r->is_string()) return wrong_type(at + ".role", "a string", *r);
    std::string role = r->get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      return bad(at + ".role", fmt::format("unknown role '{}' in {} (system, developer, user, "
                                           "assistant, tool)", r->get<std::string>(), at));
    ChatMessage cm{role, ""};
    if (auto e = read_content(m, at, role, cm.content)) return e;
    out.messages.push_back(std::move(cm));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json& body, const ProtocolLimits& lim, ApiRequest& out) {
  auto it = body.find("prompt");
  if (it == body.end()) return bad("prompt", "'prompt' is required", "missing_field");
  if (it->is_string()) {
    out.prompt = it->get<std::string>();
    if (out.prompt.empty()) return bad("prompt", "'prompt' must not be empty");
    return std::nullopt;
  }
  // One prompt as an array: a single string, or token ids.
  if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    out.prompt = (*it)[0].get<std::string>();
    if (out.prompt.empty()) return bad("prompt", "'prompt' must not be empty");
    return std::nullopt;
  }
  if (!it->is_array() || it->empty())
    return wrong_type("prompt", "a string or a non-empty array of token ids", *it);
  for (size_t i = 0; i < it->size(); ++i) {
    const json& t = (*it)[i];
    const std::string p = fmt::format("prompt[{}]", i);
    if (!t.is_number_integer()) return wrong_type(p, "a token id (integer); one prompt per request", t);
    const int64_t id = t.get<int64_t>();
    if (id < 0 || (lim.n_vocab > 0 && id >= lim.n_vocab))
      return bad(p, fmt::format("token id {} is out of range [0, {})", id, lim.n_vocab));
    out.prompt_ids.push_back(static_cast<int32_t>(id));
  }
  return std::nullopt;
}

}  // namespace

std::string error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type},
              {"param", e.param.empty() ? json() : json(e.param)},
              {"code", e.code.empty() ? json() : json(e.code)}};
  return json{{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::optional<ApiError> parse_request(ApiRequest::Kind kind, std::string_view body,
                                      const ProtocolLimits& limits, ApiRequest& out) {
  out = ApiRequest{};
  out.kind = kind;
  if (!valid_utf8(body))
    return bad("", "the request body is not valid UTF-8", "invalid_encoding");
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Parse again with exceptions for the parser's own description of where it failed.
    std::string why = "malformed JSON";
    try {
      (void)json::parse(body.begin(), body.end());
    } catch (const json::parse_error& e) {
      why = e.what();
    }
    return bad("", "the request body is not valid JSON: " + why, "invalid_json");
  }
  if (!j.is_object()) return wrong_type("body", "a JSON object", j);
  if (auto it = j.find("model"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("model", "a string", *it);
    out.model = it->get<std::string>();
  }
  if (kind == ApiRequest::Kind::chat) {
    if (auto e = read_messages(j, out)) return e;
  } else {
    if (auto e = read_prompt(j, limits, out)) return e;
  }
  return read_gen(j, limits, out.gen);
}

}  // namespace ktx::serve
