// The HTTP side of `ktx-run serve` (cpp-httplib): OpenAI routes (/v1/chat/completions,
// /v1/completions, /v1/models), /health, /metrics and the built-in chat page at /. Requests
// are validated (protocol.h), rendered with the model's chat template, tokenized, and handed
// to the Scheduler; streams are drained as server-sent events. The socket is bound before the
// model loads, so /health answers 503 while loading and 200 once ready.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/util/status.h"
#include "runtime/serve/scheduler.h"

namespace ktx::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;            // 0: any free port (printed)
  std::string api_key;        // empty: no key required
  std::string alias;          // the model id /v1/models reports (default: the GGUF's name)
  size_t max_body = 1 << 20;  // request bodies above are refused with 413
  bool reasoning = true;      // <think> blocks to reasoning_content
  int http_threads = 0;       // 0: enough for every slot, the queue and some idle connections
  SchedulerOptions sched;
};

class Server {
 public:
  explicit Server(ServerOptions opt);
  ~Server();
  // Binds the socket and starts answering (503 on the API until attach()). Returns the port.
  Expected<int> start();
  // The model is loaded: from now on requests are served.
  Status attach(const Model& model, const Tokenizer& tok);
  // Stops accepting and finishes what runs.
  void stop();
  // Blocks until stop() (from a signal handler thread or another thread).
  void wait();
  // After attach(): how the engine was set up (its thread's CPU, the KV pool).
  EngineInfo engine_info() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Compares in time that depends on the lengths only, not on where the strings differ.
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace ktx::serve
