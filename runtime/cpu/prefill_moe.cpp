// MoePrefill: see prefill_moe.h. Rows of every per-call buffer are "padded pairs": the
// (token, expert) pairs laid out expert by expert, each expert's run rounded up to a multiple
// of 16 (kGemmTileM) with zero rows (zero int8 values and zero scales, so padding adds exact
// zeros). Activation rows are int16-grade, stored as two int8 planes (Int8Planes).
#include "runtime/cpu/prefill_moe.h"
#include "runtime/cpu/vec_math.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/hw/cpu_features.h"

namespace ktx::cpu {
namespace {

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// One row of n floats with the q16_0 rounding of act_quant.h, planes at hi/lo. Block b's scale
// and float sum go to scale[b * stride] and sum[b * stride].
void quantize_blocks(const float* x, int64_t n, int8_t* hi, int8_t* lo, float* scale,
                     float* sum, int64_t stride) {
  static_assert(kRepackBlock == 32, "one q16_0 block per repack block");
  for (int64_t b = 0; b < n / kRepackBlock; ++b) {
    ActBlockQ16_0 blk;
    quantize_act_row(ActFormat::q16_0, x + b * kRepackBlock, &blk, kRepackBlock);
    std::memcpy(hi + b * kRepackBlock, blk.hi, kRepackBlock);
    std::memcpy(lo + b * kRepackBlock, blk.lo, kRepackBlock);
    int32_t s = 0;
    for (int i = 0; i < kRepackBlock; ++i) s += kQ16Base * blk.hi[i] + blk.lo[i];
    scale[b * stride] = blk.d;
    sum[b * stride] = blk.d * static_cast<float>(s);
  }
}

}  // namespace

Expected<std::unique_ptr<MoePrefill>> MoePrefill::create(const MoeDesc& desc,
                                                         const MoeConfig& config,
                                                         const CpuIsa& cpu) {
  KTX_RETURN_IF_ERROR(desc.validate());
  KTX_RETURN_IF_ERROR(config.validate().with_context(desc.to_string()));
  const bool kq_in = prefill_gate_up_in_place(desc);
  if (!kq_in) {
    for (GGMLType t : {desc.gate_type, desc.up_type}) {
      if (!repack_int8_supported(t)) {
        return Error("{}: prefill needs gate and up weights with a prefill GEMM (K-quant "
                     "Q4_K/Q5_K in place, or an exact int8 repack); {} has neither",
                     desc.to_string(), ggml_type_name(static_cast<uint32_t>(t)));
      }
    }
  }
  std::unique_ptr<MoePrefill> moe(new MoePrefill(desc, config));
  const bool amx = desc.isa == IsaTier::amx && isa_tier_supported(IsaTier::amx, cpu);
  // Without AMX, an avx512 descriptor on a host with AVX-512 VNNI and an avx2 descriptor on an
  // AVX2 host take the int16 form of the K-quant GEMM; other descriptors keep the AMX form's
  // twin (exact, slow).
  const bool vnni = desc.isa == IsaTier::avx512 && isa_tier_supported(IsaTier::avx512, cpu);
  const bool avx2 = desc.isa == IsaTier::avx2 && isa_tier_supported(IsaTier::avx2, cpu);
  if (desc.isa == IsaTier::avx512 && !vnni)
    return Error("{}: the avx512 prefill GEMM needs AVX-512 VNNI (avx512f, avx512bw, "
                 "avx512_vnni), which this CPU lacks", desc.to_string());
  if (desc.isa == IsaTier::avx2 && !avx2)
    return Error("{}: the avx2 prefill GEMM needs AVX2, FMA and F16C, which this CPU lacks",
                 desc.to_string());
  // config.prefill_act = 8 takes the int8-activation K-quant GEMM: its AVX-512 VNNI body on
  // an avx512 descriptor, its twin on a reference one (tests); other tiers have no body.
  const bool i8 = config.prefill_act == 8;
  if (i8 && (amx || avx2)) {
    return Error("{}: the int8-activation prefill GEMM (act=i8) runs on the avx512 tier only "
                 "(or as its reference twin)", desc.to_string());
  }
  if (i8) moe->kq_fmt_x_ = moe->kq_fmt_h_ = ActFormat::q8_k32;
  // Panels are whole 16-row tiles: rows are n_ff (gate, up) or n_embd (down).
  auto make_kq = [&](GGMLType t, const char* what, int64_t rows,
                     std::unique_ptr<GemmKqKernel>* dst) -> Status {
    if (rows % kKqTile != 0) {
      return Error("{}: {} has {} rows, not a multiple of {}", desc.to_string(), what, rows,
                   kKqTile);
    }
    auto k = i8     ? (vnni ? create_gemm_kq_avx512_i8(t, cpu) : create_gemm_kq_i8_ref(t))
             : amx  ? create_gemm_kq_amx(t, cpu)
             : vnni ? create_gemm_kq_avx512(t, cpu)
             : avx2 ? create_gemm_kq_avx2(t, cpu)
                    : create_gemm_kq_ref(t);
    if (!k) return k.status().with_context(desc.to_string() + " (" + what + ")");
    *dst = std::move(k).value();
    return Status::ok();
  };
  if (kq_in) {
    KTX_RETURN_IF_ERROR(make_kq(desc.gate_type, "gate", desc.n_ff, &moe->kq_gate_));
    KTX_RETURN_IF_ERROR(make_kq(desc.up_type, "up", desc.n_ff, &moe->kq_up_));
  }
  if (gemm_kq_supported(desc.down_type)) {
    KTX_RETURN_IF_ERROR(make_kq(desc.down_type, "down", desc.n_embd, &moe->kq_down_));
  } else if (!repack_int8_supported(desc.down_type)) {
    auto gemv = make_gemv(GemvDesc{desc.down_type, desc.n_ff, config.unroll, desc.isa}, cpu);
    if (!gemv) return gemv.status().with_context(desc.to_string() + " (down)");
    moe->down_gemv_ = std::move(gemv).value();
  }
  if (kq_in && (moe->kq_down_ || moe->down_gemv_)) return moe;  // no int8 GEMM runs
  // (An avx2 descriptor keeps the int8 GEMM's exact twin for the repacked types; the planner
  // gives AVX2 hosts prefill kernels only for layers read in place.)
  if (vnni)
    return Error("{}: the avx512 prefill GEMM reads K-quant gate, up and down weights in place "
                 "(or a down type for the decode GEMV); {} needs the int8 repack, which has "
                 "no AVX-512 kernel", desc.to_string(),
                 ggml_type_name(static_cast<uint32_t>(kq_in ? desc.down_type : desc.gate_type)));
  if (amx) {
    auto plain = create_gemm_int8_amx(false, cpu);
    if (!plain) return plain.status().with_context(desc.to_string());
    auto biased = create_gemm_int8_amx(true, cpu);
    if (!biased) return biased.status().with_context(desc.to_string());
    moe->plain_ = std::move(plain).value();
    moe->biased_ = std::move(biased).value();
  } else {
    moe->plain_ = create_gemm_int8_ref(false);
    moe->biased_ = create_gemm_int8_ref(true);
  }
  return moe;
}

Status MoePrefill::check_weights(const RepackedMoe& w) const {
  const auto n = static_cast<size_t>(desc_.n_expert);
  if (w.desc.n_embd != desc_.n_embd || w.desc.n_ff != desc_.n_ff ||
      w.desc.gate_type != desc_.gate_type || w.desc.up_type != desc_.up_type ||
      w.desc.down_type != desc_.down_type) {
    return Error("{}: repacked weights are for {}", desc_.to_string(), w.desc.to_string());
  }
  const bool down_raw = kq_down_ || down_gemv_;
  const struct { const char* name; bool raw; const std::vector<RepackedMatrix>& packed;
                 const std::vector<const uint8_t*>& ptrs; } mats[] = {
      {"gate", kq_gate_ != nullptr, w.gate, w.gate_raw},
      {"up", kq_up_ != nullptr, w.up, w.up_raw},
      {"down", down_raw, w.down, w.down_raw}};
  for (const auto& m : mats) {
    const size_t have = m.raw ? m.ptrs.size() : m.packed.size();
    if (have != n) {
      return Error("{}: the {} weights hold {} experts {}, expected {}", desc_.to_string(),
                   m.name, have, m.raw ? "in place" : "repacked", n);
    }
    for (size_t e = 0; e < n; ++e) {
      if (m.raw ? !m.ptrs[e] : !m.packed[e].q) {
        return Error("{}: {} weights of expert {} are missing", desc_.to_string(), m.name, e);
      }
    }
  }
  return Status::ok();
}

void MoePrefill::group_by_expert(const MoeRouting& routing) {
  const int64_t n_slots = routing.n_tokens * desc_.top_k;
  std::vector<int64_t> count(static_cast<size_t>(desc_.n_expert), 0), cursor(count);
  for (int64_t s = 0; s < n_slots; ++s) ++count[routing.expert_ids[s]];
  active_.clear();
  real_rows_.clear();
  pad_begin_.assign(1, 0);
  for (int64_t e = 0; e < desc_.n_expert; ++e) {
    if (count[e] == 0) continue;
    cursor[e] = pad_begin_.back();
    active_.push_back(static_cast<int32_t>(e));
    real_rows_.push_back(count[e]);
    pad_begin_.push_back(pad_begin_.back() + round_up(count[e], kGemmTileM));
  }
  n_pairs_ = n_slots;
  n_padded_ = pad_begin_.back();
  row_token_.assign(static_cast<size_t>(n_padded_), -1);
  slot_row_.resize(static_cast<size_t>(n_slots));
  for (int64_t s = 0; s < n_slots; ++s) {
    const int64_t r = cursor[routing.expert_ids[s]]++;
    row_token_[r] = s / desc_.top_k;
    slot_row_[s] = r;
  }
}

// Quantize each token once, then gather rows expert by expert with scales laid out
// [group][block][16] as the micro-kernel reads them.
void MoePrefill::quantize_inputs(const float* x, int64_t n_tokens, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, KB = K / kRepackBlock;
  xq_.resize(n_tokens * K);
  xs_.resize(n_tokens * KB);
  xsum_.resize(n_tokens * KB);
  pool.parallel_for(n_tokens, [&](int64_t t) {
    quantize_blocks(x + t * K, K, xq_.hi.data() + t * K, xq_.lo.data() + t * K,
                    xs_.data() + t * KB, xsum_.data() + t * KB, 1);
  });
  act_.resize(n_padded_ * K);
  as_.resize(n_padded_ * KB);
  asum_.resize(n_padded_ * KB);
  pool.parallel_for(n_padded_ / kGemmTileM, [&](int64_t grp) {
    for (int64_t i = 0; i < kGemmTileM; ++i) {
      const int64_t r = grp * kGemmTileM + i, t = row_token_[r];
      float* sc = as_.data() + grp * KB * kGemmTileM + i;
      float* sm = asum_.data() + grp * KB * kGemmTileM + i;
      if (t < 0) {
        std::memset(act_.hi.data() + r * K, 0, K);
        std::memset(act_.lo.data() + r * K, 0, K);
        for (int64_t b = 0; b < KB; ++b) sc[b * kGemmTileM] = sm[b * kGemmTileM] = 0.0f;
        continue;
      }
      std::memcpy(act_.hi.data() + r * K, xq_.hi.data() + t * K, K);
      std::memcpy(act_.lo.data() + r * K, xq_.lo.data() + t * K, K);
      for (int64_t b = 0; b < KB; ++b) {
        sc[b * kGemmTileM] = xs_[t * KB + b];
        sm[b * kGemmTileM] = xsum_[t * KB + b];
      }
    }
  });
}

// out[row][n] for every padded row and every (padded) weight row n of the active experts.
// Task = (active expert, chunk of rows_per_task/16 panels). K is walked in chunks of
// kKChunkBlocks blocks: a 16-token activation chunk (32 KiB) stays in L1 across the task's
// panels inside one kernel call, and the panels' weight chunk stays in L2 across the expert's
// token groups; the kernel carries the float sums over chunks in `out` (exact).
void MoePrefill::gemm(const std::vector<RepackedMatrix>& w, const Int8Planes& act,
                      const float* scale, const float* sum, int64_t k, float* out,
                      int64_t out_stride, ThreadPool& pool) {
  constexpr int64_t kKChunkBlocks = 64;
  const int64_t panels_per_task = std::max<int64_t>(1, config_.rows_per_task / kGemmTileN);
  const int64_t n_panels = w[active_[0]].panels;
  const int64_t chunks = (n_panels + panels_per_task - 1) / panels_per_task;
  const int64_t kb = k / kRepackBlock;
  pool.parallel_for(static_cast<int64_t>(active_.size()) * chunks, [&](int64_t task) {
    const int64_t a = task / chunks, p0 = (task % chunks) * panels_per_task;
    const RepackedMatrix& m = w[active_[a]];
    const GemmInt8Kernel& kernel = m.has_bias ? *biased_ : *plain_;
    GemmTileArgs g;
    g.a_stride = k;
    g.b_panel_stride = m.blocks * kRepackTileBytes;
    g.w_panel_stride = m.blocks * kRepackPanel * static_cast<int64_t>(sizeof(float));
    g.out_stride = out_stride;
    g.n_panels = std::min(panels_per_task, n_panels - p0);
    for (int64_t kc = 0; kc < kb; kc += kKChunkBlocks) {
      g.k_blocks = std::min(kKChunkBlocks, kb - kc);
      g.accumulate = kc > 0 ? 1 : 0;
      g.b = m.panel_q(p0) + kc * kRepackTileBytes;
      g.w_scale = m.panel_scale(p0) + kc * kRepackPanel;
      g.w_bias = m.panel_bias(p0) + kc * kRepackPanel;
      for (int64_t r = pad_begin_[a]; r < pad_begin_[a + 1]; r += kGemmTileM) {
        g.a = act.hi.data() + r * k + kc * kRepackBlock;
        g.a_lo = act.lo.data() + r * k + kc * kRepackBlock;
        g.a_scale = scale + r * kb + kc * kGemmTileM;  // group r / 16: [kb][16]
        g.a_sum = sum + r * kb + kc * kGemmTileM;
        g.out = out + r * out_stride + p0 * kGemmTileN;
        kernel.run(g);
      }
    }
  });
}

// Quantize each token once (q16_k), then lay the rows out group by group in the K-quant
// kernel's activation tiles.
void MoePrefill::quantize_inputs_kq(const float* x, int64_t n_tokens, ThreadPool& pool) {
  const int64_t K = desc_.n_embd;
  const auto rb = static_cast<int64_t>(act_row_bytes(kq_fmt_x_, K));
  kq_x_.rows.resize(static_cast<size_t>(n_tokens * rb));
  pool.parallel_for(n_tokens, [&](int64_t t) {
    quantize_act_row(kq_fmt_x_, x + t * K, kq_x_.rows.data() + t * rb, K);
  });
  const int64_t tiles = n_padded_ / kKqTile * (K / kKqSuper);
  kq_x_.tiles.resize(static_cast<size_t>(tiles * kKqActBytes));
  kq_x_.floats.resize(static_cast<size_t>(tiles * kKqActFloats));
  pool.parallel_for(n_padded_ / kKqTile, [&](int64_t grp) {
    pack_group_kq(grp, K, kq_x_.rows.data(), rb, true, kq_gate_->act_layout(), kq_x_);
  });
}

// Group `grp` (padded rows 16·grp ..) into acts' tiles: padded row r reads q16_k row
// row_token_[r] of `rows` (by_token: the layer input) or row r (h), none for padding.
void MoePrefill::pack_group_kq(int64_t grp, int64_t k, const uint8_t* rows, int64_t row_bytes,
                               bool by_token, KqActLayout layout, KqActs& acts) const {
  const int64_t ns = k / kKqSuper;
  const uint8_t* src_rows[kKqTile];
  for (int64_t i = 0; i < kKqTile; ++i) {
    const int64_t r = grp * kKqTile + i, token = row_token_[r];
    const int64_t src = by_token ? token : r;
    src_rows[i] = token < 0 ? nullptr : rows + src * row_bytes;
  }
  if (layout == KqActLayout::i8_quads) {
    const ActBlockQ8_K32* tokens[kKqTile];
    for (int64_t i = 0; i < kKqTile; ++i)
      tokens[i] = reinterpret_cast<const ActBlockQ8_K32*>(src_rows[i]);
    kq_pack_acts_i8(tokens, ns, acts.tiles.data() + grp * ns * kKqActBytes, kKqActBytes,
                    acts.floats.data() + grp * ns * kKqActFloats, kKqActFloats);
    return;
  }
  const ActBlockQ16_K* tokens[kKqTile];
  for (int64_t i = 0; i < kKqTile; ++i)
    tokens[i] = reinterpret_cast<const ActBlockQ16_K*>(src_rows[i]);
  (layout == KqActLayout::i16_pairs ? kq_pack_acts_i16 : kq_pack_acts)(
      tokens, ns, acts.tiles.data() + grp * ns * kKqActBytes, kKqActBytes,
      acts.floats.data() + grp * ns * kKqActFloats, kKqActFloats);
}

// out[row][n] for every padded row and weight row n of the active experts, K-quant weights in
// place. Task = (active expert, chunk of rows_per_task/16 panels); per panel one kernel call
// covers all K and all the expert's token groups (the panel's expanded super-block stays in
// L1 across groups), then its [group][row][token] result is transposed into out.
void MoePrefill::gemm_kq(const GemmKqKernel& kernel, const std::vector<const uint8_t*>& w,
                         int64_t rows, int64_t k, const KqActs& acts, float* out,
                         int64_t out_stride, ThreadPool& pool) {
  const int64_t ns = k / kKqSuper, panels = rows / kKqTile;
  const int64_t rb = static_cast<int64_t>(ggml_row_bytes(kernel.type(), k).value());
  const int64_t per_task = std::max<int64_t>(1, config_.rows_per_task / kKqTile);
  const int64_t chunks = (panels + per_task - 1) / per_task;
  pool.parallel_for(static_cast<int64_t>(active_.size()) * chunks, [&](int64_t task) {
    const int64_t a = task / chunks, p0 = (task % chunks) * per_task;
    const int64_t g0 = pad_begin_[a] / kKqTile, groups = pad_begin_[a + 1] / kKqTile - g0;
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(groups * kKqTile * kKqTile));
    GemmKqArgs g;
    g.w_stride = rb;
    g.act = acts.tiles.data() + g0 * ns * kKqActBytes;
    g.act_group_stride = ns * kKqActBytes;
    g.act_f = acts.floats.data() + g0 * ns * kKqActFloats;
    g.act_f_group_stride = ns * kKqActFloats * static_cast<int64_t>(sizeof(float));
    g.out = tile.data();
    g.out_group_stride = kKqTile * kKqTile;
    g.n_super = ns;
    g.n_groups = groups;
    for (int64_t p = p0; p < std::min(panels, p0 + per_task); ++p) {
      g.w = w[active_[a]] + p * kKqTile * rb;
      kernel.run(g);
      for (int64_t grp = 0; grp < groups; ++grp) {
        const float* src = tile.data() + grp * kKqTile * kKqTile;
        float* dst = out + (pad_begin_[a] + grp * kKqTile) * out_stride + p * kKqTile;
        for (int64_t t = 0; t < kKqTile; ++t) {
          for (int64_t n = 0; n < kKqTile; ++n) dst[t * out_stride + n] = src[n * kKqTile + t];
        }
      }
    }
  });
}

