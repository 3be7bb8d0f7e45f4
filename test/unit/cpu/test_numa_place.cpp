// NUMA placement of expert weights: the page plan over a table of tensor shapes (every page
// once, in order, page-aligned, each run on the node of the chunk holding its first byte,
// every node an equal share of every expert's chunks), and the move itself on this host:
// anonymous and file-backed pages moved to node 0 end up there; a node this host does not
// have is refused by name.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "runtime/cpu/numa_place.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/cpu/topology.h"

namespace ktx::cpu {
namespace {

TEST(NumaPlace, ChunksSplitEvenlyOverNodes) {
  for (int nodes : {1, 2, 3, 4, 8}) {
    for (int64_t chunks : {1, 2, 3, 4, 7, 16, 17}) {
      std::vector<int64_t> per_node(static_cast<size_t>(nodes), 0);
      int prev = 0;
      for (int64_t c = 0; c < chunks; ++c) {
        const int n = placement_node(c, chunks, nodes);
        ASSERT_GE(n, prev) << "nodes " << nodes << " chunks " << chunks;  // contiguous spans
        ASSERT_LT(n, nodes);
        ++per_node[static_cast<size_t>(n)];
        prev = n;
      }
      const int64_t lo = chunks / nodes, hi = (chunks + nodes - 1) / nodes;
      for (int n = 0; n < nodes; ++n) {
        if (chunks >= nodes) {
          EXPECT_GE(per_node[n], lo) << nodes << " nodes, " << chunks << " chunks";
        }
        EXPECT_LE(per_node[n], hi) << nodes << " nodes, " << chunks << " chunks";
      }
    }
  }
}

struct Shape {
  uintptr_t base;  // fake addresses: the plan never dereferences them
  int64_t n_mat, rows;
  uint64_t row_bytes;
  int64_t rows_per_chunk;
  int nodes;
};

TEST(NumaPlace, PlanCoversEveryPageOnceOnItsChunksNode) {
  const size_t page = 4096;
  const Shape shapes[] = {
      {0x100000, 8, 2048, 4032, 512, 2},     // DeepSeek-V3 gate rows (Q4_K, 7168), unaligned rows
      {0x100000, 8, 7168, 1152, 512, 4},     // DeepSeek-V3 down rows (Q4_K, 2048)
      {0x100a40, 5, 768, 1152, 128, 3},      // Qwen3 gate, tensor starting mid-page
      {0x100000, 3, 64, 144, 16, 2},         // chunks smaller than a page
      {0x100010, 2, 10, 100, 3, 4},          // whole tensor inside one page
      {0x100000, 4, 256, 4096, 32, 1},       // single node: one run
      {0x100000, 16, 1000, 4097, 100, 8},    // tails everywhere
  };
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "mats " << s.n_mat << " rows " << s.rows << " row bytes "
                                    << s.row_bytes << " chunk " << s.rows_per_chunk << " nodes "
                                    << s.nodes);
    const auto runs = plan_placement(reinterpret_cast<const void*>(s.base), s.n_mat, s.rows,
                                     s.row_bytes, s.rows_per_chunk, s.nodes, page);
    ASSERT_FALSE(runs.empty());
    const uintptr_t end = s.base + s.n_mat * s.rows * s.row_bytes;
    EXPECT_EQ(runs.front().begin, s.base / page * page);
    EXPECT_EQ(runs.back().end, (end + page - 1) / page * page);
    const int64_t chunks = (s.rows + s.rows_per_chunk - 1) / s.rows_per_chunk;
    for (size_t i = 0; i < runs.size(); ++i) {
      const PageRun& r = runs[i];
      ASSERT_LT(r.begin, r.end);
      ASSERT_EQ(r.begin % page, 0u);
      ASSERT_EQ(r.end % page, 0u);
      if (i > 0) {
        ASSERT_EQ(r.begin, runs[i - 1].end);     // contiguous, in order
        ASSERT_NE(r.node, runs[i - 1].node);     // merged
      }
      for (uintptr_t p = r.begin; p < r.end; p += page) {  // each page: its first byte's chunk
        const uintptr_t b = std::max(p, s.base);
        const int64_t row = static_cast<int64_t>((b - s.base) / s.row_bytes) % s.rows;
        ASSERT_EQ(r.node, placement_node(row / s.rows_per_chunk, chunks, s.nodes))
            << "page " << std::hex << p;
      }
    }
    if (s.nodes == 1) {
      EXPECT_EQ(runs.size(), 1u);
    }
  }
  EXPECT_TRUE(plan_placement(reinterpret_cast<const void*>(0x1000), 0, 4, 4, 1, 2, page).empty());
}

