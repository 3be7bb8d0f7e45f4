// choose_moe_kernels and isa_features_for (see KernelChoice.h). The descriptor strings are
// the cache keys of `ktx-run tune`, so a tuned entry applies only to the exact problem it was
// measured on (shape, types, tokens and tier).
#include "compiler/passes/KernelChoice.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/cpu/repack_int8.h"

namespace ktx::kt {
namespace {

// The [tuned] config for `desc`, or nullopt. A value that does not parse is an error: the
// profile was hand-edited or written by another version, and silently ignoring it would hide
// that the tuned choice is not used.
Expected<std::optional<cpu::MoeConfig>> tuned_config(const HwProfile& hw,
                                                     const cpu::MoeDesc& desc) {
  auto it = hw.tuned.find(desc.to_string());
  if (it == hw.tuned.end()) return std::optional<cpu::MoeConfig>();
  auto cfg = cpu::MoeConfig::parse(it->second);
  if (!cfg) return cfg.status().with_context(fmt::format("[tuned] \"{}\"", it->first));
  return std::optional<cpu::MoeConfig>(*cfg);
}

// Tuned when present, selected otherwise; `tuned` says which.
Expected<cpu::MoeConfig> config_for(const HwProfile& hw, const cpu::MoeDesc& desc, bool* tuned) {
  KTX_ASSIGN_OR_RETURN(std::optional<cpu::MoeConfig> t, tuned_config(hw, desc));
  *tuned = t.has_value();
  return t ? *t : cpu::select_moe_config(desc, plan_threads(hw));
}

}  // namespace

int plan_threads(const HwProfile& hw) {
  return hw.budgets.threads > 0 ? hw.budgets.threads : hw.cpu.physical_cores;
}

Expected<MoeKernelChoice> choose_moe_kernels(const MoeShape& shape, const HwProfile& hw,
                                             int64_t prefill_tokens, PrefillAct act) {
  MoeKernelChoice c;
  cpu::MoeDesc& d = c.decode;
  d.n_embd = shape.n_embd;
  d.n_ff = shape.n_ff;
  d.n_expert = shape.n_expert;
  d.top_k = shape.top_k;
  d.gate_type = shape.gate;
  d.up_type = shape.up;
  d.down_type = shape.down;
  d.max_tokens = kDecodeMaxTokens;
  d.isa = cpu::best_isa_tier(hw.cpu.isa);
  KTX_RETURN_IF_ERROR(d.validate());
  KTX_ASSIGN_OR_RETURN(c.decode_config, config_for(hw, d, &c.decode_tuned));

  // Gate and up need a prefill GEMM: the K-quant kernel on the blocks in place (Q4_K, Q5_K)
  // or an exact int8 repack; a down type with neither (Q6_K in Q4_K_M files) runs the decode
  // GEMV inside MoePrefill.
  const bool repackable = cpu::prefill_gate_up_in_place(d) ||
                          (cpu::repack_int8_supported(shape.gate) &&
                           cpu::repack_int8_supported(shape.up));
  // The prefill GEMM works on 32-element blocks of both K dimensions.
  const bool blocked = shape.n_embd % cpu::kRepackBlock == 0 && shape.n_ff % cpu::kRepackBlock == 0;
  // AMX runs the int8 tile GEMM (K-quant blocks in place or int8 repacks) from the first call
  // too large for decode. AVX-512 (VNNI) and AVX2 run the int16 K-quant GEMM, which reads only
  // Q4_K / Q5_K gate and up in place (no int8 repack: down must be a K-quant or a type the
  // decode GEMV runs), and only from kAvx512PrefillTokensPerExpert (kAvx2...) tokens per
  // expert, where it starts to beat the decode GEMVs (docs/kernels.md). AVX-512 takes the
  // GEMM's int8-activation form unless `act` asks for int16, from
  // kAvx512I8PrefillTokensPerExpert.
  const bool amx = d.isa == cpu::IsaTier::amx;
  const bool in_place = cpu::prefill_gate_up_in_place(d) && cpu::prefill_down_in_place(d);
  const bool avx512 = d.isa == cpu::IsaTier::avx512 && in_place;
  const bool avx2 = d.isa == cpu::IsaTier::avx2 && in_place;
  const bool i8 = avx512 && act != PrefillAct::i16;
  int64_t min_tokens = kDecodeMaxTokens + 1;
  if (avx512 || avx2) {
    const int64_t per_expert = (i8       ? kAvx512I8PrefillTokensPerExpert
                                : avx512 ? kAvx512PrefillTokensPerExpert
                                         : kAvx2PrefillTokensPerExpert) *
                               shape.n_expert;
    min_tokens = std::max(min_tokens, (per_expert + shape.top_k - 1) / shape.top_k);
  }
  if ((amx || avx512 || avx2) && repackable && blocked && prefill_tokens >= min_tokens) {
    cpu::MoeDesc p = d;
    p.max_tokens = prefill_tokens;
    KTX_ASSIGN_OR_RETURN(c.prefill_config, config_for(hw, p, &c.prefill_tuned));
    c.prefill_config.prefill_act = i8 ? 8 : 16;  // a [tuned] entry does not choose this
    c.prefill = p;
    c.prefill_min_tokens = min_tokens;
  }
  return c;
}

std::vector<std::string> isa_features_for(cpu::IsaTier tier) {
  CpuIsa isa;
  if (tier >= cpu::IsaTier::avx2) isa.avx2 = isa.fma = isa.f16c = true;
  if (tier >= cpu::IsaTier::avx512)
    isa.avx512f = isa.avx512bw = isa.avx512vl = isa.avx512_vnni = true;
  if (tier >= cpu::IsaTier::amx) isa.amx_tile = isa.amx_int8 = isa.amx_bf16 = true;
  return isa.names();
}

}  // namespace ktx::kt
