// TextFilter (text_filter.h): two hold-back buffers in a row, stop strings first (they are
// matched on the raw generated text, as OpenAI and llama-server do), then the think tags.
#include "runtime/serve/text_filter.h"

#include <algorithm>
#include <utility>

namespace ktx::serve {
namespace {

constexpr std::string_view kOpen = "<think>", kClose = "</think>";

// Length of the longest suffix of s that is a proper prefix of one of `pats`.
size_t partial_suffix(const std::string& s, const std::vector<std::string_view>& pats) {
  size_t best = 0;
  for (std::string_view p : pats)
    if (!p.empty())
      for (size_t k = std::min(s.size(), p.size() - 1); k > best; --k)
      if (s.compare(s.size() - k, k, p.data(), k) == 0) {
        best = k;
        break;
      }
  return best;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

TextFilter::TextFilter(std::vector<std::string> stop, bool split_reasoning, bool in_think)
    : stop_(std::move(stop)), split_(split_reasoning),
      mode_(!split_reasoning ? Mode::content : in_think ? Mode::think : Mode::start) {}

TextFilter::Out TextFilter::push(const std::string& text) {
  Out out;
  if (stopped_) return out;
  held_ += text;
  size_t cut = std::string::npos;
  for (const std::string& s : stop_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    route(held_.substr(0, cut), true, out);
    held_.clear();
    stopped_ = out.stopped = true;
    return out;
  }
  std::vector<std::string_view> pats(stop_.begin(), stop_.end());
  const size_t keep = partial_suffix(held_, pats);
  route(held_.substr(0, held_.size() - keep), false, out);
  held_.erase(0, held_.size() - keep);
  return out;
}

TextFilter::Out TextFilter::flush() {
  Out out;
  if (!stopped_) route(std::exchange(held_, {}), true, out);
  return out;
}

void TextFilter::route(std::string text, bool final, Out& out) {
  tag_ += text;
  while (!tag_.empty()) {
    if (mode_ == Mode::content) {
      if (trim_after_think_) {
        size_t n = 0;
        while (n < tag_.size() && is_space(tag_[n])) ++n;
        tag_.erase(0, n);
        if (tag_.empty()) break;
        trim_after_think_ = false;
      }
      out.content += tag_;
      tag_.clear();
      break;
    }
    if (mode_ == Mode::start) {
      // An opening tag counts only at the very start (leading whitespace allowed).
      size_t n = 0;
      while (n < tag_.size() && is_space(tag_[n])) ++n;
      std::string_view rest(tag_.data() + n, tag_.size() - n);
      if (rest.substr(0, kOpen.size()) == kOpen) {
        tag_.erase(0, n + kOpen.size());
        mode_ = Mode::think;
        continue;
      }
      if (!final && kOpen.substr(0, rest.size()) == rest) break;  // may still become the tag
      mode_ = Mode::content;
      continue;
    }
    // Mode::think
    const size_t close = tag_.find(kClose);
    if (close != std::string::npos) {
      out.reasoning += tag_.substr(0, close);
      tag_.erase(0, close + kClose.size());
      mode_ = Mode::content;
      trim_after_think_ = true;
      continue;
    }
    const size_t keep = final ? 0 : partial_suffix(tag_, {kClose});
    out.reasoning += tag_.substr(0, tag_.size() - keep);
    tag_.erase(0, tag_.size() - keep);
    break;
  }
}

}  // namespace ktx::serve
