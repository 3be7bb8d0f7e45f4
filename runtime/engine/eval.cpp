// run_eval: each reference sequence is run twice, as one prefill (all logits) and token by
// token; the decode run then continues greedily for the reference's continuation. The bounds
// are those of ../shared/models/README.md for a float32 path on dequantized weights.
#include "runtime/engine/eval.h"

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

Expected<SeqResult> eval_sequence(const Model& model, const RefSequence& ref, int64_t index,
                                  int64_t V, const EvalOptions& opt) {
  SeqResult r;
  r.index = index;
  r.n_tokens = static_cast<int64_t>(ref.tokens.size());
  const int64_t T = r.n_tokens;
  Session sess(model, T);
  KTX_ASSIGN_OR_RETURN(std::vector<float> prefill, sess.forward(ref.tokens, true));
  compare_logits(prefill, ref, V, opt.decisive_gap, r);
  if (!opt.dump_dir.empty()) KTX_RETURN_IF_ERROR(dump_logits(opt.dump_dir, index, prefill));

  sess.reset();
  for (int64_t t = 0; t < T; ++t) {
    KTX_ASSIGN_OR_RETURN(std::vector<float> last, sess.forward(std::span<const int32_t>(&ref.tokens[t], 1), false));
    r.prefill_decode = std::max(r.prefill_decode, rel_l2(last.data(), &prefill[t * V], V));
  }
  if (!ref.greedy.empty()) KTX_RETURN_IF_ERROR(greedy_continuation(model, ref, V, r));
  r.pass = r.max_rel_l2 <= opt.max_rel_l2 && r.top1_match == r.top1_decisive &&
           r.prefill_decode <= opt.max_prefill_decode && r.greedy != 0;
  return r;
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
  res.pass = res.tok_failures.empty() &&
             std::all_of(res.seqs.begin(), res.seqs.end(), [](const SeqResult& s) { return s.pass; });
  return res;
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
  out += fmt::format("tokenizer: {}/{} cases exact\n", r.tok_cases - static_cast<int64_t>(r.tok_failures.size()), r.tok_cases);
  for (const std::string& f : r.tok_failures) out += f + "\n";
  out += r.pass ? "PASS\n" : "FAIL\n";
  return out;
}

}  // namespace ktx
