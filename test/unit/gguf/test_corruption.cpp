// Systematic corruption of a small valid GGUF: every header field, KV field, tensor-table field
// and data bound is broken in turn, and open() must fail with a message that names the file and
// the problem. Then the file is truncated at every byte offset, and random bytes of the
// header region are flipped: open() must fail cleanly (or, for harmless flips, succeed with all
// tensor data in bounds), never crash.
#include <functional>
#include <random>

#include "gguf_test_util.h"

namespace ktx {
namespace {

using testing::find_bytes;
using testing::patch;
using testing::peek;
using Bytes = std::vector<uint8_t>;

// The valid base file. tensor.c is last and 32 bytes long, so the file ends exactly at the end
// of its data and every truncation cuts something that is needed.
Bytes make_base(const testing::ScratchDir& dir) {
  GGUFWriter w;
  w.set_u32("general.alignment", 32);
  w.set_str("test.str", "hello");
  w.set_str("test.st2", "world");
  w.set_i32_array("test.arr", {1, 2, 3});
  w.set_str_array("test.strs", {"x", "yy"});
  w.set_bool("test.bool", true);
  auto a = testing::pattern(64, 1), b = testing::pattern(68, 2), c = testing::pattern(32, 3);
  EXPECT_TRUE(w.add_tensor("tensor.a", GGMLType::F32, {8, 2}, a.data(), a.size()).is_ok());
  EXPECT_TRUE(w.add_tensor("tensor.b", GGMLType::Q8_0, {32, 2}, b.data(), b.size()).is_ok());
  EXPECT_TRUE(w.add_tensor("tensor.c", GGMLType::F32, {8}, c.data(), c.size()).is_ok());
  EXPECT_TRUE(w.write(dir.path("base.gguf")).is_ok());
  return testing::read_bytes(dir.path("base.gguf"));
}

// Offsets of fields in the base file, found from the names they follow.
size_t key_at(const Bytes& f, const std::string& key) { return find_bytes(f, key); }
size_t kv_type_at(const Bytes& f, const std::string& key) { return key_at(f, key) + key.size(); }
size_t kv_value_at(const Bytes& f, const std::string& key) { return kv_type_at(f, key) + 4; }
size_t tensor_at(const Bytes& f, const std::string& name) { return find_bytes(f, name) + name.size(); }
size_t ne_at(const Bytes& f, const std::string& name, int d) { return tensor_at(f, name) + 4 + 8 * d; }
size_t type_at(const Bytes& f, const std::string& name) {
  return ne_at(f, name, int(peek<uint32_t>(f, tensor_at(f, name))));
}
size_t offset_at(const Bytes& f, const std::string& name) { return type_at(f, name) + 4; }

struct Case {
  const char* what;
  std::function<void(Bytes*)> mutate;
  std::vector<std::string> words;
};

std::vector<Case> corruption_cases() {
  return {
      {"bad magic", [](Bytes* f) { (*f)[0] = 'X'; }, {"magic", "not a GGUF file"}},
      {"version 1", [](Bytes* f) { patch<uint32_t>(f, 4, 1); }, {"version 1", "not supported"}},
      {"version 4", [](Bytes* f) { patch<uint32_t>(f, 4, 4); }, {"version 4", "expected version 2 or 3"}},
      {"big-endian", [](Bytes* f) { patch<uint32_t>(f, 4, 0x03000000); }, {"big-endian"}},
      {"huge tensor count", [](Bytes* f) { patch<uint64_t>(f, 8, 1ull << 40); }, {"tensor count", "implausible"}},
      {"huge kv count", [](Bytes* f) { patch<uint64_t>(f, 16, 1ull << 40); }, {"kv count", "implausible"}},
      {"max kv count", [](Bytes* f) { patch<uint64_t>(f, 16, ~0ull); }, {"kv count", "implausible"}},
      {"one tensor too many", [](Bytes* f) { patch<uint64_t>(f, 8, 4); }, {"tensor"}},
      {"string past EOF", [](Bytes* f) { patch<uint64_t>(f, kv_value_at(*f, "test.str"), 1ull << 40); },
       {"test.str", "runs past end of file"}},
      {"key length past EOF", [](Bytes* f) { patch<uint64_t>(f, key_at(*f, "test.st2") - 8, 1ull << 40); },
       {"key #2", "length"}},
      {"empty key", [](Bytes* f) { patch<uint64_t>(f, key_at(*f, "test.st2") - 8, 0); }, {"key #2", "length 0"}},
      {"bad kv type", [](Bytes* f) { patch<uint32_t>(f, kv_type_at(*f, "test.str"), 13); },
       {"test.str", "value type id 13"}},
      {"bad array type", [](Bytes* f) { patch<uint32_t>(f, kv_value_at(*f, "test.arr"), 13); },
       {"test.arr", "array element type id 13"}},
      {"huge array", [](Bytes* f) { patch<uint64_t>(f, kv_value_at(*f, "test.arr") + 4, 1ull << 20); },
       {"test.arr", "array of", "remain"}},
      {"array over the element limit", [](Bytes* f) {
         patch<uint32_t>(f, kv_value_at(*f, "test.arr"), 0);  // UINT8 elements: 1 byte each
         patch<uint64_t>(f, kv_value_at(*f, "test.arr") + 4, (1ull << 24) + 1);
       }, {"test.arr", "limit"}},
      {"array string past EOF", [](Bytes* f) { patch<uint64_t>(f, kv_value_at(*f, "test.strs") + 12, 1ull << 40); },
       {"test.strs", "element 0 of 2", "runs past end of file"}},
      {"bad bool", [](Bytes* f) { (*f)[kv_value_at(*f, "test.bool")] = 2; }, {"test.bool", "bool byte is 2"}},
      {"duplicate key", [](Bytes* f) { (*f)[key_at(*f, "test.st2") + 7] = 'r'; }, {"duplicate key 'test.str'"}},
      {"alignment not power of two", [](Bytes* f) { patch<uint32_t>(f, kv_value_at(*f, "general.alignment"), 48); },
       {"general.alignment", "= 48", "power of two"}},
      {"alignment zero", [](Bytes* f) { patch<uint32_t>(f, kv_value_at(*f, "general.alignment"), 0); },
       {"general.alignment", "power of two"}},
      {"alignment wrong type", [](Bytes* f) { patch<uint32_t>(f, kv_type_at(*f, "general.alignment"), 5); },
       {"general.alignment", "INT32", "expected UINT32"}},
      {"n_dims 0", [](Bytes* f) { patch<uint32_t>(f, tensor_at(*f, "tensor.a"), 0); }, {"tensor.a", "n_dims = 0", "1..4"}},
      {"n_dims 5", [](Bytes* f) { patch<uint32_t>(f, tensor_at(*f, "tensor.a"), 5); }, {"tensor.a", "n_dims = 5"}},
      {"ne 0", [](Bytes* f) { patch<int64_t>(f, ne_at(*f, "tensor.a", 1), 0); }, {"tensor.a", "ne[1] = 0", ">= 1"}},
      {"negative ne", [](Bytes* f) { patch<int64_t>(f, ne_at(*f, "tensor.a", 0), -8); }, {"tensor.a", "ne[0] = -8"}},
      {"ne overflow", [](Bytes* f) {
         patch<int64_t>(f, ne_at(*f, "tensor.a", 0), 1ll << 40);
         patch<int64_t>(f, ne_at(*f, "tensor.a", 1), 1ll << 40);
       }, {"tensor.a", "overflows"}},
      {"type 99", [](Bytes* f) { patch<uint32_t>(f, type_at(*f, "tensor.b"), 99); }, {"tensor.b", "99", "fork-specific"}},
      {"type 142", [](Bytes* f) { patch<uint32_t>(f, type_at(*f, "tensor.b"), 142); }, {"tensor.b", "142", "fork-specific"}},
      {"removed type 4", [](Bytes* f) { patch<uint32_t>(f, type_at(*f, "tensor.b"), 4); }, {"tensor.b", "id 4", "no known block layout"}},
      {"row not whole blocks", [](Bytes* f) { patch<int64_t>(f, ne_at(*f, "tensor.b", 0), 16); },
       {"tensor.b", "ne[0] = 16", "not a multiple", "Q8_0"}},
      {"misaligned offset", [](Bytes* f) { patch<uint64_t>(f, offset_at(*f, "tensor.b"), peek<uint64_t>(*f, offset_at(*f, "tensor.b")) + 4); },
       {"tensor.b", "not a multiple of the alignment 32"}},
      {"offset past EOF", [](Bytes* f) { patch<uint64_t>(f, offset_at(*f, "tensor.c"), 1ull << 20); },
       {"tensor.c", "offset 0x100000", "runs past end of file"}},
      {"huge offset", [](Bytes* f) { patch<uint64_t>(f, offset_at(*f, "tensor.c"), ~0ull << 5); },
       {"tensor.c", "runs past end of file"}},
      {"data past EOF", [](Bytes* f) { patch<int64_t>(f, ne_at(*f, "tensor.c", 0), 1024); },
       {"tensor.c", "4096 bytes", "runs past end of file"}},
      {"overlap", [](Bytes* f) { patch<uint64_t>(f, offset_at(*f, "tensor.b"), 32); },
       {"tensor.a", "tensor.b", "overlap"}},
      {"duplicate tensor name", [](Bytes* f) { (*f)[find_bytes(*f, "tensor.b") + 7] = 'a'; },
       {"duplicate tensor name 'tensor.a'"}},
  };
}

TEST(GGUFCorruption, EveryFieldFailsWithAClearMessage) {
  testing::ScratchDir dir;
  const Bytes base = make_base(dir);
  ASSERT_TRUE(GGUFFile::open(dir.path("base.gguf")).has_value());
  const std::string path = dir.path("c.gguf");
  for (const Case& c : corruption_cases()) {
    SCOPED_TRACE(c.what);
    Bytes f = base;
    c.mutate(&f);
    ASSERT_NE(f, base);
    testing::write_bytes(path, f, f.size());
    auto opened = GGUFFile::open(path);
    ASSERT_FALSE(opened.has_value());
    const std::string& msg = opened.status().message();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const std::string& w : c.words) {
      EXPECT_NE(msg.find(w), std::string::npos) << "'" << w << "' not in: " << msg;
    }
  }
}

TEST(GGUFCorruption, TruncationAtEveryByteFails) {
  testing::ScratchDir dir;
  const Bytes base = make_base(dir);
  const std::string path = dir.path("t.gguf");
  for (size_t n = 0; n < base.size(); ++n) {
    testing::write_bytes(path, base, n);
    auto opened = GGUFFile::open(path);
    ASSERT_FALSE(opened.has_value()) << "truncated to " << n << " of " << base.size();
    EXPECT_NE(opened.status().message().find(path), std::string::npos);
  }
}

TEST(GGUFCorruption, RandomHeaderBytesNeverCrash) {
  testing::ScratchDir dir;
  const Bytes base = make_base(dir);
  const size_t header_end = find_bytes(base, "tensor.c") + 8 + 4 + 8 + 4 + 8;
  const std::string path = dir.path("r.gguf");
  std::mt19937 rng(1234);
  int opened_ok = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    Bytes f = base;
    for (int k = 0, n = 1 + int(rng() % 3); k < n; ++k) f[rng() % header_end] = uint8_t(rng());
    testing::write_bytes(path, f, f.size());
    auto opened = GGUFFile::open(path);
    if (!opened.has_value()) continue;
    // A flip the format cannot detect (a string byte, a value): every tensor byte must still
    // be readable (reading outside the mapping would crash the test) and fit in the file.
    ++opened_ok;
    uint64_t sum = 0, total = 0;
    for (const auto& t : opened.value()->tensors()) {
      for (uint64_t i = 0; i < t.n_bytes; ++i) sum += t.data[i];
      total += t.n_bytes;
    }
    EXPECT_LE(total, f.size());
    EXPECT_LE(sum, 255 * total);
  }
  EXPECT_LT(opened_ok, 2000);
}

