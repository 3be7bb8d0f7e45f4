// RefFile::load: reads a transformers reference file (architecture "ktref") and checks every
// tensor before use, since it is user input: types, shapes, and that it was made for a model
// like the one being evaluated.
#include <cstring>

#include "tools/ktx-run/eval/eval.h"

namespace ktx {
namespace {

// A 1-D or 2-D tensor of the given type with ne[0] = n0 (n0 = 0: any); returns its rows.
Expected<const GGUFTensorInfo*> ref_tensor(const GGUFFile& f, const std::string& name,
                                           GGMLType type, int64_t n0) {
  const GGUFTensorInfo* t = f.find_tensor(name);
  if (!t) return Error("{}: tensor '{}' is missing", f.path(), name);
  if (t->type != type)
    return Error("{}: tensor '{}': expected type {}, found {}", f.path(), name,
                 ggml_type_name(static_cast<uint32_t>(type)), ggml_type_name(static_cast<uint32_t>(t->type)));
  if (t->n_dims > 2 || (n0 > 0 && t->ne[0] != n0))
    return Error("{}: tensor '{}': expected shape [{}{}], found {}", f.path(), name, n0,
                 t->n_dims == 2 ? ", T" : "", t->shape_str());
  return t;
}

template <typename T>
std::vector<T> copy_data(const GGUFTensorInfo* t) {
  std::vector<T> v(static_cast<size_t>(t->n_elements()));
  std::memcpy(v.data(), t->data, v.size() * sizeof(T));
  return v;
}

Status load_sequence(const GGUFFile& f, int64_t i, int64_t n_vocab, RefSequence& seq) {
  KTX_ASSIGN_OR_RETURN(const GGUFTensorInfo* tok,
                       ref_tensor(f, fmt::format("ref.tokens.{}", i), GGMLType::I32, 0));
  seq.tokens = copy_data<int32_t>(tok);
  const int64_t T = tok->ne[0];
  if (T == 0) return Error("{}: tensor 'ref.tokens.{}' is empty", f.path(), i);
  for (int32_t id : seq.tokens)
    if (id < 0 || id >= n_vocab)
      return Error("{}: ref.tokens.{} holds token id {} outside [0, {})", f.path(), i, id, n_vocab);
  const std::string lname = fmt::format("ref.logits.{}", i);
  KTX_ASSIGN_OR_RETURN(const GGUFTensorInfo* lg, ref_tensor(f, lname, GGMLType::F32, n_vocab));
  if (lg->ne[1] != T)
    return Error("{}: tensor '{}': expected shape [{}, {}], found {}", f.path(), lname, n_vocab, T,
                 lg->shape_str());
  seq.logits = copy_data<float>(lg);
  const std::string gname = fmt::format("ref.greedy.{}", i);
  if (f.find_tensor(gname)) {
    KTX_ASSIGN_OR_RETURN(const GGUFTensorInfo* g, ref_tensor(f, gname, GGMLType::I32, 0));
    seq.greedy = copy_data<int32_t>(g);
  }
  return Status::ok();
}

}  // namespace

Expected<RefFile> RefFile::load(const GGUFFile& f, const ModelConfig& cfg) {
  RefFile r;
  KTX_ASSIGN_OR_RETURN(std::string file_arch, f.get_string("general.architecture"));
  if (file_arch != "ktref")
    return Error("{}: not a reference file (general.architecture = '{}', expected 'ktref')",
                 f.path(), file_arch);
  KTX_ASSIGN_OR_RETURN(r.arch, f.get_string("ref.arch"));
  KTX_ASSIGN_OR_RETURN(std::string model, f.get_string_or("ref.model", "?"));
  KTX_ASSIGN_OR_RETURN(std::string variant, f.get_string_or("ref.variant", "?"));
  r.model = model + "." + variant;
  // Mixtral references name transformers' model type rather than the GGUF architecture.
  const bool same_arch = r.arch == model_arch_name(cfg.arch) ||
                         (r.arch == "mixtral" && cfg.arch == ModelArch::Llama && cfg.n_expert > 0);
  if (!same_arch)
    return Error("{}: reference was made for architecture '{}' (ref.arch), the model is '{}'",
                 f.path(), r.arch, model_arch_name(cfg.arch));
  KTX_ASSIGN_OR_RETURN(const GGUFTensorInfo* l0, ref_tensor(f, "ref.logits.0", GGMLType::F32, 0));
  r.n_vocab = l0->ne[0];
  if (r.n_vocab != cfg.n_vocab)
    return Error("{}: reference logits have n_vocab = {} (ref.logits.0 {}), the model has {}",
                 f.path(), r.n_vocab, l0->shape_str(), cfg.n_vocab);

  KTX_ASSIGN_OR_RETURN(int64_t n_seqs, f.get_int("ref.n_seqs"));
  if (n_seqs <= 0 || n_seqs > 1024) return Error("{}: ref.n_seqs = {} out of range [1, 1024]", f.path(), n_seqs);
  r.seqs.resize(static_cast<size_t>(n_seqs));
  for (int64_t i = 0; i < n_seqs; ++i) KTX_RETURN_IF_ERROR(load_sequence(f, i, r.n_vocab, r.seqs[i]));

  const int64_t T0 = static_cast<int64_t>(r.seqs[0].tokens.size());
  for (int64_t l = 0; f.find_tensor(fmt::format("ref.hidden.{}", l)); ++l) {
    const std::string name = fmt::format("ref.hidden.{}", l);
    KTX_ASSIGN_OR_RETURN(const GGUFTensorInfo* h, ref_tensor(f, name, GGMLType::F32, cfg.n_embd));
    if (h->ne[1] != T0)
      return Error("{}: tensor '{}': expected shape [{}, {}], found {}", f.path(), name, cfg.n_embd, T0, h->shape_str());
    r.hidden.push_back(copy_data<float>(h));
  }
  if (!r.hidden.empty() && static_cast<int64_t>(r.hidden.size()) != cfg.n_layer + 1)
    return Error("{}: {} ref.hidden.L tensors, expected n_layer + 1 = {}", f.path(), r.hidden.size(), cfg.n_layer + 1);

  KTX_ASSIGN_OR_RETURN(int64_t n_cases, f.get_int_or("ref.n_tok_cases", 0));
  for (int64_t j = 0; j < n_cases; ++j) {
    KTX_ASSIGN_OR_RETURN(std::string text, f.get_string(fmt::format("ref.tok_text.{}", j)));
    KTX_ASSIGN_OR_RETURN(std::vector<int64_t> ids, f.get_int_array(fmt::format("ref.tok_ids.{}", j)));
    r.tok_cases.emplace_back(std::move(text), std::vector<int32_t>(ids.begin(), ids.end()));
  }
  return r;
}

}  // namespace ktx
