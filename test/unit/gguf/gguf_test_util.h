// Helpers shared by the GGUF tests: a per-test scratch directory, whole-file read/write, and
// in-place little-endian field patching for corruption tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"

namespace ktx::testing {

// A fresh directory under the build tree (or /tmp), removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("ktx_gguf_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" +
            info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Unlinks first: rewriting a truncated file makes ext4 flush it on close (auto_da_alloc),
// which would make the thousands of rewrites in the corruption tests slow.
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, size_t n) {
  std::filesystem::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(n));
}

// Offset of the first occurrence of `s` in `bytes` at or after `from`; fails the test if absent.
inline size_t find_bytes(const std::vector<uint8_t>& bytes, const std::string& s,
                         size_t from = 0) {
  auto it = std::search(bytes.begin() + from, bytes.end(), s.begin(), s.end());
  EXPECT_NE(it, bytes.end()) << "'" << s << "' not found";
  return it == bytes.end() ? 0 : size_t(it - bytes.begin());
}

template <class T>
void patch(std::vector<uint8_t>* bytes, size_t at, T v) {
  ASSERT_LE(at + sizeof(T), bytes->size());
  std::memcpy(bytes->data() + at, &v, sizeof(T));
}

template <class T>
T peek(const std::vector<uint8_t>& bytes, size_t at) {
  T v{};
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

// Bytes 0..n-1 as a little pattern that depends on a seed, for tensor contents.
inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1103515245u + 12345u;
    b = uint8_t(x >> 16);
  }
  return v;
}

}  // namespace ktx::testing
