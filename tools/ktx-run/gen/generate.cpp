// generate_model and the public preset/type helpers: validates the options, checks the output
// path and the free disk space, then hands metadata and lazily filled tensors to GGUFWriter.
#include "tools/ktx-run/gen/generate.h"

#include <sys/statvfs.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>
#include <thread>

#include "tools/ktx-run/gen/fill.h"
#include "tools/ktx-run/gen/model_layout.h"
#include "tools/ktx-run/gen/vocab_gen.h"

namespace ktx {
namespace {

using gen_detail::PresetSpec;

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

Expected<const PresetSpec*> lookup_preset(const std::string& name) {
  const PresetSpec* p = gen_detail::find_preset(name);
  if (!p) {
    return Error("gen: unknown preset '{}'; valid presets: {}", name,
                 join_names(gen_preset_names()));
  }
  return p;
}

// The tensor list for these options: the type must be one --type accepts.
Expected<GenModelPlan> plan_for(const PresetSpec& p, const GenOptions& opts) {
  KTX_ASSIGN_OR_RETURN(GGMLType type, gen_parse_type(ggml_type_name(static_cast<uint32_t>(opts.type))));
  if (opts.n_layers < 0) return Error("gen: --layers must be positive, got {}", opts.n_layers);
  return gen_detail::build_plan(p, type, opts.n_layers);
}

double gb(uint64_t bytes) { return static_cast<double>(bytes) / 1e9; }

// Refuse to clobber a file and to start a write that cannot finish.
Status check_output(const std::string& path, bool force, uint64_t need_bytes) {
  namespace fs = std::filesystem;
  if (path.empty()) return Error("gen: no output path given (-o FILE.gguf)");
  std::error_code ec;
  if (fs::exists(path, ec) && !force) {
    return Error("gen: output file '{}' already exists; pass --force to overwrite it", path);
  }
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) {
    return Error("gen: output directory '{}' does not exist", dir.string());
  }
  struct statvfs st {};
  if (statvfs(dir.c_str(), &st) != 0) {
    return Error("gen: cannot query free space of '{}'", dir.string());
  }
  uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  // Overwriting frees the old file's space only after the rename; count it as unavailable.
  if (free_bytes < need_bytes) {
    return Error("gen: not enough free disk space in '{}': the model needs {:.2f} GB, "
                 "{:.2f} GB are free", dir.string(), gb(need_bytes), gb(free_bytes));
  }
  return Status::ok();
}

// Metadata bytes are dominated by the vocabulary; this bound covers keys, tensor infos and
// alignment padding with room to spare.
uint64_t metadata_bound(const GenModelPlan& plan, const gen_detail::GenVocab& v) {
  uint64_t n = 1 << 20;
  for (const std::string& t : v.tokens) n += t.size() + 16;
  for (const std::string& m : v.merges) n += m.size() + 12;
  n += plan.tensors.size() * (96 + 32);
  return n;
}

}  // namespace

int64_t GenTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<std::string> gen_preset_names() {
  std::vector<std::string> names;
  for (const PresetSpec& p : gen_detail::preset_table()) names.push_back(p.name);
  return names;
}

Expected<std::string> gen_preset_description(const std::string& preset) {
  KTX_ASSIGN_OR_RETURN(const PresetSpec* p, lookup_preset(preset));
  return p->description;
}

std::vector<GGMLType> gen_weight_types() {
  return {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16, GGMLType::Q4_0, GGMLType::Q4_1,
          GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q8_0, GGMLType::Q2_K, GGMLType::Q3_K,
          GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K};
}

Expected<GGMLType> gen_parse_type(const std::string& name) {
  std::vector<std::string> valid;
  for (GGMLType t : gen_weight_types()) {
    const std::string n = ggml_type_name(static_cast<uint32_t>(t));
    if (n == name) return t;
    valid.push_back(n);
  }
  return Error("gen: unknown weight type '{}'; valid types: {}", name, join_names(valid));
}

Expected<GenModelPlan> gen_plan_model(const GenOptions& opts) {
  KTX_ASSIGN_OR_RETURN(const PresetSpec* p, lookup_preset(opts.preset));
  return plan_for(*p, opts);
}

Status generate_model(const GenOptions& opts) {
  KTX_ASSIGN_OR_RETURN(const PresetSpec* spec, lookup_preset(opts.preset));
  return gen_detail::generate_from_spec(*spec, opts);
}

namespace gen_detail {

Status generate_from_spec(const PresetSpec& spec, const GenOptions& opts) {
  KTX_ASSIGN_OR_RETURN(GenModelPlan plan, plan_for(spec, opts));
  KTX_ASSIGN_OR_RETURN(gen_detail::GenVocab vocab, gen_detail::build_vocab(spec.tok, spec.n_vocab));
  KTX_RETURN_IF_ERROR(check_output(opts.output, opts.force,
                                   plan.data_bytes + metadata_bound(plan, vocab)));

  GGUFWriter w;
  gen_detail::write_model_keys(spec, plan, opts.type, w);
  gen_detail::write_tokenizer_keys(spec.tok, vocab, w);

  const int n_threads = opts.n_threads > 0
                            ? opts.n_threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // A fill callback cannot return a Status; a size disagreement with the writer is recorded
  // here and reported after the write.
  auto size_mismatch = std::make_shared<std::atomic<bool>>(false);
  for (const GenTensor& t : plan.tensors) {
    const uint64_t seed = opts.seed;
    KTX_RETURN_IF_ERROR(w.add_tensor_lazy(
        t.name, t.type, t.ne, [t, seed, n_threads, size_mismatch](uint8_t* dst, size_t n) {
          if (n != t.n_bytes) {
            size_mismatch->store(true);
            std::fill(dst, dst + n, uint8_t{0});
            return;
          }
          gen_detail::fill_tensor(t, seed, dst, n_threads);
        }));
  }

  // The writer writes OUTPUT.tmp and renames it when complete, so an interrupted run never
  // leaves a truncated file under the requested name.
  Status st = w.write(opts.output, opts.progress);
  if (!st.is_ok()) return st.with_context("gen: writing '" + opts.output + "'");
  if (size_mismatch->load()) {
    return Error("gen: writing '{}': the GGUF writer asked for a tensor size that differs "
                 "from the plan", opts.output);
  }
  return Status::ok();
}

}  // namespace gen_detail
}  // namespace ktx
