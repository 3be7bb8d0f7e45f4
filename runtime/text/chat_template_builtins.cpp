// Filters, tests and methods available to chat templates: what the DeepSeek-V3, Qwen3 and
// Mixtral templates use plus the obvious neighbours. Semantics follow Jinja's filters and
// Python's str/dict methods (e.g. split() without a separator splits on whitespace runs and
// drops empty pieces; strip(chars) strips any of those characters). Anything unknown is an
// error that names it, never a silent empty string.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "runtime/text/chat_template_ast.h"

namespace ktx::jinja {
namespace {

const char* const kPyWhitespace = " \t\n\r\v\f";

Status want_args(const std::string& what, const std::vector<Value>& args, size_t lo, size_t hi) {
  if (args.size() < lo || args.size() > hi)
    return Error("{} takes {} to {} arguments, got {}", what, lo, hi, args.size());
  return Status::ok();
}

Expected<std::string> string_arg(const std::string& what, const Value& v) {
  if (!v.is(Kind::kString)) return Error("{} needs a string argument, not a {}", what, v.type_name());
  return v.as_string();
}

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e && chars.find(s[b]) != std::string::npos) ++b;
  }
  if (right) {
    while (e > b && chars.find(s[e - 1]) != std::string::npos) --e;
  }
  return s.substr(b, e - b);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
  if (from.empty()) return s;  // Python inserts between characters; no template needs it
  std::string out;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out += s.substr(pos, hit - pos) + to;
    pos = hit + from.size();
  }
  return out + s.substr(pos);
}

Value split(const std::string& s, const Value* sep, int64_t maxsplit) {
  ValueList parts;
  if (!sep || sep->is(Kind::kNone)) {
    size_t i = 0;
    while (true) {
      while (i < s.size() && std::strchr(kPyWhitespace, s[i]) && s[i]) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(Value::string(strip(s.substr(i), kPyWhitespace, false, true)));
        break;
      }
      size_t j = i;
      while (j < s.size() && !(std::strchr(kPyWhitespace, s[j]) && s[j])) ++j;
      parts.push_back(Value::string(s.substr(i, j - i)));
      i = j;
    }
    return Value::list(std::move(parts));
  }
  const std::string& d = sep->as_string();
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    const size_t hit = s.find(d, pos);
    if (hit == std::string::npos) break;
    parts.push_back(Value::string(s.substr(pos, hit - pos)));
    pos = hit + d.size();
  }
  parts.push_back(Value::string(s.substr(pos)));
  return Value::list(std::move(parts));
}

Value items_of(const Value& d) {
  ValueList r;
  for (const auto& [k, v] : d.entries()) r.push_back(Value::list({Value::string(k), v}));
  return Value::list(std::move(r));
}

