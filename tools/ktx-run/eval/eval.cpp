// run_eval: each reference sequence is run twice, as one prefill (all logits) and token by
// token; the decode run then continues greedily for the reference's continuation. The float32
// bounds are those of ../shared/models/README.md for a path on dequantized weights; the
// quantized-activation bounds are that README's per-file table (eval_bounds.cpp, eval.h).
#include "tools/ktx-run/eval/eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/text/tokenizer.h"

namespace ktx {
namespace {

int32_t argmax(const float* x, int64_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

double kl_divergence(const float* ref, const float* x, int64_t n) {
  auto log_softmax = [n](const float* v, std::vector<double>& out) {
    const double mx = *std::max_element(v, v + n);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += std::exp(v[i] - mx);
    const double lse = mx + std::log(sum);
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = v[i] - lse;
  };
  std::vector<double> lp, lq;
  log_softmax(ref, lp);
  log_softmax(x, lq);
  double kl = 0.0;
  for (int64_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
  return kl;
}

// Logits against the reference, position by position.
void compare_logits(const std::vector<float>& x, const RefSequence& ref, int64_t V,
                    double gap, SeqResult& r) {
  const int64_t T = r.n_tokens;
  double kl_sum = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    const float* a = &x[t * V];
    const float* b = &ref.logits[t * V];
    r.max_rel_l2 = std::max(r.max_rel_l2, rel_l2(a, b, V));
    for (int64_t i = 0; i < V; ++i) r.max_abs = std::max(r.max_abs, std::fabs(double(a[i]) - b[i]));
    kl_sum += kl_divergence(b, a, V);
    std::vector<float> sorted(b, b + V);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (V > 1 && double(sorted[0]) - sorted[1] > gap) {
      ++r.top1_decisive;
      r.top1_match += argmax(a, V) == argmax(b, V);
    }
  }
  r.mean_kl = kl_sum / static_cast<double>(T);
}

Status dump_logits(const std::string& dir, int64_t i, const std::vector<float>& logits) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = fmt::format("{}/{}.f32", dir, i);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()),
            static_cast<std::streamsize>(logits.size() * sizeof(float)));
  if (!out) return Error("eval: cannot write '{}'", path);
  return Status::ok();
}

// The shipped reference files' greedy continuations were generated from the prompt text as
// the HF tokenizer encodes it, i.e. without the BOS that ref.tokens.I starts with (checked on
// all eight files: with the BOS, the first tokens already differ from transformers' own
// logits' argmax). So the continuation is run from the tokens after the BOS.
Status greedy_continuation(const Model& model, const RefSequence& ref, int64_t V, SeqResult& r) {
  KTX_ASSIGN_OR_RETURN(int64_t bos, model.gguf().get_int_or("tokenizer.ggml.bos_token_id", -1));
  std::vector<int32_t> prompt = ref.tokens;
  if (prompt.size() > 1 && prompt[0] == bos) prompt.erase(prompt.begin());
  const int64_t n_gen = static_cast<int64_t>(ref.greedy.size());
  Session sess(model, static_cast<int64_t>(prompt.size()) + n_gen);
  KTX_ASSIGN_OR_RETURN(std::vector<float> last, sess.forward(prompt, false));
  for (int64_t g = 0; g < n_gen; ++g) {
    const int32_t next = argmax(last.data(), V);
    r.greedy_tokens.push_back(next);
    if (g + 1 < n_gen) {
      KTX_ASSIGN_OR_RETURN(last, sess.forward(std::span<const int32_t>(&next, 1), false));
    }
  }
  r.greedy = r.greedy_tokens == ref.greedy ? 1 : 0;
  return Status::ok();
}

// Largest relative L2 between the oracle's logits and `prefill` / `decode` ([T][V] each).
// The oracle takes the kernels' expert choices (routes_prefill / routes_decode): a near-tie
// decided the other way would measure the tie, not the kernels.
Expected<double> oracle_distance(const Model& oracle, const std::vector<int32_t>& tokens,
                                 const std::vector<float>& prefill,
                                 const std::vector<float>& decode, int64_t V,
                                 RouteLog& routes_prefill, RouteLog& routes_decode) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  Session sess(oracle, T);
  sess.set_route_replay(&routes_prefill);
  KTX_ASSIGN_OR_RETURN(std::vector<float> op, sess.forward(tokens, true));
  double worst = 0.0;
  for (int64_t t = 0; t < T; ++t) worst = std::max(worst, rel_l2(&prefill[t * V], &op[t * V], V));
  sess.reset();
  sess.set_route_replay(&routes_decode);
  for (int64_t t = 0; t < T; ++t) {
    KTX_ASSIGN_OR_RETURN(std::vector<float> od, sess.forward(std::span<const int32_t>(&tokens[t], 1), false));
    worst = std::max(worst, rel_l2(&decode[t * V], od.data(), V));
  }
  return worst;
}

