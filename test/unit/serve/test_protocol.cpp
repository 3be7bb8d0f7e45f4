// The OpenAI request parser: good requests parse with OpenAI's defaults; every kind of bad
// input (malformed JSON, invalid UTF-8, wrong types, missing fields, unknown roles, values out
// of range, unsupported features) is a 400 naming the field. Also the error body's shape, the
// stop-string / reasoning filter and the constant-time key compare.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/serve/protocol.h"
#include "runtime/serve/server.h"
#include "runtime/serve/text_filter.h"

namespace ktx::serve {
namespace {

using json = nlohmann::json;

std::optional<ApiError> chat(const std::string& body, ApiRequest& r) {
  ProtocolLimits lim;
  lim.n_vocab = 400;
  return parse_request(ApiRequest::Kind::chat, body, lim, r);
}

TEST(Protocol, ParsesAChatRequestWithDefaults) {
  ApiRequest r;
  auto e = chat(R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
                  {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]},
                  {"role":"assistant","content":null}]})", r);
  ASSERT_FALSE(e) << e->message;
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.gen.sampling.temperature, 1.0f);
  EXPECT_EQ(r.gen.sampling.top_k, 0);
  EXPECT_EQ(r.gen.max_tokens, 0);
  EXPECT_FALSE(r.gen.stream);
}

TEST(Protocol, ReadsEverySamplingField) {
  ApiRequest r;
  auto e = chat(R"({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":7,
                  "temperature":0,"top_p":0.5,"top_k":3,"min_p":0.1,"seed":-5,"stop":["a","bc"],
                  "presence_penalty":0.5,"frequency_penalty":-1,"repetition_penalty":1.1,"n":1,
                  "stream":true,"stream_options":{"include_usage":true},"logprobs":false,
                  "unknown_field":{"ignored":1}})", r);
  ASSERT_FALSE(e) << e->message;
  EXPECT_EQ(r.gen.max_tokens, 7);
  EXPECT_EQ(r.gen.sampling.temperature, 0.0f);
  EXPECT_EQ(r.gen.sampling.top_k, 3);
  EXPECT_TRUE(r.gen.seed_given);
  EXPECT_EQ(r.gen.sampling.seed, static_cast<uint64_t>(int64_t{-5}));
  EXPECT_EQ(r.gen.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_FLOAT_EQ(r.gen.frequency_penalty, -1.0f);
  EXPECT_TRUE(r.gen.stream);
  EXPECT_TRUE(r.gen.include_usage);
}

struct BadCase {
  const char* body;
  const char* param;     // expected param ("" = null)
  const char* fragment;  // expected in the message
};

TEST(Protocol, EveryBadInputIsA400NamingTheProblem) {
  const BadCase cases[] = {
      {"{\"messages\": [", "", "not valid JSON"},
      {"[1,2]", "body", "must be a JSON object"},
      {"{}", "messages", "'messages' is required"},
      {R"({"messages":"hi"})", "messages", "must be an array"},
      {R"({"messages":[]})", "messages", "must not be empty"},
      {R"({"messages":[1]})", "messages[0]", "must be an object"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role", "is required"},
      {R"({"messages":[{"role":7,"content":"x"}]})", "messages[0].role", "must be a string"},
      {R"({"messages":[{"role":"wizard","content":"x"}]})", "messages[0].role", "unknown role 'wizard'"},
      {R"({"messages":[{"role":"user"}]})", "messages[0].content", "is required"},
      {R"({"messages":[{"role":"user","content":5}]})", "messages[0].content", "must be a string or"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content[0].type", "not supported"},
      {R"({"messages":[{"role":"user","content":"x"}],"model":3})", "model", "must be a string"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})", "max_tokens", "between 1 and"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1e12})", "max_tokens", "between 1 and"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":-3})", "max_tokens", "between 1 and"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":2.5})", "max_tokens", "must be an integer"},
      {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"10"})", "max_tokens", "must be an integer"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":3})", "temperature", "between 0 and 2"},
      {R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})", "temperature", "must be a number"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_p":1.5})", "top_p", "between 0 and 1"},
      {R"({"messages":[{"role":"user","content":"x"}],"top_k":-1})", "top_k", "between 0 and"},
      {R"({"messages":[{"role":"user","content":"x"}],"presence_penalty":9})", "presence_penalty", "between -2 and 2"},
      {R"({"messages":[{"role":"user","content":"x"}],"n":2})", "n", "must be 1"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":5})", "stop", "a string or an array"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":["a",1]})", "stop[1]", "must be a string"},
      {R"({"messages":[{"role":"user","content":"x"}],"stop":[""]})", "stop[0]", "must not be empty"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})", "stream", "must be a boolean"},
      {R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}})", "stream_options.include_usage", "must be a boolean"},
      {R"({"messages":[{"role":"user","content":"x"}],"logprobs":true})", "logprobs", "not supported"},
      {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})", "response_format", "not supported"},
      {R"({"messages":[{"role":"user","content":"\ud800"}]})", "", "not valid JSON"},
  };
  for (const BadCase& c : cases) {
    ApiRequest r;
    auto e = chat(c.body, r);
    ASSERT_TRUE(e) << c.body;
    EXPECT_EQ(e->status, 400) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body;
    EXPECT_NE(e->message.find(c.fragment), std::string::npos) << c.body << " -> " << e->message;
    json j = json::parse(error_body(*e));
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    EXPECT_TRUE(j["error"].contains("message") && j["error"].contains("param") && j["error"].contains("code"));
  }
  ApiRequest r;
  auto e = chat("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", r);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("not valid UTF-8"), std::string::npos) << e->message;
}

