// A write-progress bar for long generator runs: percent, GB written, GB/s and ETA. On a
// terminal it redraws one line with carriage returns at most ~10 times a second; into a pipe or
// log file it prints one plain line per 10% so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ktx {

class ProgressBar {
 public:
  // `label` starts each line ("writing model.gguf"). tty selects the redraw style.
  ProgressBar(std::FILE* out, std::string label, bool tty);
  void update(uint64_t done, uint64_t total);
  // Print the final state (100%, total time) once.
  void finish();

 private:
  std::string line(uint64_t done, uint64_t total) const;

  std::FILE* out_;
  std::string label_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_decile_ = -1;
  uint64_t done_ = 0, total_ = 0;
  bool finished_ = false;
};

}  // namespace ktx
