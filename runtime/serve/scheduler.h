// The batching queue of `ktx-run serve`: requests wait in a bounded queue for one of
// --parallel sequence slots; one engine thread runs steps of the engine's BatchStep, each
// advancing every active sequence together: the next token of every decoding sequence, plus
// prefill chunks of newly admitted ones within the --chunk token budget, so running streams
// keep flowing while a long prompt is read. Requests join and leave at any step.
//
// KV cache (CPU models): every slot's Session takes blocks from one KvPool
// (runtime/engine/kv_pool.h). A request is admitted with the longest prefix of its prompt the
// pool holds (whole blocks shared, a partial last block copied or, unused, taken over):
// multi-turn chats and shared system prompts skip that prefill. A finished sequence's blocks
// stay cached until an allocation evicts them, least recently used first. Admission reserves the request's worst
// case (prompt + max_tokens, at most the context), so a running sequence never runs out of
// blocks; a request that does not fit waits in the queue. GPU-driven models keep their cache
// per session (the GPU backend's state): there a finished slot keeps its history and a new
// request takes the idle slot sharing the longest prefix (Session::truncate), or a copy of a
// longer one (Session::copy_prefix, which such models refuse: then truncation).
// The HTTP side only submits and drains RequestStreams; a cancelled stream (client gone) frees
// its slot at the next step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/kv_pool.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/protocol.h"
#include "runtime/text/tokenizer.h"

namespace ktx::serve {

struct Usage {
  int64_t prompt = 0, completion = 0, cached = 0;
};

// One request's output: written by the engine thread, drained by the HTTP thread.
class RequestStream {
 public:
  struct Chunk {
    std::string content, reasoning;  // new text since the last take
    bool done = false;
    std::string finish_reason;       // "stop", "length" (when done)
    std::string error;               // engine failure (when done)
    Usage usage;                     // when done
  };
  // Waits up to `timeout` for output and returns what arrived (empty when nothing did).
  Chunk take(std::chrono::milliseconds timeout);
  // The client went away: the scheduler frees the sequence at its next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // Engine side.
  void emit(const std::string& content, const std::string& reasoning);
  void finish(const std::string& reason, const Usage& usage, const std::string& error = "");

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Chunk pending_;
  std::atomic<bool> cancelled_{false};
};

// Whether the engine thread pins itself to the CPU the pool leaves for its caller
// (Model::pin_caller). Left anywhere, it can share a core with a pinned worker that spins
// between the step's parallel phases, and then each phase waits out the other's time slices.
// Auto pins from kPinAutoThreads pool threads up, where the pool holds a many-core host;
// on small hosts that several processes share (CI), pinning every server's engine thread to
// the same first CPU costs more than the OS's placement.
enum class PinMode { kAuto, kOn, kOff };
inline constexpr int kPinAutoThreads = 4;
bool pin_engine_thread(PinMode mode, int pool_threads);

struct SchedulerOptions {
  int parallel = 4;       // sequence slots
  int64_t n_ctx = 0;      // context per slot (0: the model's)
  int max_queue = 64;     // waiting requests beyond this are refused with 503
  int chunk = 256;        // token budget of one step (decode tokens + prefill chunks)
  // KV pool blocks (kv_pool.h, kKvBlockRows positions each) shared by all slots; 0: enough
  // for every slot's whole context (parallel x ceil(n_ctx / block)). At least one context's
  // worth is used. Ignored for GPU-driven models.
  int64_t kv_blocks = 0;
  // With kv_blocks 0, the default is also held to this many bytes of KV storage (0: 3/4 of
  // the memory the host has available at start, less the model's mapped file, which must stay
  // in the page cache to run at speed); at least one context either way.
  uint64_t kv_budget_bytes = 0;
  PinMode pin = PinMode::kAuto;  // the engine thread's CPU (pin_engine_thread)
};

// The default pool size: every slot's whole context (parallel x per_ctx blocks) where that
// fits in budget_bytes, else what fits, at least per_ctx blocks. *capped: the budget bound it.
int64_t default_kv_blocks(int64_t per_ctx, int parallel, uint64_t block_bytes,
                          uint64_t budget_bytes, bool* capped);

// What the engine was set up with.
struct EngineInfo {
  int cpu = -1;                // the CPU the engine thread is pinned to, -1: left to the OS
  int64_t kv_blocks = 0;       // KV pool blocks (0: GPU-driven, per-session caches)
  uint64_t kv_bytes = 0;       // their storage (committed as blocks fill)
  bool kv_capped = false;      // the default pool was held to the memory budget
};

struct SubmitSpec {
  std::vector<int32_t> prompt;
  GenParams gen;
  bool split_reasoning = true;  // <think> blocks to reasoning_content
  bool in_think = false;        // the prompt ends inside an opened <think>
};

class Scheduler {
 public:
  Scheduler(const Model& model, const Tokenizer& tok, SchedulerOptions opt, Metrics& metrics);
  ~Scheduler();  // shutdown()
  // Finishes waiting and running requests with an error and stops the engine thread; later
  // submissions are refused with 503.
  void shutdown();

  // Queues a request. Errors: an empty prompt, a prompt longer than the context (400 naming
  // both lengths), a full queue (503).
  std::variant<std::shared_ptr<RequestStream>, ApiError> submit(SubmitSpec spec);
  int64_t n_ctx() const { return n_ctx_; }
  const EngineInfo& info() const { return info_; }
  Gauges gauges() const;

 private:
  struct Job;
  struct Slot;
  void loop();
  void admit();
  void admit_paged();
  void admit_slots();
  bool drop_cancelled(std::deque<std::unique_ptr<Job>>::iterator& it);
  // The job's slot is set up (sampler, filter) with `keep` prompt tokens cached.
  void start(Slot& slot, std::unique_ptr<Job> job, size_t keep);
  void step();
  void update_gauges();
  void finish(Slot& slot, const std::string& reason, const std::string& error = "");
  void sample(Slot& slot, std::vector<float>& logits, size_t row);

  const Model& model_;
  const Tokenizer& tok_;
  SchedulerOptions opt_;
  Metrics& metrics_;
  int64_t n_ctx_ = 0;
  EngineInfo info_;
  BatchStep batch_;
  std::shared_ptr<KvPool> pool_;  // null: GPU-driven model, per-session caches
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t clock_ = 0;  // admission counter for LRU

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stop_ = false;
  std::atomic<int64_t> active_{0}, kv_used_{0}, kv_cached_{0}, kv_capacity_{0};
  std::atomic<int64_t> blocks_used_{0}, blocks_cached_{0}, blocks_free_{0}, evictions_{0};
  std::thread thread_;
};

}  // namespace ktx::serve
