// A Session's KV cache on a KvPool (kv_pool.h): its block table, growing as the sequence does,
// copy-on-write of a shared block before it is written, and the two ways a session starts
// from cached rows: attach_prefix (the pool's prefix cache) and copy_prefix (another
// session's rows). Invariant between calls: the table holds exactly the blocks n_past needs,
// and the pool knows the tokens of every committed position.
#include <algorithm>

#include "runtime/engine/engine_internal.h"

namespace ktx {

namespace {

std::shared_ptr<KvPool> private_pool(const Model& m, int64_t n_ctx) {
  return KvPool::for_model(m, KvPool::blocks_for(n_ctx)).value();  // >= 1 block
}

}  // namespace

LayerCache SessionCache::layer(int64_t il) const {
  LayerCache l;
  const KvLayerSpec& spec = pool->layer(il);
  l.type = spec.type;
  l.k_width = spec.k_width;
  l.v_width = spec.v_width;
  l.k_rb = pool->k_row_bytes(il);
  l.v_rb = pool->v_row_bytes(il);
  l.k_base = pool->k_data(il);
  l.v_base = pool->v_data(il);
  l.blocks = blocks.data();
  l.block_rows = pool->block_rows();
  return l;
}

Session::Session(const Model& m, int64_t n_ctx) : Session(m, n_ctx, nullptr) {}

Session::Session(const Model& m, int64_t n_ctx, std::shared_ptr<KvPool> pool)
    : model_(m), n_ctx_(n_ctx > 0 ? n_ctx : m.n_ctx()), cache_(std::make_unique<SessionCache>()) {
  own_pool_ = pool == nullptr;
  cache_->pool = pool ? std::move(pool) : private_pool(m, n_ctx_);
}

Session::~Session() { reset(); }

const KvPool& Session::kv_pool() const { return *cache_->pool; }
int64_t Session::kv_blocks_held() const { return static_cast<int64_t>(cache_->blocks.size()); }

uint64_t Session::kv_cache_bytes() const {
  const KvPool& p = *cache_->pool;
  if (own_pool_) return p.bytes();
  return p.bytes() / static_cast<uint64_t>(p.n_blocks()) * cache_->blocks.size();
}

void Session::reset() { truncate(0); }

void Session::truncate(int64_t n) {
  n_past_ = std::clamp<int64_t>(n, 0, n_past_);
  trim();
}

void Session::trim() {
  KvPool& pool = *cache_->pool;
  std::vector<int32_t>& blocks = cache_->blocks;
  const auto need = static_cast<size_t>(KvPool::blocks_for(n_past_, pool.block_rows()));
  // Last to first: the tail of a chain is the first to be evicted.
  while (blocks.size() > need) {
    pool.release(blocks.back());
    blocks.pop_back();
  }
}

Status Session::reserve(int64_t n) {
  KvPool& pool = *cache_->pool;
  std::vector<int32_t>& blocks = cache_->blocks;
  const int64_t B = pool.block_rows();
  if (const int64_t off = n_past_ % B; off != 0) {
    const size_t idx = static_cast<size_t>(n_past_ / B);
    const int32_t b = blocks[idx];
    if (pool.refcount(b) > 1) {
      const int32_t nb = pool.allocate(idx > 0 ? blocks[idx - 1] : KvPool::kNone);
      if (nb == KvPool::kNone)
        return Error("kv cache: no free block to copy the shared block at position {} into "
                     "(all {} blocks of {} positions are in use)", n_past_, pool.n_blocks(), B);
      pool.copy_rows(b, nb, off);
      pool.append_tokens(nb, pool.tokens(b).first(static_cast<size_t>(off)));
      pool.release(b);
      blocks[idx] = nb;
    } else {
      pool.truncate_tokens(b, off);
    }
  }
  const auto need = static_cast<size_t>(KvPool::blocks_for(n_past_ + n, B));
  while (blocks.size() < need) {
    const int32_t nb = pool.allocate(blocks.empty() ? KvPool::kNone : blocks.back());
    if (nb == KvPool::kNone) {
      trim();
      return Error("kv cache: no free block for positions {}..{}: all {} blocks of {} "
                   "positions are in use (raise --kv-blocks, or lower --parallel)",
                   n_past_, n_past_ + n - 1, pool.n_blocks(), B);
    }
    blocks.push_back(nb);
  }
  return Status::ok();
}

void Session::commit(std::span<const int32_t> tokens) {
  KvPool& pool = *cache_->pool;
  const int64_t B = pool.block_rows(), T = static_cast<int64_t>(tokens.size());
  for (int64_t t = 0; t < T;) {
    const int64_t pos = n_past_ + t, n = std::min(T - t, B - pos % B);
    pool.append_tokens(cache_->blocks[static_cast<size_t>(pos / B)],
                       tokens.subspan(static_cast<size_t>(t), static_cast<size_t>(n)));
    t += n;
  }
  n_past_ += T;
}

int64_t Session::attach_prefix(std::span<const int32_t> tokens, int64_t max_len) {
  reset();
  KvPool& pool = *cache_->pool;
  std::vector<int32_t>& blocks = cache_->blocks;
  const int64_t B = pool.block_rows();
  max_len = std::clamp<int64_t>(max_len, 0, std::min<int64_t>(n_ctx_, static_cast<int64_t>(tokens.size())));
  int32_t parent = KvPool::kNone;
  int64_t n = 0;
  while (n + B <= max_len) {
    const int32_t b = pool.find_full(parent, tokens.subspan(static_cast<size_t>(n), static_cast<size_t>(B)));
    if (b == KvPool::kNone) break;
    pool.retain(b);
    blocks.push_back(b);
    parent = b;
    n += B;
  }
  if (n < max_len) {
    int64_t m = 0;
    const auto rest = tokens.subspan(static_cast<size_t>(n), static_cast<size_t>(max_len - n));
    const int32_t b = pool.find_longest(parent, rest, &m);
    if (b != KvPool::kNone && m > 0 && pool.refcount(b) == 0) {
      // A cached block nobody uses: take it over, keeping its first m rows.
      pool.retain(b);
      pool.truncate_tokens(b, m);
      blocks.push_back(b);
      n += m;
    } else if (b != KvPool::kNone && m > 0) {
      pool.retain(b);  // so that the allocation below cannot evict it
      const int32_t nb = pool.allocate(parent);
      if (nb != KvPool::kNone) {
        pool.copy_rows(b, nb, m);
        pool.append_tokens(nb, rest.first(static_cast<size_t>(m)));
        blocks.push_back(nb);
        n += m;
      }
      pool.release(b);
    }
  }
  n_past_ = n;
  return n;
}

Status Session::copy_prefix(const Session& src, int64_t n) {
  if (&src.model_ != &model_) return Error("engine: copy_prefix from a session of another model");
  if (n < 0 || n > src.n_past_ || n > n_ctx_)
    return Error("engine: copy_prefix of {} positions: the source holds {}, this context {}", n,
                 src.n_past_, n_ctx_);
  if (&src == this) {
    truncate(n);
    return Status::ok();
  }
  if (model_.impl().driver)
    return Error("engine: copy_prefix: the KV cache lives in the GPU backend's session state");
  reset();
  KvPool& pool = *cache_->pool;
  KvPool& from = *src.cache_->pool;
  const int64_t B = pool.block_rows();
  std::vector<int32_t>& blocks = cache_->blocks;
  const bool shared = &pool == &from;
  for (int64_t i = 0; i < KvPool::blocks_for(n, B); ++i) {
    const int32_t sb = src.cache_->blocks[static_cast<size_t>(i)];
    const int64_t rows = std::min(B, n - i * B);
    if (shared && rows == B) {  // a full block: shared
      pool.retain(sb);
      blocks.push_back(sb);
      continue;
    }
    const int32_t nb = pool.allocate(blocks.empty() ? KvPool::kNone : blocks.back());
    if (nb == KvPool::kNone) {
      reset();
      return Error("engine: copy_prefix of {} positions: no free block in the KV pool", n);
    }
    if (shared) {
      pool.copy_rows(sb, nb, rows);
    } else {  // another pool of the same model: the same layers, the same row sizes
      for (int64_t il = 0; il < pool.n_layers(); ++il) {
        if (!pool.layer(il).present) continue;
        const size_t krb = pool.k_row_bytes(il), vrb = pool.v_row_bytes(il);
        std::copy_n(from.k_data(il) + static_cast<size_t>(sb * B) * krb, static_cast<size_t>(rows) * krb,
                    pool.k_data(il) + static_cast<size_t>(nb * B) * krb);
        std::copy_n(from.v_data(il) + static_cast<size_t>(sb * B) * vrb, static_cast<size_t>(rows) * vrb,
                    pool.v_data(il) + static_cast<size_t>(nb * B) * vrb);
      }
    }
    pool.append_tokens(nb, from.tokens(sb).first(static_cast<size_t>(rows)));
    blocks.push_back(nb);
  }
  n_past_ = n;
  return Status::ok();
}

}  // namespace ktx
