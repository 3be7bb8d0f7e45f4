// Scheduler (scheduler.h): the engine thread's loop is admit -> step -> sample, one BatchStep
// per iteration. Slots, sessions and jobs belong to the engine thread; submit() and gauges()
// touch only the queue (under mu_) and atomics.
#include "runtime/serve/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <malloc.h>
#include <random>
#include <unordered_map>

#include "common/hw/hw_profile.h"
#include "runtime/serve/text_filter.h"

namespace ktx::serve {

using Clock = std::chrono::steady_clock;

RequestStream::Chunk RequestStream::take(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] {
    return pending_.done || !pending_.content.empty() || !pending_.reasoning.empty();
  });
  Chunk out = std::move(pending_);
  pending_ = Chunk{};
  pending_.done = out.done;  // done stays observable
  if (out.done) pending_.finish_reason = out.finish_reason, pending_.usage = out.usage,
                pending_.error = out.error;
  return out;
}

void RequestStream::emit(const std::string& content, const std::string& reasoning) {
  if (content.empty() && reasoning.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.content += content;
    pending_.reasoning += reasoning;
  }
  cv_.notify_all();
}

void RequestStream::finish(const std::string& reason, const Usage& usage, const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.done = true;
    pending_.finish_reason = reason;
    pending_.usage = usage;
    pending_.error = error;
  }
  cv_.notify_all();
}

struct Scheduler::Job {
  SubmitSpec spec;
  std::shared_ptr<RequestStream> out = std::make_shared<RequestStream>();
  Clock::time_point arrived = Clock::now(), last_token;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextFilter> filter;
  std::unique_ptr<StreamDecoder> decoder;
  std::unordered_map<int32_t, int> generated;  // token -> count (presence/frequency penalty)
  size_t pos = 0;       // prompt tokens in the KV cache
  int64_t cached = 0;   // of those, taken from the prefix cache
  int64_t n_gen = 0;
  int32_t next = -1;    // the sampled token to feed at the next step (decoding)
  int64_t worst_blocks = 0;  // KV blocks of its longest possible sequence (paged admission)
};

struct Scheduler::Slot {
  std::unique_ptr<Session> session;
  std::vector<int32_t> history;  // the tokens in its KV cache, in order (GPU-driven models)
  uint64_t last_used = 0;
  std::unique_ptr<Job> job;      // null: idle
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, SchedulerOptions opt,
                     Metrics& metrics)
    : model_(model), tok_(tok), opt_(opt), metrics_(metrics),
      n_ctx_(opt.n_ctx > 0 ? opt.n_ctx : model.n_ctx()), batch_(model) {
  opt_.parallel = std::max(1, opt_.parallel);
  opt_.chunk = std::max(1, opt_.chunk);
  if (!model.gpu_driven()) {
    const int64_t per_ctx = KvPool::blocks_for(n_ctx_);
    int64_t n = opt_.kv_blocks;
    if (n <= 0) {
      uint64_t budget = opt_.kv_budget_bytes;
      if (budget == 0) {
        const uint64_t mapped = model.memory().gguf_mapped;
        const Expected<uint64_t> avail = available_memory_bytes();
        budget = !avail ? UINT64_MAX : *avail > mapped ? (*avail - mapped) / 4 * 3 : 0;
      }
      n = default_kv_blocks(per_ctx, opt_.parallel, KvPool::block_bytes(KvPool::layers_of(model)),
                            budget, &info_.kv_capped);
    }
    pool_ = KvPool::for_model(model, std::max(n, per_ctx)).value();
    info_.kv_blocks = pool_->n_blocks();
    info_.kv_bytes = pool_->bytes();
  }
  for (int i = 0; i < opt_.parallel; ++i) {
    auto s = std::make_unique<Slot>();
    s->session = pool_ ? std::make_unique<Session>(model, n_ctx_, pool_)
                       : std::make_unique<Session>(model, n_ctx_);
    slots_.push_back(std::move(s));
  }
  update_gauges();
  std::promise<int> pinned;
  std::future<int> pinned_cpu = pinned.get_future();
  thread_ = std::thread([this, &pinned] {
    pinned.set_value(pin_engine_thread(opt_.pin, model_.threads()) ? model_.pin_caller() : -1);
    loop();
  });
  info_.cpu = pinned_cpu.get();
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& j : queue_) j->out->finish("", {}, "the server is shutting down");
  queue_.clear();
  for (auto& s : slots_)
    if (s->job) {
      s->job->out->finish("", {}, "the server is shutting down");
      s->job.reset();
    }
  active_ = 0;
}

