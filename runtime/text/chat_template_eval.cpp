// Tree-walking evaluator for the chat-template language. Scoping follows Jinja: a for-loop body
// gets its own scope per iteration (so `set` inside a loop does not leak out, which is why
// templates use namespace()), if-blocks do not. Every node evaluated costs one step against
// Limits::max_steps and output is capped at Limits::max_output, so rendering always ends.
#include <unordered_map>

#include "runtime/text/chat_template_ast.h"

namespace ktx::jinja {
namespace {

class Evaluator {
 public:
  Evaluator(const ValueDict& globals, const Limits& limits) : lim_(limits) {
    scopes_.emplace_back();
    for (const auto& [k, v] : globals) scopes_.back()[k] = v;
  }

  Status exec(const Body& body);
  std::string out;

 private:
  template <typename Node>
  Status fail(const Node& n, const std::string& what) const {
    return syntax_error(n.line, n.col, what);
  }
  template <typename Node>
  Status tick(const Node& n) {
    if (++steps_ > lim_.max_steps)
      return fail(n, fmt::format("rendering took more than {} steps", lim_.max_steps));
    return Status::ok();
  }
  Status check_size(const Expr& e, size_t n) const {
    if (n > lim_.max_output)
      return fail(e, fmt::format("string of {} bytes exceeds the {} byte limit", n, lim_.max_output));
    return Status::ok();
  }
  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undefined(name);
  }

  Status exec_for(const Stmt& st);
  Status exec_set(const Stmt& st);
  Expected<Value> eval(const Expr& e);
  Expected<Value> eval_binary(const Expr& e, const Value& a, const Value& b);
  Expected<Value> eval_call(const Expr& e);
  Expected<Value> eval_global(const Expr& e, const std::vector<Value>& args, const ValueDict& kw);
  Expected<Value> eval_index(const Expr& e, const Value& obj, const Value& key);
  Status eval_args(const Expr& e, size_t first, std::vector<Value>& args, ValueDict& kwargs);

