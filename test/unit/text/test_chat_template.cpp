// Chat-template language tests: conditions, loops, set/namespace, filters, tests, methods,
// slicing, whitespace control, and errors with line/col. Expected strings are written by hand
// from Jinja's documented semantics.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.h"

namespace ktx {
namespace {

// Renders `src` with `vars` (a JSON object); fails the test on any error.
std::string R(const std::string& src, const nlohmann::json& vars = nlohmann::json::object()) {
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  EXPECT_TRUE(t.has_value()) << t.status().message();
  if (!t) return "<parse error>";
  Expected<std::string> out = t->render_json(vars);
  EXPECT_TRUE(out.has_value()) << out.status().message();
  return out ? *out : "<render error>";
}

std::string parse_error(const std::string& src) {
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  return t ? "" : t.status().message();
}

std::string render_error(const std::string& src, const nlohmann::json& vars = nlohmann::json::object()) {
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  if (!t) return "parse: " + t.status().message();
  Expected<std::string> out = t->render_json(vars);
  return out ? "" : out.status().message();
}

TEST(ChatTemplate, ShippedTemplate) {
  const char* src = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eos|>{% endfor %}"
                    "{% if add_generation_prompt %}<|assistant|>{% endif %}";
  Expected<ChatTemplate> t = ChatTemplate::parse(src);
  ASSERT_TRUE(t.has_value()) << t.status().message();
  std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                                   {"user", "2+2?"}};
  Expected<std::string> a = t->render(msgs, true, "<s>", "</s>");
  ASSERT_TRUE(a.has_value()) << a.status().message();
  EXPECT_EQ(*a, "<|system|>Be brief.<|eos|><|user|>Hi<|eos|><|assistant|>Hello!<|eos|><|user|>2+2?<|eos|>"
                "<|assistant|>");
  Expected<std::string> b = t->render({}, false, "", "");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, "");
}

TEST(ChatTemplate, Conditions) {
  const char* src = "{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}";
  EXPECT_EQ(R(src, {{"x", 3}}), "big");
  EXPECT_EQ(R(src, {{"x", 2}}), "two");
  EXPECT_EQ(R(src, {{"x", 1.5}}), "small");
  EXPECT_EQ(R("{{ 'y' if a and not b else 'n' }}", {{"a", true}, {"b", false}}), "y");
  EXPECT_EQ(R("{{ 'y' if a and not b else 'n' }}", {{"a", true}, {"b", true}}), "n");
  EXPECT_EQ(R("{{ a or 'dflt' }}|{{ a and 'x' }}", {{"a", ""}}), "dflt|");
  EXPECT_EQ(R("{{ 'ab' in 'cabd' }} {{ 3 in [1, 2] }} {{ 'k' not in {'k': 1} }}"), "True False False");
  EXPECT_EQ(R("{{ 1 != 1.0 }} {{ 'a' < 'b' }} {{ none == none }}"), "False True True");
}

TEST(ChatTemplate, LoopsAndLoopVariable) {
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index0 }}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}"
              "{% endfor %}", {{"xs", {"a", "b", "c"}}}),
            "01a,12b,23c");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.first }}{{ loop.revindex }}{{ loop.length }} {% endfor %}",
              {{"xs", {1, 2}}}),
            "True22 False12 ");
  EXPECT_EQ(R("{% for x in xs if x % 2 == 1 %}{{ x }}{{ loop.index }}{% endfor %}", {{"xs", {1, 2, 3, 4, 5}}}),
            "113253");
  EXPECT_EQ(R("{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", {{"xs", nlohmann::json::array()}}), "empty");
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", "x"}}}}),
            "a=1;b=x;");
  EXPECT_EQ(R("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}"),
            "012531");
  EXPECT_EQ(R("{% for x in xs %}{% for y in xs %}{{ x }}{{ y }} {% endfor %}{% endfor %}", {{"xs", {1, 2}}}),
            "11 12 21 22 ");
}

