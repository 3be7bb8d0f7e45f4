// `ktx-run PLAN`: interactive multi-turn chat with streamed output, or a one-shot completion
// with -p. Everything sits on the engine API (load_from_plan, Session) plus the tokenizer, the
// chat template and the sampler; the KV cache is reused across turns when the rendered
// conversation extends what was already evaluated.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/engine/sampler.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "tools/ktx-run/commands.h"

namespace ktx::cli {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

struct ChatArgs {
  std::string plan_path;
  std::string gguf_override;
  std::string prompt;
  std::string system;
  bool prompt_given = false;
  bool raw = false;
  int n_predict = 256;
  int threads = 0;
  std::string cache_type;
  int64_t n_ctx = 0;
  bool show_stats = false;
  SamplerParams sampling;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Keeps the session's evaluated tokens so a new turn only evaluates what is new.
class Conversation {
 public:
  // The session takes the model's context (EngineOptions::n_ctx, from --ctx).
  Conversation(const LoadedModel& lm, const Tokenizer& tok, const ChatArgs& args)
      : tok_(tok), args_(args), model_(*lm.model), session_(*lm.model), sampler_(args.sampling) {}

  // Evaluate `tokens` (the whole conversation so far), reusing the cached prefix, then
  // generate up to n_predict tokens, streaming text to `out`. Returns the generated text.
  Expected<std::string> respond(const std::vector<int32_t>& tokens, std::FILE* out) {
    size_t keep = 0;
    while (keep < evaluated_.size() && keep < tokens.size() && evaluated_[keep] == tokens[keep])
      ++keep;
    if (keep < evaluated_.size() || keep == tokens.size()) {  // diverged: start over
      session_.reset();
      evaluated_.clear();
      keep = 0;
    }
    if (static_cast<int64_t>(tokens.size()) >= session_.n_ctx()) {
      return Error("prompt of {} tokens does not fit the context of {} tokens (use --ctx)",
                   tokens.size(), session_.n_ctx());
    }
    std::vector<int32_t> fresh(tokens.begin() + keep, tokens.end());
    auto t0 = Clock::now();
    KTX_ASSIGN_OR_RETURN(std::vector<float> logits, session_.forward(fresh, false));
    double t_prefill = seconds_since(t0);
    evaluated_.insert(evaluated_.end(), fresh.begin(), fresh.end());
    for (int32_t t : fresh) sampler_.accept(t);

    StreamDecoder stream(tok_);
    std::string text;
    const int32_t n_vocab = tok_.n_vocab();
    int n_gen = 0;
    auto t1 = Clock::now();
    g_interrupted = 0;
    while (n_gen < args_.n_predict && !g_interrupted) {
      int32_t next = sampler_.sample(logits.data(), n_vocab);
      if (tok_.is_end_of_generation(next)) break;
      sampler_.accept(next);
      ++n_gen;
      std::string piece = stream.push(next);
      text += piece;
      std::fputs(piece.c_str(), out);
      std::fflush(out);
      if (session_.n_past() + 1 >= session_.n_ctx()) {
        std::fputs("\n[context full]", stderr);
        break;
      }
      evaluated_.push_back(next);
      KTX_ASSIGN_OR_RETURN(logits, session_.forward(std::vector<int32_t>{next}, false));
    }
    std::string rest = stream.flush();
    text += rest;
    std::fputs(rest.c_str(), out);
    std::fputc('\n', out);
    std::fflush(out);
    if (args_.show_stats) {
      double t_gen = seconds_since(t1);
      std::fprintf(stderr, "[prefill %zu tok in %.2f s (%.1f tok/s), decode %d tok in %.2f s (%.1f tok/s)]\n",
                   fresh.size(), t_prefill, fresh.size() / std::max(t_prefill, 1e-9), n_gen,
                   t_gen, n_gen / std::max(t_gen, 1e-9));
      std::fprintf(stderr, "[%s]\n", memory_summary(model_, &session_).c_str());
    }
    return text;
  }

