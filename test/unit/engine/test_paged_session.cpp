// Sessions on a shared KvPool against sessions alone (whose private pool lays the blocks out
// in order, as the contiguous cache did): scattered blocks give bit-identical logits (GQA and
// MLA, the float32 reference and the fast attention kernels over f16 and q8_0 caches); a
// sequence that takes a shared prefix (full blocks shared, a partial block copied) computes
// what it computes alone; a pool too small for everything evicts cached blocks and stays
// correct; a pool with no block left is an error, not a crash.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/kv_pool.h"

namespace ktx {
namespace {

const std::string kModels = std::string(KTX_SHARED_DIR) + "/models/";

struct Case {
  const char* stem;
  const char* kv;  // "": the float32 reference attention; else fast attention over this type
};

std::unique_ptr<Model> load_model(const Case& c, int64_t n_ctx) {
  auto f = GGUFFile::open(kModels + c.stem + ".gguf");
  EXPECT_TRUE(f.has_value()) << f.status().message();
  std::shared_ptr<const GGUFFile> g(std::move(f).value());
  auto cfg = ModelConfig::from_gguf(*g);
  EXPECT_TRUE(cfg.has_value()) << cfg.status().message();
  EngineOptions opt;
  opt.threads = 2;
  opt.n_ctx = n_ctx;
  if (*c.kv) {  // the reference program with its attention ops on the fast kernels
    ReferenceProgram ref = reference_program(*cfg);
    for (PlanOp& op : ref.ops)
      if (op.kind == "attention") op.attrs["kernel"] = "gemv";
    opt.program = ref.ops;
    opt.buffers = ref.buffers;
    opt.kv_cache_type = c.kv;
  }
  auto m = Model::load(*cfg, g, opt);
  EXPECT_TRUE(m.has_value()) << m.status().message();
  return std::move(m).value();
}

std::vector<int32_t> tokens_of(int seed, int64_t n) {
  std::vector<int32_t> t;
  for (int64_t i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((seed * 131 + i * 37) % 300 + 5));
  return t;
}

// Prefill `prompt` from position `from` in chunks ending at multiples of `chunk` (so a run
// that starts at a cached prefix makes the same calls as a full one from there on), then
// decode `n_dec` fixed tokens; every logit row. Fast attention kernels split their work by
// the call's shape, so equal bits need equal calls.
std::vector<float> run(Session& s, const std::vector<int32_t>& prompt, int64_t chunk, int n_dec,
                       size_t from = 0) {
  std::vector<float> all;
  for (size_t t0 = from; t0 < prompt.size();) {
    const size_t end = std::min(prompt.size(), (t0 / static_cast<size_t>(chunk) + 1) * static_cast<size_t>(chunk));
    const size_t n = end - t0;
    auto r = s.forward(std::span<const int32_t>(prompt.data() + t0, n), true);
    EXPECT_TRUE(r.has_value()) << r.status().message();
    if (r) all.insert(all.end(), r->begin(), r->end());
    t0 = end;
  }
  for (int i = 0; i < n_dec; ++i) {
    auto r = s.forward(std::vector<int32_t>{static_cast<int32_t>(10 + i)}, false);
    EXPECT_TRUE(r.has_value()) << r.status().message();
    if (r) all.insert(all.end(), r->begin(), r->end());
  }
  return all;
}

class Paged : public ::testing::TestWithParam<Case> {};

TEST_P(Paged, ScatteredBlocksGiveBitIdenticalLogits) {
  auto m = load_model(GetParam(), 256);
  const auto prompt = tokens_of(1, 150);  // three blocks, two boundaries crossed
  Session alone(*m, 256);
  const std::vector<float> want = run(alone, prompt, 48, 4);
  EXPECT_EQ(alone.kv_blocks_held(), 3);
  // A shared pool where another session took blocks in between: this one's are scattered.
  auto pool = KvPool::for_model(*m, 12).value();
  Session spacer(*m, 256, pool), s(*m, 256, pool);
  std::vector<float> got;
  for (size_t t0 = 0; t0 < prompt.size(); t0 += 48) {
    ASSERT_TRUE(spacer.forward(std::vector<int32_t>(64, 3), false).has_value());  // a block each time
    const size_t n = std::min<size_t>(prompt.size() - t0, 48);
    auto r = s.forward(std::span<const int32_t>(prompt.data() + t0, n), true);
    ASSERT_TRUE(r.has_value()) << r.status().message();
    got.insert(got.end(), r->begin(), r->end());
  }
  for (int i = 0; i < 4; ++i) {
    auto r = s.forward(std::vector<int32_t>{static_cast<int32_t>(10 + i)}, false);
    ASSERT_TRUE(r.has_value());
    got.insert(got.end(), r->begin(), r->end());
  }
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "paged logits differ from the session's own pool";
}

TEST_P(Paged, SharedPrefixComputesWhatItComputesAlone) {
  auto m = load_model(GetParam(), 256);
  const auto system = tokens_of(2, 140);  // two full blocks and 12 positions of a third
  auto with_tail = [&](int seed, int64_t n) {
    auto p = system;
    const auto t = tokens_of(seed, n);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  const auto pa = with_tail(3, 9), pb = with_tail(4, 30);
  // Every run prefills the system prompt in one call, then the rest in another.
  Session lone_b(*m, 256);
  const std::vector<float> want = run(lone_b, pb, 140, 3);

  auto pool = KvPool::for_model(*m, 8).value();
  Session a(*m, 256, pool), b(*m, 256, pool);
  run(a, pa, 140, 2);  // a keeps running: its blocks are in use
  const int64_t keep = b.attach_prefix(pb, static_cast<int64_t>(pb.size()) - 1);
  ASSERT_EQ(keep, 140);
  EXPECT_EQ(pool->refcount(0), 2);  // a's first block is b's too
  EXPECT_EQ(pool->refcount(1), 2);
  EXPECT_EQ(b.kv_blocks_held(), 3);  // two shared, the third's 12 rows copied
  const std::vector<float> got = run(b, pb, 140, 3, static_cast<size_t>(keep));
  const int64_t V = m->config().n_vocab;
  const std::vector<float> want_tail(want.begin() + keep * V, want.end());
  ASSERT_EQ(got.size(), want_tail.size());
  EXPECT_TRUE(got == want_tail);
  // a was not disturbed: its next decode equals a lone run's.
  Session lone_a(*m, 256);
  const std::vector<float> want_a = run(lone_a, pa, 140, 3);
  auto next = a.forward(std::vector<int32_t>{12}, false);
  ASSERT_TRUE(next.has_value());
  EXPECT_TRUE(std::equal(next->begin(), next->end(), want_a.end() - V));
  // copy_prefix on one pool shares the full blocks too.
  Session c(*m, 256, pool);
  ASSERT_TRUE(c.copy_prefix(b, 150).is_ok());
  EXPECT_EQ(pool->refcount(0), 3);
  EXPECT_EQ(c.n_past(), 150);
}

TEST_P(Paged, TinyPoolEvictsAndStaysCorrect) {
  auto m = load_model(GetParam(), 192);
  // Three blocks: one sequence of up to 192 positions at a time. Each sequence after the
  // first evicts cached blocks of the earlier ones.
  auto pool = KvPool::for_model(*m, 3).value();
  // Prompts A, A, B, A: the second A takes A's two full cached blocks, B evicts them.
  const int seeds[] = {10, 10, 11, 10};
  const int64_t want_keep[] = {0, 128, 0, 0};
  for (int seq = 0; seq < 4; ++seq) {
    const auto prompt = tokens_of(seeds[seq], 130);
    Session lone(*m, 192);
    const std::vector<float> want = run(lone, prompt, 64, 2);
    Session s(*m, 192, pool);
    const int64_t keep = s.attach_prefix(prompt, 128);
    EXPECT_EQ(keep, want_keep[seq]) << "sequence " << seq;
    const int64_t V = m->config().n_vocab;
    const std::vector<float> got = run(s, prompt, 64, 2, static_cast<size_t>(keep));
    EXPECT_TRUE(got == std::vector<float>(want.begin() + keep * V, want.end())) << "sequence " << seq;
  }
  EXPECT_GT(pool->stats().evictions, 0);
  // All blocks referenced: the next allocation is an error naming the pool, and nothing
  // changes.
  Session a(*m, 192, pool), b(*m, 192, pool);
  ASSERT_TRUE(a.forward(tokens_of(1, 129), false).has_value());  // three blocks
  auto r = b.forward(tokens_of(2, 5), false);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.status().message().find("no free block"), std::string::npos) << r.status().message();
  EXPECT_EQ(b.n_past(), 0);
  EXPECT_EQ(b.kv_blocks_held(), 0);
  a.reset();  // cached now: b may evict them
  EXPECT_TRUE(b.forward(tokens_of(2, 5), false).has_value());
}

INSTANTIATE_TEST_SUITE_P(Models, Paged,
                         ::testing::Values(Case{"qwen3moe.Q8_0", ""}, Case{"dsv3.Q4_K_M", ""},
                                           Case{"mixtral.Q8_0", ""}, Case{"qwen3moe.Q8_0", "f16"},
                                           Case{"dsv3.Q8_0", "q8_0"}),
                         [](const auto& info) {
                           std::string n = std::string(info.param.stem) + "_" +
                                           (*info.param.kv ? info.param.kv : "ref");
                           for (char& ch : n)
                             if (ch == '.') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace ktx
