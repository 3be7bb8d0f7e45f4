// The OpenAI protocol of `ktx-run serve`: request bodies of /v1/chat/completions and
// /v1/completions parsed and validated into one ApiRequest, and errors in OpenAI's shape
// ({"error": {"message", "type", "param", "code"}}). Validation is complete before a request
// reaches the scheduler: every wrong type, missing field, unknown role, value out of range or
// invalid UTF-8 becomes a 4xx naming the field. Unknown fields are ignored (clients send many).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/engine/sampler.h"
#include "runtime/text/chat_template.h"

namespace ktx::serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the field at fault ("messages[1].role"); empty: none
  std::string code;   // machine-readable ("invalid_value"); empty: null
};
// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
std::string error_body(const ApiError& e);

// What every generation request carries besides its prompt.
struct GenParams {
  int64_t max_tokens = 0;  // 0: until the end of generation or the context is full
  SamplerParams sampling;  // OpenAI's defaults: temperature 1, top_p 1, top_k and min_p off
  bool seed_given = false;
  float presence_penalty = 0, frequency_penalty = 0;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct ApiRequest {
  enum class Kind { chat, completion } kind = Kind::chat;
  std::string model;                  // as sent (may be empty)
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completion, text
  std::vector<int32_t> prompt_ids;    // completion, token ids (when the prompt was an array)
  GenParams gen;
};

// Limits the parser enforces (the server's flags).
struct ProtocolLimits {
  int64_t max_tokens = 1 << 20;  // larger max_tokens is refused as absurd
  size_t max_stop = 16;          // stop strings per request
  size_t max_stop_bytes = 256;   // bytes per stop string
  int32_t n_vocab = 0;           // token-id prompts must be below (0: not checked)
};

// Parses and validates a request body. nullopt: `out` holds the request.
std::optional<ApiError> parse_request(ApiRequest::Kind kind, std::string_view body,
                                      const ProtocolLimits& limits, ApiRequest& out);

// Whether `s` is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace ktx::serve
