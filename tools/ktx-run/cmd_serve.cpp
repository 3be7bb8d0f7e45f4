// `ktx-run serve PLAN`: the OpenAI-compatible HTTP server (runtime/serve). Binds first, so
// /health says 503 while the plan loads, then serves until SIGINT or SIGTERM.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <malloc.h>
#include <pthread.h>
#include <string>

#include "tools/ktx-run/commands.h"

#ifdef KTX_HAVE_SERVE
#include "runtime/engine/engine.h"
#include "runtime/engine/kv_pool.h"
#include "runtime/serve/server.h"
#include "runtime/text/tokenizer.h"
#endif

namespace ktx::cli {

#ifndef KTX_HAVE_SERVE
int cmd_serve(int, char**) {
  return fail("this ktx-run was built without cpp-httplib (libcpp-httplib-dev): no serve");
}
#else

namespace {

struct ServeArgs {
  std::string plan_path, gguf_override, key_file, cache_type, pin = "auto";
  int threads = 0;
  bool no_reasoning = false;
  serve::ServerOptions so;
};

void add_options(CLI::App& app, ServeArgs& a) {
  app.add_option("plan", a.plan_path, "Plan written by 'ktc plan'")->required();
  app.add_option("--host", a.so.host, "Address to bind (127.0.0.1: this machine only; 0.0.0.0: every "
                 "interface)")->capture_default_str();
  app.add_option("--port", a.so.port, "TCP port (0: any free port, printed at start)")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  auto* key = app.add_option("--api-key", a.so.api_key,
                             "Require 'Authorization: Bearer KEY' on every route but / and /health");
  app.add_option("--api-key-file", a.key_file, "Read the API key from this file (first line)")
      ->excludes(key);
  app.add_option("--parallel", a.so.sched.parallel,
                 "Sequence slots: requests decoded together in one batch (each may grow to --ctx "
                 "positions of the shared KV block pool)")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--kv-blocks", a.so.sched.kv_blocks,
                 fmt::format("KV cache blocks of {} positions shared by all sequences and the prefix "
                             "cache (0: parallel x ceil(ctx / {}), every slot's whole context, held "
                             "to 3/4 of the free memory less the model's file; at least one "
                             "context)", kKvBlockRows, kKvBlockRows))
      ->capture_default_str()->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  app.add_option("-c,--ctx", a.so.sched.n_ctx, "Context per sequence (0 = min(trained, 4096))")
      ->capture_default_str();
  app.add_option("--max-queue", a.so.sched.max_queue,
                 "Requests waiting for a slot beyond this are answered 503 with Retry-After")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--chunk", a.so.sched.chunk,
                 "Tokens per engine step: decode tokens of running streams first, prefill chunks "
                 "of new requests in what is left")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  app.add_option("--alias", a.so.alias, "Model id reported by /v1/models and in responses (default: "
                 "the GGUF's general.name)");
  app.add_option("--max-body", a.so.max_body, "Largest request body in bytes (larger: 413)")
      ->capture_default_str()->check(CLI::Range(size_t(1024), size_t(1) << 30));
  app.add_flag("--no-reasoning", a.no_reasoning,
               "Keep <think>...</think> in content instead of reasoning_content");
  app.add_option("--http-threads", a.so.http_threads,
                 "HTTP worker threads (0: parallel + max-queue + 16); each open connection holds one")
      ->capture_default_str();
  app.add_option("--gguf", a.gguf_override, "Use this GGUF instead of the path in the plan");
  app.add_option("-t,--threads", a.threads, "CPU threads of the engine (0 = all cores)")->capture_default_str();
  app.add_option("--pin-engine", a.pin,
                 fmt::format("Pin the engine thread to the CPU the thread pool leaves free (auto: "
                             "from {} threads up; off: leave it to the OS)", serve::kPinAutoThreads))
      ->capture_default_str()->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--cache-type", a.cache_type, "KV cache element type of fast-kernel attention "
                 "(default: the plan's)")->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}));
}

