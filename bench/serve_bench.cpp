// ktx-serve-bench: load generator for `ktx-run serve` (issue 13's benchmark), the C++ form of
// bench/serve-bench.cjs for machines without Node (the accelerator host). Aggregate decode
// tokens/s at several numbers of concurrent streams (distinct prompts, --tokens each, greedy),
// and time to first token of a long prompt on a prefix-cache miss and then on a hit.
//   ktx-serve-bench [URL] [--streams 1,4,16,64] [--tokens 128] [--prompt-words 1000] [--key K]
//                   [--wait SECONDS] [--json]
// Start the server with at least as many slots as the largest concurrency (--parallel 64).
// Prints one markdown table row per concurrency and the two TTFT lines (--json: one object).
// Any connection failure, HTTP error, error event or malformed SSE stream is one message on
// stderr and exit code 1.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
  std::string url = "http://127.0.0.1:8080";
  std::string key;
};

// One streamed chat request's measurements.
struct StreamResult {
  std::optional<double> ttft;  // seconds from sending to the first generated text
  std::optional<double> last;  // seconds from sending to the last generated text
  std::optional<double> end;   // seconds from sending to the chunk with the finish_reason
  long completion = 0;
  long prompt = 0;
  long cached = 0;
};

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads the SSE events of one stream as they arrive ("data: {...}" events separated by a blank
// line, ": comment" keep-alives, "data: [DONE]" last).
class SseReader {
 public:
  SseReader(Clock::time_point t0, StreamResult& r) : t0_(t0), r_(r) {}

  void feed(const char* data, size_t n) {
    buf_.append(data, n);
    for (;;) {
      size_t end = buf_.find("\n\n");
      size_t skip = 2;
      size_t crlf = buf_.find("\r\n\r\n");
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) end = crlf, skip = 4;
      if (end == std::string::npos) break;
      std::string ev = buf_.substr(0, end);
      buf_.erase(0, end + skip);
      event(ev);
    }
  }

  void finish() const {
    if (!done_) {
      throw BenchError(buf_.empty() ? "stream ended without data: [DONE]"
                                    : "stream ended inside an event (no [DONE]): '" + head(buf_) + "'");
    }
    if (!usage_) throw BenchError("stream had no usage chunk (stream_options.include_usage)");
  }

 private:
  static std::string head(const std::string& s) { return s.size() > 200 ? s.substr(0, 200) + "..." : s; }

  void event(std::string ev) {
    while (!ev.empty() && (ev.back() == '\r' || ev.back() == '\n')) ev.pop_back();
    if (ev.empty() || ev[0] == ':') return;  // keep-alive comment
    if (ev.rfind("data:", 0) != 0) throw BenchError("malformed SSE event: '" + head(ev) + "'");
    std::string data = ev.substr(5);
    if (!data.empty() && data[0] == ' ') data.erase(0, 1);
    if (done_) throw BenchError("SSE event after [DONE]: '" + head(ev) + "'");
    if (data == "[DONE]") {
      done_ = true;
      return;
    }
    json j = json::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw BenchError("malformed SSE data (not a JSON object): '" + head(data) + "'");
    if (j.contains("error")) throw BenchError("error event: " + j["error"].dump());
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      r_.completion = u.value("completion_tokens", 0L);
      r_.prompt = u.value("prompt_tokens", 0L);
      if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
        r_.cached = u["prompt_tokens_details"].value("cached_tokens", 0L);
      usage_ = true;
    }
    if (!j.contains("choices") || !j["choices"].is_array())
      throw BenchError("malformed SSE chunk (no choices): '" + head(data) + "'");
    for (const json& c : j["choices"]) {
      if (!c.is_object() || !c.contains("delta") || !c["delta"].is_object()) continue;
      if (c.contains("finish_reason") && c["finish_reason"].is_string() && !r_.end) r_.end = seconds_since(t0_);
      const json& d = c["delta"];
      bool text = false;
      for (const char* f : {"content", "reasoning_content"}) {
        if (d.contains(f) && d[f].is_string() && !d[f].get_ref<const std::string&>().empty()) text = true;
      }
      if (text) {
        double t = seconds_since(t0_);
        if (!r_.ttft) r_.ttft = t;
        r_.last = t;
      }
    }
  }

  Clock::time_point t0_;
  StreamResult& r_;
  std::string buf_;
  bool done_ = false;
  bool usage_ = false;
};

