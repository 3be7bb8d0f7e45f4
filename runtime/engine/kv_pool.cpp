// KvPool (kv_pool.h): block storage, reference counts, the free and LRU lists, and the prefix
// index (chained hashes of full blocks, and each block's children for partial matches).
#include "runtime/engine/kv_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "runtime/engine/engine_internal.h"

namespace ktx {

uint64_t kv_block_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  // FNV-1a over the parent's hash and the token ids, then a splitmix64 finalizer.
  uint64_t h = 0xcbf29ce484222325ull ^ parent_hash;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xff)) * 0x100000001b3ull;
  };
  mix(parent_hash);
  for (int32_t t : tokens) mix(static_cast<uint32_t>(t));
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

KvPool::Pages::Pages(size_t bytes) {
  if (bytes == 0) return;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  p_ = static_cast<uint8_t*>(p), n_ = bytes;
}

KvPool::Pages& KvPool::Pages::operator=(Pages&& o) noexcept {
  if (this != &o) {
    if (p_) munmap(p_, n_);
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}

KvPool::Pages::~Pages() {
  if (p_) munmap(p_, n_);
}

KvPool::KvPool(std::vector<KvLayerSpec> layers, int64_t n_blocks, int64_t block_rows,
               KvHashFn hash)
    : block_rows_(block_rows), hash_(hash ? hash : kv_block_hash) {
  n_blocks = std::max<int64_t>(1, n_blocks);
  const auto rows = static_cast<size_t>(n_blocks * block_rows);
  for (const KvLayerSpec& spec : layers) {
    Layer& l = layers_.emplace_back();
    l.spec = spec;
    if (!spec.present) continue;
    l.k_rb = cpu::kv_row_bytes(spec.type, spec.k_width);
    l.v_rb = cpu::kv_row_bytes(spec.type, spec.v_width);
    l.k = Pages(rows * l.k_rb);
    l.v = Pages(rows * l.v_rb);
  }
  blocks_.resize(static_cast<size_t>(n_blocks));
  // LIFO: block 0 is handed out first.
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

std::vector<KvLayerSpec> KvPool::layers_of(const Model& model) {
  const ModelImpl& impl = model.impl();
  const KvWidths kw = kv_widths(impl.cfg);
  std::vector<KvLayerSpec> specs(static_cast<size_t>(impl.cfg.n_layer));
  for (int64_t il = 0; il < impl.cfg.n_layer; ++il) {
    if (impl.driver && impl.driver->owns_kv_cache(il)) continue;  // kept on its device
    KvLayerSpec& s = specs[static_cast<size_t>(il)];
    s.present = true;
    s.type = impl.attn_fast[static_cast<size_t>(il)] ? impl.kv_type : cpu::KvType::f32;
    s.k_width = kw.k;
    s.v_width = kw.v;
  }
  return specs;
}

uint64_t KvPool::block_bytes(const std::vector<KvLayerSpec>& layers, int64_t block_rows) {
  uint64_t n = 0;
  for (const KvLayerSpec& s : layers)
    if (s.present)
      n += static_cast<uint64_t>(block_rows) *
           (cpu::kv_row_bytes(s.type, s.k_width) + cpu::kv_row_bytes(s.type, s.v_width));
  return n;
}

Expected<std::shared_ptr<KvPool>> KvPool::for_model(const Model& model, int64_t n_blocks) {
  if (n_blocks < 1) return Error("kv cache: a pool needs at least one block (got {})", n_blocks);
  std::vector<KvLayerSpec> layers = layers_of(model);
  const uint64_t bytes = block_bytes(layers) * static_cast<uint64_t>(n_blocks);
  try {
    return std::make_shared<KvPool>(std::move(layers), n_blocks);
  } catch (const std::bad_alloc&) {
    return Error("kv cache: cannot reserve {} blocks of {} positions ({:.1f} GiB of address space)",
                 n_blocks, kKvBlockRows, double(bytes) / double(1ull << 30));
  }
}

uint64_t KvPool::bytes() const {
  uint64_t n = 0;
  for (const Layer& l : layers_) n += l.k.size() + l.v.size();
  return n;
}

uint64_t KvPool::key_of(int32_t b) const {
  return parent_key(b, b == kNone ? 0 : blocks_[static_cast<size_t>(b)].gen);
}

bool KvPool::follows(const Block& blk, int32_t parent) const {
  return blk.parent == parent &&
         (parent == kNone || blk.parent_gen == blocks_[static_cast<size_t>(parent)].gen);
}

void KvPool::reset_content(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.indexed) {
    auto [lo, hi] = by_hash_.equal_range(blk.hash);
    for (auto it = lo; it != hi; ++it)
      if (it->second == b) {
        by_hash_.erase(it);
        break;
      }
    blk.indexed = false;
  }
  // Out of the parent's children (while the parent still has the generation we joined at).
  auto sib = children_.find(parent_key(blk.parent, blk.parent_gen));
  if (sib != children_.end()) {
    auto& v = sib->second;
    v.erase(std::remove(v.begin(), v.end(), b), v.end());
    if (v.empty()) children_.erase(sib);
  }
  // Cached blocks that continued this content are unreachable now: free them. (A referenced
  // child's holder also holds this block, so none is referenced when the content resets.)
  auto kids = children_.find(key_of(b));
  if (kids != children_.end()) {
    const std::vector<int32_t> v = std::move(kids->second);
    children_.erase(kids);
    for (int32_t c : v) {
      Block& cb = blocks_[static_cast<size_t>(c)];
      if (cb.refs > 0 || !cb.in_lru) continue;
      lru_.erase(cb.lru_it);
      cb.in_lru = false;
      reset_content(c);
      free_.push_back(c);
    }
  }
  blk.tokens.clear();
  blk.parent = kNone;
  blk.parent_gen = 0;
  ++blk.gen;
}

int32_t KvPool::allocate(int32_t parent) {
  int32_t b = kNone;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    blocks_[static_cast<size_t>(b)].in_lru = false;
    reset_content(b);
    ++evictions_;
  } else {
    return kNone;
  }
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.refs = 1;
  blk.parent = parent;
  blk.parent_gen = parent == kNone ? 0 : blocks_[static_cast<size_t>(parent)].gen;
  blk.tokens.reserve(static_cast<size_t>(block_rows_));
  children_[key_of(parent)].push_back(b);
  return b;
}