Expected<SeqResult> eval_sequence(const Model& model, const RefSequence& ref, int64_t index,
                                  int64_t V, const EvalOptions& opt) {
  SeqResult r;
  r.index = index;
  r.n_tokens = static_cast<int64_t>(ref.tokens.size());
  const int64_t T = r.n_tokens;
  Session sess(model, T);
  RouteLog routes_prefill, routes_decode;  // the kernels' choices, for the oracle
  if (opt.oracle) sess.set_route_record(&routes_prefill);
  KTX_ASSIGN_OR_RETURN(std::vector<float> prefill, sess.forward(ref.tokens, true));
  compare_logits(prefill, ref, V, opt.decisive_gap, r);
  if (!opt.dump_dir.empty()) KTX_RETURN_IF_ERROR(dump_logits(opt.dump_dir, index, prefill));

  sess.reset();
  if (opt.oracle) sess.set_route_record(&routes_decode);
  std::vector<float> decode(T * V);
  for (int64_t t = 0; t < T; ++t) {
    KTX_ASSIGN_OR_RETURN(std::vector<float> last, sess.forward(std::span<const int32_t>(&ref.tokens[t], 1), false));
    r.prefill_decode = std::max(r.prefill_decode, rel_l2(last.data(), &prefill[t * V], V));
    std::copy(last.begin(), last.end(), &decode[t * V]);
  }
  if (!ref.greedy.empty()) KTX_RETURN_IF_ERROR(greedy_continuation(model, ref, V, r));
  if (opt.oracle) {
    KTX_ASSIGN_OR_RETURN(r.oracle, oracle_distance(*opt.oracle, ref.tokens, prefill, decode, V,
                                                   routes_prefill, routes_decode));
  }
  if (opt.quantized)
    r.pass = r.oracle <= opt.max_oracle_rel_l2;  // true without an oracle (-1); the rest per file
  else
    r.pass = r.max_rel_l2 <= opt.max_rel_l2 && r.top1_match == r.top1_decisive &&
             r.prefill_decode <= opt.max_prefill_decode && r.greedy != 0;
  return r;
}

// File-wide aggregates, and the per-file bounds when activations are quantized.
void aggregate(EvalResult& res, const EvalOptions& opt) {
  double kl = 0.0;
  int64_t n = 0;
  for (const SeqResult& s : res.seqs) {
    kl += s.mean_kl * static_cast<double>(s.n_tokens);
    n += s.n_tokens;
    res.top1_match += s.top1_match;
    res.top1_decisive += s.top1_decisive;
    res.max_rel_l2 = std::max(res.max_rel_l2, s.max_rel_l2);
    res.max_prefill_decode = std::max(res.max_prefill_decode, s.prefill_decode);
    res.max_oracle = std::max(res.max_oracle, s.oracle);
    res.greedy_total += s.greedy >= 0;
    res.greedy_same += s.greedy == 1;
  }
  res.mean_kl = n > 0 ? kl / static_cast<double>(n) : 0.0;
  res.quantized = opt.quantized;
  res.bounds = opt;
  res.bounds.oracle = nullptr;  // the result may outlive the model
  res.with_oracle = opt.oracle != nullptr;
}

double top1_rate(const EvalResult& r) {
  return r.top1_decisive > 0 ? static_cast<double>(r.top1_match) / r.top1_decisive : 1.0;
}