void MoePrefill::activate(ThreadPool& pool) {
  const int64_t N = desc_.n_ff, NP = round_up(N, kRepackRowAlign), NB = N / kRepackBlock;
  const auto kq_rb = static_cast<int64_t>(act_row_bytes(kq_fmt_h_, N));
  if (kq_down_) {
    kq_h_.rows.resize(static_cast<size_t>(n_padded_ * kq_rb));
    kq_h_.tiles.resize(static_cast<size_t>(n_padded_ / kKqTile * (N / kKqSuper) * kKqActBytes));
    kq_h_.floats.resize(static_cast<size_t>(n_padded_ / kKqTile * (N / kKqSuper) * kKqActFloats));
  } else if (down_gemv_) {
    act_down_.resize(n_padded_ * act_row_bytes(down_gemv_->act_format(), N));
  } else {
    hq_.resize(n_padded_ * N);
    hs_.resize(n_padded_ * NB);
    hsum_.resize(n_padded_ * NB);
  }
  pool.parallel_for(n_padded_ / kGemmTileM, [&](int64_t grp) {
    for (int64_t i = 0; i < kGemmTileM; ++i) {
      const int64_t r = grp * kGemmTileM + i;
      float* h = g_.data() + r * NP;  // h = SiLU(g) * u in place of g
      const float* u = u_.data() + r * NP;
      silu_mul(h, u, h, N);
      if (row_token_[r] < 0) std::fill(h, h + N, 0.0f);  // padding stays exactly zero
      if (kq_down_) {
        if (row_token_[r] >= 0) {
          quantize_act_row(kq_fmt_h_, h, kq_h_.rows.data() + r * kq_rb, N);
        }
        continue;
      }
      if (down_gemv_) {  // the GEMV reads only the expert's real (leading) rows
        const ActFormat f = down_gemv_->act_format();
        uint8_t* dst = act_down_.data() + r * act_row_bytes(f, N);
        if (row_token_[r] >= 0) quantize_act_row(f, h, dst, N);
        continue;
      }
      quantize_blocks(h, N, hq_.hi.data() + r * N, hq_.lo.data() + r * N,
                      hs_.data() + grp * NB * kGemmTileM + i,
                      hsum_.data() + grp * NB * kGemmTileM + i, kGemmTileM);
    }
    if (kq_down_) {
      pack_group_kq(grp, N, kq_h_.rows.data(), kq_rb, false, kq_down_->act_layout(), kq_h_);
    }
  });
}