// Loads the plan behind a running server, then serves until SIGINT or SIGTERM.
int serve_plan(const ServeArgs& a, const sigset_t& sigs) {
  const serve::ServerOptions& so = a.so;
  serve::Server server(so);
  auto port = server.start();
  if (!port) return fail(port.status().message());
  std::fprintf(stderr, "ktx-run serve: listening on http://%s:%d (loading %s)\n", so.host.c_str(),
               *port, a.plan_path.c_str());
  EngineOptions opt;
  opt.threads = a.threads;
  opt.kv_cache_type = a.cache_type;
  opt.n_ctx = so.sched.n_ctx;
  opt.progress = [](const std::string& m) { std::fprintf(stderr, "ktx-run: %s\n", m.c_str()); };
  auto lm = load_from_plan(a.plan_path, a.gguf_override, opt);
  if (!lm) return fail(lm.status().message());
  auto tok = Tokenizer::from_gguf(*lm->gguf);
  if (!tok) return fail("tokenizer: " + tok.status().message());
  const int64_t ctx_blocks = KvPool::blocks_for(lm->model->n_ctx());
  if (so.sched.kv_blocks > 0 && so.sched.kv_blocks < ctx_blocks)
    return fail(fmt::format("--kv-blocks {} holds {} positions, less than one context (--ctx {} "
                            "needs {} blocks of {})", so.sched.kv_blocks,
                            so.sched.kv_blocks * kKvBlockRows, lm->model->n_ctx(), ctx_blocks,
                            kKvBlockRows), 2);
  if (Status st = server.attach(*lm->model, **tok); !st) return fail(st.message());
  const serve::EngineInfo info = server.engine_info();
  const std::string kv =
      info.kv_blocks == 0
          ? std::string("KV cache per slot (GPU-driven plan)")
          : fmt::format("KV pool {} blocks of {} positions ({:.2f} GiB{})", info.kv_blocks,
                        kKvBlockRows, double(info.kv_bytes) / double(1ull << 30),
                        info.kv_capped ? fmt::format(", held to 3/4 of the free memory: {} slots x "
                                                     "--ctx would need {}; --kv-blocks overrides",
                                                     so.sched.parallel, ctx_blocks * so.sched.parallel)
                                       : "");
  const std::string engine = info.cpu >= 0 ? fmt::format("engine thread on CPU {}", info.cpu)
                                           : std::string("engine thread unpinned");
  std::fprintf(stderr, "ktx-run serve: ready: %d slots of %lld tokens, %s, chunk %d, queue %d, "
               "%d threads, %s%s\n", so.sched.parallel, static_cast<long long>(lm->model->n_ctx()),
               kv.c_str(), so.sched.chunk, so.sched.max_queue, lm->model->threads(), engine.c_str(),
               so.api_key.empty() ? "" : ", API key required");
  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "ktx-run serve: signal %d, stopping\n", sig);
  server.stop();
  return 0;
}

}  // namespace

int cmd_serve(int argc, char** argv) {
  CLI::App app{"ktx-run serve: OpenAI-compatible HTTP server with continuous batching"};
  app.set_help_flag("-h,--help", "Print this help");
  ServeArgs args;
  add_options(app, args);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  serve::ServerOptions& so = args.so;
  const std::string& key_file = args.key_file;
  so.reasoning = !args.no_reasoning;
  so.sched.pin = args.pin == "on" ? serve::PinMode::kOn
                 : args.pin == "off" ? serve::PinMode::kOff : serve::PinMode::kAuto;
  if (!key_file.empty()) {
    std::ifstream f(key_file);
    if (!f || !std::getline(f, so.api_key) || so.api_key.empty())
      return fail("--api-key-file " + key_file + ": cannot read a key from its first line", 2);
    while (!so.api_key.empty() && (so.api_key.back() == '\r' || so.api_key.back() == ' '))
      so.api_key.pop_back();
  }

  // Signals go to the main thread's sigwait only: block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Hundreds of HTTP threads would each get a malloc arena of their own; a few shared ones
  // keep the resident size flat under load (glibc).
  mallopt(M_ARENA_MAX, 4);

  return serve_plan(args, sigs);
}

#endif

}  // namespace ktx::cli