void KvPool::retain(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.in_lru) {
    lru_.erase(blk.lru_it);
    blk.in_lru = false;
  }
  ++blk.refs;
}

void KvPool::release(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (--blk.refs > 0) return;
  if (blk.tokens.empty()) {
    reset_content(b);
    free_.push_back(b);
    return;
  }
  blk.lru_it = lru_.insert(lru_.end(), b);
  blk.in_lru = true;
}

KvPoolStats KvPool::stats() const {
  KvPoolStats s;
  s.blocks = n_blocks();
  s.free = static_cast<int64_t>(free_.size());
  s.cached = static_cast<int64_t>(lru_.size());
  s.used = s.blocks - s.free - s.cached;
  for (int32_t b : lru_) s.cached_tokens += static_cast<int64_t>(blocks_[static_cast<size_t>(b)].tokens.size());
  s.evictions = evictions_;
  return s;
}

void KvPool::append_tokens(int32_t b, std::span<const int32_t> ids) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.tokens.insert(blk.tokens.end(), ids.begin(), ids.end());
  if (static_cast<int64_t>(blk.tokens.size()) == block_rows_ && !blk.indexed) {
    blk.hash = hash_(hash_of(blk.parent), blk.tokens);
    by_hash_.emplace(blk.hash, b);
    blk.indexed = true;
  }
}

void KvPool::truncate_tokens(int32_t b, int64_t n) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (n >= static_cast<int64_t>(blk.tokens.size())) return;
  // The content changes: re-enter as a fresh block of the same parent with the first n tokens.
  const std::vector<int32_t> keep(blk.tokens.begin(), blk.tokens.begin() + n);
  const int32_t parent = blk.parent;
  const uint32_t parent_gen = blk.parent_gen;
  reset_content(b);
  blk.parent = parent;
  blk.parent_gen = parent_gen;
  children_[parent_key(parent, parent_gen)].push_back(b);
  blk.tokens = keep;
}

int32_t KvPool::find_full(int32_t parent, std::span<const int32_t> ids) const {
  if (static_cast<int64_t>(ids.size()) != block_rows_) return kNone;
  auto [lo, hi] = by_hash_.equal_range(hash_(hash_of(parent), ids));
  for (auto it = lo; it != hi; ++it) {
    const Block& blk = blocks_[static_cast<size_t>(it->second)];
    if (follows(blk, parent) && std::equal(ids.begin(), ids.end(), blk.tokens.begin(), blk.tokens.end()))
      return it->second;
  }
  return kNone;
}

int32_t KvPool::find_longest(int32_t parent, std::span<const int32_t> ids, int64_t* n_match) const {
  *n_match = 0;
  int32_t best = kNone;
  auto kids = children_.find(key_of(parent));
  if (kids == children_.end()) return kNone;
  for (int32_t c : kids->second) {
    const Block& blk = blocks_[static_cast<size_t>(c)];
    if (!follows(blk, parent)) continue;
    const size_t n = std::min(ids.size(), blk.tokens.size());
    const int64_t m = std::mismatch(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n),
                                    blk.tokens.begin()).first - ids.begin();
    if (m > *n_match) *n_match = m, best = c;
  }
  return best;
}

void KvPool::copy_rows(int32_t src, int32_t dst, int64_t n) {
  for (Layer& l : layers_) {
    if (!l.spec.present) continue;
    const auto r = static_cast<size_t>(block_rows_);
    std::memcpy(l.k.data() + static_cast<size_t>(dst) * r * l.k_rb,
                l.k.data() + static_cast<size_t>(src) * r * l.k_rb, static_cast<size_t>(n) * l.k_rb);
    std::memcpy(l.v.data() + static_cast<size_t>(dst) * r * l.v_rb,
                l.v.data() + static_cast<size_t>(src) * r * l.v_rb, static_cast<size_t>(n) * l.v_rb);
  }
}

}  // namespace ktx