std::variant<std::shared_ptr<RequestStream>, ApiError> Scheduler::submit(SubmitSpec spec) {
  const int64_t n = static_cast<int64_t>(spec.prompt.size());
  if (n == 0) return ApiError{400, "the prompt is empty", "invalid_request_error", "", "invalid_value"};
  if (n > n_ctx_)
    return ApiError{400,
                    fmt::format("the prompt has {} tokens, more than the context of {} tokens",
                                n, n_ctx_),
                    "invalid_request_error", spec.prompt.empty() ? "" : "messages",
                    "context_length_exceeded"};
  auto job = std::make_unique<Job>();
  job->spec = std::move(spec);
  std::shared_ptr<RequestStream> out = job->out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_)
      return ApiError{503, "the server is shutting down", "server_error", "", "shutting_down"};
    if (static_cast<int>(queue_.size()) >= opt_.max_queue)
      return ApiError{503, fmt::format("the server is busy: {} requests are waiting (--max-queue)",
                                       queue_.size()),
                      "server_error", "", "queue_full"};
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return out;
}

Gauges Scheduler::gauges() const {
  Gauges g;
  {
    std::lock_guard<std::mutex> lock(mu_);
    g.queue_depth = static_cast<int64_t>(queue_.size());
  }
  g.active = active_;
  g.slots = opt_.parallel;
  g.kv_used_tokens = kv_used_;
  g.kv_capacity_tokens = kv_capacity_;
  g.prefix_cached_tokens = kv_cached_;
  g.kv_blocks_used = blocks_used_;
  g.kv_blocks_cached = blocks_cached_;
  g.kv_blocks_free = blocks_free_;
  g.kv_block_evictions = evictions_;
  return g;
}

int64_t default_kv_blocks(int64_t per_ctx, int parallel, uint64_t block_bytes,
                          uint64_t budget_bytes, bool* capped) {
  const int64_t all = per_ctx * std::max(1, parallel);
  const uint64_t fit = block_bytes > 0 ? budget_bytes / block_bytes : UINT64_MAX;
  *capped = fit < static_cast<uint64_t>(all);
  return *capped ? std::max<int64_t>(per_ctx, static_cast<int64_t>(fit)) : all;
}

bool pin_engine_thread(PinMode mode, int pool_threads) {
  switch (mode) {
    case PinMode::kOn: return true;
    case PinMode::kOff: return false;
    case PinMode::kAuto: break;
  }
  return pool_threads >= kPinAutoThreads;
}

void Scheduler::loop() {
  bool was_busy = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool busy = std::any_of(slots_.begin(), slots_.end(), [](auto& s) { return s->job != nullptr; });
      if (!busy && queue_.empty() && was_busy) {
        // The batch just drained: give freed heap pages back to the system (glibc), so the
        // resident size follows the load instead of its peak.
        lock.unlock();
        malloc_trim(0);
        lock.lock();
      }
      was_busy = busy || !queue_.empty();
      if (!busy) cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
    }
    admit();
    step();
    update_gauges();
  }
}

void Scheduler::update_gauges() {
  int64_t active = 0, used = 0, cached = 0, b_used = 0, b_cached = 0;
  for (auto& s : slots_) {
    active += s->job != nullptr;
    if (pool_) {
      if (s->job) used += s->session->n_past();
    } else {
      (s->job ? used : cached) += static_cast<int64_t>(s->history.size());
      (s->job ? b_used : b_cached) += s->session->kv_blocks_held();
    }
  }
  active_ = active, kv_used_ = used;
  if (pool_) {
    const KvPoolStats st = pool_->stats();
    kv_cached_ = st.cached_tokens;
    kv_capacity_ = st.blocks * pool_->block_rows();
    blocks_used_ = st.used, blocks_cached_ = st.cached, blocks_free_ = st.free;
    evictions_ = st.evictions;
  } else {
    const int64_t per_slot = KvPool::blocks_for(n_ctx_);
    kv_cached_ = cached;
    kv_capacity_ = n_ctx_ * opt_.parallel;
    blocks_used_ = b_used, blocks_cached_ = b_cached;
    blocks_free_ = per_slot * opt_.parallel - b_used - b_cached;
  }
}

void Scheduler::admit() {
  if (pool_) admit_paged();
  else admit_slots();
}

