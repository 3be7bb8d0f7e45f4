// Server (server.h): routes, authentication, error bodies and SSE framing. Every answer with a
// status >= 400 carries an OpenAI-style error body, including httplib's own (404, 413).
#include "runtime/serve/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/serve/chat_page.h"
#include "runtime/text/chat_template.h"

namespace ktx::serve {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_body(e), "application/json");
}

std::string reason_text(int status) {
  switch (status) {
    case 404: return "no such route";
    case 405: return "method not allowed on this route";
    case 413: return "the request body is too large (--max-body)";
    case 414: return "the request URI is too long";
    default: return "bad request";
  }
}

// The rendered prompt ends inside an opened reasoning block (DeepSeek-R1, Qwen3 templates
// that append "<think>\n" to the generation prompt).
bool ends_in_think(const std::string& prompt) {
  size_t e = prompt.size();
  while (e > 0 && (prompt[e - 1] == '\n' || prompt[e - 1] == ' ')) --e;
  const std::string_view tag = "<think>";
  return e >= tag.size() && std::string_view(prompt).substr(e - tag.size(), tag.size()) == tag;
}

}  // namespace

bool constant_time_equal(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

struct Server::Impl {
  ServerOptions opt;
  httplib::Server http;
  Metrics metrics;
  std::thread listener;
  std::atomic<bool> listen_done{false};  // listen_after_bind returned
  std::atomic<bool> ready{false};
  const Model* model = nullptr;
  const Tokenizer* tok = nullptr;
  std::optional<ChatTemplate> tmpl;
  std::unique_ptr<Scheduler> sched;
  std::string model_id;
  std::atomic<uint64_t> next_id{0};
  std::atomic<int> open_streams{0};  // SSE responses not yet released
  uint64_t id_salt = std::random_device{}();
  std::time_t started = std::time(nullptr);

  std::string new_id(const char* prefix) {
    return fmt::format("{}-{:08x}{:06x}", prefix, static_cast<uint32_t>(id_salt), ++next_id);
  }
  // What every response of one request repeats.
  struct Reply {
    bool chat = true;
    std::string id, model;
    std::time_t created = 0;
    bool include_usage = false;
    std::string event(nlohmann::json delta, nlohmann::json finish) const;
    std::string events(const RequestStream::Chunk& c) const;
    std::pair<int, std::string> whole(const std::string& content, const std::string& reasoning,
                                      const RequestStream::Chunk& end) const;
  };
  void routes();
  void completion(ApiRequest::Kind kind, const httplib::Request& req, httplib::Response& res);
  void reply_whole(const Reply& rp, std::shared_ptr<RequestStream> stream, httplib::Response& res);
  void reply_stream(Reply rp, std::shared_ptr<RequestStream> stream, httplib::Response& res);
  std::optional<ApiError> prompt_of(const ApiRequest& r, SubmitSpec& spec);
};

Server::Server(ServerOptions opt) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(opt);
}

Server::~Server() { stop(); }

Expected<int> Server::start() {
  Impl& m = *impl_;
  const SchedulerOptions& so = m.opt.sched;
  const int threads = m.opt.http_threads > 0 ? m.opt.http_threads
                                            : std::max(16, so.parallel + so.max_queue + 16);
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.http.set_payload_max_length(m.opt.max_body);
  m.http.set_keep_alive_max_count(1000);
  m.routes();
  int port = m.opt.port;
  if (port == 0) {
    port = m.http.bind_to_any_port(m.opt.host);
    if (port < 0) return Error("serve: cannot bind {} on any port", m.opt.host);
  } else if (!m.http.bind_to_port(m.opt.host, port)) {
    return Error("serve: cannot bind {}:{} (in use, or not an address of this host)", m.opt.host, port);
  }
  m.listener = std::thread([&m] {
    m.http.listen_after_bind();
    m.listen_done = true;
  });
  // httplib's stop() does nothing until the listen loop has marked itself running, so a
  // stop() issued in that window (a failed plan load right after start) would leave the
  // listener running forever. Return only once the loop runs (or has already ended).
  while (!m.http.is_running() && !m.listen_done)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return port;
}