TEST(Protocol, CompletionPrompts) {
  ProtocolLimits lim;
  lim.n_vocab = 400;
  ApiRequest r;
  EXPECT_FALSE(parse_request(ApiRequest::Kind::completion, R"({"prompt":"once"})", lim, r));
  EXPECT_EQ(r.prompt, "once");
  EXPECT_FALSE(parse_request(ApiRequest::Kind::completion, R"({"prompt":[1,2,3]})", lim, r));
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  auto e = parse_request(ApiRequest::Kind::completion, R"({"prompt":[1,400]})", lim, r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "prompt[1]");
  e = parse_request(ApiRequest::Kind::completion, R"({"max_tokens":3})", lim, r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "prompt");
  e = parse_request(ApiRequest::Kind::completion, R"({"prompt":""})", lim, r);
  ASSERT_TRUE(e);
}

TEST(Utf8, AcceptsValidAndRejectsBrokenSequences) {
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

TEST(TextFilter, StopStringsAreCutAndNeverLeakAcrossPieces) {
  TextFilter f({"STOP", "\n\n"}, false, false);
  std::string sent;
  for (const char* piece : {"Hello ", "wor", "ld ST", "O"}) sent += f.push(piece).content;
  EXPECT_EQ(sent, "Hello world ");  // "ST", "O" held back
  auto o = f.push("P and more");
  EXPECT_TRUE(o.stopped);
  EXPECT_EQ(sent + o.content, "Hello world ");
  EXPECT_TRUE(f.push("x").content.empty());
  TextFilter g({"STOP"}, false, false);
  std::string s2 = g.push("a ST").content;
  s2 += g.flush().content;  // ended without a match: the held text goes out
  EXPECT_EQ(s2, "a ST");
}

TEST(TextFilter, ThinkBlocksGoToReasoning) {
  TextFilter f({}, true, false);
  std::string content, reasoning;
  for (const char* piece : {"<th", "ink>let me ", "think</th", "ink>\n\nThe answer", " is 4."}) {
    auto o = f.push(piece);
    content += o.content, reasoning += o.reasoning;
  }
  auto o = f.flush();
  content += o.content, reasoning += o.reasoning;
  EXPECT_EQ(reasoning, "let me think");
  EXPECT_EQ(content, "The answer is 4.");
  // The prompt opened the block; no tag in the output before </think>.
  TextFilter g({}, true, true);
  auto a = g.push("plan</think>done");
  EXPECT_EQ(a.reasoning, "plan");
  EXPECT_EQ(a.content, "done");
  // Off: everything is content.
  TextFilter h({}, false, false);
  EXPECT_EQ(h.push("<think>x</think>y").content, "<think>x</think>y");
  // A tag later in the text is content.
  TextFilter k({}, true, false);
  EXPECT_EQ(k.push("hi <think>").content + k.flush().content, "hi <think>");
}

TEST(ApiKey, ConstantTimeCompare) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secret2"));
  EXPECT_FALSE(constant_time_equal("", "secret"));
  EXPECT_TRUE(constant_time_equal("", ""));
}

}  // namespace
}  // namespace ktx::serve
