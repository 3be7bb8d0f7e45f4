// Real chat templates, verbatim: DeepSeek-V3 (tokenizer_config.json of deepseek-ai/DeepSeek-V3),
// Qwen3 (the April 2025 template shared by Qwen/Qwen3-30B-A3B and Qwen3-0.6B), Mixtral-8x7B-Instruct-v0.1 (original and the later revision with
// system-message support). Expected prompts are written by hand from reading each template, so
// they check the engine independently. Every prefix of every template is also parsed (and, when
// it parses, rendered) to show malformed input yields errors, never crashes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.h"

namespace ktx {
namespace {

const char* kDeepSeekV3 =
    R"TPL({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})TPL";

const char* kQwen3 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in message.content %}
                {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %})TPL";

const char* kMixtralV01 =
    R"TPL({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})TPL";

const char* kMixtralSystem = R"TPL({%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
)TPL";

const std::vector<ChatMessage> kChat = {{"system", "You are helpful."},
                                        {"user", "Hi"},
                                        {"assistant", "Hello! How can I help?"},
                                        {"user", "What is 2+2?"}};

std::string render(const char* src, const std::vector<ChatMessage>& msgs, bool gen, const std::string& bos,
                   const std::string& eos) {
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  EXPECT_TRUE(t.has_value()) << t.status().message();
  if (!t) return "<parse error>";
  Expected<std::string> out = t->render(msgs, gen, bos, eos);
  EXPECT_TRUE(out.has_value()) << out.status().message();
  return out ? *out : "<render error: " + out.status().message() + ">";
}

std::string render_json(const char* src, const nlohmann::json& ctx) {
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  if (!t) return "<parse error: " + t.status().message() + ">";
  Expected<std::string> out = t->render_json(ctx);
  return out ? *out : "<render error: " + out.status().message() + ">";
}

// A tool-using exchange: the assistant's first turn has no content, only a tool call.
// DeepSeek sends a null content with tool calls; Qwen3's template needs a string there.
nlohmann::json tool_chat(bool args_as_string, const nlohmann::json& call_content = nullptr) {
  nlohmann::json call = {{"type", "function"},
                         {"function", {{"name", "get_weather"}, {"arguments", nlohmann::json{{"city", "Paris"}}}}}};
  if (args_as_string) call["function"]["arguments"] = "{\"city\": \"Paris\"}";
  return nlohmann::json::array({{{"role", "user"}, {"content", "Weather?"}},
                                {{"role", "assistant"}, {"content", call_content}, {"tool_calls", {call}}},
                                {{"role", "tool"}, {"content", "22C"}},
                                {{"role", "assistant"}, {"content", "It is 22C."}}});
}

TEST(ChatTemplateModels, DeepSeekV3) {
  const std::string bos = "<｜begin▁of▁sentence｜>";
  EXPECT_EQ(render(kDeepSeekV3, kChat, true, bos, "<｜end▁of▁sentence｜>"),
            bos + "You are helpful.<｜User｜>Hi<｜Assistant｜>Hello! How can I help?<｜end▁of▁sentence｜>"
                  "<｜User｜>What is 2+2?<｜Assistant｜>");
  std::vector<ChatMessage> two_sys = {{"system", "A"}, {"system", "B"}, {"user", "Q"}};
  EXPECT_EQ(render(kDeepSeekV3, two_sys, false, bos, ""), bos + "A\n\nB<｜User｜>Q");
}

TEST(ChatTemplateModels, DeepSeekV3ToolCalls) {
  const std::string bos = "<｜begin▁of▁sentence｜>";
  const nlohmann::json ctx = {{"messages", tool_chat(true)}, {"bos_token", bos}};
  EXPECT_EQ(render_json(kDeepSeekV3, ctx),
            bos + "<｜User｜>Weather?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function"
                  "<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>"
                  "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>22C<｜tool▁output▁end｜>"
                  "<｜tool▁outputs▁end｜>It is 22C.<｜end▁of▁sentence｜>");
}

TEST(ChatTemplateModels, Qwen3) {
  EXPECT_EQ(render(kQwen3, kChat, true, "", "<|im_end|>"),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  // Reasoning is kept only for assistant turns after the last user query.
  std::vector<ChatMessage> think = {{"user", "Q1"}, {"assistant", "<think>\nold\n</think>\n\nA1"},
                                    {"user", "Q2"}, {"assistant", "<think>\nnew\n</think>\n\nA2"}};
  EXPECT_EQ(render(kQwen3, think, false, "", ""),
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
            "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nnew\n</think>\n\nA2<|im_end|>\n");
  const nlohmann::json no_think = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                   {"add_generation_prompt", true}, {"enable_thinking", false}};
  EXPECT_EQ(render_json(kQwen3, no_think),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateModels, Qwen3ToolCalls) {
  const nlohmann::json ctx = {{"messages", tool_chat(false, "")}, {"add_generation_prompt", false}};
  EXPECT_EQ(render_json(kQwen3, ctx),
            "<|im_start|>user\nWeather?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"
            "\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n22C\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is 22C.<|im_end|>\n");
}

TEST(ChatTemplateModels, MixtralOriginal) {
  const std::vector<ChatMessage> chat(kChat.begin() + 1, kChat.end());
  EXPECT_EQ(render(kMixtralV01, chat, true, "<s>", "</s>"),
            "<s>[INST] Hi [/INST]Hello! How can I help?</s>[INST] What is 2+2? [/INST]");
  Expected<ChatTemplate> t = ChatTemplate::parse(kMixtralV01);
  ASSERT_TRUE(t.has_value());
  Expected<std::string> sys = t->render(kChat, true, "<s>", "</s>");
  ASSERT_FALSE(sys.has_value());
  EXPECT_NE(sys.status().message().find("Conversation roles must alternate user/assistant/user/assistant/..."),
            std::string::npos)
      << sys.status().message();
  Expected<std::string> tool = t->render({{"user", "a"}, {"tool", "b"}}, false, "<s>", "</s>");
  ASSERT_FALSE(tool.has_value());
  EXPECT_NE(tool.status().message().find("Only user and assistant roles are supported!"), std::string::npos);
}

TEST(ChatTemplateModels, MixtralWithSystemMessage) {
  EXPECT_EQ(render(kMixtralSystem, kChat, true, "<s>", "</s>"),
            "<s> [INST] You are helpful.\n\nHi [/INST] Hello! How can I help?</s> [INST] What is 2+2? [/INST]");
  Expected<ChatTemplate> t = ChatTemplate::parse(kMixtralSystem);
  ASSERT_TRUE(t.has_value());
  Expected<std::string> bad = t->render({{"user", "a"}, {"user", "b"}}, false, "<s>", "</s>");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.status().message().find("After the optional system message"), std::string::npos);
}

TEST(ChatTemplateModels, EveryPrefixParsesOrFailsCleanly) {
  int parsed = 0, failed = 0;
  for (const char* tpl : {kDeepSeekV3, kQwen3, kMixtralV01, kMixtralSystem}) {
    const std::string src = tpl;
    for (size_t n = 0; n <= src.size(); ++n) {
      Expected<ChatTemplate> t = ChatTemplate::parse(src.substr(0, n));
      if (!t) {
        ++failed;
        EXPECT_EQ(t.status().message().rfind("chat template: ", 0), 0u) << t.status().message();
        continue;
      }
      ++parsed;
      Expected<std::string> out = t->render(kChat, true, "<s>", "</s>");  // may fail; must not crash
      if (!out) {
        EXPECT_FALSE(out.status().message().empty());
      }
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace ktx
