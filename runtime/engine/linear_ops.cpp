// The engine's linear layers: at load, one cpu::Linear per weight matrix the plan marked for
// the fast kernels (ops with kernel = "gemv"); at run time, linear() sends a product through
// that kernel, or through the float32 reference matmul when the tensor has none (reference
// plans, and the oracle). Weights stay in their GGUF bytes either way.
#include <fmt/format.h>

#include <algorithm>

#include "runtime/engine/engine_internal.h"

namespace ktx {

Expected<std::map<std::string, cpu::LinearDesc>> linear_kernels_from_plan(const Plan& plan) {
  std::map<std::string, cpu::LinearDesc> out;
  for (const PlanOp& op : plan.program) {
    auto k = op.attrs.find("kernel");
    if (k == op.attrs.end() || k->second != "gemv") continue;
    auto linears = op.attrs.find("linears");
    if (linears == op.attrs.end())
      return Error("plan op '{}': kernel = \"gemv\" without its linears descriptors (made by an "
                   "older ktc); re-run ktc plan", op.name);
    // "tensor=linear:...;tensor=linear:..."
    const std::string& text = linears->second;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find(';', pos);
      if (end == std::string::npos) end = text.size();
      const std::string item = text.substr(pos, end - pos);
      const size_t eq = item.find('=');
      if (eq == std::string::npos || eq == 0)
        return Error("plan op '{}': linears entry '{}' is not TENSOR=DESCRIPTOR", op.name, item);
      auto desc = cpu::LinearDesc::parse(item.substr(eq + 1));
      if (!desc) return desc.status().with_context(fmt::format("plan op '{}'", op.name));
      out[item.substr(0, eq)] = *desc;
      pos = end + 1;
    }
  }
  return out;
}

Status load_linears(ModelImpl& m, const EngineOptions& opt) {
  for (const auto& [name, d] : opt.linear_kernels) {
    const GGUFTensorInfo* t = m.gguf->find_tensor(name);
    if (!t) return Error("engine: plan names tensor '{}', which the GGUF lacks", name);
    const cpu::LinearDesc file{t->type, t->ne[0], t->n_rows(), d.isa};
    if (!(d == file))
      return Error("engine: tensor '{}': the plan's kernel is for {}, the GGUF holds {}; re-run "
                   "ktc plan", name, d.to_string(), file.to_string());
    auto lin = cpu::Linear::create(d, t->data, m.cpu_isa);
    if (!lin) return lin.status().with_context(fmt::format("engine: tensor '{}'", name));
    m.linears.emplace(name, std::move(*lin));
  }
  return Status::ok();
}

void linear(const StepCtx& s, const std::string& tensor, int64_t row0, int64_t n_out,
            const float* src, int64_t ld_src, int64_t n_tok, float* dst, int64_t ld_dst) {
  auto it = s.m.linears.find(tensor);
  if (it != s.m.linears.end() && !s.m.moe_oracle) {
    it->second->run(s.pool, src, ld_src, n_tok, dst, ld_dst, row0, n_out);
    return;
  }
  if (it != s.m.linears.end() && it->second->uses_gemm(n_tok)) {
    // The oracle of the prefill GEMM: its bf16 roundings, exact sums.
    const cpu::Linear& l = *it->second;
    const GGUFTensorInfo& t = s.m.w(tensor).info();
    const GGMLType type = static_cast<GGMLType>(t.type);
    const size_t rb = *ggml_row_bytes(type, l.desc().k);
    cpu::gemm_bf16_reference(type, t.data + static_cast<size_t>(row0) * rb, rb,
                             l.desc().k, src, ld_src, n_tok, dst, ld_dst, n_out, l.prefill_precision());
    return;
  }
  if (it != s.m.linears.end() && it->second->act_format() != cpu::ActFormat::f32) {
    // The oracle: the kernel's input rounding, then the exact float32 sums.
    const int64_t k = it->second->desc().k;
    std::vector<float> rounded(static_cast<size_t>(n_tok * k));
    for (int64_t t = 0; t < n_tok; ++t) {
      std::copy_n(src + t * ld_src, k, &rounded[t * k]);
      cpu::round_act_row(it->second->act_format(), &rounded[t * k], k);
    }
    matmul(s.pool, s.m.w(tensor), row0, n_out, rounded.data(), k, n_tok, dst, ld_dst);
    return;
  }
  matmul(s.pool, s.m.w(tensor), row0, n_out, src, ld_src, n_tok, dst, ld_dst);
}

void linear(const StepCtx& s, const std::string& tensor, const float* src, float* dst) {
  const Weight& w = s.m.w(tensor);
  linear(s, tensor, 0, w.n_rows(), src, w.row_len(), s.n_tok, dst, w.n_rows());
}

void linear_heads(const StepCtx& s, const std::string& tensor, int64_t n_heads, int64_t head_rows,
                  const float* src, int64_t src_head_stride, int64_t ld_src, float* dst,
                  int64_t dst_head_stride, int64_t ld_dst) {
  auto it = s.m.linears.find(tensor);
  if (it != s.m.linears.end() && !s.m.moe_oracle) {
    it->second->run_heads(s.pool, n_heads, head_rows, src, src_head_stride, ld_src, s.n_tok, dst,
                          dst_head_stride, ld_dst);
    return;
  }
  for (int64_t h = 0; h < n_heads; ++h)
    linear(s, tensor, h * head_rows, head_rows, src + h * src_head_stride, ld_src, s.n_tok,
           dst + h * dst_head_stride, ld_dst);
}

}  // namespace ktx
