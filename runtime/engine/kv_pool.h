// The paged KV cache of the CPU attention layers: one pool of fixed-size blocks that every
// sequence (Session) of a model draws from, and the block-level prefix cache over it.
//
// A block holds kKvBlockRows consecutive positions of every layer (k and v rows of the layer's
// cache type, cpu::kv_row_bytes each); a session's block table lists its blocks in position
// order. Blocks are reference counted: sequences that share a prefix share its full blocks.
// A block also records the token ids whose rows it holds and its parent (the block before it
// in the chain that wrote it), so a block's content is identified by the whole token prefix up
// to its end. Full blocks are indexed by a hash of their tokens chained with the parent's hash
// (vLLM's and SGLang's scheme); a lookup checks the parent and the tokens, never the hash
// alone. When the last reference goes, a block that holds tokens stays cached (an LRU list,
// the least recently released first) until an allocation finds the free list empty and
// evicts it; a sequence releases its blocks last to first, so a chain is evicted from its
// tail and a parent always outlives its cached children.
//
// kKvBlockRows = 64, the flash kernels' key block (cpu::kAttnKeyBlock): a kernel block then
// always lies in one pool block, so the kernels widen one contiguous run of rows per block as
// with a contiguous cache, and a sequence wastes at most 63 positions. Larger blocks would
// only coarsen the sharing; the prefix cache matches a partial last block by copying its rows.
//
// Not thread-safe: the pool belongs to the thread that runs its sessions (the serve
// scheduler's engine thread).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/util/status.h"
#include "runtime/cpu/attention.h"

namespace ktx {

class Model;

inline constexpr int64_t kKvBlockRows = 64;
static_assert(kKvBlockRows % cpu::kAttnKeyBlock == 0,
              "a pool block must hold whole key blocks of the attention kernels");

// The cache rows of one layer (absent: the layer keeps its cache elsewhere, e.g. on the GPU).
struct KvLayerSpec {
  bool present = false;
  cpu::KvType type = cpu::KvType::f32;
  int64_t k_width = 0, v_width = 0;  // elements per position
};

// The prefix-cache hash of a full block: its token ids chained with its parent's hash.
using KvHashFn = uint64_t (*)(uint64_t parent_hash, std::span<const int32_t> tokens);
uint64_t kv_block_hash(uint64_t parent_hash, std::span<const int32_t> tokens);

struct KvPoolStats {
  int64_t blocks = 0;         // capacity
  int64_t used = 0;           // referenced by a sequence
  int64_t cached = 0;         // unreferenced, holding a cached prefix (evictable)
  int64_t free = 0;           // holding nothing
  int64_t cached_tokens = 0;  // positions held by the cached blocks
  int64_t evictions = 0;      // cached blocks reused for new content so far
};

class KvPool {
 public:
  static constexpr int32_t kNone = -1;

  // n_blocks >= 1 blocks of block_rows positions (a multiple of cpu::kAttnKeyBlock) for each
  // present layer. The storage is reserved here as zero pages that the system commits on
  // first write: a pool sized for many long contexts costs memory as blocks fill, not at
  // start (free blocks are handed out lowest first). `hash` may be replaced by tests (a
  // constant forces collisions).
  KvPool(std::vector<KvLayerSpec> layers, int64_t n_blocks, int64_t block_rows = kKvBlockRows,
         KvHashFn hash = kv_block_hash);
  // The layers of `model`'s CPU caches (fast-kernel layers in its kv type, reference layers in
  // f32, layers whose cache the GPU backend keeps absent). Errors: n_blocks < 1.
  static Expected<std::shared_ptr<KvPool>> for_model(const Model& model, int64_t n_blocks);
  // The layers for_model gives a pool of `model`, and the bytes one block of them takes.
  static std::vector<KvLayerSpec> layers_of(const Model& model);
  static uint64_t block_bytes(const std::vector<KvLayerSpec>& layers,
                              int64_t block_rows = kKvBlockRows);
  // Blocks for n positions.
  static int64_t blocks_for(int64_t n, int64_t block_rows = kKvBlockRows) {
    return (n + block_rows - 1) / block_rows;
  }

