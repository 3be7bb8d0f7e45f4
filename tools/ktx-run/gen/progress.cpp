// Progress bar of `ktx-run gen` (see progress.h).
#include "tools/ktx-run/gen/progress.h"

#include <fmt/format.h>

namespace ktx {

namespace {
constexpr auto kMinRedraw = std::chrono::milliseconds(100);
}

ProgressBar::ProgressBar(std::FILE* out, std::string label, bool tty)
    : out_(out), label_(std::move(label)), tty_(tty), start_(std::chrono::steady_clock::now()) {}

std::string ProgressBar::line(uint64_t done, uint64_t total) const {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const double rate = secs > 0 ? static_cast<double>(done) / secs / 1e9 : 0.0;
  std::string eta = "--";
  if (rate > 0 && done < total) {
    const int s = static_cast<int>(static_cast<double>(total - done) / 1e9 / rate);
    eta = fmt::format("{}:{:02}", s / 60, s % 60);
  }
  return fmt::format("{}: {:5.1f}%  {:.2f}/{:.2f} GB  {:.2f} GB/s  ETA {}", label_, 100.0 * frac,
                     static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9, rate, eta);
}

void ProgressBar::update(uint64_t done, uint64_t total) {
  done_ = done;
  total_ = total;
  if (finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < kMinRedraw) return;
    last_draw_ = now;
    fmt::print(out_, "\r{}\x1b[K", line(done, total));
    std::fflush(out_);
    return;
  }
  const int decile = total ? static_cast<int>(done * 10 / total) : 10;
  if (decile == last_decile_) return;
  last_decile_ = decile;
  fmt::print(out_, "{}\n", line(done, total));
  std::fflush(out_);
}

void ProgressBar::finish() {
  if (finished_) return;
  if (tty_) {
    fmt::print(out_, "\r{}\x1b[K\n", line(total_, total_));
  } else if (last_decile_ != 10) {
    fmt::print(out_, "{}\n", line(total_, total_));
  }
  finished_ = true;
  std::fflush(out_);
}

}  // namespace ktx
