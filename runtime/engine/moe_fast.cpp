// The engine's fast routed-expert path (see moe_fast.h): load-time creation of MoeDecode /
// MoePrefill per layer from the plan's descriptors, with every descriptor checked against the
// GGUF tensors it will read and against this CPU, and the per-call dispatch by token count.
#include "runtime/engine/moe_fast.h"

#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdlib>

#include "common/hw/cpu_features.h"
#include "runtime/cpu/moe_decode.h"
#include "runtime/cpu/numa_place.h"
#include "runtime/cpu/prefill_moe.h"
#include "runtime/cpu/repack_int8.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/engine/engine_internal.h"

namespace ktx {

MoeFastLayer::MoeFastLayer() = default;
MoeFastLayer::~MoeFastLayer() = default;
ModelImpl::ModelImpl() = default;
ModelImpl::~ModelImpl() = default;

namespace {

std::string feature_list(const CpuIsa& isa) {
  std::string s;
  for (const std::string& n : isa.names()) s += (s.empty() ? "" : " ") + n;
  return s.empty() ? "no SIMD features" : s;
}

// The descriptor must describe the tensors it will read: a plan edited by hand or made for
// another file would otherwise make the kernels read out of bounds.
Status check_tensor(const Weight& w, GGMLType type, int64_t row, int64_t rows, int64_t n_expert) {
  const GGUFTensorInfo& t = w.info();
  if (t.type != type || t.ne[0] != row || t.ne[1] != rows || t.ne[2] != n_expert || t.ne[3] != 1)
    return Error("tensor '{}' is {} [{}, {}, {}], the kernel descriptor expects {} [{}, {}, {}]",
                 t.name, ggml_type_name(static_cast<uint32_t>(t.type)), t.ne[0], t.ne[1], t.ne[2],
                 ggml_type_name(static_cast<uint32_t>(type)), row, rows, n_expert);
  return Status::ok();
}

// Parses "moe:..." and "cfg:...", checks the tier against this CPU and the tensors of layer il.
Status parse_choice(const ModelImpl& m, int64_t il, const std::string& kernel,
                    const std::string& config, const CpuIsa& host, cpu::MoeDesc* desc,
                    cpu::MoeConfig* cfg) {
  KTX_ASSIGN_OR_RETURN(*desc, cpu::MoeDesc::parse(kernel));
  KTX_ASSIGN_OR_RETURN(*cfg, cpu::MoeConfig::parse(config));
  if (!cpu::isa_tier_supported(desc->isa, host))
    return Error("kernel tier '{}' is not supported by this CPU (it has {}); re-plan for this "
                 "host: ktc plan --hw host.toml (from 'ktx-run probe')",
                 cpu::isa_tier_name(desc->isa), feature_list(host));
  const std::string b = fmt::format("blk.{}.", il);
  const ModelConfig& c = m.cfg;
  if (desc->n_embd != c.n_embd || desc->n_ff != c.n_ff_exp || desc->n_expert != c.n_expert ||
      desc->top_k != c.n_expert_used)
    return Error("descriptor shape (n_embd={}, n_ff={}, n_expert={}, top_k={}) differs from the "
                 "model (n_embd={}, n_ff={}, n_expert={}, top_k={})", desc->n_embd, desc->n_ff,
                 desc->n_expert, desc->top_k, c.n_embd, c.n_ff_exp, c.n_expert, c.n_expert_used);
  KTX_RETURN_IF_ERROR(check_tensor(m.w(b + "ffn_gate_exps.weight"), desc->gate_type, desc->n_embd,
                                   desc->n_ff, desc->n_expert));
  KTX_RETURN_IF_ERROR(check_tensor(m.w(b + "ffn_up_exps.weight"), desc->up_type, desc->n_embd,
                                   desc->n_ff, desc->n_expert));
  return check_tensor(m.w(b + "ffn_down_exps.weight"), desc->down_type, desc->n_ff,
                      desc->n_embd, desc->n_expert);
}

// The layer's three expert tensors: data, type, row length and rows per expert.
struct ExpertMatrix {
  const void* data;
  GGMLType type;
  int64_t row, rows;
};
std::array<ExpertMatrix, 3> expert_matrices(const MoeFastLayer& f, const cpu::MoeDesc& desc) {
  return {{{f.gate, desc.gate_type, desc.n_embd, desc.n_ff},
           {f.up, desc.up_type, desc.n_embd, desc.n_ff},
           {f.down, desc.down_type, desc.n_ff, desc.n_embd}}};
}

// Repacks the layer's experts for prefill, reporting size and speed through opt.progress.
Status repack_layer(MoeFastLayer& f, const cpu::MoeDesc& desc, int64_t il, cpu::ThreadPool& pool,
                    const EngineOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  KTX_ASSIGN_OR_RETURN(cpu::RepackedMoe r, cpu::repack_moe(desc, {f.gate, f.up, f.down}, pool));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  f.repacked = std::make_unique<cpu::RepackedMoe>(std::move(r));
  if (opt.progress) {
    const auto mats = expert_matrices(f, desc);
    double bytes = 0;  // GGUF bytes repacked; matrices read in place are not
    std::string in_place;
    const cpu::RepackedMoe& rp = *f.repacked;
    const bool raw[3] = {!rp.gate_raw.empty(), !rp.up_raw.empty(), !rp.down_raw.empty()};
    const char* names[3] = {"gate", "up", "down"};
    for (int i = 0; i < 3; ++i) {
      if (raw[i]) {
        in_place += in_place.empty() ? names[i] : std::string(", ") + names[i];
        continue;
      }
      const auto rb = ggml_row_bytes(mats[i].type, mats[i].row);
      if (rb) bytes += double(*rb) * mats[i].rows * desc.n_expert;
    }
    if (bytes > 0) {
      opt.progress(fmt::format("repacked blk.{} experts for prefill: {:.1f} MB in {:.3f} s "
                               "({:.2f} GB/s){}", il, bytes / 1e6, s,
                               s > 0 ? bytes / s / 1e9 : 0.0,
                               in_place.empty() ? "" : "; in place: " + in_place));
    }
  }
  return Status::ok();
}

// Moves layer il's expert row chunks to the nodes whose workers compute them (numa_place.h),
// reporting size, speed and refused pages through opt.progress.
Status place_layer(const MoeFastLayer& f, const cpu::MoeDesc& desc, const cpu::MoeConfig& cfg,
                   int64_t il, cpu::ThreadPool& pool, const EngineOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  cpu::PlaceResult total;
  for (const ExpertMatrix& m : expert_matrices(f, desc)) {
    KTX_ASSIGN_OR_RETURN(const uint64_t rb, ggml_row_bytes(m.type, m.row));
    const auto runs = cpu::plan_placement(m.data, desc.n_expert, m.rows, rb, cfg.rows_per_task,
                                          pool.n_nodes(), page);
    KTX_ASSIGN_OR_RETURN(const cpu::PlaceResult r, cpu::place_pages(runs, pool));
    total.pages += r.pages, total.placed += r.placed, total.failed += r.failed;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (opt.progress) {
    const double gb = double(total.pages) * double(page) / 1e9;
    opt.progress(fmt::format("placed blk.{} experts on {} NUMA nodes: {:.2f} GB in {:.2f} s "
                             "({:.2f} GB/s){}", il, pool.n_nodes(), gb, s, s > 0 ? gb / s : 0.0,
                             total.failed ? fmt::format("; {} pages refused (left where they "
                                                        "are)", total.failed) : ""));
  }
  return Status::ok();
}

Expected<std::unique_ptr<MoeFastLayer>> make_layer(const ModelImpl& m, int64_t il,
                                                   const MoeKernelAttrs& k, const CpuIsa& host,
                                                   const EngineOptions& opt, bool numa_place) {
  auto f = std::make_unique<MoeFastLayer>();
  const std::string b = fmt::format("blk.{}.", il);
  f->gate = m.w(b + "ffn_gate_exps.weight").info().data;
  f->up = m.w(b + "ffn_up_exps.weight").info().data;
  f->down = m.w(b + "ffn_down_exps.weight").info().data;
  cpu::MoeDesc desc;
  cpu::MoeConfig cfg;
  KTX_RETURN_IF_ERROR(parse_choice(m, il, k.decode, k.decode_config, host, &desc, &cfg)
                          .with_context("kernel_decode"));
  KTX_ASSIGN_OR_RETURN(f->decode, cpu::MoeDecode::create(desc, cfg, host));
  f->decode_max_tokens = desc.max_tokens;
  if (numa_place && m.pool->n_nodes() > 1) {
    KTX_RETURN_IF_ERROR(place_layer(*f, desc, cfg, il, *m.pool, opt));
  }
  if (k.prefill.empty() || k.prefill == "reference") return f;
  KTX_RETURN_IF_ERROR(parse_choice(m, il, k.prefill, k.prefill_config, host, &desc, &cfg)
                          .with_context("kernel_prefill"));
  KTX_ASSIGN_OR_RETURN(f->prefill, cpu::MoePrefill::create(desc, cfg, host));
  f->prefill_min_tokens = opt.prefill_min_tokens > 0    ? opt.prefill_min_tokens
                          : k.prefill_min_tokens > 0 ? k.prefill_min_tokens
                                                     : f->decode_max_tokens + 1;
  KTX_RETURN_IF_ERROR(repack_layer(*f, desc, il, *m.pool, opt));
  return f;
}

}  // namespace

Status load_fast_moe(ModelImpl& m, const EngineOptions& opt) {
  if (opt.moe_kernels.empty()) return Status::ok();
  const CpuIsa& host = m.cpu_isa;
  const char* numa_env = std::getenv("KTX_NUMA_PLACE");
  const bool numa_place = opt.numa_place && !(numa_env && std::string(numa_env) == "0");
  m.moe_fast.resize(m.cfg.n_layer);
  for (const auto& [il, k] : opt.moe_kernels) {
    if (il < 0 || il >= m.cfg.n_layer || m.cfg.layer_is_dense(il))
      return Error("engine: fast MoE kernels given for layer {}, which has no routed experts", il);
    auto layer = make_layer(m, il, k, host, opt, numa_place);
    if (!layer) return layer.status().with_context(fmt::format("engine: blk.{}.ffn_moe", il));
    m.moe_fast[il] = std::move(*layer);
  }
  return Status::ok();
}

Expected<std::map<int64_t, MoeKernelAttrs>> moe_kernels_from_plan(const Plan& plan) {
  std::map<int64_t, MoeKernelAttrs> out;
  for (const PlanOp& op : plan.program) {
    if (op.kind != "routed_experts") continue;
    auto get = [&](const char* key) {
      auto it = op.attrs.find(key);
      return it == op.attrs.end() ? std::string() : it->second;
    };
    MoeKernelAttrs k{get("kernel_decode"), get("config_decode"), get("kernel_prefill"),
                     get("config_prefill")};
    if (k.decode.empty() && k.prefill.empty()) continue;  // kernel="reference" or an old plan
    if (k.decode.empty() || k.decode_config.empty())
      return Error("plan op '{}': kernel_decode and config_decode must both be set", op.name);
    if (!k.prefill.empty() && k.prefill != "reference" && k.prefill_config.empty())
      return Error("plan op '{}': kernel_prefill '{}' has no config_prefill", op.name, k.prefill);
    if (const std::string v = get("prefill_min_tokens"); !v.empty()) {
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < 1)
        return Error("plan op '{}': prefill_min_tokens '{}' is not a positive integer", op.name, v);
      k.prefill_min_tokens = n;
    }
    if (op.layer < 0) return Error("plan op '{}': routed experts outside a layer", op.name);
    out[op.layer] = std::move(k);
  }
  return out;
}

bool Model::quantizes_activations() const {
  for (const auto& [name, l] : impl_->linears)
    if (l->act_format() != cpu::ActFormat::f32) return true;
  for (const auto& f : impl_->moe_fast)
    if (f) return true;
  return false;
}

std::string Model::kernel_summary() const {
  // Consecutive layers with the same kernels share one line.
  std::string out, prev;
  int64_t first = -1;
  auto flush = [&](int64_t last) {
    if (first < 0) return;
    out += fmt::format("blk.{}{} {}\n", first, last > first ? fmt::format("-{}", last) : "", prev);
  };
  const auto& layers = impl_->moe_fast;
  for (int64_t il = 0; il <= static_cast<int64_t>(layers.size()); ++il) {
    std::string cur;
    if (il < static_cast<int64_t>(layers.size()) && layers[il])
      cur = "decode: " + layers[il]->decode->kernel_names() + "; prefill: " +
            (layers[il]->prefill
                 ? fmt::format("{} from {} tokens", layers[il]->prefill->kernel_name(),
                               layers[il]->prefill_min_tokens)
                 : std::string("decode kernels"));
    if (cur == prev && !cur.empty()) continue;
    flush(il - 1);
    prev = cur;
    first = cur.empty() ? -1 : il;
  }
  // The linear layers: how many matrices each generated kernel runs.
  std::map<std::string, int> by_kernel;
  for (const auto& [name, l] : impl_->linears) ++by_kernel[l->kernel_name()];
  if (!by_kernel.empty()) {
    out += "linear:";
    for (const auto& [kernel, n] : by_kernel) out += fmt::format(" {} ({})", kernel, n);
    out += "\n";
  }
  // Ops the plan placed on the GPU, by kind (a decode step replays them as one CUDA graph).
  std::map<std::string, int> on_gpu;
  for (const ProgramOp& op : impl_->program.ops)
    if (op.backend && std::string(op.backend->device()) == "gpu") ++on_gpu[op_kind_name(op.kind)];
  if (!on_gpu.empty()) {
    out += "gpu:";
    for (const auto& [kind, n] : on_gpu) out += fmt::format(" {} ({})", kind, n);
    out += "\n";
  }
  return out.empty() ? "reference (float32) for every layer\n" : out;
}

uint64_t repacked_expert_bytes(const ModelImpl& m) {
  uint64_t n = 0;
  for (const auto& f : m.moe_fast) {
    if (!f || !f->repacked) continue;
    for (const auto* mats : {&f->repacked->gate, &f->repacked->up, &f->repacked->down})
      for (const cpu::RepackedMatrix& r : *mats) {
        const uint64_t rows = static_cast<uint64_t>(r.panels) * 16;
        n += rows * static_cast<uint64_t>(r.k) +
             rows * static_cast<uint64_t>(r.blocks) * sizeof(float) * (r.has_bias ? 2 : 1);
      }
  }
  return n;
}

Status run_fast_moe(const StepCtx& s, MoeFastLayer& f, const float* h, const int32_t* chosen,
                    const float* weights, float* dst) {
  std::lock_guard<std::mutex> lock(f.mu);
  const cpu::MoeRouting routing{s.n_tok, chosen, weights};
  const bool prefill = f.prefill && s.n_tok >= f.prefill_min_tokens;
  if (s.m.moe_oracle)
    return cpu::moe_reference(f.decode->desc(), {f.gate, f.up, f.down}, h, routing, dst,
                              prefill ? f.prefill->act_rounding() : f.decode->act_rounding());
  if (prefill) return f.prefill->run(*f.repacked, h, routing, dst, *s.m.pool);
  return f.decode->run({f.gate, f.up, f.down}, h, routing, dst, *s.m.pool);
}

}  // namespace ktx