// Down through the decode GEMV on the GGUF blocks: tasks (active expert, block of
// rows_per_task output rows), each covering the expert's real rows.
void MoePrefill::down_by_gemv(const RepackedMoe& weights, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, N = desc_.n_ff, KP = round_up(K, kRepackRowAlign);
  const int64_t rows = config_.rows_per_task, chunks = (K + rows - 1) / rows;
  const uint64_t rb = ggml_row_bytes(desc_.down_type, N).value();
  const size_t ab = act_row_bytes(down_gemv_->act_format(), N);
  pool.parallel_for(static_cast<int64_t>(active_.size()) * chunks, [&](int64_t task) {
    const int64_t a = task / chunks, r0 = (task % chunks) * rows;
    GemvArgs args;
    args.w = weights.down_raw[active_[a]] + r0 * rb;
    args.w_stride = static_cast<int64_t>(rb);
    args.act = act_down_.data() + pad_begin_[a] * ab;
    args.act_stride = static_cast<int64_t>(ab);
    args.out = d_.data() + pad_begin_[a] * KP + r0;
    args.out_stride = KP;
    args.n_rows = std::min(rows, K - r0);
    args.n_tokens = real_rows_[a];
    down_gemv_->run(args);
  });
}

std::string MoePrefill::kernel_name() const {
  std::string in = kq_gate_ ? kq_gate_->name() : plain_->name();
  if (kq_up_ && kq_up_->name() != in) in += "/" + kq_up_->name();
  const std::string down = kq_down_     ? kq_down_->name()
                           : down_gemv_ ? down_gemv_->name()
                                        : plain_->name();
  return down == in ? in : in + " + down " + down;
}

