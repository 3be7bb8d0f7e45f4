// Recursive-descent parser for the chat-template language. Statements: if/elif/else, for (with
// tuple unpacking, an `if` filter and an else branch), set (name or namespace attribute).
// Expression precedence follows Jinja, lowest first:
//   a if c else b | or | and | not | == != < > <= >= in, not in | + - | ~ | * / // % | ** |
//   unary - + | postfix . [] [::] () then filters `|f(args)` and tests `is [not] t(args)`.
// Nesting is capped (Limits::max_depth) so hostile input cannot overflow the stack here or in
// the evaluator, which recurses over the same tree.
#include <algorithm>

#include "runtime/text/chat_template_ast.h"

namespace ktx::jinja {
namespace {

const char* const kUnsupportedTags[] = {"macro", "call", "filter", "include", "import", "from",
                                        "extends", "block", "raw", "with", "break", "continue",
                                        "autoescape", "endset", "endmacro"};

Stmt make_stmt(StmtKind kind, const Token& at) {
  Stmt s;
  s.kind = kind;
  s.line = at.line;
  s.col = at.col;
  return s;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const Limits& limits) : t_(tokens), lim_(limits) {}

  Expected<Body> parse_all() {
    std::string end_tag;
    return parse_body({}, nullptr, end_tag);
  }

 private:
  const Token& cur() const { return t_[std::min(i_, t_.size() - 1)]; }
  bool at_op(const char* op) const { return cur().kind == Tok::kOp && cur().text == op; }
  bool at_name(const char* n) const { return cur().kind == Tok::kName && cur().text == n; }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd: return "end of template";
      case Tok::kText: return "text";
      case Tok::kString: return "string '" + t.text + "'";
      default: return "'" + t.text + "'";
    }
  }
  Status error(const std::string& what) const { return syntax_error(cur().line, cur().col, what); }
  Status expected(const std::string& what, const std::string& after) const {
    return error("expected " + what + " after " + after + ", found " + describe(cur()));
  }
  Status expect_op(const char* op, const std::string& after) {
    if (!at_op(op)) return expected(std::string("'") + op + "'", after);
    ++i_;
    return Status::ok();
  }
  Status expect_close(const std::string& after) {
    if (cur().kind != Tok::kStmtClose) return expected("'%}'", after);
    ++i_;
    return Status::ok();
  }
  Expected<std::string> expect_name(const std::string& after) {
    if (cur().kind != Tok::kName) return expected("a name", after);
    return t_[i_++].text;
  }
  ExprPtr node(ExprKind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // A guard object would be neater, but every exit path here is a plain return.
  Status enter() {
    if (++depth_ > lim_.max_depth)
      return error(fmt::format("template nests deeper than {} levels", lim_.max_depth));
    return Status::ok();
  }

  Expected<Body> parse_body(const std::vector<std::string>& ends, const Token* opener,
                            std::string& end_tag);
  Status parse_statement(Body& body, const Token& open);
  Status parse_if(Stmt& st);
  Status parse_for(Stmt& st);
  Status parse_set(Stmt& st);

  Expected<ExprPtr> parse_expr();
  Expected<ExprPtr> parse_binary_level(int level);
  Expected<ExprPtr> parse_not();
  Expected<ExprPtr> parse_unary();
  Expected<ExprPtr> parse_postfix(ExprPtr e);
  Expected<ExprPtr> parse_filters(ExprPtr e);
  Expected<ExprPtr> parse_primary();
  Status parse_call_args(Expr& call);
  Status parse_subscript(ExprPtr& e);

  const std::vector<Token>& t_;
  const Limits& lim_;
  size_t i_ = 0;
  int depth_ = 0;
};

Expected<Body> Parser::parse_body(const std::vector<std::string>& ends, const Token* opener,
                                  std::string& end_tag) {
  KTX_RETURN_IF_ERROR(enter());
  Body body;
  while (true) {
    const Token& tok = cur();
    if (tok.kind == Tok::kEnd) {
      if (!opener) break;
      return syntax_error(opener->line, opener->col,
                          fmt::format("unclosed '{}' block: expected '{{% {} %}}' before end of "
                                      "template", opener->text, ends.back()));
    }
    if (tok.kind == Tok::kText) {
      Stmt st = make_stmt(StmtKind::kText, tok);
      st.text = tok.text;
      body.push_back(std::move(st));
      ++i_;
    } else if (tok.kind == Tok::kExprOpen) {
      ++i_;
      Stmt st = make_stmt(StmtKind::kOutput, tok);
      KTX_ASSIGN_OR_RETURN(st.expr, parse_expr());
      if (cur().kind != Tok::kExprClose) return expected("'}}'", "expression");
      ++i_;
      body.push_back(std::move(st));
    } else if (tok.kind == Tok::kStmtOpen) {
      ++i_;
      const std::string& name = cur().text;
      if (cur().kind == Tok::kName && std::find(ends.begin(), ends.end(), name) != ends.end()) {
        end_tag = name;
        ++i_;
        break;
      }
      KTX_RETURN_IF_ERROR(parse_statement(body, tok));
    } else {
      return error("unexpected " + describe(tok));
    }
  }
  --depth_;
  return body;
}