std::string join_ids(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

double rel_l2(const float* a, const float* b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d;
    den += double(b[i]) * b[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

Expected<EvalResult> run_eval(const Model& model, const RefFile& ref, const EvalOptions& opt) {
  EvalResult res;
  for (size_t i = 0; i < ref.seqs.size(); ++i) {
    KTX_ASSIGN_OR_RETURN(SeqResult r, eval_sequence(model, ref.seqs[i], static_cast<int64_t>(i),
                                                    ref.n_vocab, opt));
    res.seqs.push_back(std::move(r));
  }
  if (opt.check_tokenizer && !ref.tok_cases.empty()) {
    KTX_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::from_gguf(model.gguf()));
    for (size_t j = 0; j < ref.tok_cases.size(); ++j) {
      const auto& [text, ids] = ref.tok_cases[j];
      const std::vector<int32_t> got = tok->encode(text, /*add_bos=*/false, /*parse_special=*/false);
      ++res.tok_cases;
      if (got != ids)
        res.tok_failures.push_back(fmt::format("tokenizer case {}: expected [{}], got [{}]", j,
                                               join_ids(ids), join_ids(got)));
    }
  }
  judge_eval(res, ref.model, opt);
  return res;
}

void judge_eval(EvalResult& res, const std::string& file, const EvalOptions& opt) {
  res.top1_match = res.top1_decisive = res.greedy_same = res.greedy_total = 0;
  res.max_rel_l2 = res.max_prefill_decode = 0.0;
  res.max_oracle = -1.0;
  aggregate(res, opt);
  res.pass = res.tok_failures.empty() &&
             std::all_of(res.seqs.begin(), res.seqs.end(), [](const SeqResult& s) { return s.pass; });
  res.file = file;
  res.file_bound = bound_for_file(file);
  res.targets_met = bound_met(res.file_bound.bound, res.mean_kl, res.top1_match, res.top1_decisive);
  if (opt.quantized && !opt.oracle) res.pass = res.pass && res.targets_met;
}

std::string format_eval(const EvalResult& r, const std::string& title) {
  std::string out = title + "\n";
  out += fmt::format("{:>3} {:>5} {:>10} {:>10} {:>9} {:>10} {:>10} {:>7} {:>5}\n", "seq", "T",
                     "rel_l2", "max_abs", "top1", "mean_kl", "pf_vs_dec", "greedy", "ok");
  for (const SeqResult& s : r.seqs) {
    out += fmt::format("{:>3} {:>5} {:>10.3e} {:>10.3e} {:>9} {:>10.3e} {:>10.3e} {:>7} {:>5}\n",
                       s.index, s.n_tokens, s.max_rel_l2, s.max_abs,
                       fmt::format("{}/{}", s.top1_match, s.top1_decisive), s.mean_kl,
                       s.prefill_decode, s.greedy < 0 ? "-" : (s.greedy ? "same" : "DIFF"),
                       s.pass ? "ok" : "FAIL");
  }
  for (const SeqResult& s : r.seqs)
    if (s.greedy == 0) out += fmt::format("seq {}: greedy continuation [{}]\n", s.index, join_ids(s.greedy_tokens));
  if (r.quantized) {
    const EvalOptions& b = r.bounds;
    const bool judged = !r.with_oracle;  // the targets decide PASS only without an oracle
    const FileBound& fb = r.file_bound.bound;
    const std::string source = r.file_bound.known
        ? fmt::format("row {} of the per-file table", fb.file)
        : fmt::format("no row for '{}' in the per-file table: the tightest of all rows", r.file);
    out += fmt::format("bound: mean_kl <= {:.1e}, top1 >= {:.1f}% ({}, ../shared/models/README.md)\n",
                       fb.max_mean_kl, 100.0 * fb.min_top1, source);
    out += fmt::format("file (activation-quantizing kernels): mean_kl {:.3e} (bound {:.1e}), top1 "
                       "{}/{} = {:.2f}% (bound {:.1f}%): {}\n", r.mean_kl, fb.max_mean_kl,
                       r.top1_match, r.top1_decisive, 100.0 * top1_rate(r), 100.0 * fb.min_top1,
                       r.targets_met ? "met" : (judged ? "NOT MET" : "not met (reported)"));
    out += fmt::format("reported: worst rel_l2 {:.3e}, worst pf_vs_dec {:.3e}, greedy {}/{} same\n",
                       r.max_rel_l2, r.max_prefill_decode, r.greedy_same, r.greedy_total);
    if (r.with_oracle)
      out += fmt::format("kernels vs their oracle (same rounding, exact sums): worst rel_l2 {:.3e} "
                         "(bound {:.0e})\n", r.max_oracle, b.max_oracle_rel_l2);
  }
  out += fmt::format("tokenizer: {}/{} cases exact\n", r.tok_cases - static_cast<int64_t>(r.tok_failures.size()), r.tok_cases);
  for (const std::string& f : r.tok_failures) out += f + "\n";
  out += r.pass ? "PASS\n" : "FAIL\n";
  return out;
}

}  // namespace ktx