TEST(ChatTemplate, SetScopingAndNamespace) {
  // A plain set inside a loop does not leak out; a namespace attribute does.
  EXPECT_EQ(R("{% set n = 0 %}{% set ns = namespace(n=0, s='') %}{% for x in xs %}{% set n = n + x %}"
              "{% set ns.n = ns.n + x %}{% set ns.s = ns.s + x|string %}{% endfor %}{{ n }} {{ ns.n }} {{ ns.s }}",
              {{"xs", {1, 2, 3}}}),
            "0 6 123");
  EXPECT_EQ(R("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  EXPECT_NE(render_error("{% set d = {'a': 1} %}{% set d.a = 2 %}").find("only namespace"), std::string::npos);
}

TEST(ChatTemplate, Filters) {
  EXPECT_EQ(R("{{ xs|length }} {{ 'héllo'|length }} {{ d|length }} {{ missing|length }}",
              {{"xs", {1, 2, 3}}, {"d", {{"a", 1}}}}),
            "3 5 1 0");
  EXPECT_EQ(R("[{{ '  a b \n'|trim }}] {{ 'MiX'|lower }}{{ 'MiX'|upper }}"), "[a b] mixMIX");
  EXPECT_EQ(R("{{ v|tojson }}", {{"v", {{"a", {1, 2.5, "q\"\n"}}, {"b", nullptr}, {"c", true}}}}),
            "{\"a\": [1, 2.5, \"q\\\"\\n\"], \"b\": null, \"c\": true}");
  EXPECT_EQ(R("{{ missing|default('d') }} {{ ''|default('e') }}|{{ ''|default('e', true) }}"), "d |e");
  EXPECT_EQ(R("{{ xs|first }}{{ xs|last }} {{ xs|join('-') }} {{ 'abc'|first }}", {{"xs", {1, 2, 3}}}), "13 1-2-3 a");
  EXPECT_EQ(R("{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {{"d", {{"x", 1}}}}), "x1");
  EXPECT_EQ(R("{{ 'a.b.c'|replace('.', '/') }} {{ 42|string + '!' }} {{ xs|list|length }}", {{"xs", {1}}}),
            "a/b/c 42! 1");
  EXPECT_EQ(R("{{ messages|length - 1 }}", {{"messages", {1, 2}}}), "1");
}

TEST(ChatTemplate, TestsAndMethods) {
  EXPECT_EQ(R("{{ a is defined }}{{ b is defined }}{{ n is none }}{{ a is string }}{{ a is not string }}",
              {{"a", "s"}, {"n", nullptr}}),
            "TrueFalseTrueTrueFalse");
  EXPECT_EQ(R("{{ f is false }}{{ 0 is false }}{{ 3 is odd }}{{ 1.0 is number }}", {{"f", false}}),
            "TrueFalseTrueTrue");
  EXPECT_EQ(R("{{ s.startswith('<a>') }}{{ s.endswith('</a>') }}{{ s.startswith('x') }}", {{"s", "<a>hi</a>"}}),
            "TrueTrueFalse");
  EXPECT_EQ(R("{{ s.split('</think>')[-1] }}|{{ s.split('</think>')[0].split('<think>')[-1] }}",
              {{"s", "<think>r</think>ans"}}),
            "ans|r");
  EXPECT_EQ(R("[{{ ' \nx\n '.strip() }}][{{ '\n\nx\n'.lstrip('\n') }}][{{ 'x\n\n'.rstrip('\n') }}]"
              "[{{ 'xyyx'.strip('x') }}]"),
            "[x][x\n][x][yy]");
  EXPECT_EQ(R("{{ ' a  b '.split()|join(',') }} {{ 'a,b,c'.split(',', 1)|join('|') }}"), "a,b a|b,c");
  EXPECT_EQ(R("{{ d.get('a') }} {{ d.get('z', 'dz') }} {{ d.get('z') }} {{ d.a }} {{ d.keys()|join }}",
              {{"d", {{"a", 1}}}}),
            "1 dz None 1 a");
}

TEST(ChatTemplate, SlicingAndIndexing) {
  const nlohmann::json v = {{"xs", {0, 1, 2, 3, 4}}, {"s", "héllo"}};
  EXPECT_EQ(R("{{ xs[::-1]|join }} {{ xs[1:]|join }} {{ xs[:-2]|join }} {{ xs[1:4:2]|join }} {{ xs[-1] }}", v),
            "43210 1234 012 13 4");
  EXPECT_EQ(R("{{ s[1:3] }} {{ s[::-1] }} {{ s[1] }} [{{ xs[9] }}] {{ xs[10:]|length }}", v), "él olléh é [] 0");
  EXPECT_EQ(R("{% for m in ms[::-1] %}{{ m.role }}{% endfor %}",
              {{"ms", {{{"role", "a"}}, {{"role", "b"}}}}}),
            "ba");
}

TEST(ChatTemplate, ArithmeticAndStrings) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }}"),
            "3 -4 1 2 3.5 1024 7");
  EXPECT_EQ(R("{{ 'a' + 'b' ~ 1 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ {'k': 'v'} }} {{ none }} {{ true }}"),
            "ab1 ababab [1, 2] {'k': 'v'} None True");
  EXPECT_NE(render_error("{{ 'a' + 1 }}").find("unsupported operand types for +: string and int"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 1 // 0 }}").find("division by zero"), std::string::npos);
}

TEST(ChatTemplate, WhitespaceControl) {
  EXPECT_EQ(R("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(R("a  {{- 'x' -}}  \n c"), "axc");
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before one goes.
  EXPECT_EQ(R("{% if true %}\n  x\n    {% endif %}\ny"), "  x\ny");
  EXPECT_EQ(R("a {% if true %}b{% endif %}"), "a b");  // not at line start: kept
  EXPECT_EQ(R("{{ 'x' }}\ny"), "x\ny");                 // expressions do not trim
  EXPECT_EQ(R("a{# comment #}b {#- c -#} d"), "abd");
}

TEST(ChatTemplate, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_EQ(parse_error("line one\n{% if x %}\n  {% if y x %}{% endif %}{% endif %}"),
            "chat template: line 3 col 11: expected '%}' after 'if' condition, found 'x'");
  EXPECT_EQ(parse_error("{% frobnicate %}"), "chat template: line 1 col 4: unknown tag 'frobnicate'");
  EXPECT_EQ(parse_error("ab\n{% for x in xs %}{{ x }}"),
            "chat template: line 2 col 4: unclosed 'for' block: expected '{% endfor %}' before end of "
            "template");
  EXPECT_EQ(parse_error("{% endif %}"),
            "chat template: line 1 col 4: unexpected 'endif' with no open block it could close");
  EXPECT_EQ(parse_error("{{ x "), "chat template: line 1 col 1: unclosed tag: expected '}}' before end of template");
  EXPECT_EQ(parse_error("{{ 'abc }}"), "chat template: line 1 col 4: unterminated string literal");
  EXPECT_EQ(parse_error("{% macro m() %}{% endmacro %}"), "chat template: line 1 col 4: unsupported tag 'macro'");
  EXPECT_EQ(render_error("\n  {{ x|frob }}"), "chat template: line 2 col 8: unknown filter 'frob'");
  EXPECT_EQ(render_error("{{ x is frob }}"), "chat template: line 1 col 9: unknown test 'frob'");
  EXPECT_EQ(render_error("{{ m.a.b }}"), "chat template: line 1 col 5: 'm' is undefined");
}

TEST(ChatTemplate, RaiseExceptionBecomesError) {
  const std::string err = render_error("ok{{ raise_exception('Roles must alternate') }}");
  EXPECT_EQ(err, "chat template: line 1 col 6: raise_exception: Roles must alternate");
}

TEST(ChatTemplate, EvaluationIsBounded) {
  // 9e6 loop iterations exceed the 5e6 step budget: an error, not a long render.
  EXPECT_NE(render_error("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}")
                .find("steps"),
            std::string::npos);
  EXPECT_NE(render_error("{{ 'x' * 100000000 }}").find("exceeds"), std::string::npos);
  EXPECT_NE(render_error("{% for i in range(100000000) %}{% endfor %}").find("range()"), std::string::npos);
  // Output growth by doubling a namespace string is caught by the size cap.
  EXPECT_NE(render_error("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                         "{% endfor %}")
                .find("exceeds"),
            std::string::npos);
  // Deep nesting is refused at parse time instead of overflowing the stack.
  EXPECT_NE(parse_error("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("deeper"),
            std::string::npos);
  EXPECT_NE(parse_error(std::string(20000, '-') + "1").find(""), std::string::npos);
  std::string deep_ifs;
  for (int i = 0; i < 1000; ++i) deep_ifs += "{% if true %}";
  EXPECT_NE(parse_error(deep_ifs).find("deeper"), std::string::npos);
}

}  // namespace
}  // namespace ktx