void MoePrefill::combine(const MoeRouting& routing, float* out, ThreadPool& pool) {
  const int64_t K = desc_.n_embd, KP = round_up(K, kRepackRowAlign), top_k = desc_.top_k;
  pool.parallel_for(routing.n_tokens, [&](int64_t t) {
    float* o = out + t * K;
    std::fill(o, o + K, 0.0f);
    for (int64_t j = 0; j < top_k; ++j) {
      const float w = routing.weights[t * top_k + j];
      const float* d = d_.data() + slot_row_[t * top_k + j] * KP;
      for (int64_t k = 0; k < K; ++k) o[k] += w * d[k];
    }
  });
}

Status MoePrefill::run(const RepackedMoe& weights, const float* x, const MoeRouting& routing,
                       float* out, ThreadPool& pool) {
  KTX_RETURN_IF_ERROR(check_routing(desc_, routing));
  KTX_RETURN_IF_ERROR(check_weights(weights));
  if (routing.n_tokens == 0) return Status::ok();
  if (!x || !out) return Error("{}: null input or output", desc_.to_string());
  const int64_t K = desc_.n_embd, N = desc_.n_ff;
  const int64_t KP = round_up(K, kRepackRowAlign), NP = round_up(N, kRepackRowAlign);
  group_by_expert(routing);
  g_.resize(n_padded_ * NP);
  u_.resize(n_padded_ * NP);
  d_.resize(n_padded_ * KP);
  using Clock = std::chrono::steady_clock;
  auto t = Clock::now();
  auto lap = [&t](double& ms) {  // phase wall time, for the benchmark's breakdown
    const auto now = Clock::now();
    ms = std::chrono::duration<double, std::milli>(now - t).count();
    t = now;
  };
  if (kq_gate_) {
    quantize_inputs_kq(x, routing.n_tokens, pool);
    lap(phase_ms_.quantize);
    gemm_kq(*kq_gate_, weights.gate_raw, N, K, kq_x_, g_.data(), NP, pool);
    lap(phase_ms_.gate);
    gemm_kq(*kq_up_, weights.up_raw, N, K, kq_x_, u_.data(), NP, pool);
    lap(phase_ms_.up);
  } else {
    quantize_inputs(x, routing.n_tokens, pool);
    lap(phase_ms_.quantize);
    gemm(weights.gate, act_, as_.data(), asum_.data(), K, g_.data(), NP, pool);
    lap(phase_ms_.gate);
    gemm(weights.up, act_, as_.data(), asum_.data(), K, u_.data(), NP, pool);
    lap(phase_ms_.up);
  }
  activate(pool);
  lap(phase_ms_.activate);
  if (kq_down_) {
    gemm_kq(*kq_down_, weights.down_raw, K, N, kq_h_, d_.data(), KP, pool);
  } else if (down_gemv_) {
    down_by_gemv(weights, pool);
  } else {
    gemm(weights.down, hq_, hs_.data(), hsum_.data(), N, d_.data(), KP, pool);
  }
  lap(phase_ms_.down);
  combine(routing, out, pool);
  lap(phase_ms_.combine);
  return Status::ok();
}

}  // namespace ktx::cpu
