// Split models (NAME-0000i-of-0000N.gguf): all parts open together, each tensor points into its
// own part, and missing parts or inconsistent split.* keys are reported naming the file.
#include "gguf_test_util.h"

namespace ktx {
namespace {

constexpr int kParts = 3;

struct SplitOptions {
  int split_count_in_last = kParts;  // split.count written into the last part
  int split_no_offset = 0;           // added to split.no of part 2
  int tensors_count = 2 * kParts;    // split.tensors.count written into part 1
  bool duplicate_name = false;       // part 3 reuses a name of part 1
};

std::string part_name(int i) { return fmt::format("model-{:05d}-of-{:05d}.gguf", i, kParts); }

std::vector<uint8_t> tensor_bytes(int part, int j) { return testing::pattern(64, uint32_t(10 * part + j)); }

void write_split(const testing::ScratchDir& dir, const SplitOptions& opt = {}) {
  for (int i = 0; i < kParts; ++i) {
    GGUFWriter w;
    if (i == 0) w.set_str("general.architecture", "splittest");
    w.set_u16("split.no", uint16_t(i + (i == 1 ? opt.split_no_offset : 0)));
    w.set_u16("split.count", uint16_t(i == kParts - 1 ? opt.split_count_in_last : kParts));
    w.set_i32("split.tensors.count", opt.tensors_count);
    for (int j = 0; j < 2; ++j) {
      std::string name = fmt::format("p{}.t{}", i, j);
      if (opt.duplicate_name && i == kParts - 1 && j == 1) name = "p0.t0";
      auto data = tensor_bytes(i, j);
      ASSERT_TRUE(w.add_tensor(name, GGMLType::F32, {16}, data.data(), data.size()).is_ok());
    }
    ASSERT_TRUE(w.write(dir.path(part_name(i + 1))).is_ok());
  }
}

void expect_open_error(const std::string& path, std::initializer_list<std::string> words) {
  auto f = GGUFFile::open(path);
  ASSERT_FALSE(f.has_value());
  for (const auto& w : words) {
    EXPECT_NE(f.status().message().find(w), std::string::npos)
        << "'" << w << "' not in: " << f.status().message();
  }
}

TEST(GGUFSplit, OpensAllPartsWithTensorsInTheirOwnPart) {
  testing::ScratchDir dir;
  write_split(dir);
  auto f = GGUFFile::open(dir.path(part_name(1)));
  ASSERT_TRUE(f.has_value()) << f.status().message();
  EXPECT_EQ((*f)->n_splits(), size_t(kParts));
  EXPECT_EQ(*(*f)->get_string("general.architecture"), "splittest");
  uint64_t total = 0;
  for (int i = 1; i <= kParts; ++i) total += std::filesystem::file_size(dir.path(part_name(i)));
  EXPECT_EQ((*f)->total_size(), total);
  EXPECT_NE((*f)->describe().find("3 parts"), std::string::npos);
  ASSERT_EQ((*f)->tensors().size(), size_t(2 * kParts));
  for (int i = 0; i < kParts; ++i) {
    for (int j = 0; j < 2; ++j) {
      const GGUFTensorInfo* t = (*f)->find_tensor(fmt::format("p{}.t{}", i, j));
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->split, uint32_t(i));
      auto want = tensor_bytes(i, j);
      EXPECT_EQ(std::memcmp(t->data, want.data(), want.size()), 0) << t->name;
    }
  }
}

TEST(GGUFSplit, IdentityHashCoversEveryPart) {
  testing::ScratchDir dir;
  write_split(dir);
  std::string h1 = std::move(GGUFFile::open(dir.path(part_name(1)))).value()->identity_hash();
  // Rewrite the last part with one more metadata key: the identity must change.
  GGUFWriter w;
  w.set_u16("split.no", kParts - 1);
  w.set_u16("split.count", kParts);
  w.set_i32("split.tensors.count", 2 * kParts);
  w.set_str("extra", "x");
  for (int j = 0; j < 2; ++j) {
    auto data = tensor_bytes(kParts - 1, j);
    ASSERT_TRUE(w.add_tensor(fmt::format("p{}.t{}", kParts - 1, j), GGMLType::F32, {16},
                             data.data(), data.size()).is_ok());
  }
  ASSERT_TRUE(w.write(dir.path(part_name(kParts))).is_ok());
  auto f = GGUFFile::open(dir.path(part_name(1)));
  ASSERT_TRUE(f.has_value()) << f.status().message();
  EXPECT_NE((*f)->identity_hash(), h1);
}

TEST(GGUFSplit, MissingPartIsNamed) {
  testing::ScratchDir dir;
  write_split(dir);
  std::filesystem::remove(dir.path(part_name(2)));
  expect_open_error(dir.path(part_name(1)), {dir.path(part_name(2)), "part 2 of 3", "missing"});
}

TEST(GGUFSplit, InconsistentSplitKeys) {
  {
    testing::ScratchDir dir;
    write_split(dir, {.split_count_in_last = 4});
    expect_open_error(dir.path(part_name(1)), {part_name(3), "split.count = 4", "3 parts"});
  }
  {
    testing::ScratchDir dir;
    write_split(dir, {.split_no_offset = 5});
    expect_open_error(dir.path(part_name(1)), {part_name(2), "split.no = 6", "expected 1"});
  }
  {
    testing::ScratchDir dir;
    write_split(dir, {.tensors_count = 7});
    expect_open_error(dir.path(part_name(1)), {"split.tensors.count = 7", "hold 6 tensors"});
  }
  {
    testing::ScratchDir dir;
    write_split(dir, {.duplicate_name = true});
    expect_open_error(dir.path(part_name(1)), {"'p0.t0'", part_name(3), "also appears in"});
  }
}

TEST(GGUFSplit, LaterPartOrMisnamedFileIsRefused) {
  testing::ScratchDir dir;
  write_split(dir);
  expect_open_error(dir.path(part_name(2)), {"part 2 of 3", part_name(1)});
  // A part renamed to a plain name: its split.count says other parts exist.
  std::filesystem::copy_file(dir.path(part_name(1)), dir.path("plain.gguf"));
  expect_open_error(dir.path("plain.gguf"), {"plain.gguf", "split.count = 3"});
}

}  // namespace
}  // namespace ktx
