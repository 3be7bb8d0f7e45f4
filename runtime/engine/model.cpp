// Model loading: validate the tensors against the config, index them, decide whether to keep
// f32 copies (bounded by EngineOptions::f32_cache_mib), precompute RoPE frequencies, start
// the thread pool, bind the program to its backends, create the fast kernels a plan chose,
// report what the model holds in memory. Also load_from_plan, the one entry point ktx-run
// commands use.
#include <algorithm>
#include <cstdlib>

#include "common/hw/cpu_features.h"
#include "runtime/engine/engine_internal.h"

namespace ktx {

Model::Model(std::unique_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;
const ModelConfig& Model::config() const { return impl_->cfg; }
const GGUFFile& Model::gguf() const { return *impl_->gguf; }
int64_t Model::n_ctx() const { return impl_->n_ctx; }
int Model::pin_caller() const {
  return impl_->pool && impl_->pool->pin_caller() ? impl_->pool->caller_cpu() : -1;
}
int Model::threads() const { return impl_->pool ? impl_->pool->size() : 1; }
bool Model::gpu_driven() const { return impl_->driver != nullptr; }

Expected<std::unique_ptr<Model>> Model::load(const ModelConfig& cfg,
                                             std::shared_ptr<const GGUFFile> gguf,
                                             const EngineOptions& opt) {
  if (!gguf) return Error("engine: no GGUF file given");
  KTX_RETURN_IF_ERROR(cfg.check_tensors(*gguf).with_context(gguf->path()));
  if (opt.n_ctx < 0) return Error("engine: n_ctx must be >= 0 (0 = default), found {}", opt.n_ctx);
  auto impl = std::make_unique<ModelImpl>();
  impl->cfg = cfg;
  impl->gguf = gguf;
  impl->n_ctx = opt.n_ctx > 0 ? opt.n_ctx : std::min<int64_t>(cfg.n_ctx_train, 4096);
  uint64_t f32_bytes = 0;
  for (const GGUFTensorInfo& t : gguf->tensors()) {
    if (!ggml_type_supported(static_cast<uint32_t>(t.type))) continue;  // unused by the config
    impl->weights.emplace(t.name, Weight(&t));
    f32_bytes += static_cast<uint64_t>(t.n_elements()) * 4;
  }
  impl->rope_inv_freq = rope_frequencies(cfg);
  impl->pool = std::make_unique<cpu::ThreadPool>(opt.threads);
  impl->cpu_isa = detect_cpu_isa();
  if (opt.cpu_isa)
    for (const std::string& name : CpuIsa::all_names())
      *impl->cpu_isa.flag(name) &= *opt.cpu_isa->flag(name);
  // AMX tile data needs the OS's permission once per process; without it the tier is absent.
  if (impl->cpu_isa.amx_tile && !request_amx_permission())
    impl->cpu_isa.amx_tile = impl->cpu_isa.amx_int8 = impl->cpu_isa.amx_bf16 = false;
  // The fast path keeps every weight in its GGUF bytes; only reference plans cache f32 rows.
  const bool fast = !opt.linear_kernels.empty();
  if (!fast && f32_bytes <= static_cast<uint64_t>(std::max<int64_t>(opt.f32_cache_mib, 0)) << 20) {
    std::vector<Weight*> all;
    for (auto& [name, w] : impl->weights) all.push_back(&w);
    cpu::parallel_range(*impl->pool, static_cast<int64_t>(all.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) all[i]->cache_f32();
    });
  }
  impl->moe_oracle = opt.moe_oracle;
  impl->backends.push_back(make_cpu_backend());
  // The GPU backend only when the program places ops there (its absence is then named).
  std::string why_no_gpu;
  if (std::any_of(opt.program.begin(), opt.program.end(),
                  [](const PlanOp& op) { return op.device == "gpu"; })) {
    const char* env = std::getenv("KTX_CUDA_GEMV");
    const bool float_gemv = opt.gpu_float_gemv || (env && std::string(env) == "float");
    auto gpu = make_cuda_backend(opt.gpu_code, opt.gpu_arch, cfg, float_gemv);
    if (gpu) impl->backends.push_back(std::move(*gpu));
    else why_no_gpu = gpu.status().message();
  }
  std::vector<Backend*> backends;
  for (auto& b : impl->backends) backends.push_back(b.get());
  if (opt.program.empty()) {
    ReferenceProgram ref = reference_program(cfg);
    KTX_ASSIGN_OR_RETURN(impl->program, build_program(ref.ops, ref.buffers, backends));
  } else {
    KTX_ASSIGN_OR_RETURN(impl->program,
                         build_program(opt.program, opt.buffers, backends, why_no_gpu));
  }
  impl->attn_fast.assign(static_cast<size_t>(cfg.n_layer), false);
  std::string kv_type = opt.kv_cache_type;  // the caller's override, else the plan's
  for (const ProgramOp& op : impl->program.ops) {
    if (op.kind != OpKind::attention || op.kernel != "gemv" || op.layer < 0 || op.layer >= cfg.n_layer)
      continue;
    impl->attn_fast[static_cast<size_t>(op.layer)] = true;
    if (opt.kv_cache_type.empty() && !op.kv_cache.empty()) kv_type = op.kv_cache;
  }
  if (kv_type.empty()) kv_type = "f16";
  auto kv = cpu::parse_kv_type(kv_type);
  if (!kv) return kv.status().with_context("engine: KV cache type");
  impl->kv_type = *kv;
  KTX_RETURN_IF_ERROR(load_linears(*impl, opt));
  KTX_RETURN_IF_ERROR(load_fast_moe(*impl, opt));
  for (auto& b : impl->backends) {
    const bool used = std::any_of(impl->program.ops.begin(), impl->program.ops.end(),
                                  [&](const ProgramOp& op) { return op.backend == b.get(); });
    if (!used) continue;
    if (opt.progress && b.get() != impl->backends.front().get())
      opt.progress(fmt::format("preparing the {} backend (uploading its weights)", b->device()));
    KTX_RETURN_IF_ERROR(b->prepare(*impl, impl->program).with_context(b->device()));
    if (b->drives_calls() && !impl->driver) impl->driver = b.get();
  }
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

Model::Memory Model::memory() const {
  Memory m;
  m.gguf_mapped = impl_->gguf->total_size();
  for (const auto& [name, l] : impl_->linears) m.repacked_linears += l->repacked_bytes();
  for (const auto& [name, w] : impl_->weights) m.f32_cache += w.cached_bytes();
  m.repacked_experts = repacked_expert_bytes(*impl_);
  return m;
}

std::string memory_summary(const Model& model, const Session* session) {
  auto gb = [](uint64_t b) { return fmt::format("{:.2f} GB", static_cast<double>(b) / 1e9); };
  const Model::Memory m = model.memory();
  uint64_t total = m.gguf_mapped + m.repacked_experts + m.repacked_linears + m.f32_cache;
  std::string s = fmt::format("memory: GGUF mapping {} + repacked experts {} + repacked linears {} "
                              "+ f32 weight cache {}", gb(m.gguf_mapped), gb(m.repacked_experts),
                              gb(m.repacked_linears), gb(m.f32_cache));
  if (session) {
    const ModelImpl& impl = model.impl();
    const bool fast = std::find(impl.attn_fast.begin(), impl.attn_fast.end(), true) != impl.attn_fast.end();
    s += fmt::format(" + KV cache {} (ctx {}, {}) + arenas {}", gb(session->kv_cache_bytes()),
                     session->n_ctx(), fast ? cpu::kv_type_name(impl.kv_type) : "f32",
                     gb(session->arena_bytes()));
    total += session->kv_cache_bytes() + session->arena_bytes();
    s += fmt::format(" = {}", gb(total));
    // Layers whose attention runs on the GPU keep their f16 caches there (not in the total).
    const ModelConfig& c = impl.cfg;
    int64_t n_dev = 0;
    for (int64_t il = 0; il < c.n_layer; ++il) n_dev += impl.driver && impl.driver->owns_kv_cache(il);
    if (n_dev > 0) {
      const KvWidths w = kv_widths(c);
      const int64_t width = w.k + w.v;
      s += fmt::format("; GPU KV cache {} (f16, {} layers)",
                       gb(static_cast<uint64_t>(session->n_ctx() * width * 2 * n_dev)), n_dev);
    }
    return s;
  }
  return s + fmt::format(" = {}", gb(total));
}

Expected<LoadedModel> load_from_plan(const std::string& plan_path, const std::string& gguf_override,
                                     const EngineOptions& opt) {
  LoadedModel lm;
  KTX_ASSIGN_OR_RETURN(lm.plan, read_plan(plan_path));
  const std::string gguf_path = gguf_override.empty() ? lm.plan.gguf.path : gguf_override;
  KTX_ASSIGN_OR_RETURN(std::unique_ptr<GGUFFile> file, GGUFFile::open(gguf_path));
  lm.gguf = std::shared_ptr<const GGUFFile>(std::move(file));
  KTX_RETURN_IF_ERROR(check_plan_gguf(lm.plan, *lm.gguf).with_context(plan_path));
  // The ISA check needs only CPUID, not a full probe (bandwidth, GPUs).
  KTX_RETURN_IF_ERROR(check_plan_host(lm.plan, detect_cpu_isa()).with_context(plan_path));
  EngineOptions o = opt;
  if (o.threads == 0) o.threads = lm.plan.hw.threads;
  KTX_ASSIGN_OR_RETURN(o.moe_kernels, moe_kernels_from_plan(lm.plan));
  KTX_ASSIGN_OR_RETURN(o.linear_kernels, linear_kernels_from_plan(lm.plan));
  o.program = lm.plan.program;
  o.buffers = lm.plan.buffers;
  o.gpu_code = lm.plan.gpu_code;
  o.gpu_arch = lm.plan.hw.gpu_arch;
  KTX_ASSIGN_OR_RETURN(lm.model, Model::load(lm.plan.model, lm.gguf, o));
  return lm;
}

}  // namespace ktx
