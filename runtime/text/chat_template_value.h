// Values of the chat-template language (a Jinja subset): none, bool, int, float, string, list,
// dict, namespace, and "undefined" (a missing variable/key, which prints as nothing and is
// falsy, as in Jinja). Lists, dicts and namespaces are shared by reference like Python objects,
// which is what makes `{% set ns.x = ... %}` inside a loop visible after it. Dicts keep
// insertion order so tojson and items() are stable. Strings are UTF-8; lengths and slices count
// code points, as Python does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/util/status.h"

namespace ktx::jinja {

class Value;
using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace };

class Value {
 public:
  Value() = default;  // undefined
  static Value undefined(std::string name) {
    Value v;
    v.s_ = std::move(name);
    return v;
  }
  static Value none() { return Value(Kind::kNone); }
  static Value boolean(bool b) {
    Value v(Kind::kBool);
    v.b_ = b;
    return v;
  }
  static Value integer(int64_t i) {
    Value v(Kind::kInt);
    v.i_ = i;
    return v;
  }
  static Value number(double f) {
    Value v(Kind::kFloat);
    v.f_ = f;
    return v;
  }
  static Value string(std::string s) {
    Value v(Kind::kString);
    v.s_ = std::move(s);
    return v;
  }
  static Value list(ValueList items = {}) {
    Value v(Kind::kList);
    v.list_ = std::make_shared<ValueList>(std::move(items));
    return v;
  }
  static Value dict(ValueDict items = {}, Kind kind = Kind::kDict) {
    Value v(kind);
    v.dict_ = std::make_shared<ValueDict>(std::move(items));
    return v;
  }

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_float() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(as_int()); }
  // The string of a string value, or the variable name an undefined value stands for.
  const std::string& as_string() const { return s_; }
  ValueList& items() const { return *list_; }
  ValueDict& entries() const { return *dict_; }

  // Dict/namespace lookup; nullptr when absent or not a mapping.
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v) const;  // dict/namespace only

  bool truthy() const;
  std::string str() const;   // Python str(): what {{ x }} prints
  std::string repr() const;  // Python repr(): strings quoted, used inside lists/dicts
  const char* type_name() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::string s_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
};

bool values_equal(const Value& a, const Value& b);
// Three-way ordering for <, <=, >, >=: numbers with numbers, strings with strings.
Expected<int> compare_values(const Value& a, const Value& b);
// JSON text as Python's json.dumps(ensure_ascii=False) writes it (HF's tojson filter).
Expected<std::string> to_json(const Value& v);

// UTF-8 helpers: byte offset of every code point start plus the end offset.
std::vector<size_t> codepoint_offsets(const std::string& s);
size_t codepoint_length(const std::string& s);

}  // namespace ktx::jinja
