// Operators, slicing and global functions of the chat-template language, with Python's
// semantics where Jinja defers to Python: int/float promotion, floor division and modulo
// rounding toward -inf, `in` on strings/lists/dicts, negative indices and steps in slices.
// Operations on undefined values fail with "'name' is undefined", as Jinja's default does.
#include <cmath>

#include "runtime/text/chat_template_ast.h"

namespace ktx::jinja {
namespace {

Status undefined_error(const Value& v) { return Error("'{}' is undefined", v.as_string()); }

Expected<Value> arithmetic(const std::string& op, const Value& a, const Value& b) {
  const bool ints = !a.is(Kind::kFloat) && !b.is(Kind::kFloat);
  if (op == "/" || op == "//" || op == "%") {
    if (b.as_float() == 0.0) return Error("division by zero ({} with a zero right operand)", op);
  }
  if (ints && op != "/") {
    const int64_t x = a.as_int(), y = b.as_int();
    if (op == "+") return Value::integer(x + y);
    if (op == "-") return Value::integer(x - y);
    if (op == "*") return Value::integer(x * y);
    if (op == "//") return Value::integer(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
    if (op == "%") {
      const int64_t m = x % y;
      return Value::integer(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
    }
    if (op == "**" && y >= 0) {
      int64_t r = 1;
      for (int64_t k = 0; k < y && k < 64; ++k) r *= x;
      return Value::integer(r);
    }
  }
  const double x = a.as_float(), y = b.as_float();
  if (op == "+") return Value::number(x + y);
  if (op == "-") return Value::number(x - y);
  if (op == "*") return Value::number(x * y);
  if (op == "/") return Value::number(x / y);
  if (op == "//") return Value::number(std::floor(x / y));
  if (op == "%") return Value::number(x - std::floor(x / y) * y);
  return Value::number(std::pow(x, y));
}

Expected<bool> contains(const Value& needle, const Value& hay) {
  switch (hay.kind()) {
    case Kind::kString:
      if (!needle.is(Kind::kString))
        return Error("'in <string>' needs a string on the left, not a {}", needle.type_name());
      return hay.as_string().find(needle.as_string()) != std::string::npos;
    case Kind::kList:
      for (const Value& v : hay.items()) {
        if (values_equal(needle, v)) return true;
      }
      return false;
    case Kind::kDict:
    case Kind::kNamespace:
      return needle.is(Kind::kString) && hay.find(needle.as_string()) != nullptr;
    case Kind::kUndefined: return undefined_error(hay);
    default: return Error("'in' needs a string, list or dict on the right, not a {}", hay.type_name());
  }
}

}  // namespace

Expected<Value> binary_op(const std::string& op, const Value& a, const Value& b, size_t max_len) {
  if (op == "==") return Value::boolean(values_equal(a, b));
  if (op == "!=") return Value::boolean(!values_equal(a, b));
  if (op == "in" || op == "not in") {
    KTX_ASSIGN_OR_RETURN(bool in, contains(a, b));
    return Value::boolean(in == (op == "in"));
  }
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    KTX_ASSIGN_OR_RETURN(int c, compare_values(a, b));
    const bool r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
    return Value::boolean(r);
  }
  if (op == "~") {
    if (a.str().size() + b.str().size() > max_len) return Error("'~' result exceeds {} bytes", max_len);
    return Value::string(a.str() + b.str());
  }
  if (a.is(Kind::kUndefined)) return undefined_error(a);
  if (b.is(Kind::kUndefined)) return undefined_error(b);
  if (op == "+" && a.is(Kind::kString) && b.is(Kind::kString)) {
    if (a.as_string().size() + b.as_string().size() > max_len)
      return Error("'+' result exceeds {} bytes", max_len);
    return Value::string(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is(Kind::kList) && b.is(Kind::kList)) {
    ValueList r = a.items();
    r.insert(r.end(), b.items().begin(), b.items().end());
    return Value::list(std::move(r));
  }
  if (op == "*" && a.is(Kind::kString) && b.is(Kind::kInt)) {
    const int64_t n = std::max<int64_t>(0, b.as_int());
    if (n > 0 && a.as_string().size() * static_cast<uint64_t>(n) > max_len)
      return Error("'*' result exceeds {} bytes", max_len);
    std::string r;
    for (int64_t k = 0; k < n; ++k) r += a.as_string();
    return Value::string(std::move(r));
  }
  if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
  return Error("unsupported operand types for {}: {} and {}", op, a.type_name(), b.type_name());
}

Expected<Value> slice_value(const Value& v, const Value* start, const Value* stop, const Value* step) {
  if (v.is(Kind::kUndefined)) return undefined_error(v);
  if (!v.is(Kind::kList) && !v.is(Kind::kString))
    return Error("cannot slice a {}", v.type_name());
  for (const Value* p : {start, stop, step}) {
    if (p && !p->is(Kind::kInt) && !p->is(Kind::kNone))
      return Error("slice bounds must be ints, not a {}", p->type_name());
  }
  auto given = [](const Value* p) { return p && p->is(Kind::kInt); };
  const int64_t st = given(step) ? step->as_int() : 1;
  if (st == 0) return Error("slice step cannot be zero");
  std::vector<size_t> offs;
  int64_t n;
  if (v.is(Kind::kString)) {
    offs = codepoint_offsets(v.as_string());
    n = static_cast<int64_t>(offs.size()) - 1;
  } else {
    n = static_cast<int64_t>(v.items().size());
  }
  // Python's PySlice_AdjustIndices: clamp into range, counting negative bounds from the end.
  auto adjust = [&](const Value* p, int64_t dflt) {
    if (!given(p)) return dflt;
    int64_t i = p->as_int();
    if (i < 0) i = std::max<int64_t>(i + n, st < 0 ? -1 : 0);
    return std::min<int64_t>(i, st < 0 ? n - 1 : n);
  };
  const int64_t lo = adjust(start, st < 0 ? n - 1 : 0);
  const int64_t hi = adjust(stop, st < 0 ? -1 : n);
  std::vector<int64_t> picked;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) picked.push_back(i);
  if (v.is(Kind::kString)) {
    std::string r;
    for (int64_t i : picked) r += v.as_string().substr(offs[i], offs[i + 1] - offs[i]);
    return Value::string(std::move(r));
  }
  ValueList r;
  for (int64_t i : picked) r.push_back(v.items()[i]);
  return Value::list(std::move(r));
}

Expected<Value> call_global(const std::string& name, const std::vector<Value>& args,
                            const ValueDict& kwargs, const Limits& limits) {
  if (name == "namespace") {
    ValueDict attrs;
    for (const Value& a : args) {  // namespace(some_dict, key=value)
      if (!a.is(Kind::kDict)) return Error("namespace() takes a dict or key=value arguments");
      attrs.insert(attrs.end(), a.entries().begin(), a.entries().end());
    }
    attrs.insert(attrs.end(), kwargs.begin(), kwargs.end());
    return Value::dict(std::move(attrs), Kind::kNamespace);
  }
  if (name == "raise_exception") {
    return Error("raise_exception: {}", args.empty() ? std::string("(no message)") : args[0].str());
  }
  if (name == "range") {
    if (args.empty() || args.size() > 3) return Error("range() takes 1 to 3 arguments");
    for (const Value& a : args) {
      if (!a.is(Kind::kInt)) return Error("range() arguments must be ints, not a {}", a.type_name());
    }
    const int64_t lo = args.size() > 1 ? args[0].as_int() : 0;
    const int64_t hi = args.size() > 1 ? args[1].as_int() : args[0].as_int();
    const int64_t st = args.size() > 2 ? args[2].as_int() : 1;
    if (st == 0) return Error("range() step cannot be zero");
    ValueList r;
    for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
      if (static_cast<int64_t>(r.size()) >= limits.max_range)
        return Error("range() would produce more than {} items", limits.max_range);
      r.push_back(Value::integer(i));
    }
    return Value::list(std::move(r));
  }
  return Error("unknown function '{}'", name);
}

}  // namespace ktx::jinja