Status Server::attach(const Model& model, const Tokenizer& tok) {
  Impl& m = *impl_;
  m.model = &model;
  m.tok = &tok;
  if (!tok.chat_template().empty()) {
    auto t = ChatTemplate::parse(tok.chat_template());
    if (!t) return t.status();
    m.tmpl = std::move(*t);
  }
  m.model_id = !m.opt.alias.empty() ? m.opt.alias
               : !model.config().name.empty() ? model.config().name
                                              : std::string(model_arch_name(model.config().arch));
  m.sched = std::make_unique<Scheduler>(model, tok, m.opt.sched, m.metrics);
  m.ready = true;
  return Status::ok();
}

void Server::stop() {
  Impl& m = *impl_;
  // Running streams end first (with an error event), so the HTTP workers are free to stop.
  // httplib stops calling content providers once it is stopping, so let the streams write
  // their last events (the error, [DONE]) first, for at most two seconds.
  if (m.sched) {
    m.sched->shutdown();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (m.open_streams > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  m.http.stop();
  if (m.listener.joinable()) m.listener.join();
  m.sched.reset();
}

EngineInfo Server::engine_info() const { return impl_->sched ? impl_->sched->info() : EngineInfo{}; }

void Server::wait() {
  if (impl_->listener.joinable()) impl_->listener.join();
}

std::optional<ApiError> Server::Impl::prompt_of(const ApiRequest& r, SubmitSpec& spec) {
  std::string text;
  bool parse_special = true;
  if (r.kind == ApiRequest::Kind::completion) {
    if (!r.prompt_ids.empty()) {
      spec.prompt = r.prompt_ids;
      return std::nullopt;
    }
    text = r.prompt;
  } else if (tmpl) {
    const std::string bos = tok->bos_id() >= 0 ? tok->token_text(tok->bos_id()) : "";
    const std::string eos = tok->eos_id() >= 0 ? tok->token_text(tok->eos_id()) : "";
    auto rendered = tmpl->render(r.messages, true, bos, eos);
    if (!rendered) return ApiError{400, rendered.status().message(), "invalid_request_error",
                                   "messages", "invalid_value"};
    text = std::move(*rendered);
  } else {
    for (const ChatMessage& msg : r.messages) text += msg.content;
    parse_special = false;
  }
  const std::string bos = tok->bos_id() >= 0 ? tok->token_text(tok->bos_id()) : "";
  const bool add_bos = tok->add_bos_default() && !(bos.size() && text.rfind(bos, 0) == 0);
  spec.prompt = tok->encode(text, add_bos, parse_special);
  spec.in_think = opt.reasoning && r.kind == ApiRequest::Kind::chat && ends_in_think(text);
  return std::nullopt;
}

void Server::Impl::completion(ApiRequest::Kind kind, const httplib::Request& req,
                              httplib::Response& res) {
  const bool chat = kind == ApiRequest::Kind::chat;
  const char* route = chat ? "/v1/chat/completions" : "/v1/completions";
  ApiRequest r;
  ProtocolLimits lim;
  lim.n_vocab = tok->n_vocab();
  SubmitSpec spec;
  std::optional<ApiError> err = parse_request(kind, req.body, lim, r);
  if (!err) err = prompt_of(r, spec);
  std::shared_ptr<RequestStream> stream;
  if (!err) {
    spec.gen = r.gen;
    spec.split_reasoning = opt.reasoning && chat;
    auto sub = sched->submit(std::move(spec));
    if (auto* e = std::get_if<ApiError>(&sub)) err = *e;
    else stream = std::get<std::shared_ptr<RequestStream>>(sub);
  }
  if (err) {
    metrics.count_request(route, err->status);
    return send_error(res, *err);
  }
  metrics.count_request(route, 200);
  Reply reply{chat, new_id(chat ? "chatcmpl" : "cmpl"), model_id, std::time(nullptr),
              r.gen.include_usage};
  if (r.gen.stream) reply_stream(std::move(reply), std::move(stream), res);
  else reply_whole(reply, std::move(stream), res);
}

namespace {

json usage_json(const Usage& u) {
  return json{{"prompt_tokens", u.prompt}, {"completion_tokens", u.completion},
              {"total_tokens", u.prompt + u.completion},
              {"prompt_tokens_details", {{"cached_tokens", u.cached}}}};
}

json finish_json(const std::string& f) { return f == "length" ? json("length") : json("stop"); }

}  // namespace

// The whole answer as one JSON body (non-streaming): status and body of a finished request.
std::pair<int, std::string> Server::Impl::Reply::whole(const std::string& content,
                                                       const std::string& reasoning,
                                                       const RequestStream::Chunk& end) const {
  if (!end.error.empty())
    return {500, error_body(ApiError{500, end.error, "server_error", "", "engine_error"})};
  json choice;
  if (chat) {
    json msg = {{"role", "assistant"}, {"content", content}};
    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
    choice = {{"index", 0}, {"message", msg}, {"logprobs", nullptr},
              {"finish_reason", finish_json(end.finish_reason)}};
  } else {
    choice = {{"index", 0}, {"text", content}, {"logprobs", nullptr},
              {"finish_reason", finish_json(end.finish_reason)}};
  }
  json body = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"},
               {"created", created}, {"model", model}, {"choices", json::array({choice})},
               {"usage", usage_json(end.usage)}};
  return {200, dump(body)};
}

// Non-streaming. A request that ends within a few seconds gets its body with the right status.
// A longer one is answered 200 with a chunked body that starts with a space every two seconds
// (JSON allows leading whitespace): a write to a client that went away fails, which cancels the
// request as for streams. An engine failure after that point is an error body under 200.
void Server::Impl::reply_whole(const Reply& rp, std::shared_ptr<RequestStream> stream,
                               httplib::Response& res) {
  struct Acc {
    std::string content, reasoning;
    RequestStream::Chunk last;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
    bool pull(RequestStream& s, int ms) {
      last = s.take(std::chrono::milliseconds(ms));
      content += last.content;
      reasoning += last.reasoning;
      return last.done;
    }
  };
  auto acc = std::make_shared<Acc>();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  bool done = false;
  while (!done && std::chrono::steady_clock::now() < until) done = acc->pull(*stream, 500);
  if (done) {
    auto [status, body] = rp.whole(acc->content, acc->reasoning, acc->last);
    res.status = status;
    res.set_content(body, "application/json");
    return;
  }
  ++open_streams;
  res.set_chunked_content_provider(
      "application/json",
      [rp, acc, stream](size_t, httplib::DataSink& sink) {
        if (acc->pull(*stream, 1000)) {
          const std::string body = rp.whole(acc->content, acc->reasoning, acc->last).second;
          if (!sink.write(body.data(), body.size())) return false;
          sink.done();
          return true;
        }
        if (std::chrono::steady_clock::now() - acc->last_write > std::chrono::seconds(2)) {
          acc->last_write = std::chrono::steady_clock::now();
          if (!sink.write(" ", 1)) return false;
        }
        return true;
      },
      [this, stream](bool) {
        stream->cancel();
        --open_streams;
      });
}

// One SSE event: a chunk with one choice (chat: a delta; completions: text).
std::string Server::Impl::Reply::event(json delta, json finish) const {
  json choice = chat ? json{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr},
                            {"finish_reason", std::move(finish)}}
                     : json{{"index", 0}, {"text", delta.value("content", "")},
                            {"logprobs", nullptr}, {"finish_reason", std::move(finish)}};
  json j = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created}, {"model", model}, {"choices", json::array({choice})}};
  return "data: " + dump(j) + "\n\n";
}

