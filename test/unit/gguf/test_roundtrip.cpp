// Writer -> reader round trips: every KV type at its extreme values, arrays (empty, of strings,
// of arrays), in-memory and lazily filled tensors with custom alignment, the typed getters'
// conversions and their errors, and the writer's own input checks.
#include <cmath>
#include <limits>

#include "gguf_test_util.h"

namespace ktx {
namespace {

using testing::ScratchDir;

GGUFValue array_of(GGUFValueType elem, std::vector<GGUFValue> items) {
  GGUFValue v;
  v.type = GGUFValueType::ARRAY;
  v.elem_type = elem;
  v.items = std::move(items);
  return v;
}

GGUFValue u16(uint16_t x) {
  GGUFValue v;
  v.type = GGUFValueType::UINT16;
  v.u = x;
  return v;
}

void write_all_kv_types(GGUFWriter* w) {
  w->set_u8("t.u8", 255);
  w->set_i8("t.i8", -128);
  w->set_u16("t.u16", 65535);
  w->set_i16("t.i16", -32768);
  w->set_u32("t.u32", 0xffffffffu);
  w->set_i32("t.i32", std::numeric_limits<int32_t>::min());
  w->set_u64("t.u64", std::numeric_limits<uint64_t>::max());
  w->set_i64("t.i64", std::numeric_limits<int64_t>::min());
  w->set_f32("t.f32", 0.1f);
  w->set_f64("t.f64", -1e300);
  w->set_bool("t.bool", true);
  w->set_str("t.str", std::string("h\xc3\xa9llo\0world", 12));
  w->set_str("t.empty", "");
  w->set_str_array("t.strs", {"a", "", "ccc"});
  w->set_i32_array("t.i32s", {1, -2, 3});
  w->set_f32_array("t.f32s", {0.5f, -1.5f});
  w->set_value("t.nested", array_of(GGUFValueType::ARRAY,
                                    {array_of(GGUFValueType::UINT16, {u16(1), u16(2)}),
                                     array_of(GGUFValueType::UINT16, {})}));
  w->set_value("t.none", array_of(GGUFValueType::INT64, {}));
}

TEST(GGUFRoundTrip, EveryKVTypeSurvives) {
  ScratchDir dir;
  GGUFWriter w;
  write_all_kv_types(&w);
  w.set_u32("t.u32", 7);  // setting a key again replaces the value
  ASSERT_TRUE(w.write(dir.path("kv.gguf")).is_ok());
  auto f = GGUFFile::open(dir.path("kv.gguf"));
  ASSERT_TRUE(f.has_value()) << f.status().message();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->kvs().size(), 18u);
  EXPECT_EQ((*f)->kvs()[4].key, "t.u32");
  EXPECT_EQ(*(*f)->get_int("t.u8"), 255);
  EXPECT_EQ(*(*f)->get_int("t.i8"), -128);
  EXPECT_EQ(*(*f)->get_int("t.u16"), 65535);
  EXPECT_EQ(*(*f)->get_int("t.i16"), -32768);
  EXPECT_EQ(*(*f)->get_int("t.u32"), 7);
  EXPECT_EQ(*(*f)->get_int("t.i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ((*f)->find("t.u64")->u, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*(*f)->get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*(*f)->get_float("t.f32"), double(0.1f));
  EXPECT_EQ(*(*f)->get_float("t.f64"), -1e300);
  EXPECT_TRUE(*(*f)->get_bool("t.bool"));
  EXPECT_EQ(*(*f)->get_string("t.str"), std::string("h\xc3\xa9llo\0world", 12));
  EXPECT_EQ(*(*f)->get_string("t.empty"), "");
  EXPECT_EQ(*(*f)->get_string_array("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(*(*f)->get_int_array("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*(*f)->get_float_array("t.f32s"), (std::vector<double>{0.5, -1.5}));
  EXPECT_EQ(*(*f)->get_float_array("t.i32s"), (std::vector<double>{1, -2, 3}));
  const GGUFValue* nested = (*f)->find("t.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->elem_type, GGUFValueType::ARRAY);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].elem_type, GGUFValueType::UINT16);
  ASSERT_EQ(nested->items[0].items.size(), 2u);
  EXPECT_EQ(nested->items[0].items[1].u, 2u);
  EXPECT_TRUE(nested->items[1].items.empty());
  EXPECT_TRUE((*f)->get_int_array("t.none")->empty());
}

void expect_error(const Status& st, std::initializer_list<const char*> words) {
  ASSERT_FALSE(st.is_ok());
  for (const char* w : words) {
    EXPECT_NE(st.message().find(w), std::string::npos) << "'" << w << "' not in: "
                                                       << st.message();
  }
}

TEST(GGUFRoundTrip, GetterConversionsAndErrors) {
  ScratchDir dir;
  GGUFWriter w;
  write_all_kv_types(&w);
  w.set_u8("t.one", 1);
  w.set_i32("t.two", 2);
  ASSERT_TRUE(w.write(dir.path("kv.gguf")).is_ok());
  auto f = std::move(GGUFFile::open(dir.path("kv.gguf"))).value();
  EXPECT_TRUE(*f->get_bool("t.one"));
  EXPECT_EQ(*f->get_float("t.two"), 2.0);
  EXPECT_EQ(*f->get_int_or("missing", 42), 42);
  EXPECT_EQ(*f->get_float_or("missing", 0.25), 0.25);
  EXPECT_FALSE(*f->get_bool_or("missing", false));
  EXPECT_EQ(*f->get_string_or("missing", "x"), "x");
  expect_error(f->get_int("missing").status(), {"missing", "not found", "kv.gguf"});
  expect_error(f->get_int("t.u64").status(), {"t.u64", "int64"});
  expect_error(f->get_int("t.f32").status(), {"t.f32", "FLOAT32", "integer"});
  expect_error(f->get_float("t.str").status(), {"t.str", "STRING", "float"});
  expect_error(f->get_bool("t.two").status(), {"t.two", "0/1"});
  expect_error(f->get_string("t.u8").status(), {"t.u8", "UINT8", "STRING"});
  expect_error(f->get_string_array("t.i32s").status(), {"t.i32s", "ARRAY of INT32"});
  expect_error(f->get_int_array("t.f32s").status(), {"t.f32s", "ARRAY of FLOAT32"});
  expect_error(f->get_float_array("t.strs").status(), {"t.strs", "ARRAY of STRING"});
  // _or variants still report a present key of the wrong type.
  expect_error(f->get_int_or("t.str", 0).status(), {"t.str", "STRING"});
}

TEST(GGUFRoundTrip, TensorsInMemoryAndLazyWithAlignment) {
  ScratchDir dir;
  GGUFWriter w;
  w.set_u32("general.alignment", 64);
  w.set_str("general.architecture", "test");
  auto a = testing::pattern(4 * 3 * 4, 1);     // F32 [4, 3]
  auto b = testing::pattern(2 * 2 * 34, 2);    // Q8_0 [64, 2]
  auto c = testing::pattern(144, 3);           // Q4_K [256]
  auto d = testing::pattern(8 * 2 * 2 * 2, 4); // F16 [8, 2, 2, 1]
  ASSERT_TRUE(w.add_tensor("a", GGMLType::F32, {4, 3}, a.data(), a.size()).is_ok());
  ASSERT_TRUE(w.add_tensor("b", GGMLType::Q8_0, {64, 2}, b.data(), b.size()).is_ok());
  ASSERT_TRUE(w.add_tensor("c", GGMLType::Q4_K, {256}, c.data(), c.size()).is_ok());
  int fills = 0;
  ASSERT_TRUE(w.add_tensor_lazy("d", GGMLType::F16, {8, 2, 2, 1}, [&](uint8_t* dst, size_t n) {
                 ++fills;
                 ASSERT_EQ(n, d.size());
                 std::memcpy(dst, d.data(), n);
               }).is_ok());
  uint64_t last_done = 0, last_total = 0;
  ASSERT_TRUE(w.write(dir.path("t.gguf"), [&](uint64_t done, uint64_t total) {
                 EXPECT_GE(done, last_done);
                 last_done = done;
                 last_total = total;
               }).is_ok());
  EXPECT_EQ(fills, 1);
  EXPECT_EQ(last_done, std::filesystem::file_size(dir.path("t.gguf")));
  EXPECT_EQ(last_total, last_done);
  EXPECT_FALSE(std::filesystem::exists(dir.path("t.gguf.tmp")));

  auto f = std::move(GGUFFile::open(dir.path("t.gguf"))).value();
  ASSERT_EQ(f->tensors().size(), 4u);
  const std::vector<uint8_t>* want[] = {&a, &b, &c, &d};
  const char* shapes[] = {"[4, 3]", "[64, 2]", "[256]", "[8, 2, 2, 1]"};
  for (size_t i = 0; i < 4; ++i) {
    const GGUFTensorInfo& t = f->tensors()[i];
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ(t.shape_str(), shapes[i]);
    ASSERT_EQ(t.n_bytes, want[i]->size()) << t.name;
    EXPECT_EQ(std::memcmp(t.data, want[i]->data(), t.n_bytes), 0) << t.name;
  }
  EXPECT_EQ(f->find_tensor("b")->type, GGMLType::Q8_0);
  EXPECT_EQ(f->find_tensor("d")->n_elements(), 32);
  EXPECT_EQ(f->find_tensor("d")->n_rows(), 4);
}

TEST(GGUFRoundTrip, IdentityHashCoversMetadataNotData) {
  ScratchDir dir;
  auto make = [&](const std::string& name, uint32_t seed, const std::string& arch) {
    GGUFWriter w;
    w.set_str("general.architecture", arch);
    auto data = testing::pattern(64, seed);
    EXPECT_TRUE(w.add_tensor("x", GGMLType::F32, {16}, data.data(), data.size()).is_ok());
    EXPECT_TRUE(w.write(dir.path(name)).is_ok());
    return std::move(GGUFFile::open(dir.path(name))).value()->identity_hash();
  };
  std::string h1 = make("a.gguf", 1, "llama");
  EXPECT_EQ(h1.size(), 64u);
  EXPECT_EQ(make("b.gguf", 2, "llama"), h1);   // other tensor bytes, same identity
  EXPECT_NE(make("c.gguf", 1, "llamb"), h1);   // one metadata byte differs
}

// GGUF v2 has v3's layout (64-bit counts and lengths); only the version field differs.
TEST(GGUFRoundTrip, Version2IsRead) {
  ScratchDir dir;
  GGUFWriter w;
  write_all_kv_types(&w);
  auto data = testing::pattern(32, 7);
  ASSERT_TRUE(w.add_tensor("x", GGMLType::F32, {8}, data.data(), data.size()).is_ok());
  ASSERT_TRUE(w.write(dir.path("v3.gguf")).is_ok());
  auto bytes = testing::read_bytes(dir.path("v3.gguf"));
  testing::patch<uint32_t>(&bytes, 4, 2);
  testing::write_bytes(dir.path("v2.gguf"), bytes, bytes.size());
  auto f = GGUFFile::open(dir.path("v2.gguf"));
  ASSERT_TRUE(f.has_value()) << f.status().message();
  EXPECT_EQ((*f)->version(), 2u);
  EXPECT_EQ(*(*f)->get_string_array("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(std::memcmp((*f)->find_tensor("x")->data, data.data(), data.size()), 0);
}

TEST(GGUFRoundTrip, WriterRejectsBadInput) {
  ScratchDir dir;
  GGUFWriter w;
  std::vector<uint8_t> buf(1 << 12);
  ASSERT_TRUE(w.add_tensor("t", GGMLType::F32, {4}, buf.data(), 16).is_ok());
  expect_error(w.add_tensor("t", GGMLType::F32, {4}, buf.data(), 16), {"duplicate", "'t'"});
  expect_error(w.add_tensor("", GGMLType::F32, {4}, buf.data(), 16), {"name"});
  expect_error(w.add_tensor("z", GGMLType::F32, {}, buf.data(), 0), {"'z'", "0 dimensions"});
  expect_error(w.add_tensor("z", GGMLType::F32, {1, 1, 1, 1, 1}, buf.data(), 4), {"5 dim"});
  expect_error(w.add_tensor("z", GGMLType::F32, {4, 0}, buf.data(), 0), {"ne[1] = 0"});
  expect_error(w.add_tensor("z", GGMLType::Q8_0, {33}, buf.data(), 34), {"not a multiple", "Q8_0"});
  expect_error(w.add_tensor("z", GGMLType::F32, {4}, buf.data(), 15), {"'z'", "15 bytes", "16"});
  expect_error(w.add_tensor("z", GGMLType(99), {4}, buf.data(), 16), {"99", "fork-specific"});
  expect_error(w.add_tensor_lazy("z", GGMLType::F32, {4}, nullptr), {"fill"});
  expect_error(w.write(dir.path("no/such/dir/x.gguf")),
               {"no/such/dir/x.gguf", "No such file or directory"});

  GGUFWriter bad_align;
  bad_align.set_u32("general.alignment", 48);
  expect_error(bad_align.write(dir.path("a.gguf")), {"general.alignment", "power of two"});
  GGUFWriter bad_array;
  bad_array.set_value("k", array_of(GGUFValueType::UINT16, {u16(1), GGUFValue{}}));
  expect_error(bad_array.write(dir.path("b.gguf")), {"'k'", "element 1", "UINT8", "UINT16"});
  EXPECT_FALSE(std::filesystem::exists(dir.path("b.gguf")));
}

}  // namespace
}  // namespace ktx