// One streamed chat completion at temperature 0.
StreamResult one(const Options& o, const std::string& content, int max_tokens) {
  httplib::Client cli(o.url);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(600);
  cli.set_write_timeout(60);
  json body = {{"messages", json::array({{{"role", "user"}, {"content", content}}})},
               {"stream", true},
               {"max_tokens", max_tokens},
               {"temperature", 0},
               {"stream_options", {{"include_usage", true}}}};
  StreamResult r;
  int status = 0;
  std::string raw;  // the body of an error answer
  std::optional<BenchError> parse_error;
  auto t0 = Clock::now();
  SseReader sse(t0, r);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = {{"Accept", "text/event-stream"}};
  if (!o.key.empty()) req.headers.emplace("Authorization", "Bearer " + o.key);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      raw.append(data, n);
      return true;
    }
    try {
      sse.feed(data, n);
    } catch (const BenchError& e) {
      parse_error = e;
      return false;
    }
    return true;
  };
  auto res = cli.send(req);
  if (parse_error) throw *parse_error;
  if (!res) {
    throw BenchError("POST " + o.url + "/v1/chat/completions: " + httplib::to_string(res.error()) +
                     (res.error() == httplib::Error::Connection ? " failed (is the server running?)" : " error"));
  }
  if (status == 0) status = res->status;
  if (status != 200) {
    if (raw.empty()) raw = res->body;
    throw BenchError("POST /v1/chat/completions: status " + std::to_string(status) + ": " + raw);
  }
  sse.finish();
  return r;
}