// A run skipping the test when this host (a container, a kernel without NUMA) refuses
// move_pages outright: placement is then impossible, not wrong.
#define SKIP_IF_NO_MOVE_PAGES(result)                                                   \
  if (!(result) &&                                                                      \
      (result).status().message().find("not available") != std::string::npos) {        \
    GTEST_SKIP() << (result).status().message();                                        \
  }

// `pages` anonymous pages filled with `fill`, unmapped at scope exit.
struct AnonPages {
  AnonPages(size_t pages, int fill)
      : page(static_cast<size_t>(sysconf(_SC_PAGESIZE))), bytes(pages * page) {
    mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem != MAP_FAILED) std::memset(mem, fill, bytes);
  }
  ~AnonPages() {
    if (mem != MAP_FAILED) munmap(mem, bytes);
  }
  uintptr_t begin() const { return reinterpret_cast<uintptr_t>(mem); }
  size_t page, bytes;
  void* mem;
};

TEST(NumaPlace, MovesAnonymousPagesToNodeZero) {
  ThreadPool pool(4);
  AnonPages a(64, 7);
  ASSERT_NE(a.mem, MAP_FAILED);
  const size_t page = a.page, bytes = a.bytes;
  void* mem = a.mem;
  const uintptr_t b = a.begin();
  auto r = place_pages({{0, b, b + 40 * page}, {0, b + 40 * page, b + bytes}}, pool);
  SKIP_IF_NO_MOVE_PAGES(r);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->pages, 64u);
  EXPECT_EQ(r->placed, 64u);
  EXPECT_EQ(r->failed, 0u);
  for (size_t i = 0; i < bytes; i += page) {
    EXPECT_EQ(memory_node_of(static_cast<char*>(mem) + i), 0);
  }
  EXPECT_EQ(static_cast<unsigned char*>(mem)[bytes - 1], 7);  // contents untouched
}

TEST(NumaPlace, MovesFileBackedPagesLikeTheGgufMapping) {
  ThreadPool pool(2);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE)), bytes = 16 * page;
  char path[] = "/tmp/ktx_numa_place_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::vector<char> data(bytes, 3);
  ASSERT_EQ(write(fd, data.data(), bytes), static_cast<ssize_t>(bytes));
  void* mem = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);  // as gguf_parse maps
  ASSERT_NE(mem, MAP_FAILED);
  const auto b = reinterpret_cast<uintptr_t>(mem);
  auto r = place_pages({{0, b, b + bytes}}, pool);
  SKIP_IF_NO_MOVE_PAGES(r);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(r->pages, 16u);
  EXPECT_EQ(r->placed + r->failed, 16u);
  EXPECT_GT(r->placed, 0u);
  munmap(mem, bytes);
  close(fd);
  unlink(path);
}

TEST(NumaPlace, RefusesANodeThisHostLacksAndUnalignedRuns) {
  ThreadPool pool(2);
  AnonPages a(4, 1);
  ASSERT_NE(a.mem, MAP_FAILED);
  const uintptr_t b = a.begin();
  const size_t bytes = a.bytes;
  const int absent = host_topology().n_nodes + 60;
  auto r = place_pages({{absent, b, b + bytes}}, pool);
  SKIP_IF_NO_MOVE_PAGES(r);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("node " + std::to_string(absent)), std::string::npos)
      << r.status().message();
  auto u = place_pages({{0, b + 8, b + bytes}}, pool);
  ASSERT_FALSE(u);
  EXPECT_NE(u.status().message().find("not page-aligned"), std::string::npos);
}

}  // namespace
}  // namespace ktx::cpu
