// Linear layers on GGUF blocks in place (see linear.h for the task split and the rounding).
#include "runtime/cpu/linear.h"

#include <algorithm>
#include <cstring>

#include "common/quant/quant_blocks.h"

#include "runtime/cpu/act_quant.h"
#include "runtime/cpu/gemm_bf16.h"

namespace ktx::cpu {
namespace {

// Tokens one task covers: their quantized rows (17.9 KB per token at k = 7168) stay in L2
// while the task's weight rows stream past them once.
constexpr int64_t kTokenBlock = 16;
// Fewest rows worth a task: below this the hand-out costs more than the dot products.
constexpr int64_t kMinRowsPerTask = 8;

// Rows per task: enough tasks for ~4 per thread (uneven finishing times balance themselves),
// never fewer than kMinRowsPerTask rows.
int64_t rows_per_task(int64_t n_out, int64_t n_token_blocks, int threads) {
  const int64_t want_tasks = 4 * static_cast<int64_t>(threads);
  const int64_t row_tasks = std::max<int64_t>(1, want_tasks / std::max<int64_t>(1, n_token_blocks));
  const int64_t rows = (n_out + row_tasks - 1) / row_tasks;
  return std::max(kMinRowsPerTask, rows);
}

}  // namespace

Linear::Linear() = default;
Linear::~Linear() = default;

std::string Linear::kernel_name() const {
  return gemm_bf16_ ? kernel_->name() + "+gemm_bf16_amx" : kernel_->name();
}

Expected<std::unique_ptr<Linear>> Linear::create(const LinearDesc& desc, const uint8_t* data,
                                                 const CpuIsa& cpu) {
  KTX_RETURN_IF_ERROR(desc.validate().with_context(desc.to_string()));
  if (!data) return Error("{}: no weight data", desc.to_string());
  auto rb = ggml_row_bytes(desc.type, desc.k);
  if (desc.isa != IsaTier::reference && !isa_tier_supported(desc.isa, cpu))
    return Error("{}: this CPU lacks the {} tier", desc.to_string(), isa_tier_name(desc.isa));
  std::unique_ptr<Linear> l(new Linear());
  GGMLType run_type = desc.type;
  if (desc.type == GGMLType::Q5_0 && desc.isa != IsaTier::reference && desc.k % 32 == 0) {
    l->repacked_ = repack_q5_0_to_q8_0(data, desc.n_rows, desc.k);
    data = l->repacked_.data();
    run_type = GGMLType::Q8_0;
    rb = ggml_row_bytes(run_type, desc.k);
  }
  GemvDesc g;
  g.type = run_type;
  g.k = desc.k;
  g.unroll = 2;
  g.isa = desc.isa;
  auto kernel = make_gemv(g, cpu);
  if (!kernel) return kernel.status().with_context(desc.to_string());
  l->gemm_bf16_ = desc.isa == IsaTier::amx && run_type != GGMLType::F32 &&
                 gemm_bf16_available(cpu) && gemm_bf16_supported(run_type, desc.k);
  l->run_type_ = run_type;
  l->desc_ = desc;
  l->data_ = data;
  l->row_bytes_ = *rb;
  l->kernel_ = std::move(*kernel);
  return l;
}

void Linear::run(ThreadPool& pool, const float* x, int64_t ld_x, int64_t n_tok, float* dst,
                 int64_t ld_dst, int64_t row0, int64_t n_out) const {
  if (n_out < 0) n_out = desc_.n_rows - row0;
  if (n_tok <= 0 || n_out <= 0) return;
  if (uses_gemm(n_tok)) {
    gemm_bf16_run(pool, run_type_, data_ + static_cast<size_t>(row0) * row_bytes_, row_bytes_,
                  desc_.k, x, ld_x, n_tok, dst, ld_dst, n_out, precision_);
    return;
  }
  const ActFormat fmt = kernel_->act_format();
  // The quantized input, [n_tok][act_row_bytes]; f32 kernels read x where it is.
  thread_local std::vector<uint8_t> act_buf;
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  int64_t act_stride = ld_x * static_cast<int64_t>(sizeof(float));
  if (fmt != ActFormat::f32) {
    act_stride = static_cast<int64_t>(act_row_bytes(fmt, desc_.k));
    if (act_buf.size() < static_cast<size_t>(n_tok * act_stride))
      act_buf.resize(static_cast<size_t>(n_tok * act_stride));
    uint8_t* buf = act_buf.data();
    auto quantize = [&](int64_t t) { quantize_act_row(fmt, x + t * ld_x, buf + t * act_stride, desc_.k); };
    if (n_tok == 1) quantize(0);
    else pool.parallel_for(n_tok, quantize);
    act = buf;
  }

  const int64_t n_tb = (n_tok + kTokenBlock - 1) / kTokenBlock;
  const int64_t rpt = rows_per_task(n_out, n_tb, pool.size());
  const int64_t n_rc = (n_out + rpt - 1) / rpt;
  auto task = [&](int64_t i) {
    const int64_t r0 = (i % n_rc) * rpt, t0 = (i / n_rc) * kTokenBlock;
    gemv_block(row0 + r0, act + t0 * act_stride, act_stride, dst + t0 * ld_dst + r0, ld_dst,
               std::min(rpt, n_out - r0), std::min(kTokenBlock, n_tok - t0));
  };
  if (n_rc * n_tb == 1) task(0);
  else pool.parallel_for(n_rc * n_tb, task);
}

void Linear::gemv_block(int64_t row, const uint8_t* act, int64_t act_stride, float* out,
                        int64_t ld_out, int64_t n_rows, int64_t n_tokens) const {
  GemvArgs a;
  a.w = data_ + static_cast<size_t>(row) * row_bytes_;
  a.w_stride = static_cast<int64_t>(row_bytes_);
  a.act = act;
  a.act_stride = act_stride;
  a.out = out;
  a.out_stride = ld_out;
  a.n_rows = n_rows;
  a.n_tokens = n_tokens;
  kernel_->run(a);
}

void Linear::run_heads(ThreadPool& pool, int64_t n_heads, int64_t head_rows, const float* x,
                       int64_t x_head_stride, int64_t ld_x, int64_t n_tok, float* dst,
                       int64_t dst_head_stride, int64_t ld_dst) const {
  if (n_tok <= 0 || n_heads <= 0 || head_rows <= 0) return;
  const ActFormat fmt = kernel_->act_format();
  const int64_t k = desc_.k;
  // Inputs as rows [head][token]: each (head, token) pair has its own activation row.
  thread_local std::vector<uint8_t> act_buf;
  const int64_t row_bytes = fmt == ActFormat::f32 ? k * static_cast<int64_t>(sizeof(float))
                                                  : static_cast<int64_t>(act_row_bytes(fmt, k));
  if (act_buf.size() < static_cast<size_t>(n_heads * n_tok * row_bytes))
    act_buf.resize(static_cast<size_t>(n_heads * n_tok * row_bytes));
  uint8_t* buf = act_buf.data();
  auto quantize = [&](int64_t i) {
    const int64_t h = i / n_tok, t = i % n_tok;
    const float* src = x + t * ld_x + h * x_head_stride;
    if (fmt == ActFormat::f32) std::copy_n(src, k, reinterpret_cast<float*>(buf + i * row_bytes));
    else quantize_act_row(fmt, src, buf + i * row_bytes, k);
  };
  // Decode's 128 heads x 128 elements quantize faster than a pool dispatch takes.
  if (n_heads * n_tok * k <= (int64_t{1} << 16)) {
    for (int64_t i = 0; i < n_heads * n_tok; ++i) quantize(i);
  } else {
    pool.parallel_for(n_heads * n_tok, quantize);
  }
  const int64_t n_tb = (n_tok + kTokenBlock - 1) / kTokenBlock;
  const int64_t rpt = rows_per_task(head_rows, n_heads * n_tb, pool.size());
  const int64_t n_rc = (head_rows + rpt - 1) / rpt;
  pool.parallel_for(n_heads * n_rc * n_tb, [&](int64_t i) {
    const int64_t h = i / (n_rc * n_tb), r0 = ((i / n_tb) % n_rc) * rpt;
    const int64_t t0 = (i % n_tb) * kTokenBlock;
    gemv_block(h * head_rows + r0, buf + (h * n_tok + t0) * row_bytes, row_bytes,
               dst + h * dst_head_stride + t0 * ld_dst + r0, ld_dst,
               std::min(rpt, head_rows - r0), std::min(kTokenBlock, n_tok - t0));
  });
}

std::vector<uint8_t> repack_q5_0_to_q8_0(const uint8_t* src, int64_t n_rows, int64_t k) {
  using quant_detail::BlockQ5_0;
  using quant_detail::BlockQ8_0;
  const int64_t n_blocks = n_rows * (k / 32);
  std::vector<uint8_t> out(static_cast<size_t>(n_blocks) * sizeof(BlockQ8_0));
  const auto* in = reinterpret_cast<const BlockQ5_0*>(src);
  auto* dst = reinterpret_cast<BlockQ8_0*>(out.data());
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint32_t qh;
    std::memcpy(&qh, in[b].qh, sizeof(qh));
    dst[b].d = in[b].d;
    for (int j = 0; j < 16; ++j) {
      const int lo = (in[b].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (in[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[b].qs[j] = static_cast<int8_t>(lo - 16);
      dst[b].qs[j + 16] = static_cast<int8_t>(hi - 16);
    }
  }
  return out;
}

void linear_reference(const LinearDesc& desc, const uint8_t* data, ActFormat format,
                      const float* x, int64_t ld_x, int64_t n_tok, float* dst, int64_t ld_dst) {
  const size_t rb = *ggml_row_bytes(desc.type, desc.k);
  std::vector<float> w(static_cast<size_t>(desc.k)), xr(static_cast<size_t>(desc.k));
  for (int64_t t = 0; t < n_tok; ++t) {
    std::copy_n(x + t * ld_x, desc.k, xr.data());
    if (format != ActFormat::f32) round_act_row(format, xr.data(), desc.k);
    for (int64_t r = 0; r < desc.n_rows; ++r) {
      dequantize_row(desc.type, data + r * rb, w.data(), desc.k);
      double acc = 0.0;
      for (int64_t i = 0; i < desc.k; ++i) acc += static_cast<double>(w[i]) * xr[i];
      dst[t * ld_dst + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace ktx::cpu