  const Limits& lim_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  uint64_t steps_ = 0;
};

Status Evaluator::exec(const Body& body) {
  for (const Stmt& st : body) {
    KTX_RETURN_IF_ERROR(tick(st));
    switch (st.kind) {
      case StmtKind::kText: out += st.text; break;
      case StmtKind::kOutput: {
        Expected<Value> v = eval(*st.expr);
        if (!v) return v.status();
        out += v->str();
        break;
      }
      case StmtKind::kIf: {
        size_t branch = 0;
        for (; branch < st.conds.size(); ++branch) {
          Expected<Value> c = eval(*st.conds[branch]);
          if (!c) return c.status();
          if (c->truthy()) break;
        }
        if (branch < st.bodies.size()) {
          KTX_RETURN_IF_ERROR(exec(st.bodies[branch]));
        }
        break;
      }
      case StmtKind::kFor: KTX_RETURN_IF_ERROR(exec_for(st)); break;
      case StmtKind::kSet: KTX_RETURN_IF_ERROR(exec_set(st)); break;
    }
    if (out.size() > lim_.max_output)
      return fail(st, fmt::format("output exceeds the {} byte limit", lim_.max_output));
  }
  return Status::ok();
}

Status Evaluator::exec_for(const Stmt& st) {
  KTX_ASSIGN_OR_RETURN(Value seq, eval(*st.expr));
  ValueList items;
  if (seq.is(Kind::kList)) {
    items = seq.items();  // a copy: the body may not disturb the iteration
  } else if (seq.is(Kind::kDict)) {
    for (const auto& [k, v] : seq.entries()) items.push_back(Value::string(k));
  } else if (seq.is(Kind::kString)) {
    const std::vector<size_t> offs = codepoint_offsets(seq.as_string());
    for (size_t i = 0; i + 1 < offs.size(); ++i)
      items.push_back(Value::string(seq.as_string().substr(offs[i], offs[i + 1] - offs[i])));
  } else if (!seq.is(Kind::kUndefined) && !seq.is(Kind::kNone)) {
    return fail(st, fmt::format("cannot loop over a {}", seq.type_name()));
  }
  auto bind = [&](const Value& item) -> Status {
    auto& scope = scopes_.back();
    if (st.names.size() == 1) {
      scope[st.names[0]] = item;
      return Status::ok();
    }
    if (!item.is(Kind::kList) || item.items().size() != st.names.size())
      return fail(st, fmt::format("cannot unpack a {} into {} loop variables", item.type_name(),
                                  st.names.size()));
    for (size_t k = 0; k < st.names.size(); ++k) scope[st.names[k]] = item.items()[k];
    return Status::ok();
  };
  if (st.filter) {  // `for x in xs if cond`: loop.* counts only the kept items
    ValueList kept;
    for (const Value& item : items) {
      KTX_RETURN_IF_ERROR(tick(st));
      scopes_.emplace_back();
      Status s = bind(item);
      Expected<Value> keep = s ? eval(*st.filter) : Expected<Value>(s);
      scopes_.pop_back();
      if (!keep) return keep.status();
      if (keep->truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return st.bodies.size() > 1 ? exec(st.bodies[1]) : Status::ok();
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    KTX_RETURN_IF_ERROR(tick(st));  // an empty body must still pay for its iterations
    Value loop = Value::dict({{"index0", Value::integer(i)},
                              {"index", Value::integer(i + 1)},
                              {"revindex0", Value::integer(n - 1 - i)},
                              {"revindex", Value::integer(n - i)},
                              {"first", Value::boolean(i == 0)},
                              {"last", Value::boolean(i == n - 1)},
                              {"length", Value::integer(n)},
                              {"previtem", i > 0 ? items[i - 1] : Value::undefined("previtem")},
                              {"nextitem", i + 1 < n ? items[i + 1] : Value::undefined("nextitem")}});
    scopes_.emplace_back();
    scopes_.back()["loop"] = loop;
    Status s = bind(items[i]);
    if (s) s = exec(st.bodies[0]);
    scopes_.pop_back();
    KTX_RETURN_IF_ERROR(s);
  }
  return Status::ok();
}

Status Evaluator::exec_set(const Stmt& st) {
  KTX_ASSIGN_OR_RETURN(Value v, eval(*st.expr));
  if (st.names.size() == 1) {
    scopes_.back()[st.names[0]] = std::move(v);
    return Status::ok();
  }
  const Value target = lookup(st.names[0]);
  if (!target.is(Kind::kNamespace))
    return fail(st, fmt::format("cannot set attribute '{}' on '{}', a {} (only namespace() objects "
                                "can be assigned to)", st.names[1], st.names[0], target.type_name()));
  target.set(st.names[1], std::move(v));
  return Status::ok();
}

Status Evaluator::eval_args(const Expr& e, size_t first, std::vector<Value>& args, ValueDict& kwargs) {
  for (size_t k = first; k < e.args.size(); ++k) {
    KTX_ASSIGN_OR_RETURN(Value v, eval(*e.args[k]));
    args.push_back(std::move(v));
  }
  for (const auto& [key, expr] : e.kwargs) {
    KTX_ASSIGN_OR_RETURN(Value v, eval(*expr));
    kwargs.emplace_back(key, std::move(v));
  }
  return Status::ok();
}

Expected<Value> Evaluator::eval_index(const Expr& e, const Value& obj, const Value& key) {
  if (obj.is(Kind::kUndefined)) return fail(e, "'" + obj.as_string() + "' is undefined");
  if (obj.is(Kind::kDict) || obj.is(Kind::kNamespace)) {
    if (!key.is(Kind::kString)) return Value::undefined("[" + key.str() + "]");
    const Value* v = obj.find(key.as_string());
    return v ? *v : Value::undefined(key.as_string());
  }
  if (obj.is(Kind::kList) || obj.is(Kind::kString)) {
    if (!key.is(Kind::kInt)) {
      return fail(e, fmt::format("a {} index must be an int, not a {}", obj.type_name(), key.type_name()));
    }
    int64_t i = key.as_int();
    if (obj.is(Kind::kList)) {
      const int64_t n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined(fmt::format("[{}]", key.as_int()));
      return obj.items()[i];
    }
    const std::vector<size_t> offs = codepoint_offsets(obj.as_string());
    const int64_t n = static_cast<int64_t>(offs.size()) - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined(fmt::format("[{}]", key.as_int()));
    return Value::string(obj.as_string().substr(offs[i], offs[i + 1] - offs[i]));
  }
  return fail(e, fmt::format("cannot index a {}", obj.type_name()));
}

Expected<Value> Evaluator::eval(const Expr& e) {
  KTX_RETURN_IF_ERROR(tick(e));
  switch (e.kind) {
    case ExprKind::kLiteral: return e.literal;
    case ExprKind::kName: return lookup(e.name);
    case ExprKind::kAttr: {
      KTX_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
      if (obj.is(Kind::kUndefined)) return fail(e, "'" + obj.as_string() + "' is undefined");
      const Value* v = obj.find(e.name);
      return v ? *v : Value::undefined(e.name);
    }
    case ExprKind::kIndex: {
      KTX_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
      KTX_ASSIGN_OR_RETURN(Value key, eval(*e.args[1]));
      return eval_index(e, obj, key);
    }
    case ExprKind::kSlice: {
      KTX_ASSIGN_OR_RETURN(Value obj, eval(*e.args[0]));
      Value parts[3];
      for (int k = 0; k < 3; ++k) {
        if (e.args[k + 1]) {
          KTX_ASSIGN_OR_RETURN(parts[k], eval(*e.args[k + 1]));
        }
      }
      Expected<Value> r = slice_value(obj, e.args[1] ? &parts[0] : nullptr,
                                      e.args[2] ? &parts[1] : nullptr, e.args[3] ? &parts[2] : nullptr);
      if (!r) return fail(e, r.status().message());
      return r;
    }
    case ExprKind::kCall: return eval_call(e);
    case ExprKind::kFilter:
    case ExprKind::kTest: {
      std::vector<Value> args;
      ValueDict kwargs;
      KTX_RETURN_IF_ERROR(eval_args(e, 0, args, kwargs));
      const Value in = args[0];
      args.erase(args.begin());
      if (e.kind == ExprKind::kFilter) {
        Expected<Value> r = apply_filter(e.name, in, args, kwargs);
        if (!r) return fail(e, r.status().message());
        if (r->is(Kind::kString)) {
          KTX_RETURN_IF_ERROR(check_size(e, r->as_string().size()));
        }
        return r;
      }
      Expected<bool> r = apply_test(e.name, in, args);
      if (!r) return fail(e, r.status().message());
      return Value::boolean(*r != e.negated);
    }
    case ExprKind::kUnary: {
      KTX_ASSIGN_OR_RETURN(Value v, eval(*e.args[0]));
      if (!v.is_number()) return fail(e, fmt::format("bad operand for unary {}: {}", e.name, v.type_name()));
      if (e.name == "+") return v;
      return v.is(Kind::kFloat) ? Value::number(-v.as_float()) : Value::integer(-v.as_int());
    }
    case ExprKind::kNot: {
      KTX_ASSIGN_OR_RETURN(Value v, eval(*e.args[0]));
      return Value::boolean(!v.truthy());
    }
    case ExprKind::kAnd:
    case ExprKind::kOr: {  // Python semantics: the deciding operand itself is the result
      KTX_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
      if (a.truthy() == (e.kind == ExprKind::kOr)) return a;
      return eval(*e.args[1]);
    }
    case ExprKind::kBinary: {
      KTX_ASSIGN_OR_RETURN(Value a, eval(*e.args[0]));
      KTX_ASSIGN_OR_RETURN(Value b, eval(*e.args[1]));
      return eval_binary(e, a, b);
    }
    case ExprKind::kTernary: {
      KTX_ASSIGN_OR_RETURN(Value c, eval(*e.args[1]));
      if (c.truthy()) return eval(*e.args[0]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined("else");
    }
    case ExprKind::kList: {
      ValueList items;
      for (const auto& a : e.args) {
        KTX_ASSIGN_OR_RETURN(Value v, eval(*a));
        items.push_back(std::move(v));
      }
      return Value::list(std::move(items));
    }
    case ExprKind::kDict: {
      Value d = Value::dict();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        KTX_ASSIGN_OR_RETURN(Value key, eval(*e.args[k]));
        KTX_ASSIGN_OR_RETURN(Value v, eval(*e.args[k + 1]));
        if (!key.is(Kind::kString)) return fail(e, "dict keys must be strings, got a " + std::string(key.type_name()));
        d.set(key.as_string(), std::move(v));
      }
      return d;
    }
  }
  return fail(e, "unknown expression");
}

Expected<Value> Evaluator::eval_binary(const Expr& e, const Value& a, const Value& b) {
  Expected<Value> r = binary_op(e.name, a, b, lim_.max_output);
  if (!r) return fail(e, r.status().message());
  return r;
}

Expected<Value> Evaluator::eval_call(const Expr& e) {
  std::vector<Value> args;
  ValueDict kwargs;
  const Expr& callee = *e.args[0];
  if (callee.kind == ExprKind::kAttr) {  // method call: obj.name(args)
    KTX_ASSIGN_OR_RETURN(Value obj, eval(*callee.args[0]));
    if (obj.is(Kind::kUndefined)) return fail(e, "'" + obj.as_string() + "' is undefined");
    KTX_RETURN_IF_ERROR(eval_args(e, 1, args, kwargs));
    bool found = true;
    Expected<Value> r = call_method(obj, callee.name, args, found);
    if (!r) return fail(e, r.status().message());
    if (!found) return fail(e, fmt::format("a {} has no method '{}'", obj.type_name(), callee.name));
    if (r->is(Kind::kString)) {
      KTX_RETURN_IF_ERROR(check_size(e, r->as_string().size()));
    }
    return r;
  }
  if (callee.kind != ExprKind::kName) return fail(e, "only named functions and methods can be called");
  KTX_RETURN_IF_ERROR(eval_args(e, 1, args, kwargs));
  Expected<Value> r = call_global(callee.name, args, kwargs, lim_);
  if (!r) return fail(e, r.status().message());
  return r;
}

}  // namespace

Expected<std::string> evaluate(const Body& body, const ValueDict& globals, const Limits& limits) {
  Evaluator ev(globals, limits);
  KTX_RETURN_IF_ERROR(ev.exec(body));
  return std::move(ev.out);
}

}  // namespace ktx::jinja
