// Helpers shared by the plan tests: a realistic Plan built from a reference model in
// /work/shared/models, and an independent writer of the container layout (written from
// docs/plan-format.md, not from plan_io.cpp) so tests can craft files the real writer never
// would: other versions, unknown sections, malformed payloads.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/plan/plan.h"

namespace ktx::test {

inline std::string model_path(const char* stem) {
  return std::string(KTX_SHARED_DIR) + "/models/" + stem;
}

// A plan as ktc would write it for `gguf_path`, with a few ops that exercise the text dump.
inline Plan make_plan(const std::string& gguf_path) {
  auto f = GGUFFile::open(gguf_path);
  EXPECT_TRUE(f.has_value()) << f.status().message();
  auto cfg = ModelConfig::from_gguf(**f);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  Plan p;
  p.producer = "ktc 0.1.0 (test)";
  p.gguf = {gguf_path, (*f)->total_size(), (*f)->identity_hash(), uint32_t((*f)->n_splits())};
  p.hw = {{"avx2", "fma", "f16c"}, "", 2};
  p.model = *cfg;
  p.program.push_back({"token_embd", "embed", -1, "cpu", {"token_embd.weight"}, {}, {}, 0});
  p.program.push_back({"blk.1.ffn_moe", "routed_experts", 1, "cpu",
                       {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight",
                        "blk.1.ffn_down_exps.weight"},
                       {{"kernel", "moe_gemv_avx2"}, {"note", "two words, {braces}"}},
                       {0, 1},
                       2});
  p.buffers = {{"act", 256}, {"route", 4}, {"act", 256}};
  p.program.push_back({"output", "lm_head", -1, "gpu", {"output.weight"}, {{"k", "v"}}, {}, -1});
  return p;
}

inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

inline void put32(std::string& b, uint32_t v) { b.append(reinterpret_cast<char*>(&v), 4); }
inline void put64(std::string& b, uint64_t v) { b.append(reinterpret_cast<char*>(&v), 8); }

struct RawSection {
  std::string name;
  uint32_t flags = 1;
  std::string payload;
};

// Container bytes per docs/plan-format.md (little-endian host assumed, as x86-64 is).
inline std::string build_container(uint32_t version, const std::vector<RawSection>& sections) {
  std::string b("KTXPLAN\0", 8);
  put32(b, version);
  put32(b, uint32_t(sections.size()));
  uint64_t offset = 16 + 48 * sections.size() + 8;
  std::string body;
  for (const auto& s : sections) {
    std::string name(16, '\0');
    std::memcpy(name.data(), s.name.data(), s.name.size());
    b += name;
    put32(b, s.flags);
    put32(b, 0);
    put64(b, offset);
    put64(b, s.payload.size());
    put64(b, fnv1a64(s.payload));
    body += s.payload;
    offset += s.payload.size();
  }
  put64(b, fnv1a64(b));
  return b + body;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& b) {
  // Unlink first: ext4 flushes a file that is truncated and rewritten (auto_da_alloc), which
  // made the write-every-truncation test take seconds.
  std::remove(path.c_str());
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
}

inline std::string temp_path(const std::string& name) {
  return std::string(KTX_BINARY_DIR) + "/plan_test_" + name;
}

}  // namespace ktx::test
