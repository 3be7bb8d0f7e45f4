// Status and Expected<T>: how library code reports failure. Tools turn an error into one clear
// message and a non-zero exit; library code never aborts on user input.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ktx {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string msg) {
    Status s;
    s.ok_ = false;
    s.msg_ = std::move(msg);
    return s;
  }
  bool is_ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return msg_; }
  // Prefix the message with context: "gguf: " + msg.
  Status with_context(const std::string& ctx) const {
    return ok_ ? *this : error(ctx + ": " + msg_);
  }

 private:
  bool ok_ = true;
  std::string msg_;
};

// fmt-style error constructor: return Error("tensor '{}' missing", name);
template <typename... Args>
Status Error(fmt::format_string<Args...> f, Args&&... args) {
  return Status::error(fmt::format(f, std::forward<Args>(args)...));
}

template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Expected(Status st) : v_(std::move(st)) {     // NOLINT(implicit)
    assert(!std::get<Status>(v_).is_ok() && "Expected built from an ok Status");
  }
  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Status& status() const {
    static const Status kOk;
    return has_value() ? kOk : std::get<1>(v_);
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ktx

// Propagate a failed Status / Expected from the current function.
#define KTX_CONCAT_INNER(a, b) a##b
#define KTX_CONCAT(a, b) KTX_CONCAT_INNER(a, b)
#define KTX_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::ktx::Status ktx_st_ = (expr);               \
    if (!ktx_st_.is_ok()) return ktx_st_;         \
  } while (0)
#define KTX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.has_value()) return tmp.status();      \
  lhs = std::move(tmp).value()
#define KTX_ASSIGN_OR_RETURN(lhs, expr) \
  KTX_ASSIGN_OR_RETURN_IMPL(KTX_CONCAT(ktx_exp_, __LINE__), lhs, expr)
