// SHA-256 (FIPS 180-4), used for the GGUF identity hash that plans record. Kept here, small and
// dependency-free, because the reader must hash a few MB of header bytes at every open and the
// result must be stable across machines and library versions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ktx {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  // Convenience: lowercase hex of finish().
  std::string finish_hex();

 private:
  void compress(const uint8_t* block);
  uint32_t state_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lowercase hex SHA-256 of a byte string.
std::string sha256_hex(const void* data, size_t n);

}  // namespace ktx