void Scheduler::start(Slot& slot, std::unique_ptr<Job> job, size_t keep) {
  const std::vector<int32_t>& prompt = job->spec.prompt;
  slot.last_used = ++clock_;
  job->pos = keep;
  job->cached = static_cast<int64_t>(keep);
  (keep > 0 ? metrics_.prefix_hits : metrics_.prefix_misses)++;
  metrics_.prompt_tokens += prompt.size();
  metrics_.cached_tokens += keep;
  SamplerParams sp = job->spec.gen.sampling;
  if (!job->spec.gen.seed_given) sp.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull + clock_;
  job->sampler = std::make_unique<Sampler>(sp);
  const size_t look = std::min<size_t>(prompt.size(), std::max(0, sp.repeat_last_n));
  for (size_t i = prompt.size() - look; i < prompt.size(); ++i) job->sampler->accept(prompt[i]);
  job->filter = std::make_unique<TextFilter>(job->spec.gen.stop, job->spec.split_reasoning,
                                             job->spec.in_think);
  job->decoder = std::make_unique<StreamDecoder>(tok_);
  slot.job = std::move(job);
}

// A cancelled waiting request is finished and erased (it then points past it): true.
bool Scheduler::drop_cancelled(std::deque<std::unique_ptr<Job>>::iterator& it) {
  if (!(*it)->out->cancelled()) return false;
  ++metrics_.aborted;
  (*it)->out->finish("cancelled", Usage{static_cast<int64_t>((*it)->spec.prompt.size()), 0, 0});
  it = queue_.erase(it);
  return true;
}

// Paged KV cache: a waiting request (in arrival order) takes any idle slot, with the longest
// prefix of its prompt the pool holds attached to the slot's session (at least one prompt
// token is left to evaluate: its logits give the first token). It is admitted when the pool
// can still give every running sequence and this one its worst case; otherwise it (and those
// behind it) wait, and its attached prefix goes back to the cache.
void Scheduler::admit_paged() {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (drop_cancelled(it)) continue;
    Slot* idle = nullptr;
    for (auto& s : slots_)
      if (!s->job && (!idle || s->last_used < idle->last_used)) idle = s.get();
    if (!idle) break;
    // What the running sequences may still take; with no block beyond it, nothing is tried
    // (attaching a prefix may copy rows).
    int64_t running = 0;
    for (auto& s : slots_)
      if (s->job) running += std::max<int64_t>(0, s->job->worst_blocks - s->session->kv_blocks_held());
    if (running >= pool_->available()) break;
    Job& job = **it;
    const std::vector<int32_t>& prompt = job.spec.prompt;
    const int64_t n_prompt = static_cast<int64_t>(prompt.size());
    const int64_t keep = idle->session->attach_prefix(prompt, n_prompt - 1);
    const int64_t max_new = job.spec.gen.max_tokens > 0 ? job.spec.gen.max_tokens : n_ctx_;
    job.worst_blocks = KvPool::blocks_for(std::min(n_prompt + max_new, n_ctx_), pool_->block_rows());
    // A shared block counts as held by each holder: each one's future allocations are at most
    // its worst case less what it holds.
    const int64_t outstanding = running + job.worst_blocks - idle->session->kv_blocks_held();
    if (outstanding > pool_->available()) {
      idle->session->reset();
      break;
    }
    std::unique_ptr<Job> j = std::move(*it);
    it = queue_.erase(it);
    start(*idle, std::move(j), static_cast<size_t>(keep));
  }
}

// Per-session caches (GPU-driven models): moves waiting requests into idle slots: the slot
// whose history shares the longest prefix with the prompt, the least recently used among
// equals.
void Scheduler::admit_slots() {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (drop_cancelled(it)) continue;
    // The idle slot to take: the one whose own history matches longest (least recently used
    // among equals). Any slot, running ones included, may hold a longer match: then the
    // least recently used idle slot takes a copy of that prefix instead.
    const std::vector<int32_t>& prompt = (*it)->spec.prompt;
    auto match = [&](const Slot& s) {
      size_t m = 0;
      while (m < s.history.size() && m < prompt.size() && s.history[m] == prompt[m]) ++m;
      return m;
    };
    Slot *best = nullptr, *lru = nullptr, *donor = nullptr;
    size_t best_match = 0, donor_match = 0;
    for (auto& s : slots_) {
      const size_t m = match(*s);
      if (m > donor_match) donor = s.get(), donor_match = m;
      if (s->job) continue;
      if (!lru || s->last_used < lru->last_used) lru = s.get();
      if (!best || m > best_match || (m == best_match && s->last_used < best->last_used))
        best = s.get(), best_match = m;
    }
    if (!best) break;
    std::unique_ptr<Job> job = std::move(*it);
    it = queue_.erase(it);
    // Keep at least one prompt token to evaluate: its logits give the first token.
    size_t keep = std::min(best_match, prompt.size() - 1);
    const size_t donor_keep = std::min(donor_match, prompt.size() - 1);
    if (donor_keep > keep && donor != best &&
        lru->session->copy_prefix(*donor->session, static_cast<int64_t>(donor_keep)).is_ok()) {
      best = lru;
      keep = donor_keep;
      best->history.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(keep));
    } else {
      best->session->truncate(static_cast<int64_t>(keep));
      best->history.resize(keep);
    }
    start(*best, std::move(job), keep);
  }
}

