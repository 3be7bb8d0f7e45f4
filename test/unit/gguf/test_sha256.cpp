// SHA-256 against the FIPS 180-4 / NIST example vectors, and incremental hashing in uneven
// pieces against one-shot hashing (the identity hash feeds several parts one after another).
#include <gtest/gtest.h>

#include <string>

#include "common/gguf/sha256.h"

namespace ktx {
namespace {

TEST(Sha256, StandardVectors) {
  EXPECT_EQ(sha256_hex("", 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million.data(), million.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += char('a' + i % 26) + std::to_string(i);
  const std::string expected = sha256_hex(data.data(), data.size());
  for (size_t piece : {1u, 3u, 55u, 63u, 64u, 65u, 127u, 1000u}) {
    Sha256 h;
    for (size_t at = 0; at < data.size(); at += piece) {
      h.update(data.data() + at, std::min(piece, data.size() - at));
    }
    EXPECT_EQ(h.finish_hex(), expected) << "piece size " << piece;
  }
}

}  // namespace
}  // namespace ktx
