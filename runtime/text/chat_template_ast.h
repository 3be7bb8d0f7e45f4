// Internal to the chat-template engine: tokens, syntax tree, and the lexer/parser/evaluator
// entry points. The lexer applies whitespace control ({%- -%}) and the trim_blocks /
// lstrip_blocks behaviour transformers enables, so the parser only sees meaningful text.
// Every node keeps its line/col so runtime errors point into the template.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/text/chat_template_value.h"

namespace ktx::jinja {

// Hard limits that keep parsing and rendering bounded on any input.
struct Limits {
  int max_depth = 128;                   // nesting of blocks and expressions
  size_t max_output = 8u << 20;          // bytes of rendered text (and of any one string)
  uint64_t max_steps = 5'000'000;        // evaluated nodes; Jinja has no while, but nested
                                         // range() loops could still take very long
  int64_t max_range = 1'000'000;         // elements one range() may produce
};

enum class Tok { kText, kExprOpen, kExprClose, kStmtOpen, kStmtClose, kName, kString, kInt,
                 kFloat, kOp, kEnd };

struct Token {
  Tok kind;
  std::string text;  // text, name, decoded string literal, or operator spelling
  int64_t ival = 0;
  double fval = 0.0;
  int line = 1, col = 1;
};

// "chat template: line L col C: <what>"
Status syntax_error(int line, int col, const std::string& what);

Expected<std::vector<Token>> lex(const std::string& src);

enum class ExprKind { kLiteral, kName, kAttr, kIndex, kSlice, kCall, kFilter, kTest, kUnary,
                      kBinary, kAnd, kOr, kNot, kTernary, kList, kDict };

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 1, col = 1;
  Value literal;
  std::string name;  // variable, attribute, filter, test, or operator
  bool negated = false;                         // `is not`
  std::vector<std::unique_ptr<Expr>> args;      // operands / call args / slice parts (may be null)
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
};
using ExprPtr = std::unique_ptr<Expr>;

enum class StmtKind { kText, kOutput, kIf, kFor, kSet };

struct Stmt;
using Body = std::vector<Stmt>;

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 1, col = 1;
  std::string text;                 // kText
  ExprPtr expr;                     // kOutput value, kFor iterable, kSet value
  std::vector<ExprPtr> conds;       // kIf: one per if/elif
  std::vector<Body> bodies;         // kIf: one per cond (+1 else); kFor: body (+ else)
  std::vector<std::string> names;   // kFor loop variables; kSet: target, optional attribute
  ExprPtr filter;                   // kFor: `for x in xs if cond`
};

Expected<Body> parse_template(const std::vector<Token>& tokens, const Limits& limits);

// Builtins (chat_template_builtins.cpp). Errors carry no position; the evaluator adds it.
Expected<Value> apply_filter(const std::string& name, const Value& in, const std::vector<Value>& args,
                             const ValueDict& kwargs);
Expected<bool> apply_test(const std::string& name, const Value& in, const std::vector<Value>& args);
// Methods of strings (startswith, split, strip, ...) and dicts (get, items, keys, values).
// Sets `found` false, returning undefined, when the type has no method of that name.
Expected<Value> call_method(const Value& obj, const std::string& name, const std::vector<Value>& args,
                            bool& found);
// Python slicing of a list or string (by code point); null bounds are omitted ones.
Expected<Value> slice_value(const Value& v, const Value* start, const Value* stop, const Value* step);

// Operators and global functions (chat_template_ops.cpp). Strings they build are capped at
// max_len bytes.
Expected<Value> binary_op(const std::string& op, const Value& a, const Value& b, size_t max_len);
// namespace(...), range(...), raise_exception(msg).
Expected<Value> call_global(const std::string& name, const std::vector<Value>& args,
                            const ValueDict& kwargs, const Limits& limits);

// Renders `body` with `globals` as the outermost scope.
Expected<std::string> evaluate(const Body& body, const ValueDict& globals, const Limits& limits);

}  // namespace ktx::jinja
