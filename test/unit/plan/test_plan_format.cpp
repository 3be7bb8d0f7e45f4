// Plan format v1: round trip, text dump, and every way read_plan must refuse a file (foreign
// magic, other versions, header damage, truncation at every offset, payload corruption in
// each section, unknown/missing/duplicate sections, malformed payload fields).
#include <nlohmann/json.hpp>

#include "test/unit/plan/plan_test_util.h"

namespace ktx {
namespace {

using nlohmann::json;
using test::build_container;
using test::RawSection;

class PlanFormat : public ::testing::Test {
 protected:
  void SetUp() override {
    plan_ = test::make_plan(test::model_path("qwen3moe.Q8_0.gguf"));
    path_ = test::temp_path(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  // Valid v1 payloads, written from the schema in docs/plan-format.md.
  std::vector<RawSection> valid_sections() const {
    json ops = json::array();
    ops.push_back({{"name", "x"}, {"kind", "embed"}, {"layer", -1}, {"device", "cpu"},
                   {"tensors", {"token_embd.weight"}}, {"attrs", json::object()}});
    return {{"gguf", 1, json{{"path", "/m.gguf"}, {"total_size", 7}, {"hash", "ab"},
                             {"n_splits", 1}}.dump()},
            {"hw", 1, json{{"cpu_isa", {"avx2"}}, {"gpu_arch", ""}, {"threads", 4}}.dump()},
            {"model", 1, plan_.model.to_json().dump()},
            {"program", 1, json{{"producer", "t"}, {"ops", ops}}.dump()}};
  }
  std::string read_error(const std::string& bytes) {
    test::write_bytes(path_, bytes);
    auto r = read_plan(path_);
    EXPECT_FALSE(r.has_value()) << "accepted a bad plan";
    return r.has_value() ? "" : r.status().message();
  }
  // Replace one section's payload (by name) and return the error.
  std::string payload_error(const std::string& section, const json& payload) {
    auto s = valid_sections();
    for (auto& r : s) {
      if (r.name == section) r.payload = payload.dump();
    }
    return read_error(build_container(1, s));
  }
  Plan plan_;
  std::string path_;
};

TEST_F(PlanFormat, RoundTrip) {
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  auto back = read_plan(path_);
  ASSERT_TRUE(back.has_value()) << back.status().message();
  EXPECT_EQ(back->version, kPlanVersion);
  EXPECT_EQ(back->producer, plan_.producer);
  EXPECT_EQ(back->gguf.path, plan_.gguf.path);
  EXPECT_EQ(back->gguf.total_size, plan_.gguf.total_size);
  EXPECT_EQ(back->gguf.hash, plan_.gguf.hash);
  EXPECT_EQ(back->gguf.n_splits, plan_.gguf.n_splits);
  EXPECT_EQ(back->hw.cpu_isa, plan_.hw.cpu_isa);
  EXPECT_EQ(back->hw.gpu_arch, plan_.hw.gpu_arch);
  EXPECT_EQ(back->hw.threads, plan_.hw.threads);
  EXPECT_EQ(back->model.to_json(), plan_.model.to_json());
  ASSERT_EQ(back->program.size(), plan_.program.size());
  for (size_t i = 0; i < plan_.program.size(); ++i) {
    EXPECT_EQ(back->program[i].name, plan_.program[i].name);
    EXPECT_EQ(back->program[i].kind, plan_.program[i].kind);
    EXPECT_EQ(back->program[i].layer, plan_.program[i].layer);
    EXPECT_EQ(back->program[i].device, plan_.program[i].device);
    EXPECT_EQ(back->program[i].tensors, plan_.program[i].tensors);
    EXPECT_EQ(back->program[i].attrs, plan_.program[i].attrs);
    EXPECT_EQ(back->program[i].in, plan_.program[i].in);
    EXPECT_EQ(back->program[i].out, plan_.program[i].out);
  }
  ASSERT_EQ(back->buffers.size(), plan_.buffers.size());
  for (size_t i = 0; i < plan_.buffers.size(); ++i) {
    EXPECT_EQ(back->buffers[i].kind, plan_.buffers[i].kind);
    EXPECT_EQ(back->buffers[i].width, plan_.buffers[i].width);
  }
  EXPECT_EQ(plan_to_text(*back), plan_to_text(plan_));
}

// A GPU plan: the memory plan in the hw section and the kernels' cubin in its own section come
// back exactly; a damaged cubin byte is caught by the section checksum, naming the section.
TEST_F(PlanFormat, GpuSectionsRoundTrip) {
  plan_.hw.gpu_arch = "sm_90a";
  plan_.hw.gpu = GpuMemoryPlan{"NVIDIA H100", 80ll << 30, 5ll << 20, 4ll << 20, 1ll << 20, 4096};
  plan_.program[1].device = "gpu";
  plan_.gpu_code.resize(4099);
  for (size_t i = 0; i < plan_.gpu_code.size(); ++i) plan_.gpu_code[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  auto back = read_plan(path_);
  ASSERT_TRUE(back.has_value()) << back.status().message();
  EXPECT_EQ(back->hw.gpu_arch, "sm_90a");
  EXPECT_EQ(back->hw.gpu, plan_.hw.gpu);
  EXPECT_EQ(back->gpu_code, plan_.gpu_code);
  EXPECT_NE(plan_to_text(*back).find("gpu name=\"NVIDIA H100\" ops=2 budget=80.00GiB placed=5.0MiB "
                                     "arena=4.0MiB staging=1.0MiB ctx=4096 free=79.99GiB code=4.0KiB"),
            std::string::npos)
      << plan_to_text(*back);
  // Flip the cubin's last byte: the file ends with that section.
  std::string bytes;
  {
    std::ifstream in(path_, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes.back() = static_cast<char>(bytes.back() ^ 0x40);
  {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto bad = read_plan(path_);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("section 'gpu_code': checksum mismatch"), std::string::npos)
      << bad.status().message();
}

// Streamed routed experts (ktc's --kt-stream) add stream_bytes to the GPU's share: it comes
// back, the dump shows it and takes it from free; a plan without it reads as 0 and dumps as
// before (the field is written only when set, so older readers take such plans).
TEST_F(PlanFormat, StreamBytesRoundTrip) {
  plan_.hw.gpu_arch = "sm_90a";
  plan_.hw.gpu = GpuMemoryPlan{"NVIDIA H100", 80ll << 30, 5ll << 20, 4ll << 20, 1ll << 20, 4096,
                               3ll << 30};
  plan_.program[1].device = "gpu";
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  auto back = read_plan(path_);
  ASSERT_TRUE(back.has_value()) << back.status().message();
  EXPECT_EQ(back->hw.gpu.stream_bytes, 3ll << 30);
  EXPECT_NE(plan_to_text(*back).find("ctx=4096 free=76.99GiB code=none stream=3.00GiB\n"),
            std::string::npos)
      << plan_to_text(*back);
  plan_.hw.gpu.stream_bytes = 0;
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  back = read_plan(path_);
  ASSERT_TRUE(back.has_value()) << back.status().message();
  EXPECT_EQ(back->hw.gpu.stream_bytes, 0);
  EXPECT_EQ(plan_to_text(*back).find("stream="), std::string::npos) << plan_to_text(*back);
}

TEST_F(PlanFormat, TextDumpLayout) {
  const std::string t = plan_to_text(plan_);
  EXPECT_EQ(t.rfind("ktx-plan version=1 producer=\"ktc 0.1.0 (test)\"\n", 0), 0u) << t;
  EXPECT_NE(t.find("\nhw cpu_isa=[avx2,fma,f16c] gpu_arch=none threads=2\n"), std::string::npos);
  EXPECT_NE(t.find("\nmodel arch=qwen3moe "), std::string::npos) << t;
  EXPECT_NE(t.find("\nprogram ops=3\n"), std::string::npos);
  EXPECT_NE(t.find("\nop blk.1.ffn_moe kind=routed_experts layer=1 device=cpu "
                   "tensors=[blk.1.ffn_gate_exps.weight,blk.1.ffn_up_exps.weight,"
                   "blk.1.ffn_down_exps.weight] attrs={kernel=moe_gemv_avx2,"
                   "note=\"two words, {braces}\"} in=[0,1] out=2\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("\nop output kind=lm_head layer=-1 device=gpu tensors=[output.weight] "
                   "attrs={k=v}\n"),
            std::string::npos);
  EXPECT_NE(t.find("\nbuffers n=3 0:act[256] 1:route[4] 2:act[256]\n"), std::string::npos) << t;
  // One line per op after the five header lines and the buffers line.
  EXPECT_EQ(std::count(t.begin(), t.end(), '\n'), 6 + 3);
}

TEST_F(PlanFormat, IndependentWriterMatchesReader) {
  test::write_bytes(path_, build_container(1, valid_sections()));
  auto p = read_plan(path_);
  ASSERT_TRUE(p.has_value()) << p.status().message();
  EXPECT_EQ(p->gguf.total_size, 7u);
  EXPECT_EQ(p->hw.threads, 4);
  ASSERT_EQ(p->program.size(), 1u);
  EXPECT_EQ(p->program[0].tensors, std::vector<std::string>{"token_embd.weight"});
}

// The arena: an op naming a buffer the program lacks, a bad buffer kind, in without out.
TEST_F(PlanFormat, BufferErrors) {
  auto with = [&](const json& ops, const json& buffers) {
    json prog{{"producer", "t"}, {"ops", ops}};
    if (!buffers.is_null()) prog["buffers"] = buffers;
    return payload_error("program", prog);
  };
  json op = {{"name", "x"}, {"kind", "embed"}, {"layer", -1}, {"device", "cpu"},
             {"tensors", {"token_embd.weight"}}, {"attrs", json::object()},
             {"in", json::array()}, {"out", 1}};
  EXPECT_NE(with(json::array({op}), json::array({{{"kind", "act"}, {"width", 8}}}))
                .find("op 'x': buffer 1 does not exist (the program has 1)"),
            std::string::npos);
  EXPECT_NE(with(json::array({op}), json::array({{{"kind", "tile"}, {"width", 8}}}))
                .find("buffers[0].kind: expected \"act\" or \"route\", found \"tile\""),
            std::string::npos);
  op.erase("out");
  EXPECT_NE(with(json::array({op}), json()).find("'in' and 'out' must be given together"),
            std::string::npos);
}

TEST_F(PlanFormat, MissingFile) {
  auto r = read_plan(path_ + ".does-not-exist");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find(".does-not-exist: cannot open plan"), std::string::npos)
      << r.status().message();
}

TEST_F(PlanFormat, BadMagicNamesWhatItFound) {
  const std::string msg = read_error(test::read_bytes(test::model_path("qwen3moe.Q8_0.gguf"))
                                         .substr(0, 4096));
  EXPECT_NE(msg.find("not a KTX plan (magic \"GGUF\\x03"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path_), std::string::npos) << msg;
}

TEST_F(PlanFormat, OtherVersionRefused) {
  const std::string msg = read_error(build_container(2, valid_sections()));
  EXPECT_NE(msg.find("plan format version 2; this ktx-run reads version 1"), std::string::npos)
      << msg;
}

TEST_F(PlanFormat, EveryHeaderByteIsGuarded) {
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  const std::string good = test::read_bytes(path_);
  const size_t header_end = 16 + 48 * 4 + 8;
  for (size_t i = 0; i < header_end; ++i) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x41);
    const std::string msg = read_error(bad);
    if (i < 8) {
      EXPECT_NE(msg.find("not a KTX plan"), std::string::npos) << "byte " << i << ": " << msg;
    } else if (i < 12) {
      EXPECT_NE(msg.find("plan format version"), std::string::npos) << "byte " << i << ": " << msg;
    } else if (i >= 16) {
      EXPECT_NE(msg.find("header checksum mismatch"), std::string::npos) << "byte " << i << ": "
                                                                        << msg;
    }
  }
}

TEST_F(PlanFormat, SectionCountDamage) {
  std::string b = build_container(1, valid_sections());
  b[12] = char(0xff);  // 255 sections
  EXPECT_NE(read_error(b).find("section count 255 is implausible"), std::string::npos);
  b[12] = 40;  // plausible count, but the table would run past the end
  EXPECT_NE(read_error(b.substr(0, 400)).find("truncated"), std::string::npos);
}

TEST_F(PlanFormat, FlippedPayloadByteNamesTheSection) {
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  const std::string good = test::read_bytes(path_);
  for (uint32_t s = 0; s < 4; ++s) {
    const size_t entry = 16 + 48 * s;
    const std::string name = good.substr(entry, 16).c_str();
    uint64_t offset = 0, size = 0;
    std::memcpy(&offset, good.data() + entry + 24, 8);
    std::memcpy(&size, good.data() + entry + 32, 8);
    for (uint64_t at : {offset, offset + size / 2, offset + size - 1}) {
      std::string bad = good;
      bad[at] = char(bad[at] ^ 0x01);
      const std::string msg = read_error(bad);
      EXPECT_NE(msg.find("section '" + name + "': checksum mismatch"), std::string::npos)
          << msg;
    }
  }
}

TEST_F(PlanFormat, TruncationAtEveryOffsetIsACleanError) {
  ASSERT_TRUE(write_plan(plan_, path_).is_ok());
  const std::string good = test::read_bytes(path_);
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string msg = read_error(good.substr(0, n));
    EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("runs past end of file") != std::string::npos)
        << "cut at " << n << ": " << msg;
  }
}

TEST_F(PlanFormat, SectionOutOfBoundsAndTrailingBytes) {
  std::string b = build_container(1, valid_sections());
  EXPECT_NE(read_error(b + "xx").find("2 unexpected bytes after the last section"),
            std::string::npos);
  // Point 'hw' past the end, then re-seal the header so only the bounds check can object.
  const uint64_t far = b.size() + 100;
  std::memcpy(b.data() + 16 + 48 * 1 + 24, &far, 8);
  const size_t table_end = 16 + 48 * 4;
  const uint64_t h = test::fnv1a64(b.substr(0, table_end));
  std::memcpy(b.data() + table_end, &h, 8);
  const std::string msg = read_error(b);
  EXPECT_NE(msg.find("section 'hw': offset " + std::to_string(far)), std::string::npos) << msg;
  EXPECT_NE(msg.find("runs past end of file"), std::string::npos) << msg;
}

TEST_F(PlanFormat, UnknownSections) {
  auto s = valid_sections();
  s.push_back({"kernels", 1, "{}"});
  const std::string msg = read_error(build_container(1, s));
  EXPECT_NE(msg.find("unknown required section 'kernels'"), std::string::npos) << msg;
  s.back().flags = 0;  // optional: a newer ktc's extra, safe to skip
  test::write_bytes(path_, build_container(1, s));
  EXPECT_TRUE(read_plan(path_).has_value());
  s.back().flags = 6;
  EXPECT_NE(read_error(build_container(1, s)).find("section 'kernels': unknown flags 0x6"),
            std::string::npos);
}

TEST_F(PlanFormat, MissingAndDuplicateSections) {
  for (const char* name : {"gguf", "hw", "model", "program"}) {
    auto s = valid_sections();
    s.erase(std::remove_if(s.begin(), s.end(), [&](const RawSection& r) { return r.name == name; }),
            s.end());
    const std::string msg = read_error(build_container(1, s));
    EXPECT_NE(msg.find(std::string("missing section '") + name + "'"), std::string::npos) << msg;
  }
  auto s = valid_sections();
  s.push_back(s[1]);
  EXPECT_NE(read_error(build_container(1, s)).find("section 'hw' appears twice"),
            std::string::npos);
}

TEST_F(PlanFormat, MissingPayloadFieldsAreNamed) {
  for (const auto& sec : valid_sections()) {
    const json full = json::parse(sec.payload);
    for (const auto& [key, value] : full.items()) {
      json j = full;
      j.erase(key);
      const std::string msg = payload_error(sec.name, j);
      EXPECT_NE(msg.find("section '" + sec.name + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find(key), std::string::npos) << "field " << key << ": " << msg;
    }
  }
}

TEST_F(PlanFormat, MalformedPayloadFieldsAreNamed) {
  EXPECT_NE(payload_error("hw", json{{"cpu_isa", {"avx2"}}, {"gpu_arch", ""}, {"threads", "4"}})
                .find("section 'hw': threads: expected an integer, found string \"4\""),
            std::string::npos);
  EXPECT_NE(payload_error("gguf", json{{"path", "/m"}, {"total_size", -1}, {"hash", "ab"},
                                       {"n_splits", 1}})
                .find("total_size: expected a non-negative integer"),
            std::string::npos);
  json extra = json::parse(valid_sections()[1].payload);
  extra["threds"] = 3;
  EXPECT_NE(payload_error("hw", extra).find("threds: unknown field"), std::string::npos);
  json prog = json::parse(valid_sections()[3].payload);
  prog["ops"][0]["device"] = "tpu";
  EXPECT_NE(payload_error("program", prog)
                .find("ops[0].device: expected \"cpu\" or \"gpu\", found \"tpu\""),
            std::string::npos);
  prog = json::parse(valid_sections()[3].payload);
  prog["ops"][0]["tensors"][0] = 5;
  EXPECT_NE(payload_error("program", prog).find("ops[0].tensors[0]: expected a string"),
            std::string::npos);
  auto s = valid_sections();
  s[0].payload = "{\"path\": ";
  EXPECT_NE(read_error(build_container(1, s)).find("section 'gguf': payload is not valid JSON"),
            std::string::npos);
}

}  // namespace
}  // namespace ktx
