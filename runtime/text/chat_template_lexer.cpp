// Lexer for the chat-template language. Splits the source into text and tags ({{ }}, {% %},
// {# #}), tokenizes the inside of tags, and applies whitespace control right here:
//   {%- / {{- / {#-   strip all whitespace before the tag;  -%} / -}} / -#}  after it;
//   trim_blocks       drop the first newline after a %} or #};
//   lstrip_blocks     drop spaces/tabs between a line start and a {% or {# (unless {%+).
// transformers renders chat templates with trim_blocks and lstrip_blocks on, so we do too.
#include <algorithm>
#include <cctype>

#include "runtime/text/chat_template_ast.h"

namespace ktx::jinja {

Status syntax_error(int line, int col, const std::string& what) {
  return Error("chat template: line {} col {}: {}", line, col, what);
}

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  Expected<std::vector<Token>> run() {
    bool strip_next = false, trim_newline = false;
    while (pos_ < src_.size()) {
      size_t open = find_open(pos_);
      std::string text = src_.substr(pos_, open - pos_);
      if (strip_next) {
        size_t i = 0;
        while (i < text.size() && is_ws(text[i])) ++i;
        text.erase(0, i);
      } else if (trim_newline && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
      if (!text.empty()) push(Tok::kText, text, pos_);
      if (open >= src_.size()) break;
      KTX_RETURN_IF_ERROR(lex_tag(open, strip_next, trim_newline));
    }
    push(Tok::kEnd, "", src_.size());
    return std::move(out_);
  }

 private:
  size_t find_open(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void line_col(size_t off, int& line, int& col) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), off) - 1;
    line = static_cast<int>(it - line_starts_.begin()) + 1;
    col = static_cast<int>(off - *it) + 1;
  }

  void push(Tok kind, std::string text, size_t off) {
    Token t{kind, std::move(text)};
    line_col(off, t.line, t.col);
    out_.push_back(std::move(t));
  }

  Status error_at(size_t off, const std::string& what) const {
    int line, col;
    line_col(off, line, col);
    return syntax_error(line, col, what);
  }

  // Strip whitespace at the end of the text token just emitted (for {%- and lstrip_blocks).
  void strip_previous_text(bool only_line_indent, size_t open) {
    if (out_.empty() || out_.back().kind != Tok::kText) return;
    std::string& t = out_.back().text;
    if (only_line_indent) {
      size_t i = open;
      while (i > 0 && (src_[i - 1] == ' ' || src_[i - 1] == '\t')) --i;
      if (i > 0 && src_[i - 1] != '\n') return;  // something else precedes the tag on its line
      t.resize(t.size() - std::min(t.size(), open - i));
    } else {
      while (!t.empty() && is_ws(t.back())) t.pop_back();
    }
    if (t.empty()) out_.pop_back();
  }

  Status lex_tag(size_t open, bool& strip_next, bool& trim_newline) {
    const char kind = src_[open + 1];
    pos_ = open + 2;
    if (pos_ < src_.size() && src_[pos_] == '-') {
      strip_previous_text(false, open);
      ++pos_;
    } else if (pos_ < src_.size() && src_[pos_] == '+') {
      ++pos_;
    } else if (kind != '{') {
      strip_previous_text(true, open);
    }
    if (kind == '#') {
      size_t close = src_.find("#}", pos_);
      if (close == std::string::npos) return error_at(open, "unclosed comment: expected '#}'");
      strip_next = close > pos_ && src_[close - 1] == '-';
      trim_newline = true;
      pos_ = close + 2;
      return Status::ok();
    }
    push(kind == '{' ? Tok::kExprOpen : Tok::kStmtOpen, kind == '{' ? "{{" : "{%", open);
    return lex_inside(open, kind == '{' ? '}' : '%', strip_next, trim_newline);
  }

  // Tokens up to the closing '}}' or '%}'; braces inside (dict literals) are balanced first.
  Status lex_inside(size_t open, char closer, bool& strip_next, bool& trim_newline) {
    int brace_depth = 0;
    while (true) {
      while (pos_ < src_.size() && is_ws(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) {
        return error_at(open, fmt::format("unclosed tag: expected '{}}}' before end of template",
                                          closer));
      }
      const char c = src_[pos_];
      const bool dash = c == '-' && pos_ + 2 < src_.size() && src_[pos_ + 1] == closer &&
                        src_[pos_ + 2] == '}';
      if (brace_depth == 0 && (dash || (c == closer && pos_ + 1 < src_.size() && src_[pos_ + 1] == '}'))) {
        strip_next = dash;
        trim_newline = closer == '%';
        push(closer == '}' ? Tok::kExprClose : Tok::kStmtClose, closer == '}' ? "}}" : "%}", pos_);
        pos_ += dash ? 3 : 2;
        return Status::ok();
      }
      if (c == '{') ++brace_depth;
      if (c == '}') --brace_depth;
      KTX_RETURN_IF_ERROR(lex_token());
    }
  }

  Status lex_token() {
    const size_t start = pos_;
    const char c = src_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
      push(Tok::kName, src_.substr(start, pos_ - start), start);
      return Status::ok();
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number();
    if (c == '\'' || c == '"') return lex_string();
    static const char* kTwo[] = {"==", "!=", "<=", ">=", "//", "**"};
    for (const char* op : kTwo) {
      if (src_.compare(pos_, 2, op) == 0) {
        push(Tok::kOp, op, start);
        pos_ += 2;
        return Status::ok();
      }
    }
    if (std::string("+-*/%~|.,:()[]{}<>=").find(c) != std::string::npos) {
      push(Tok::kOp, std::string(1, c), start);
      ++pos_;
      return Status::ok();
    }
    return error_at(start, fmt::format("unexpected character '{}'", c));
  }

  Status lex_number() {
    const size_t start = pos_;
    while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    }
    const std::string text = src_.substr(start, pos_ - start);
    push(is_float ? Tok::kFloat : Tok::kInt, text, start);
    if (is_float) {
      out_.back().fval = std::strtod(text.c_str(), nullptr);
    } else {
      if (text.size() > 18) return error_at(start, "integer literal '" + text + "' is too large");
      out_.back().ival = std::stoll(text);
    }
    return Status::ok();
  }

  Status lex_string() {
    const size_t start = pos_;
    const char quote = src_[pos_++];
    std::string value;
    while (pos_ < src_.size() && src_[pos_] != quote) {
      char c = src_[pos_++];
      if (c == '\\' && pos_ < src_.size()) {
        const char e = src_[pos_++];
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case '0': c = '\0'; break;
          case '\\': case '\'': case '"': c = e; break;
          default: value += '\\'; c = e;  // Python keeps unknown escapes verbatim
        }
      }
      value += c;
    }
    if (pos_ >= src_.size()) return error_at(start, "unterminated string literal");
    ++pos_;
    push(Tok::kString, std::move(value), start);
    return Status::ok();
  }

  const std::string& src_;
  std::vector<size_t> line_starts_;  // offsets where each line begins, for line/col
  size_t pos_ = 0;
  std::vector<Token> out_;
};

}  // namespace

Expected<std::vector<Token>> lex(const std::string& src) { return Lexer(src).run(); }

}  // namespace ktx::jinja
