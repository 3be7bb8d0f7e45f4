// KvPool alone (no model): allocation, reference counts, the free list and the LRU of cached
// blocks (eviction order), the chained-hash prefix index (a forced collision still finds the
// right block, because tokens and parents are checked), partial matches, truncation that
// drops the cached children of a rewritten block, and row copies.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <numeric>
#include <vector>

#include "runtime/engine/kv_pool.h"

namespace ktx {
namespace {

constexpr int64_t kRows = 64;

std::vector<KvLayerSpec> one_layer() {
  KvLayerSpec s;
  s.present = true;
  s.type = cpu::KvType::f32;
  s.k_width = 4;
  s.v_width = 2;
  return {s};
}

std::vector<int32_t> iota_tokens(int32_t first, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

uint64_t constant_hash(uint64_t, std::span<const int32_t>) { return 42; }

TEST(KvPool, AllocatesUntilEveryBlockIsReferenced) {
  KvPool pool(one_layer(), 3);
  EXPECT_EQ(pool.available(), 3);
  const int32_t a = pool.allocate(KvPool::kNone), b = pool.allocate(a), c = pool.allocate(b);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_EQ(pool.allocate(c), KvPool::kNone);  // all referenced, nothing cached
  EXPECT_EQ(pool.stats().used, 3);
  pool.retain(b);
  EXPECT_EQ(pool.refcount(b), 2);
  pool.release(b);
  EXPECT_EQ(pool.stats().used, 3);
  // A block without tokens goes back to the free list, one with tokens to the cache.
  pool.release(c);
  EXPECT_EQ(pool.stats().free, 1);
  pool.append_tokens(b, iota_tokens(0, 5));
  pool.release(b);
  const KvPoolStats st = pool.stats();
  EXPECT_EQ(st.cached, 1);
  EXPECT_EQ(st.cached_tokens, 5);
  EXPECT_EQ(st.used, 1);
  EXPECT_EQ(pool.available(), 2);
}

TEST(KvPool, EvictsTheLeastRecentlyReleasedBlockFirst) {
  KvPool pool(one_layer(), 3);
  int32_t ids[3];
  for (int i = 0; i < 3; ++i) {
    ids[i] = pool.allocate(KvPool::kNone);
    pool.append_tokens(ids[i], iota_tokens(100 * i, kRows));  // three different first blocks
  }
  pool.release(ids[1]);
  pool.release(ids[0]);
  pool.release(ids[2]);
  EXPECT_EQ(pool.stats().cached, 3);
  // A hit moves a block to the back of the LRU list: ids[1] is used again.
  ASSERT_EQ(pool.find_full(KvPool::kNone, iota_tokens(100, kRows)), ids[1]);
  pool.retain(ids[1]);
  pool.release(ids[1]);
  // Eviction order: 0, 2, 1.
  EXPECT_EQ(pool.allocate(KvPool::kNone), ids[0]);
  EXPECT_EQ(pool.find_full(KvPool::kNone, iota_tokens(0, kRows)), KvPool::kNone);  // gone
  EXPECT_EQ(pool.allocate(KvPool::kNone), ids[2]);
  EXPECT_EQ(pool.allocate(KvPool::kNone), ids[1]);
  EXPECT_EQ(pool.allocate(KvPool::kNone), KvPool::kNone);
  EXPECT_EQ(pool.stats().evictions, 3);
}

TEST(KvPool, HashChainChecksTokensAndParentsEvenWhenHashesCollide) {
  for (KvHashFn hash : {&kv_block_hash, &constant_hash}) {
    KvPool pool(one_layer(), 8, kRows, hash);
    const auto t0 = iota_tokens(0, kRows), t1 = iota_tokens(1000, kRows), t2 = iota_tokens(2000, kRows);
    // Chain A: t0 -> t1. Chain B: t2 -> t1 (the same tokens after another parent).
    const int32_t a0 = pool.allocate(KvPool::kNone);
    pool.append_tokens(a0, t0);
    const int32_t a1 = pool.allocate(a0);
    pool.append_tokens(a1, t1);
    const int32_t b0 = pool.allocate(KvPool::kNone);
    pool.append_tokens(b0, t2);
    const int32_t b1 = pool.allocate(b0);
    pool.append_tokens(b1, t1);
    EXPECT_EQ(pool.find_full(KvPool::kNone, t0), a0);
    EXPECT_EQ(pool.find_full(KvPool::kNone, t2), b0);
    EXPECT_EQ(pool.find_full(a0, t1), a1);
    EXPECT_EQ(pool.find_full(b0, t1), b1);
    EXPECT_EQ(pool.find_full(KvPool::kNone, t1), KvPool::kNone);  // not a first block
    EXPECT_EQ(pool.find_full(a0, t2), KvPool::kNone);
    auto other = t0;
    other.back() = 7;
    EXPECT_EQ(pool.find_full(KvPool::kNone, other), KvPool::kNone);  // one token differs
    // A partial block is not in the full-block index.
    const int32_t p = pool.allocate(a1);
    pool.append_tokens(p, iota_tokens(5, 10));
    EXPECT_EQ(pool.find_full(a1, iota_tokens(5, kRows)), KvPool::kNone);
  }
}

TEST(KvPool, LongestPartialMatchAmongChildren) {
  KvPool pool(one_layer(), 4);
  const int32_t root = pool.allocate(KvPool::kNone);
  pool.append_tokens(root, iota_tokens(0, kRows));
  const int32_t x = pool.allocate(root), y = pool.allocate(root);
  pool.append_tokens(x, std::vector<int32_t>{1, 2, 3});
  pool.append_tokens(y, std::vector<int32_t>{1, 2, 9, 9, 9});
  int64_t n = 0;
  EXPECT_EQ(pool.find_longest(root, std::vector<int32_t>{1, 2, 3, 4}, &n), x);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(pool.find_longest(root, std::vector<int32_t>{1, 2, 9, 9}, &n), y);
  EXPECT_EQ(n, 4);
  EXPECT_EQ(pool.find_longest(root, std::vector<int32_t>{5}, &n), KvPool::kNone);
  EXPECT_EQ(n, 0);
  EXPECT_EQ(pool.find_longest(KvPool::kNone, iota_tokens(0, 70), &n), root);
  EXPECT_EQ(n, kRows);
}

TEST(KvPool, TruncatedBlockLeavesTheIndexAndDropsItsCachedChildren) {
  KvPool pool(one_layer(), 4);
  const auto t0 = iota_tokens(0, kRows);
  const int32_t a = pool.allocate(KvPool::kNone);
  pool.append_tokens(a, t0);
  const int32_t child = pool.allocate(a);
  pool.append_tokens(child, iota_tokens(500, kRows));
  pool.release(child);  // cached, a child of a's current content
  ASSERT_EQ(pool.find_full(a, iota_tokens(500, kRows)), child);
  pool.truncate_tokens(a, 10);  // a's owner rewrites rows 10..
  EXPECT_EQ(pool.find_full(KvPool::kNone, t0), KvPool::kNone);
  EXPECT_EQ(pool.find_full(a, iota_tokens(500, kRows)), KvPool::kNone);
  EXPECT_EQ(pool.stats().cached, 0);  // the child was dropped to the free list
  EXPECT_EQ(pool.tokens(a).size(), 10u);
  int64_t n = 0;
  EXPECT_EQ(pool.find_longest(KvPool::kNone, iota_tokens(0, 20), &n), a);
  EXPECT_EQ(n, 10);
  // A block reused after eviction is not mistaken for its old content's parent.
  pool.release(a);
  KvPool small(one_layer(), 1);
  const int32_t p = small.allocate(KvPool::kNone);
  small.append_tokens(p, t0);
  small.release(p);
  const int32_t q = small.allocate(KvPool::kNone);  // evicts p (the same block)
  EXPECT_EQ(q, p);
  small.append_tokens(q, iota_tokens(900, kRows));
  EXPECT_EQ(small.find_full(KvPool::kNone, t0), KvPool::kNone);
}

TEST(KvPool, CopiesRowsOfEveryLayer) {
  std::vector<KvLayerSpec> layers = one_layer();
  layers.push_back(KvLayerSpec{});  // a layer kept elsewhere (no rows)
  layers.push_back({true, cpu::KvType::f16, 8, 8});
  KvPool pool(layers, 2);
  EXPECT_EQ(pool.k_data(1), nullptr);
  const int32_t a = pool.allocate(KvPool::kNone), b = pool.allocate(KvPool::kNone);
  for (int64_t il : {0, 2}) {
    uint8_t* k = pool.k_data(il) + static_cast<size_t>(a * kRows) * pool.k_row_bytes(il);
    for (size_t i = 0; i < 3 * pool.k_row_bytes(il); ++i) k[i] = static_cast<uint8_t>(i + il);
  }
  pool.copy_rows(a, b, 3);
  for (int64_t il : {0, 2}) {
    const size_t rb = pool.k_row_bytes(il);
    EXPECT_EQ(std::memcmp(pool.k_data(il) + static_cast<size_t>(a * kRows) * rb,
                          pool.k_data(il) + static_cast<size_t>(b * kRows) * rb, 3 * rb), 0);
  }
  EXPECT_EQ(pool.bytes(), 2 * kRows * (4 * 4 + 2 * 4 + 8 * 2 + 8 * 2));
}

// Resident pages of this process (/proc/self/statm's second field), in bytes.
uint64_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, rss = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &rss);
  std::fclose(f);
  return got == 2 ? rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

TEST(KvPool, StorageIsCommittedAsBlocksAreWritten) {
  // 2 GiB of blocks: reserved, not resident, until written; unwritten rows read as zero.
  std::vector<KvLayerSpec> layers = {{true, cpu::KvType::f32, 1024, 1024}};
  const uint64_t before = resident_bytes();
  if (before == 0) GTEST_SKIP() << "no /proc/self/statm";
  KvPool pool(layers, 4096);
  EXPECT_EQ(pool.bytes(), 4096ull * kRows * 2 * 4096);
  EXPECT_LT(resident_bytes(), before + (64ull << 20));
  const int32_t b = pool.allocate(KvPool::kNone);
  uint8_t* k = pool.k_data(0) + static_cast<size_t>(b * kRows) * pool.k_row_bytes(0);
  EXPECT_EQ(k[0], 0);
  EXPECT_EQ(k[kRows * pool.k_row_bytes(0) - 1], 0);
  std::memset(k, 1, kRows * pool.k_row_bytes(0));
  EXPECT_GE(resident_bytes(), before + kRows * pool.k_row_bytes(0) / 2);
  EXPECT_LT(resident_bytes(), before + (64ull << 20));
}

}  // namespace
}  // namespace ktx