std::vector<int> parse_streams(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t pos = 0;
      int n = std::stoi(item, &pos);
      if (pos != item.size() || n < 1) throw std::invalid_argument(item);
      out.push_back(n);
    } catch (const std::exception&) {
      throw BenchError("--streams: '" + item + "' is not a positive integer");
    }
  }
  if (out.empty()) throw BenchError("--streams: empty list");
  return out;
}

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// GET /health until it answers 200 (a loading server answers 503), for at most wait_s seconds.
void wait_ready(const Options& o, double wait_s) {
  auto t0 = Clock::now();
  for (;;) {
    httplib::Client cli(o.url);
    cli.set_connection_timeout(5);
    cli.set_read_timeout(10);
    httplib::Headers h;
    if (!o.key.empty()) h.emplace("Authorization", "Bearer " + o.key);
    auto res = cli.Get("/health", h);
    std::string why;
    if (!res) {
      why = httplib::to_string(res.error()) +
            (res.error() == httplib::Error::Connection ? " failed (is the server running?)" : " error");
    } else if (res->status == 200) {
      return;
    } else {
      why = "status " + std::to_string(res->status) + ": " + res->body;
      if (res->status != 503) throw BenchError("GET " + o.url + "/health: " + why);
    }
    if (seconds_since(t0) >= wait_s) {
      throw BenchError("GET " + o.url + "/health: " + why +
                       (wait_s > 0 ? " (after " + fixed(wait_s, 0) + " s)" : ""));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

struct Row {
  int streams;
  long completion;
  double wall, aggregate, per_stream, ttft, itl_ms;
};

// N concurrent streams, one thread each; the wall time spans the whole batch.
Row batch(const Options& o, int n, int tokens) {
  std::vector<StreamResult> rs(n);
  std::vector<std::optional<std::string>> errs(n);
  std::vector<std::thread> th;
  th.reserve(n);
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    th.emplace_back([&, i] {
      try {
        // Distinct prompts, so no stream rides on another's prefix.
        rs[i] = one(o, "Stream " + std::to_string(i) + ": tell me a story.", tokens);
      } catch (const std::exception& e) {
        errs[i] = e.what();
      }
    });
  }
  for (auto& t : th) t.join();
  double wall = seconds_since(t0);
  for (int i = 0; i < n; ++i) {
    if (errs[i]) throw BenchError("stream " + std::to_string(i) + " of " + std::to_string(n) + ": " + *errs[i]);
  }
  Row row{n, 0, wall, 0, 0, 0, 0};
  double ttft = 0, itl = 0;
  int itl_n = 0;
  for (const auto& r : rs) {
    row.completion += r.completion;
    ttft += r.ttft ? *r.ttft : r.end.value_or(0.0);
    if (r.ttft && r.last && r.completion > 1) {
      itl += (*r.last - *r.ttft) / double(r.completion - 1);
      ++itl_n;
    }
  }
  row.aggregate = row.completion / wall;
  row.per_stream = row.aggregate / n;
  row.ttft = ttft / n;
  row.itl_ms = itl_n ? 1000.0 * itl / itl_n : 0.0;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Load generator for ktx-run serve: aggregate decode tokens/s at N concurrent streams, "
               "TTFT with and without a prefix-cache hit"};
  Options o;
  std::string streams_arg = "1,4,16,64";
  int tokens = 128, prompt_words = 1000;
  bool as_json = false;
  double wait_s = 0;
  app.add_option("url", o.url, "server base URL")->capture_default_str();
  app.add_option("--streams", streams_arg, "comma-separated concurrencies")->capture_default_str();
  app.add_option("--tokens", tokens, "max_tokens of each stream")->capture_default_str()->check(CLI::Range(1, 1048576));
  app.add_option("--prompt-words", prompt_words, "words of the long TTFT prompt")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--key", o.key, "API key (Authorization: Bearer KEY)");
  app.add_option("--wait", wait_s, "seconds to retry GET /health until the server is ready (503 while loading)")
      ->capture_default_str()->check(CLI::Range(0.0, 86400.0));
  app.add_flag("--json", as_json, "print one JSON object instead of the table");
  CLI11_PARSE(app, argc, argv);
  while (!o.url.empty() && o.url.back() == '/') o.url.pop_back();
  if (o.url.find("://") == std::string::npos) o.url = "http://" + o.url;

  try {
    std::vector<int> streams = parse_streams(streams_arg);
    wait_ready(o, wait_s);
    json out = {{"url", o.url}, {"tokens", tokens}, {"prompt_words", prompt_words}, {"rows", json::array()}};
    if (!as_json) {
      std::printf("| streams | completion tokens | wall s | aggregate tok/s | per stream tok/s | mean TTFT s | mean ITL ms |\n");
      std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
      std::fflush(stdout);
    }
    for (int n : streams) {
      Row r = batch(o, n, tokens);
      if (as_json) {
        out["rows"].push_back({{"streams", r.streams}, {"completion_tokens", r.completion}, {"wall_s", r.wall},
                               {"aggregate_tok_s", r.aggregate}, {"per_stream_tok_s", r.per_stream},
                               {"mean_ttft_s", r.ttft}, {"mean_itl_ms", r.itl_ms}});
      } else {
        std::printf("| %d | %ld | %s | %s | %s | %s | %s |\n", r.streams, r.completion, fixed(r.wall, 2).c_str(),
                    fixed(r.aggregate, 1).c_str(), fixed(r.per_stream, 1).c_str(), fixed(r.ttft, 3).c_str(),
                    fixed(r.itl_ms, 2).c_str());
        std::fflush(stdout);
      }
    }
    // A prompt no earlier run has seen (the session stamp), then the same prompt again.
    long stamp = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch()).count();
    std::string long_prompt = "Session " + std::to_string(stamp) + ". ";
    for (int i = 0; i < prompt_words / 9; ++i) long_prompt += "The quick brown fox jumps over the lazy dog. ";
    StreamResult miss = one(o, long_prompt, 1);
    StreamResult hit = one(o, long_prompt, 1);
    // A first token that decodes to no text (an end token) still ends the request: then the
    // time to the chunk with its finish_reason.
    auto ttft = [](const StreamResult& r) { return r.ttft ? *r.ttft : r.end.value_or(0.0); };
    if (as_json) {
      out["ttft_miss"] = {{"ttft_s", ttft(miss)}, {"prompt_tokens", miss.prompt}, {"cached_tokens", miss.cached}};
      out["ttft_hit"] = {{"ttft_s", ttft(hit)}, {"prompt_tokens", hit.prompt}, {"cached_tokens", hit.cached}};
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::printf("TTFT, %d-word prompt, prefix-cache miss: %s s (cached %ld of %ld)\n", prompt_words,
                  fixed(ttft(miss), 3).c_str(), miss.cached, miss.prompt);
      std::printf("TTFT, same prompt again, prefix-cache hit: %s s (cached %ld of %ld)\n", fixed(ttft(hit), 3).c_str(),
                  hit.cached, hit.prompt);
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "ktx-serve-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
