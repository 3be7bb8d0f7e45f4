// The generated models are usable by the rest of KTX: the tiny preset is read by ModelConfig as
// a split-MLA deepseek2 with sigmoid group routing, runs through the reference engine with
// activations that neither explode nor vanish, and its tokenizer and chat template work. The
// synthetic tokenizers of every preset (written as vocab-only GGUFs) tokenize English into
// multi-byte tokens and decode back to the same text.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "runtime/engine/engine.h"
#include "tools/ktx-run/gen/generate.h"
#include "tools/ktx-run/gen/presets.h"
#include "tools/ktx-run/gen/vocab_gen.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace ktx {
namespace {

namespace fs = std::filesystem;

const char* kText = "Hello there, how are you today? The weather is nice and warm.";

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("ktx_gen_run_" + std::to_string(getpid()) + "_" + name);
}

TEST(TinyModel, RunsThroughReferenceEngine) {
  const fs::path out = temp_path("tiny.gguf");
  GenOptions o;
  o.preset = "tiny";
  o.output = out.string();
  ASSERT_TRUE(generate_model(o).is_ok());
  auto opened = GGUFFile::open(out.string());
  fs::remove(out);  // the mapping stays valid
  ASSERT_TRUE(opened.has_value()) << opened.status().message();
  std::shared_ptr<const GGUFFile> gguf = std::move(*opened);

  Expected<ModelConfig> cfg = ModelConfig::from_gguf(*gguf);
  ASSERT_TRUE(cfg.has_value()) << cfg.status().message();
  EXPECT_EQ(cfg->arch, ModelArch::DeepSeek2);
  EXPECT_EQ(cfg->mla_layout, MlaLayout::SplitKV);
  EXPECT_EQ(cfg->gating, GatingFunc::Sigmoid);
  EXPECT_TRUE(cfg->exp_probs_bias);
  EXPECT_EQ(cfg->n_expert_groups, 4);
  EXPECT_EQ(cfg->n_leading_dense, 1);
  ASSERT_TRUE(cfg->check_tensors(*gguf).is_ok()) << cfg->check_tensors(*gguf).message();

  auto tok = Tokenizer::from_gguf(*gguf);
  ASSERT_TRUE(tok.has_value()) << tok.status().message();
  const std::vector<int32_t> ids = (*tok)->encode(kText, true, false);
  EXPECT_EQ(ids.front(), (*tok)->bos_id());
  EXPECT_LT(ids.size(), std::string(kText).size() / 2) << "corpus merges should apply";

  EngineOptions eo;
  eo.threads = 2;
  auto model = Model::load(*cfg, gguf, eo);
  ASSERT_TRUE(model.has_value()) << model.status().message();
  Session s(**model);
  std::vector<double> layer_rms;
  s.set_hidden_hook([&](int64_t, std::span<const float> h, int64_t n_tokens) {
    double sq = 0;
    for (float v : h) sq += double(v) * v;
    layer_rms.push_back(std::sqrt(sq / static_cast<double>(h.size())));
  });
  Expected<std::vector<float>> logits = s.forward(ids, false);
  ASSERT_TRUE(logits.has_value()) << logits.status().message();
  ASSERT_EQ(logits->size(), 512u);
  double sq = 0;
  for (float v : *logits) {
    ASSERT_TRUE(std::isfinite(v));
    sq += double(v) * v;
  }
  const double logit_rms = std::sqrt(sq / 512);
  EXPECT_GT(logit_rms, 0.1);
  EXPECT_LT(logit_rms, 20.0);
  // Embeddings, the outputs of layers 0 and 1, then the last layer's output after the norm.
  ASSERT_EQ(layer_rms.size(), 4u);
  for (size_t i = 0; i < layer_rms.size(); ++i) {
    EXPECT_GT(layer_rms[i], 1e-2) << "hidden state " << i;
    EXPECT_LT(layer_rms[i], 1e2) << "hidden state " << i;
  }
  std::printf("hidden rms:");
  for (double r : layer_rms) std::printf(" %.3f", r);
  std::printf("; logit rms %.3f\n", logit_rms);
}

TEST(TinyModel, ChatTemplateRenders) {
  const gen_detail::PresetSpec* p = gen_detail::find_preset("tiny");
  ASSERT_NE(p, nullptr);
  Expected<ChatTemplate> t = ChatTemplate::parse(p->tok.chat_template);
  ASSERT_TRUE(t.has_value()) << t.status().message();
  Expected<std::string> s = t->render({{"user", "Hi"}}, true, "<|bos|>", "<|eos|>");
  ASSERT_TRUE(s.has_value()) << s.status().message();
  EXPECT_EQ(*s, "<|user|>Hi<|eos|><|assistant|>");
}

class PresetTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(PresetTokenizer, EncodesEnglishIntoMergedTokensAndRoundTrips) {
  const gen_detail::PresetSpec* p = gen_detail::find_preset(GetParam());
  ASSERT_NE(p, nullptr);
  Expected<gen_detail::GenVocab> v = gen_detail::build_vocab(p->tok, p->n_vocab);
  ASSERT_TRUE(v.has_value()) << v.status().message();
  GGUFWriter w;
  w.set_str("general.architecture", p->arch);
  gen_detail::write_tokenizer_keys(p->tok, *v, w);
  const fs::path out = temp_path(GetParam() + ".vocab.gguf");
  ASSERT_TRUE(w.write(out.string()).is_ok());
  auto f = GGUFFile::open(out.string());
  fs::remove(out);
  ASSERT_TRUE(f.has_value()) << f.status().message();
  auto tok = Tokenizer::from_gguf(**f);
  ASSERT_TRUE(tok.has_value()) << tok.status().message();
  const std::vector<int32_t> ids = (*tok)->encode(kText, false, false);
  EXPECT_LT(ids.size(), std::string(kText).size() / 2);
  std::string text = (*tok)->decode(ids);
  if (p->tok.kind == gen_detail::TokenizerKind::SentencePiece && !text.empty() && text[0] == ' ') {
    text.erase(0, 1);  // SentencePiece's added space prefix
  }
  EXPECT_EQ(text, kText);
  ASSERT_TRUE(ChatTemplate::parse(p->tok.chat_template).has_value()) << GetParam();
}

// One preset per tokenizer (qwen3-235b-a22b has the same one as qwen3-30b-a3b).
INSTANTIATE_TEST_SUITE_P(AllTokenizers, PresetTokenizer,
                         ::testing::Values("tiny", "deepseek-v3", "qwen3-30b-a3b", "mixtral-8x7b"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace ktx
