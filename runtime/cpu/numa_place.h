// NUMA placement of routed-expert weights at load: each node's memory receives the row chunks
// that node's workers compute (MoeDecode hands every (expert, row chunk) task to the node that
// holds its rows, see moe_decode.h), so a multi-socket host streams every weight from local
// memory once and nothing is replicated.
//
// Chunk c of an expert's `chunks` row chunks belongs to node c·n_nodes / chunks: every node
// gets an equal share of every expert, so any routing keeps all nodes busy. The pages of the
// mapped GGUF are moved with move_pages(MPOL_MF_MOVE) after being touched (a page not yet in
// the page cache is read first, then moved); a page shared by two chunks of different nodes
// goes to the node of the chunk holding its first byte. Single-node hosts skip all of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/util/status.h"

namespace ktx::cpu {

class ThreadPool;

// The node of row chunk `chunk` of `chunks` on a host of `n_nodes` nodes.
int placement_node(int64_t chunk, int64_t chunks, int n_nodes);

// A page-aligned byte range [begin, end) destined for one node.
struct PageRun {
  int node = 0;
  uintptr_t begin = 0, end = 0;
};

// The page runs of a tensor of n_mat matrices of `rows` rows of `row_bytes` bytes each,
// stored contiguously from `base`, whose rows are computed in chunks of `rows_per_chunk`.
// Covers [floor(base), ceil(base + size)) to `page` boundaries exactly once, in address order,
// adjacent runs of one node merged. Empty for an empty tensor.
std::vector<PageRun> plan_placement(const void* base, int64_t n_mat, int64_t rows,
                                    uint64_t row_bytes, int64_t rows_per_chunk, int n_nodes,
                                    size_t page);

struct PlaceResult {
  uint64_t pages = 0;   // pages in the runs
  uint64_t placed = 0;  // pages that are now on their run's node
  uint64_t failed = 0;  // pages the kernel refused to move (shared, busy, ...)
};

// Touches every page of `runs` and moves it to its run's node, in parallel on `pool`.
// Errors: move_pages unavailable, or no page could be moved to some node (names the node and
// the reason, e.g. a node this host does not have). Pages refused individually are counted
// in `failed` (placement only affects speed, never results).
Expected<PlaceResult> place_pages(const std::vector<PageRun>& runs, ThreadPool& pool);

}  // namespace ktx::cpu