void Scheduler::step() {
  // Cancelled sequences leave first; their slot keeps what is cached.
  for (auto& s : slots_)
    if (s->job && s->job->out->cancelled()) {
      ++metrics_.aborted;
      finish(*s, "cancelled");
    }
  // Decode tokens first (one per running stream), then prefill chunks in slot order within
  // what is left of the budget (at least a few tokens, so prefill always advances).
  std::vector<BatchEntry> entries;
  std::vector<Slot*> owners;
  std::vector<int32_t> decode_tok(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    if (!s.job || s.job->next < 0) continue;
    decode_tok[i] = s.job->next;
    entries.push_back({s.session.get(), std::span<const int32_t>(&decode_tok[i], 1), true});
    owners.push_back(&s);
  }
  int64_t budget = std::max<int64_t>(opt_.chunk - static_cast<int64_t>(entries.size()),
                                     std::min(16, opt_.chunk));
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (!s.job || s.job->next >= 0 || budget <= 0) continue;
    const std::vector<int32_t>& prompt = s.job->spec.prompt;
    const int64_t n = std::min<int64_t>(budget, static_cast<int64_t>(prompt.size() - s.job->pos));
    const bool last = s.job->pos + n == prompt.size();
    entries.push_back({s.session.get(), std::span<const int32_t>(prompt.data() + s.job->pos, n), last});
    owners.push_back(&s);
    budget -= n;
  }
  if (entries.empty()) return;
  auto r = batch_.run(entries);
  if (!r) {
    for (Slot* s : owners) {
      s->session->reset();
      s->history.clear();
      finish(*s, "", r.status().message());
    }
    return;
  }
  std::vector<float>& logits = *r;
  size_t row = 0;
  for (size_t e = 0; e < entries.size(); ++e) {
    Slot& s = *owners[e];
    if (!pool_) s.history.insert(s.history.end(), entries[e].tokens.begin(), entries[e].tokens.end());
    if (s.job->next < 0) s.job->pos += entries[e].tokens.size();
    if (entries[e].want_logits) sample(s, logits, row++);
  }
}

// Picks the next token of a slot from its logits row and decides whether it ends there.
void Scheduler::sample(Slot& s, std::vector<float>& logits, size_t row) {
  Job& j = *s.job;
  const int32_t V = static_cast<int32_t>(model_.config().n_vocab);
  float* l = logits.data() + row * static_cast<size_t>(V);
  const GenParams& g = j.spec.gen;
  if (g.presence_penalty != 0 || g.frequency_penalty != 0)
    for (const auto& [t, n] : j.generated)
      l[t] -= g.presence_penalty + g.frequency_penalty * static_cast<float>(n);
  const int32_t t = j.sampler->sample(l, V);
  const auto now = Clock::now();
  if (j.n_gen == 0) metrics_.ttft.observe(std::chrono::duration<double>(now - j.arrived).count());
  else metrics_.itl.observe(std::chrono::duration<double>(now - j.last_token).count());
  j.last_token = now;
  if (t < 0 || tok_.is_end_of_generation(t)) return finish(s, "stop");
  j.sampler->accept(t);
  ++j.generated[t];
  ++j.n_gen;
  ++metrics_.completion_tokens;
  const std::string piece = tok_.is_control(t) ? std::string() : j.decoder->push(t);
  TextFilter::Out o = j.filter->push(piece);
  j.out->emit(o.content, o.reasoning);
  if (o.stopped) return finish(s, "stop");
  if (g.max_tokens > 0 && j.n_gen >= g.max_tokens) return finish(s, "length");
  if (s.session->n_past() >= s.session->n_ctx()) return finish(s, "length");
  j.next = t;
}

void Scheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
  Job& j = *s.job;
  if (error.empty() && reason != "cancelled") {
    TextFilter::Out o = j.filter->push(j.decoder->flush());
    TextFilter::Out f = j.filter->flush();
    j.out->emit(o.content + f.content, o.reasoning + f.reasoning);
  }
  Usage u{static_cast<int64_t>(j.spec.prompt.size()), j.n_gen, j.cached};
  j.out->finish(reason, u, error);
  s.job.reset();
  // Paged: the blocks go back to the pool, cached for the next request sharing the prefix.
  if (pool_) s.session->reset();
}

}  // namespace ktx::serve
