// Value semantics of the chat-template language, following Python where Jinja does: truthiness,
// str()/repr() text, equality across int/float/bool, ordering, and json.dumps formatting (with
// ", " and ": " separators, as transformers' tojson filter writes by default).
#include "runtime/text/chat_template_value.h"

#include <cmath>

namespace ktx::jinja {

const Value* Value::find(const std::string& key) const {
  if (!dict_) return nullptr;
  for (const auto& [k, v] : *dict_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Value::set(const std::string& key, Value v) const {
  if (!dict_) return;
  for (auto& [k, old] : *dict_) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  dict_->emplace_back(key, std::move(v));
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool: return b_;
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0.0;
    case Kind::kString: return !s_.empty();
    case Kind::kList: return !list_->empty();
    case Kind::kDict: return !dict_->empty();
    case Kind::kNamespace: return true;
  }
  return false;
}

namespace {

std::string float_text(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", f);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // Python prints 1.0, not 1
  return s;
}

std::string quote_python(const std::string& s) {
  // Python prefers single quotes unless the text contains one and no double quote.
  const char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  out += q;
  return out;
}

void append_json_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

Status append_json(const Value& v, std::string& out, int depth) {
  if (depth > 64) return Error("tojson: value nested deeper than 64 levels");
  switch (v.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: out += "null"; return Status::ok();
    case Kind::kBool: out += v.as_bool() ? "true" : "false"; return Status::ok();
    case Kind::kInt: out += std::to_string(v.as_int()); return Status::ok();
    case Kind::kFloat:
      if (!std::isfinite(v.as_float())) {
        out += std::isnan(v.as_float()) ? "NaN" : (v.as_float() > 0 ? "Infinity" : "-Infinity");
      } else {
        out += float_text(v.as_float());
      }
      return Status::ok();
    case Kind::kString: append_json_string(v.as_string(), out); return Status::ok();
    case Kind::kList: {
      out += '[';
      for (size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += ", ";
        KTX_RETURN_IF_ERROR(append_json(v.items()[i], out, depth + 1));
      }
      out += ']';
      return Status::ok();
    }
    case Kind::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [k, item] : v.entries()) {
        if (!first) out += ", ";
        first = false;
        append_json_string(k, out);
        out += ": ";
        KTX_RETURN_IF_ERROR(append_json(item, out, depth + 1));
      }
      out += '}';
      return Status::ok();
    }
    case Kind::kNamespace: return Error("tojson: a namespace object is not JSON serializable");
  }
  return Status::ok();
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return b_ ? "True" : "False";
    case Kind::kInt: return std::to_string(i_);
    case Kind::kFloat: return float_text(f_);
    case Kind::kString: return s_;
    case Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < list_->size(); ++i) out += (i ? ", " : "") + (*list_)[i].repr();
      return out + "]";
    }
    case Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : *dict_) {
        out += (first ? "" : ", ") + quote_python(k) + ": " + v.repr();
        first = false;
      }
      return out + "}";
    }
    case Kind::kNamespace: return "<Namespace>";
  }
  return "";
}

std::string Value::repr() const { return kind_ == Kind::kString ? quote_python(s_) : str(); }

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "none";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "string";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "namespace";
  }
  return "?";
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is(Kind::kFloat) || b.is(Kind::kFloat)) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return a.as_string() == b.as_string();
    case Kind::kList: {
      if (a.items().size() != b.items().size()) return false;
      for (size_t i = 0; i < a.items().size(); ++i) {
        if (!values_equal(a.items()[i], b.items()[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const Value* other = b.find(k);
        if (!other || !values_equal(v, *other)) return false;
      }
      return true;
    }
    default: return &a.entries() == &b.entries();  // namespaces: identity
  }
}

Expected<int> compare_values(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.as_float(), y = b.as_float();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is(Kind::kString) && b.is(Kind::kString)) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  return Error("cannot order a {} against a {}", a.type_name(), b.type_name());
}

Expected<std::string> to_json(const Value& v) {
  std::string out;
  KTX_RETURN_IF_ERROR(append_json(v, out, 0));
  return out;
}

std::vector<size_t> codepoint_offsets(const std::string& s) {
  std::vector<size_t> offs;
  offs.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) offs.push_back(i);
  }
  offs.push_back(s.size());
  return offs;
}

size_t codepoint_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace ktx::jinja