// What to send after a take(): text events, and at the end the finish chunk, the usage chunk
// (include_usage) and [DONE].
std::string Server::Impl::Reply::events(const RequestStream::Chunk& c) const {
  std::string out;
  if (!c.reasoning.empty()) out += event(json{{"reasoning_content", c.reasoning}}, nullptr);
  if (!c.content.empty()) out += event(json{{"content", c.content}}, nullptr);
  if (!c.done) return out;
  if (!c.error.empty()) {
    out += "data: " + error_body(ApiError{500, c.error, "server_error", "", "engine_error"}) + "\n\n";
  } else {
    out += event(json::object(), finish_json(c.finish_reason));
    if (include_usage) {
      json u = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created}, {"model", model}, {"choices", json::array()},
                {"usage", usage_json(c.usage)}};
      out += "data: " + dump(u) + "\n\n";
    }
  }
  return out + "data: [DONE]\n\n";
}

// Streaming: httplib calls the provider until it says done; a failed write (the client went
// away) or the end of the response runs the releaser, which cancels the request, so its
// sequence leaves the batch at the next step.
void Server::Impl::reply_stream(Reply rp, std::shared_ptr<RequestStream> stream,
                                httplib::Response& res) {
  struct State {
    bool sent_role = false, finished = false;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
  };
  auto st = std::make_shared<State>();
  ++open_streams;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [rp = std::move(rp), st, stream](size_t, httplib::DataSink& sink) {
        if (st->finished) {
          sink.done();
          return true;
        }
        auto write = [&](const std::string& s) {
          st->last_write = std::chrono::steady_clock::now();
          return sink.write(s.data(), s.size());
        };
        if (rp.chat && !st->sent_role) {
          st->sent_role = true;
          if (!write(rp.event(json{{"role", "assistant"}, {"content", ""}}, nullptr))) return false;
        }
        RequestStream::Chunk c = stream->take(std::chrono::milliseconds(500));
        std::string out = rp.events(c);
        st->finished = c.done;
        if (out.empty() &&
            std::chrono::steady_clock::now() - st->last_write > std::chrono::seconds(2))
          out = ": keep-alive\n\n";  // a comment: finds clients that went away while we wait
        if (!out.empty() && !write(out)) return false;
        if (st->finished) sink.done();
        return true;
      },
      [this, stream](bool) {
        stream->cancel();
        --open_streams;
      });
}