  int64_t block_rows() const { return block_rows_; }
  int64_t n_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
  const KvLayerSpec& layer(int64_t il) const { return layers_[static_cast<size_t>(il)].spec; }
  // Storage of layer il (block b's rows start at b * block_rows rows); null when absent.
  uint8_t* k_data(int64_t il) { return layers_[static_cast<size_t>(il)].k.data(); }
  uint8_t* v_data(int64_t il) { return layers_[static_cast<size_t>(il)].v.data(); }
  size_t k_row_bytes(int64_t il) const { return layers_[static_cast<size_t>(il)].k_rb; }
  size_t v_row_bytes(int64_t il) const { return layers_[static_cast<size_t>(il)].v_rb; }
  uint64_t bytes() const;  // all storage

  // A block with no content, referenced once, whose content will follow `parent`'s (kNone:
  // the first block of a sequence). Takes a free block, else evicts the least recently
  // released cached one; kNone when every block is referenced.
  int32_t allocate(int32_t parent);
  void retain(int32_t b);
  // Drops a reference; at zero the block joins the cached (LRU) list if it holds tokens, else
  // the free list.
  void release(int32_t b);
  int32_t refcount(int32_t b) const { return blocks_[static_cast<size_t>(b)].refs; }
  // Blocks allocate() can still return: free plus cached.
  int64_t available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  KvPoolStats stats() const;

  // The token ids whose rows block b holds, in order (its first tokens().size() rows).
  std::span<const int32_t> tokens(int32_t b) const { return blocks_[static_cast<size_t>(b)].tokens; }
  // Records that rows [tokens(b).size(), + ids.size()) of b now hold `ids` (the writer's rows
  // are written); a block that becomes full enters the prefix index. At most block_rows in all.
  void append_tokens(int32_t b, std::span<const int32_t> ids);
  // b keeps only its first n rows' content (the writer will overwrite the rest): it leaves
  // the prefix index, and cached blocks that continued it are dropped (their parent changed).
  void truncate_tokens(int32_t b, int64_t n);
  // The full block that follows `parent` (kNone: a first block) with exactly these
  // block_rows tokens, kNone if none is cached or in use.
  int32_t find_full(int32_t parent, std::span<const int32_t> ids) const;
  // The block following `parent` whose tokens share the longest prefix with `ids` (full or
  // partial, cached or in use); *n_match gets that length (0 and kNone: none).
  int32_t find_longest(int32_t parent, std::span<const int32_t> ids, int64_t* n_match) const;
  // Rows [0, n) of every layer of src into dst (copy-on-write of a shared or partial block).
  void copy_rows(int32_t src, int32_t dst, int64_t n);

 private:
  // Anonymous zero pages, committed on first write (MAP_NORESERVE).
  class Pages {
   public:
    Pages() = default;
    explicit Pages(size_t bytes);
    Pages(Pages&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    Pages& operator=(Pages&& o) noexcept;
    ~Pages();
    uint8_t* data() const { return p_; }
    size_t size() const { return n_; }

   private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
  };
  struct Layer {
    KvLayerSpec spec;
    size_t k_rb = 0, v_rb = 0;
    Pages k, v;
  };
  struct Block {
    int32_t refs = 0;
    uint32_t gen = 0;          // bumped whenever the content is reset: children keep parent_gen
    int32_t parent = kNone;
    uint32_t parent_gen = 0;
    std::vector<int32_t> tokens;
    uint64_t hash = 0;         // chained hash (full blocks only)
    bool indexed = false;      // in by_hash_
    bool in_lru = false;
    std::list<int32_t>::iterator lru_it;
  };
  static uint64_t parent_key(int32_t parent, uint32_t gen) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(parent + 1)) << 32) | gen;
  }
  uint64_t key_of(int32_t b) const;  // children_ key of b's children
  uint64_t hash_of(int32_t b) const { return b == kNone ? 0x6b7478u : blocks_[static_cast<size_t>(b)].hash; }
  bool follows(const Block& blk, int32_t parent) const;
  // Forgets b's content (index, children list, tokens) and bumps its generation; cached
  // descendants are dropped to the free list.
  void reset_content(int32_t b);

  std::vector<Layer> layers_;
  int64_t block_rows_;
  KvHashFn hash_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;              // LIFO
  std::list<int32_t> lru_;                 // front: least recently released
  std::unordered_multimap<uint64_t, int32_t> by_hash_;
  std::unordered_map<uint64_t, std::vector<int32_t>> children_;  // parent_key -> blocks with content
  int64_t evictions_ = 0;
};

}  // namespace ktx