Status Parser::parse_statement(Body& body, const Token& open) {
  if (cur().kind != Tok::kName) return expected("a tag name", "'{%'");
  const Token& tag = cur();
  for (const char* bad : kUnsupportedTags) {
    if (tag.text == bad) return error("unsupported tag '" + tag.text + "'");
  }
  Stmt st = make_stmt(StmtKind::kText, tag);
  ++i_;
  if (tag.text == "if") {
    KTX_RETURN_IF_ERROR(parse_if(st));
  } else if (tag.text == "for") {
    KTX_RETURN_IF_ERROR(parse_for(st));
  } else if (tag.text == "set") {
    KTX_RETURN_IF_ERROR(parse_set(st));
  } else if (tag.text == "elif" || tag.text == "else" || tag.text.rfind("end", 0) == 0) {
    --i_;
    return error("unexpected '" + tag.text + "' with no open block it could close");
  } else {
    --i_;
    return error("unknown tag '" + tag.text + "'");
  }
  body.push_back(std::move(st));
  return Status::ok();
}

Status Parser::parse_if(Stmt& st) {
  st.kind = StmtKind::kIf;
  Token opener = t_[i_ - 1];
  std::string end_tag = "elif";
  while (end_tag == "elif") {
    KTX_ASSIGN_OR_RETURN(ExprPtr cond, parse_expr());
    KTX_RETURN_IF_ERROR(expect_close("'" + std::string(st.conds.empty() ? "if" : "elif") +
                                     "' condition"));
    st.conds.push_back(std::move(cond));
    KTX_ASSIGN_OR_RETURN(Body b, parse_body({"elif", "else", "endif"}, &opener, end_tag));
    st.bodies.push_back(std::move(b));
  }
  if (end_tag == "else") {
    KTX_RETURN_IF_ERROR(expect_close("'else'"));
    KTX_ASSIGN_OR_RETURN(Body b, parse_body({"endif"}, &opener, end_tag));
    st.bodies.push_back(std::move(b));
  }
  return expect_close("'endif'");
}

Status Parser::parse_for(Stmt& st) {
  st.kind = StmtKind::kFor;
  Token opener = t_[i_ - 1];
  do {
    KTX_ASSIGN_OR_RETURN(std::string n, expect_name("'for'"));
    st.names.push_back(std::move(n));
  } while (at_op(",") && (++i_, true));
  if (!at_name("in")) return expected("'in'", "the loop variable");
  ++i_;
  // The iterable stops before `if` (a loop filter), so no conditional expression here.
  KTX_ASSIGN_OR_RETURN(st.expr, parse_binary_level(0));
  if (at_name("if")) {
    ++i_;
    KTX_ASSIGN_OR_RETURN(st.filter, parse_expr());
  }
  KTX_RETURN_IF_ERROR(expect_close("the 'for' iterable"));
  std::string end_tag;
  KTX_ASSIGN_OR_RETURN(Body b, parse_body({"else", "endfor"}, &opener, end_tag));
  st.bodies.push_back(std::move(b));
  if (end_tag == "else") {
    KTX_RETURN_IF_ERROR(expect_close("'else'"));
    KTX_ASSIGN_OR_RETURN(Body e, parse_body({"endfor"}, &opener, end_tag));
    st.bodies.push_back(std::move(e));
  }
  return expect_close("'endfor'");
}

Status Parser::parse_set(Stmt& st) {
  st.kind = StmtKind::kSet;
  KTX_ASSIGN_OR_RETURN(std::string target, expect_name("'set'"));
  st.names.push_back(std::move(target));
  if (at_op(".")) {
    ++i_;
    KTX_ASSIGN_OR_RETURN(std::string attr, expect_name("'.'"));
    st.names.push_back(std::move(attr));
  }
  if (cur().kind == Tok::kStmtClose) return error("block 'set' (with 'endset') is not supported");
  KTX_RETURN_IF_ERROR(expect_op("=", "the 'set' target"));
  KTX_ASSIGN_OR_RETURN(st.expr, parse_expr());
  return expect_close("the 'set' value");
}