void Server::Impl::routes() {
  using httplib::Request;
  using httplib::Response;
  using HR = httplib::Server::HandlerResponse;
  http.set_pre_routing_handler([this](const Request& req, Response& res) {
    const bool open = req.path == "/health" || req.path == "/" || req.path == "/favicon.ico";
    if (!open && !opt.api_key.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const std::string given = auth.rfind(prefix, 0) == 0 ? auth.substr(prefix.size()) : "";
      if (!constant_time_equal(given, opt.api_key)) {
        // Labels come from a fixed set: a client must not grow the metrics with made-up paths.
        const bool known = req.path == "/v1/chat/completions" || req.path == "/v1/completions" ||
                           req.path == "/v1/models" || req.path == "/metrics";
        metrics.count_request(known ? req.path : "other", 401);
        send_error(res, ApiError{401, auth.empty() ? "an API key is required (Authorization: Bearer KEY)"
                                                   : "the API key is not valid",
                                 "invalid_request_error", "", "invalid_api_key"});
        return HR::Handled;
      }
    }
    if (!ready && !open) {
      send_error(res, ApiError{503, "the model is loading", "server_error", "", "loading"});
      return HR::Handled;
    }
    return HR::Unhandled;
  });
  http.set_error_handler([](const Request& req, Response& res) {
    if (!res.body.empty()) return;
    ApiError e{res.status, reason_text(res.status), "invalid_request_error", "", ""};
    if (res.status == 404) e.message = fmt::format("no route {} {}", req.method, req.path), e.code = "not_found";
    if (res.status == 413) e.code = "body_too_large";
    res.set_content(error_body(e), "application/json");
  });
  http.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    send_error(res, ApiError{500, what, "server_error", "", "internal_error"});
  });
  http.Get("/health", [this](const Request&, Response& res) {
    res.status = ready ? 200 : 503;
    res.set_content(ready ? R"({"status":"ok"})" : R"({"status":"loading"})", "application/json");
  });
  http.Get("/", [](const Request&, Response& res) {
    res.set_content(kChatPageHtml, "text/html; charset=utf-8");
  });
  http.Get("/metrics", [this](const Request&, Response& res) {
    metrics.count_request("/metrics", 200);
    res.set_content(metrics.render(sched->gauges()), "text/plain; version=0.0.4");
  });
  auto models = [this](const Request&, Response& res) {
    metrics.count_request("/v1/models", 200);
    json m = {{"id", model_id}, {"object", "model"}, {"created", started}, {"owned_by", "ktx"},
              {"meta", {{"n_ctx", sched->n_ctx()}, {"n_vocab", tok->n_vocab()},
                        {"arch", model_arch_name(model->config().arch)},
                        {"slots", opt.sched.parallel}}}};
    res.set_content(dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
  };
  http.Get("/v1/models", models);
  http.Get("/models", models);
  auto chat = [this](const Request& req, Response& res) { completion(ApiRequest::Kind::chat, req, res); };
  auto cmpl = [this](const Request& req, Response& res) {
    completion(ApiRequest::Kind::completion, req, res);
  };
  http.Post("/v1/chat/completions", chat);
  http.Post("/chat/completions", chat);
  http.Post("/v1/completions", cmpl);
  http.Post("/completions", cmpl);
}

}  // namespace ktx::serve