// Arrays nested far deeper than any real file are refused before they exhaust the stack.
TEST(GGUFCorruption, DeeplyNestedArraysRefused) {
  testing::ScratchDir dir;
  Bytes f;
  auto put32 = [&](uint32_t v) { f.insert(f.end(), (uint8_t*)&v, (uint8_t*)&v + 4); };
  auto put64 = [&](uint64_t v) { f.insert(f.end(), (uint8_t*)&v, (uint8_t*)&v + 8); };
  put32(0x46554747), put32(3), put64(0), put64(1), put64(1), f.push_back('k');
  put32(9);  // ARRAY
  for (int i = 0; i < 100000; ++i) put32(9), put64(1);
  testing::write_bytes(dir.path("n.gguf"), f, f.size());
  auto opened = GGUFFile::open(dir.path("n.gguf"));
  ASSERT_FALSE(opened.has_value());
  EXPECT_NE(opened.status().message().find("nested deeper"), std::string::npos)
      << opened.status().message();
}

TEST(GGUFCorruption, KnownButUnsupportedTypesAreListed) {
  testing::ScratchDir dir;
  GGUFWriter w;
  std::vector<uint8_t> block(136);  // one IQ4_XS block of 256 elements
  ASSERT_TRUE(w.add_tensor("w", GGMLType::IQ4_XS, {256}, block.data(), block.size()).is_ok());
  ASSERT_TRUE(w.write(dir.path("iq.gguf")).is_ok());
  auto f = GGUFFile::open(dir.path("iq.gguf"));
  ASSERT_TRUE(f.has_value()) << f.status().message();
  const GGUFTensorInfo* t = (*f)->find_tensor("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->n_bytes, 136u);
  EXPECT_FALSE(check_type_supported(uint32_t(t->type)).is_ok());
}

}  // namespace
}  // namespace ktx