Expected<ExprPtr> Parser::parse_expr() {
  KTX_RETURN_IF_ERROR(enter());
  const Token at = cur();
  KTX_ASSIGN_OR_RETURN(ExprPtr e, parse_binary_level(0));
  if (at_name("if")) {
    ++i_;
    auto t = node(ExprKind::kTernary, at);
    t->args.push_back(std::move(e));
    KTX_ASSIGN_OR_RETURN(ExprPtr cond, parse_binary_level(0));
    t->args.push_back(std::move(cond));
    if (at_name("else")) {
      ++i_;
      KTX_ASSIGN_OR_RETURN(ExprPtr other, parse_expr());
      t->args.push_back(std::move(other));
    } else {
      t->args.push_back(nullptr);  // Jinja: missing else yields undefined
    }
    e = std::move(t);
  }
  --depth_;
  return e;
}

Expected<ExprPtr> Parser::parse_binary_level(int level) {
  static const std::vector<std::vector<std::string>> kOps = {
      {"or"}, {"and"}, {}, {"==", "!=", "<", ">", "<=", ">=", "in", "not in"},
      {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
  if (level == 2) return parse_not();
  if (level == 8) return parse_unary();
  KTX_ASSIGN_OR_RETURN(ExprPtr lhs, parse_binary_level(level + 1));
  while (true) {
    std::string op;
    const Token at = cur();
    if (at_name("not") && i_ + 1 < t_.size() && t_[i_ + 1].kind == Tok::kName &&
        t_[i_ + 1].text == "in" && level == 3) {
      op = "not in";
    } else if (at.kind == Tok::kOp || at.kind == Tok::kName) {
      const auto& ops = kOps[level];
      if (std::find(ops.begin(), ops.end(), at.text) != ops.end()) op = at.text;
    }
    if (op.empty()) return lhs;
    i_ += op == "not in" ? 2 : 1;
    KTX_ASSIGN_OR_RETURN(ExprPtr rhs, parse_binary_level(level + 1));
    auto e = node(op == "or" ? ExprKind::kOr : op == "and" ? ExprKind::kAnd : ExprKind::kBinary, at);
    e->name = op;
    e->args.push_back(std::move(lhs));
    e->args.push_back(std::move(rhs));
    lhs = std::move(e);
  }
}

Expected<ExprPtr> Parser::parse_not() {
  if (!at_name("not")) return parse_binary_level(3);
  KTX_RETURN_IF_ERROR(enter());
  auto e = node(ExprKind::kNot, cur());
  ++i_;
  KTX_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
  e->args.push_back(std::move(operand));
  --depth_;
  return e;
}

// As in Jinja, `-x|f` is `(-x)|f`: filters and tests apply after the unary operator.
Expected<ExprPtr> Parser::parse_unary() {
  KTX_RETURN_IF_ERROR(enter());
  ExprPtr e;
  if (at_op("-") || at_op("+")) {
    e = node(ExprKind::kUnary, cur());
    e->name = t_[i_++].text;
    KTX_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary());
    e->args.push_back(std::move(operand));
  } else {
    KTX_ASSIGN_OR_RETURN(e, parse_primary());
    KTX_ASSIGN_OR_RETURN(e, parse_postfix(std::move(e)));
  }
  KTX_ASSIGN_OR_RETURN(e, parse_filters(std::move(e)));
  --depth_;
  return e;
}

Status Parser::parse_call_args(Expr& call) {
  ++i_;  // '('
  while (!at_op(")")) {
    if (cur().kind == Tok::kName && i_ + 1 < t_.size() && t_[i_ + 1].kind == Tok::kOp &&
        t_[i_ + 1].text == "=") {
      std::string key = cur().text;
      i_ += 2;
      KTX_ASSIGN_OR_RETURN(ExprPtr v, parse_expr());
      call.kwargs.emplace_back(std::move(key), std::move(v));
    } else {
      if (!call.kwargs.empty()) return error("positional argument after keyword argument");
      KTX_ASSIGN_OR_RETURN(ExprPtr v, parse_expr());
      call.args.push_back(std::move(v));
    }
    if (!at_op(",")) break;
    ++i_;
  }
  return expect_op(")", "call arguments");
}

Status Parser::parse_subscript(ExprPtr& e) {
  const Token at = cur();
  ++i_;  // '['
  ExprPtr parts[3];
  int n_colons = 0;
  while (true) {
    if (!at_op(":") && !at_op("]")) {
      KTX_ASSIGN_OR_RETURN(parts[n_colons], parse_expr());
    }
    if (!at_op(":") || n_colons == 2) break;
    ++n_colons;
    ++i_;
  }
  KTX_RETURN_IF_ERROR(expect_op("]", "subscript"));
  if (n_colons == 0 && !parts[0]) return syntax_error(at.line, at.col, "empty subscript '[]'");
  auto s = node(n_colons ? ExprKind::kSlice : ExprKind::kIndex, at);
  s->args.push_back(std::move(e));
  for (int k = 0; k <= (n_colons ? 2 : 0); ++k) s->args.push_back(std::move(parts[k]));
  e = std::move(s);
  return Status::ok();
}

Expected<ExprPtr> Parser::parse_postfix(ExprPtr e) {
  while (true) {
    const Token at = cur();
    if (at_op(".")) {
      ++i_;
      KTX_ASSIGN_OR_RETURN(std::string attr, expect_name("'.'"));
      auto a = node(ExprKind::kAttr, at);
      a->name = std::move(attr);
      a->args.push_back(std::move(e));
      e = std::move(a);
    } else if (at_op("[")) {
      KTX_RETURN_IF_ERROR(parse_subscript(e));
    } else if (at_op("(")) {
      auto c = node(ExprKind::kCall, at);
      c->line = e->line;  // point errors (raise_exception!) at the function name, not '('
      c->col = e->col;
      c->args.push_back(std::move(e));
      KTX_RETURN_IF_ERROR(parse_call_args(*c));
      e = std::move(c);
    } else {
      return e;
    }
  }
}

Expected<ExprPtr> Parser::parse_filters(ExprPtr e) {
  while (at_op("|") || at_name("is")) {
    const bool is_test = at_name("is");
    ++i_;
    auto f = node(is_test ? ExprKind::kTest : ExprKind::kFilter, cur());
    if (is_test && at_name("not")) {
      f->negated = true;
      ++i_;
    }
    KTX_ASSIGN_OR_RETURN(f->name, expect_name(is_test ? "'is'" : "'|'"));
    f->args.push_back(std::move(e));
    if (at_op("(")) {
      KTX_RETURN_IF_ERROR(parse_call_args(*f));
    }
    e = std::move(f);
  }
  return e;
}

Expected<ExprPtr> Parser::parse_primary() {
  const Token at = cur();
  switch (at.kind) {
    case Tok::kName: {
      ++i_;
      auto e = node(ExprKind::kLiteral, at);
      if (at.text == "true" || at.text == "True") {
        e->literal = Value::boolean(true);
      } else if (at.text == "false" || at.text == "False") {
        e->literal = Value::boolean(false);
      } else if (at.text == "none" || at.text == "None") {
        e->literal = Value::none();
      } else {
        e->kind = ExprKind::kName;
        e->name = at.text;
      }
      return e;
    }
    case Tok::kString: {
      auto e = node(ExprKind::kLiteral, at);
      std::string s;
      while (cur().kind == Tok::kString) s += t_[i_++].text;  // 'a' 'b' concatenates
      e->literal = Value::string(std::move(s));
      return e;
    }
    case Tok::kInt:
    case Tok::kFloat: {
      ++i_;
      auto e = node(ExprKind::kLiteral, at);
      e->literal = at.kind == Tok::kInt ? Value::integer(at.ival) : Value::number(at.fval);
      return e;
    }
    default: break;
  }
  if (at_op("(") || at_op("[")) {
    const bool paren = at_op("(");
    const char* close = paren ? ")" : "]";
    ++i_;
    auto list = node(ExprKind::kList, at);
    bool saw_comma = false;
    while (!at_op(close)) {
      KTX_ASSIGN_OR_RETURN(ExprPtr item, parse_expr());
      list->args.push_back(std::move(item));
      if (!at_op(",")) break;
      saw_comma = true;
      ++i_;
    }
    KTX_RETURN_IF_ERROR(expect_op(close, paren ? "'('" : "list items"));
    // (x) is grouping; (x, y) and () are tuples, which we represent as lists.
    if (paren && !saw_comma && list->args.size() == 1) return std::move(list->args[0]);
    return list;
  }
  if (at_op("{")) {
    ++i_;
    auto dict = node(ExprKind::kDict, at);
    while (!at_op("}")) {
      KTX_ASSIGN_OR_RETURN(ExprPtr key, parse_expr());
      KTX_RETURN_IF_ERROR(expect_op(":", "dict key"));
      KTX_ASSIGN_OR_RETURN(ExprPtr value, parse_expr());
      dict->args.push_back(std::move(key));
      dict->args.push_back(std::move(value));
      if (!at_op(",")) break;
      ++i_;
    }
    KTX_RETURN_IF_ERROR(expect_op("}", "dict items"));
    return dict;
  }
  return error("expected an expression, found " + describe(at));
}

}  // namespace

Expected<Body> parse_template(const std::vector<Token>& tokens, const Limits& limits) {
  if (tokens.empty() || tokens.back().kind != Tok::kEnd) return Error("chat template: no tokens");
  return Parser(tokens, limits).parse_all();
}

}  // namespace ktx::jinja