 private:
  const Tokenizer& tok_;
  const ChatArgs& args_;
  const Model& model_;
  Session session_;
  Sampler sampler_;
  std::vector<int32_t> evaluated_;
};

// Render the conversation and tokenize it. BOS is added unless the template already emits it.
Expected<std::vector<int32_t>> render_tokens(const Tokenizer& tok, const ChatTemplate* tmpl,
                                             const std::vector<ChatMessage>& msgs, bool raw) {
  std::string text;
  const std::string bos = tok.bos_id() >= 0 ? tok.token_text(tok.bos_id()) : "";
  const std::string eos = tok.eos_id() >= 0 ? tok.token_text(tok.eos_id()) : "";
  if (raw || !tmpl) {
    for (const auto& m : msgs) text += m.content;
  } else {
    KTX_ASSIGN_OR_RETURN(text, tmpl->render(msgs, true, bos, eos));
  }
  bool add_bos = tok.add_bos_default() && !(bos.size() && text.rfind(bos, 0) == 0);
  return tok.encode(text, add_bos, /*parse_special=*/!raw);
}

int run(const ChatArgs& args) {
  EngineOptions opt;
  opt.threads = args.threads;
  opt.kv_cache_type = args.cache_type;
  opt.n_ctx = args.n_ctx;
  opt.progress = [](const std::string& m) { std::fprintf(stderr, "ktx-run: %s\n", m.c_str()); };
  std::fprintf(stderr, "loading %s ...\n", args.plan_path.c_str());
  auto lm = load_from_plan(args.plan_path, args.gguf_override, opt);
  if (!lm) {
    fail(lm.status().message());
    return 1;
  }
  auto tok = Tokenizer::from_gguf(*lm->gguf);
  if (!tok) {
    fail("tokenizer: " + tok.status().message());
    return 1;
  }
  std::optional<ChatTemplate> tmpl;
  if (!args.raw && !(*tok)->chat_template().empty()) {
    auto t = ChatTemplate::parse((*tok)->chat_template());
    if (!t) {
      fail(t.status().message());
      return 1;
    }
    tmpl = std::move(*t);
  } else if (!args.raw) {
    std::fprintf(stderr, "note: the model has no chat template; using the text as-is\n");
  }
  const ModelConfig& cfg = lm->model->config();
  Conversation conv(*lm, **tok, args);
  std::vector<ChatMessage> msgs;
  if (!args.system.empty()) msgs.push_back({"system", args.system});
  const ChatTemplate* tp = tmpl ? &*tmpl : nullptr;

  auto turn = [&](const std::string& user) -> bool {
    msgs.push_back({"user", user});
    auto toks = render_tokens(**tok, tp, msgs, args.raw);
    if (!toks) {
      fail(toks.status().message());
      return false;
    }
    auto reply = conv.respond(*toks, stdout);
    if (!reply) {
      fail(reply.status().message());
      return false;
    }
    msgs.push_back({"assistant", *reply});
    return true;
  };

  if (args.prompt_given) return turn(args.prompt) ? 0 : 1;

  std::signal(SIGINT, on_sigint);
  std::fprintf(stderr,
               "%s (%s, %lld layers) ready. Type a message; /reset clears the conversation, "
               "/exit or Ctrl-D quits, Ctrl-C stops a reply.\n",
               cfg.name.empty() ? "model" : cfg.name.c_str(), model_arch_name(cfg.arch),
               static_cast<long long>(cfg.n_layer));
  std::string line;
  while (true) {
    std::fputs("> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      msgs.clear();
      if (!args.system.empty()) msgs.push_back({"system", args.system});
      continue;
    }
    if (line.empty()) continue;
    if (!turn(line)) return 1;
  }
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace

int cmd_chat(int argc, char** argv) {
  CLI::App app{"ktx-run: run a KTX plan (chat, or one-shot with -p)"};
  app.set_help_flag("-h,--help", "Print this help");
  ChatArgs args;
  app.add_option("plan", args.plan_path, "Plan written by 'ktc plan'")->required();
  app.add_option("-p,--prompt", args.prompt, "One-shot: answer this prompt and exit");
  app.add_option("-n,--n-predict", args.n_predict, "Maximum tokens generated per reply")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--system", args.system, "System message at the start of the conversation");
  app.add_flag("--raw", args.raw, "Do not apply the chat template; complete the text as-is");
  app.add_option("--gguf", args.gguf_override, "Use this GGUF instead of the path in the plan");
  app.add_option("-t,--threads", args.threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--cache-type", args.cache_type,
                 "KV cache element type of fast-kernel attention, overriding the plan's (default: the "
                 "plan's kv_cache, f16; f16, bf16, f32 or q8_0; reference plans keep f32)")
      ->check(CLI::IsMember({"f16", "bf16", "f32", "q8_0"}));
  app.add_option("-c,--ctx", args.n_ctx, "Context length (0 = min(trained, 4096))")->capture_default_str();
  app.add_flag("--stats", args.show_stats,
               "Print prefill/decode speed and the resident memory (GGUF mapping, repacks, KV "
               "cache, arenas) after each reply");
  app.add_option("--temp", args.sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
  app.add_option("--top-k", args.sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  app.add_option("--top-p", args.sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  app.add_option("--min-p", args.sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  app.add_option("--repeat-penalty", args.sampling.repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str();
  app.add_option("--repeat-last-n", args.sampling.repeat_last_n, "Tokens the penalty looks back")
      ->capture_default_str();
  app.add_option("--seed", args.sampling.seed, "Sampling seed")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  args.prompt_given = app.count("--prompt") > 0;
  if (Status st = Sampler::validate(args.sampling); !st) {
    fail(st.message());
    return 2;
  }
  return run(args);
}

}  // namespace ktx::cli
