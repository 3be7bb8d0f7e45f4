// What a request's generated text goes through before it is sent: stop strings (the text up
// to the first match is kept, the rest and the match are dropped, and generation ends) and
// DeepSeek-R1-style reasoning, "<think>…</think>", which goes to reasoning_content instead of
// content. Text that may still turn into a stop string or a tag is held back until it cannot,
// so a stream never sends what a later token would have to take back.
#pragma once

#include <string>
#include <vector>

namespace ktx::serve {

class TextFilter {
 public:
  struct Out {
    std::string content, reasoning;
    bool stopped = false;  // a stop string matched: nothing more is accepted
  };
  // split_reasoning: route <think> blocks to reasoning. in_think: the prompt already opened one
  // (templates that end the generation prompt with "<think>\n").
  TextFilter(std::vector<std::string> stop, bool split_reasoning, bool in_think);
  Out push(const std::string& text);
  Out flush();  // everything still held back (the generation ended)
  bool stopped() const { return stopped_; }

 private:
  void route(std::string text, bool final, Out& out);

  std::vector<std::string> stop_;
  bool split_;
  enum class Mode { start, think, content } mode_;
  bool trim_after_think_ = false;  // drop whitespace right after </think>
  bool stopped_ = false;
  std::string held_;   // may be the start of a stop string
  std::string tag_;    // may be the start of <think> or </think>
};

}  // namespace ktx::serve