std::string case_map(std::string s, bool upper) {
  for (char& c : s) c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c))
                                                : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Expected<Value> string_method(const std::string& s, const std::string& name,
                              const std::vector<Value>& args, bool& found) {
  if (name == "startswith" || name == "endswith") {
    KTX_RETURN_IF_ERROR(want_args(name + "()", args, 1, 1));
    std::vector<Value> options = args[0].is(Kind::kList) ? args[0].items() : args;
    for (const Value& o : options) {
      KTX_ASSIGN_OR_RETURN(std::string p, string_arg(name + "()", o));
      const bool hit = p.size() <= s.size() &&
                       (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                             : s.compare(s.size() - p.size(), p.size(), p) == 0);
      if (hit) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    KTX_RETURN_IF_ERROR(want_args(name + "()", args, 0, 1));
    std::string chars = kPyWhitespace;
    if (!args.empty() && !args[0].is(Kind::kNone)) {
      KTX_ASSIGN_OR_RETURN(chars, string_arg(name + "()", args[0]));
    }
    return Value::string(strip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split") {
    KTX_RETURN_IF_ERROR(want_args("split()", args, 0, 2));
    if (!args.empty() && !args[0].is(Kind::kNone)) {
      KTX_ASSIGN_OR_RETURN(std::string sep, string_arg("split()", args[0]));
      if (sep.empty()) return Error("split(): empty separator");
    }
    const int64_t maxsplit = args.size() > 1 && args[1].is(Kind::kInt) ? args[1].as_int() : -1;
    return split(s, args.empty() ? nullptr : &args[0], maxsplit);
  }
  if (name == "lower" || name == "upper") return Value::string(case_map(s, name == "upper"));
  if (name == "replace") {
    KTX_RETURN_IF_ERROR(want_args("replace()", args, 2, 3));
    KTX_ASSIGN_OR_RETURN(std::string from, string_arg("replace()", args[0]));
    KTX_ASSIGN_OR_RETURN(std::string to, string_arg("replace()", args[1]));
    return Value::string(replace_all(s, from, to, args.size() > 2 ? args[2].as_int() : -1));
  }
  found = false;
  return Value();
}

}  // namespace

Expected<Value> call_method(const Value& obj, const std::string& name, const std::vector<Value>& args,
                            bool& found) {
  found = true;
  if (obj.is(Kind::kString)) return string_method(obj.as_string(), name, args, found);
  if (obj.is(Kind::kDict)) {
    if (name == "get") {
      KTX_RETURN_IF_ERROR(want_args("get()", args, 1, 2));
      const Value* v = args[0].is(Kind::kString) ? obj.find(args[0].as_string()) : nullptr;
      return v ? *v : (args.size() > 1 ? args[1] : Value::none());
    }
    if (name == "items") return items_of(obj);
    if (name == "keys" || name == "values") {
      ValueList r;
      for (const auto& [k, v] : obj.entries()) r.push_back(name == "keys" ? Value::string(k) : v);
      return Value::list(std::move(r));
    }
  }
  found = false;
  return Value();
}

Expected<Value> apply_filter(const std::string& name, const Value& in, const std::vector<Value>& args,
                             const ValueDict& kwargs) {
  if (name == "default" || name == "d") {
    KTX_RETURN_IF_ERROR(want_args("default", args, 0, 2));
    const bool use_if_falsy = args.size() > 1 && args[1].truthy();
    const bool missing = in.is(Kind::kUndefined) || (use_if_falsy && !in.truthy());
    return missing ? (args.empty() ? Value::string("") : args[0]) : in;
  }
  static const char* const kKnown[] = {"length", "count", "tojson", "string", "trim", "lower", "upper",
                                       "first", "last", "join", "items", "list", "replace"};
  if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown))
    return Error("unknown filter '{}'", name);
  if (in.is(Kind::kUndefined) && name != "length" && name != "count" && name != "string")
    return Error("filter '{}' applied to '{}', which is undefined", name, in.as_string());
  if (name == "length" || name == "count") {
    switch (in.kind()) {
      case Kind::kString: return Value::integer(static_cast<int64_t>(codepoint_length(in.as_string())));
      case Kind::kList: return Value::integer(static_cast<int64_t>(in.items().size()));
      case Kind::kDict: return Value::integer(static_cast<int64_t>(in.entries().size()));
      case Kind::kUndefined: return Value::integer(0);
      default: return Error("filter 'length': a {} has no length", in.type_name());
    }
  }
  if (name == "tojson") {
    KTX_ASSIGN_OR_RETURN(std::string j, to_json(in));
    return Value::string(std::move(j));
  }
  if (name == "string") return Value::string(in.str());
  if (name == "trim") {
    std::string chars = kPyWhitespace;
    if (!args.empty()) {
      KTX_ASSIGN_OR_RETURN(chars, string_arg("trim", args[0]));
    }
    return Value::string(strip(in.str(), chars, true, true));
  }
  if (name == "lower" || name == "upper") return Value::string(case_map(in.str(), name == "upper"));
  if (name == "first" || name == "last") {
    if (in.is(Kind::kString) || in.is(Kind::kList)) {
      const Value idx = Value::integer(name == "first" ? 0 : -1);
      const Value end = Value::integer(name == "first" ? 1 : INT64_MAX);
      KTX_ASSIGN_OR_RETURN(Value s, slice_value(in, &idx, &end, nullptr));
      if (s.is(Kind::kString)) return s.as_string().empty() ? Value::undefined(name) : s;
      return s.items().empty() ? Value::undefined(name) : s.items()[0];
    }
    return Error("filter '{}' needs a list or string, not a {}", name, in.type_name());
  }
  if (name == "join") {
    if (!in.is(Kind::kList)) return Error("filter 'join' needs a list, not a {}", in.type_name());
    std::string sep;
    if (!args.empty()) {
      KTX_ASSIGN_OR_RETURN(sep, string_arg("join", args[0]));
    }
    std::string out;
    for (size_t k = 0; k < in.items().size(); ++k) out += (k ? sep : "") + in.items()[k].str();
    return Value::string(std::move(out));
  }
  if (name == "items") {
    if (!in.is(Kind::kDict)) return Error("filter 'items' needs a dict, not a {}", in.type_name());
    return items_of(in);
  }
  if (name == "list") {
    if (in.is(Kind::kList)) return Value::list(in.items());
    if (in.is(Kind::kDict)) {
      ValueList keys;
      for (const auto& [key, v] : in.entries()) keys.push_back(Value::string(key));
      return Value::list(std::move(keys));
    }
    if (in.is(Kind::kString)) {
      ValueList chars;
      const std::vector<size_t> o = codepoint_offsets(in.as_string());
      for (size_t i = 0; i + 1 < o.size(); ++i)
        chars.push_back(Value::string(in.as_string().substr(o[i], o[i + 1] - o[i])));
      return Value::list(std::move(chars));
    }
    return Error("filter 'list' needs a list, dict or string, not a {}", in.type_name());
  }
  if (name == "replace") {
    KTX_RETURN_IF_ERROR(want_args("filter 'replace'", args, 2, 3));
    bool found = true;
    return string_method(in.str(), "replace", args, found);
  }
  (void)kwargs;
  return Error("unknown filter '{}'", name);
}

Expected<bool> apply_test(const std::string& name, const Value& in, const std::vector<Value>& args) {
  const Kind k = in.kind();
  if (name == "defined") return k != Kind::kUndefined;
  if (name == "undefined") return k == Kind::kUndefined;
  if (name == "none") return k == Kind::kNone;
  if (name == "string") return k == Kind::kString;
  if (name == "boolean") return k == Kind::kBool;
  if (name == "true") return k == Kind::kBool && in.as_bool();
  if (name == "false") return k == Kind::kBool && !in.as_bool();
  if (name == "integer") return k == Kind::kInt;
  if (name == "float") return k == Kind::kFloat;
  if (name == "number") return k == Kind::kInt || k == Kind::kFloat;
  if (name == "mapping") return k == Kind::kDict;
  if (name == "sequence") return k == Kind::kList || k == Kind::kString || k == Kind::kDict;
  if (name == "iterable") return k == Kind::kList || k == Kind::kString || k == Kind::kDict;
  if (name == "even" || name == "odd") {
    if (k != Kind::kInt) return Error("test '{}' needs an int, not a {}", name, in.type_name());
    return (in.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "eq" || name == "equalto" || name == "ne") {
    KTX_RETURN_IF_ERROR(want_args("test '" + name + "'", args, 1, 1));
    return values_equal(in, args[0]) == (name != "ne");
  }
  return Error("unknown test '{}'", name);
}

}  // namespace ktx::jinja
