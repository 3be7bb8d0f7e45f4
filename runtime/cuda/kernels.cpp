// runtime/cuda/kernels.h.
#include "runtime/cuda/kernels.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace ktx::cuda {
namespace {

constexpr GGMLType kGemvTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16,
                                   GGMLType::Q4_0, GGMLType::Q5_0, GGMLType::Q8_0, GGMLType::Q4_K,
                                   GGMLType::Q5_K, GGMLType::Q6_K};
constexpr GGMLType kGemv16Types[] = {GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K,
                                     GGMLType::Q8_0};
constexpr int kGemvWarps = 4;       // KTX_GEMV_WARPS
constexpr int kGemv16Warps = 4;     // KTX_Q16_WARPS
constexpr int kGemv16Tokens[4] = {1, 2, 4, 8};
// Index of a rows-per-warp variant (1, 2, 4) in Kernels::gemv16_; the split-k one is kSplitK.
constexpr size_t rows_variant(int rows_per_warp) {
  return rows_per_warp == 4 ? 2 : rows_per_warp == 2 ? 1 : 0;
}
constexpr size_t kSplitK = 3;
// Rows of at least this many elements take the split-k variant where one row per warp is all
// the matrix allows: each of the block's four warps then has four or more steps of its own.
constexpr int64_t kSplitKMinK = 4096;
// k must be whole 32-element chunks of whole blocks of `type` (the GEMV and GEMM families).
Status check_chunks(const char* what, GGMLType type, int64_t k) {
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(type), &be, &bb);
  if (k <= 0 || k % 32 != 0 || k % be != 0)
    return Error("{}: k = {} is not whole 32-element chunks of {} blocks", what, k,
                 ggml_type_name(static_cast<uint32_t>(type)));
  return Status::ok();
}
// A launch of the float GEMV or GEMM family: both take (w, row_bytes, x, ld_x, y, ld_y, n_rows,
// k, n_tok).
Status launch_rows(cudaKernel_t kernel, dim3 grid, dim3 block, const void* w, int64_t row_bytes,
                   const float* x, int64_t ld_x, float* y, int64_t ld_y, int64_t n_rows,
                   int64_t k, int64_t n_tok, cudaStream_t stream) {
  int rows = static_cast<int>(n_rows), kk = static_cast<int>(k), nt = static_cast<int>(n_tok);
  long long rb = row_bytes, lx = ld_x, ly = ld_y;
  void* args[] = {&w, &rb, &x, &lx, &y, &ly, &rows, &kk, &nt};
  return launch(kernel, grid, block, args, 0, stream);
}
constexpr int kNormThreads = 512;   // KTX_NORM_THREADS (most threads per row)
constexpr int kElementThreads = 256;

}  // namespace

bool gemv_supported(GGMLType type) {
  for (GGMLType t : kGemvTypes)
    if (t == type) return true;
  return false;
}

std::string gemv_kernel_name(GGMLType type) {
  std::string n = ggml_type_name(static_cast<uint32_t>(type));
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return "ktx_gemv_" + n;
}

bool gemv16_supported(GGMLType type) {
  for (GGMLType t : kGemv16Types)
    if (t == type) return true;
  return false;
}

int64_t XQuant::bytes_for(int64_t k_cap) {
  const int64_t q = (kGemvMaxTokens * k_cap * 2 + 255) / 256 * 256;
  return q + kGemvMaxTokens * (k_cap / 32) * 8;
}

Expected<XQuant> XQuant::alloc(int64_t k_cap) {
  if (k_cap <= 0 || k_cap % 32 != 0) return Error("cuda XQuant: k_cap {} is not a positive multiple of 32", k_cap);
  XQuant x;
  KTX_ASSIGN_OR_RETURN(x.buf_, DeviceBuffer::alloc(static_cast<size_t>(bytes_for(k_cap))));
  x.k_cap_ = k_cap;
  x.s_offset_ = static_cast<size_t>((kGemvMaxTokens * k_cap * 2 + 255) / 256 * 256);
  return x;
}

bool Kernels::gemv16_fits(GGMLType type, const void* w, int64_t row_bytes) {
  if (!gemv16_supported(type)) return false;
  const int64_t align = (type == GGMLType::Q4_K || type == GGMLType::Q5_K) ? 16 : 2;
  return reinterpret_cast<uintptr_t>(w) % align == 0 && row_bytes % align == 0;
}

Expected<Kernels> Kernels::bind(const Library& lib) {
  Kernels k;
  for (GGMLType t : kGemvTypes) {
    KTX_ASSIGN_OR_RETURN(k.gemv_[t], lib.kernel(gemv_kernel_name(t)));
  }
  for (GGMLType t : kGemvTypes) {  // optional: plans made before the GEMM family lack it
    std::string n = gemv_kernel_name(t);  // ktx_gemv_q4_k -> ktx_gemm_q4_k
    n.replace(0, 9, "ktx_gemm_");
    if (auto g = lib.kernel(n)) k.gemm_[t] = *g;
    n.replace(0, 9, "ktx_gemm_mma_");  // ktx_gemm_q4_k -> ktx_gemm_mma_q4_k
    if (auto g = lib.kernel(n)) k.gemm_mma_[t] = *g;
  }
  if (const char* e = std::getenv("KTX_CUDA_GEMM"); e && std::strcmp(e, "0") == 0) k.set_gemm(false);
  if (const char* e = std::getenv("KTX_CUDA_MMA"); e && std::strcmp(e, "0") == 0) k.set_mma(false);
  for (GGMLType t : kGemv16Types) {
    std::string n = gemv_kernel_name(t);  // ktx_gemv_q4_k -> ktx_gemv16_q4_k_<tokens>
    n.replace(0, 9, "ktx_gemv16_");
    for (int i = 0; i < 4; ++i) {
      auto& v = k.gemv16_[t][static_cast<size_t>(i)];
      KTX_ASSIGN_OR_RETURN(v[0], lib.kernel(fmt::format("{}_{}", n, kGemv16Tokens[i])));
      for (int r = 1; r < 3; ++r) {
        auto kr = lib.kernel(fmt::format("{}_{}_r{}", n, kGemv16Tokens[i], 1 << r));
        v[static_cast<size_t>(r)] = kr ? *kr : nullptr;
      }
      auto kk = lib.kernel(fmt::format("{}_{}_k4", n, kGemv16Tokens[i]));  // optional too
      v[kSplitK] = kk ? *kk : nullptr;
    }
  }
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && sms > 0)
    k.gemv16_min_blocks_ = 2 * sms;
  else
    (void)cudaGetLastError();
  if (const char* e = std::getenv("KTX_CUDA_GEMV_ROWS"); e && *e) {
    k.set_gemv16_max_rows(std::atoi(e));
  }
  if (const char* e = std::getenv("KTX_CUDA_GEMV_SPLITK"); e && std::strcmp(e, "0") == 0)
    k.set_gemv16_split_k(false);
  KTX_ASSIGN_OR_RETURN(k.quantize_x16_, lib.kernel("ktx_quantize_x16"));
  KTX_ASSIGN_OR_RETURN(k.rms_norm_, lib.kernel("ktx_rms_norm"));
  KTX_ASSIGN_OR_RETURN(k.silu_mul_, lib.kernel("ktx_silu_mul"));
  KTX_ASSIGN_OR_RETURN(k.add_, lib.kernel("ktx_add"));
  if (auto f = lib.kernel("ktx_add_rms_norm")) k.add_rms_norm_ = *f;  // optional: older plans
  // Optional (older plans' code lacks them): both or neither.
  auto set = lib.kernel("ktx_flag_set");
  auto wait = lib.kernel("ktx_flag_wait");
  if (set && wait) k.flag_set_ = *set, k.flag_wait_ = *wait;
  return k;
}

Status Kernels::gemv(GGMLType type, const void* w, int64_t row_bytes, const float* x,
                     int64_t ld_x, float* y, int64_t ld_y, int64_t n_rows, int64_t k,
                     int64_t n_tok, cudaStream_t stream, XQuant* xq) const {
  auto it = gemv_.find(type);
  if (it == gemv_.end())
    return Error("cuda gemv: no kernel for {}", ggml_type_name(static_cast<uint32_t>(type)));
  KTX_RETURN_IF_ERROR(check_chunks("cuda gemv", type, k));
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda gemv: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  if (n_rows <= 0) return Status::ok();
  if (xq && k <= xq->k_cap() && gemv16_fits(type, w, row_bytes)) {
    KTX_RETURN_IF_ERROR(quantize_x(x, ld_x, k, n_tok, *xq, stream));
    return gemv16(type, w, row_bytes, *xq, y, ld_y, n_rows, k, n_tok, stream);
  }
  const int64_t per_block = kGemvWarps * gemv_rows_per_warp(k);
  const dim3 grid(static_cast<unsigned>((n_rows + per_block - 1) / per_block));
  return launch_rows(it->second, grid, dim3(32 * kGemvWarps), w, row_bytes, x, ld_x, y, ld_y,
                     n_rows, k, n_tok, stream);
}

Status Kernels::gemm(GGMLType type, const void* w, int64_t row_bytes, const float* x,
                     int64_t ld_x, float* y, int64_t ld_y, int64_t n_rows, int64_t k,
                     int64_t n_tok, cudaStream_t stream) const {
  auto it = gemm_.find(type);
  if (it == gemm_.end())
    return Error("cuda gemm: no kernel for {} in the plan's code",
                 ggml_type_name(static_cast<uint32_t>(type)));
  KTX_RETURN_IF_ERROR(check_chunks("cuda gemm", type, k));
  if (n_tok < 0 || n_rows < 0 || n_rows > INT32_MAX || n_tok > INT32_MAX)
    return Error("cuda gemm: {} rows, {} tokens", n_rows, n_tok);
  if (n_rows == 0 || n_tok == 0) return Status::ok();
  const int64_t tok_tiles = (n_tok + kGemmTokens - 1) / kGemmTokens;
  if (tok_tiles > 65535) return Error("cuda gemm: {} tokens in one call (at most {})", n_tok, 65535 * kGemmTokens);
  const dim3 grid(static_cast<unsigned>((n_rows + kGemmRows - 1) / kGemmRows),
                  static_cast<unsigned>(tok_tiles));
  auto mma = gemm_mma_.find(type);
  const cudaKernel_t kern = mma_on_ && mma != gemm_mma_.end() ? mma->second : it->second;
  return launch_rows(kern, grid, dim3(kGemmThreads), w, row_bytes, x, ld_x, y, ld_y, n_rows,
                     k, n_tok, stream);
}

Status Kernels::linear(GGMLType type, const void* w, int64_t row_bytes, const float* x,
                       int64_t ld_x, float* y, int64_t ld_y, int64_t n_rows, int64_t k,
                       int64_t n_tok, cudaStream_t stream, XQuant* xq) const {
  if (takes_gemm(type, n_tok))
    return gemm(type, w, row_bytes, x, ld_x, y, ld_y, n_rows, k, n_tok, stream);
  for (int64_t t0 = 0; t0 < n_tok; t0 += kGemvMaxTokens) {
    KTX_RETURN_IF_ERROR(gemv(type, w, row_bytes, x + t0 * ld_x, ld_x, y + t0 * ld_y, ld_y, n_rows,
                             k, std::min<int64_t>(kGemvMaxTokens, n_tok - t0), stream, xq));
  }
  return Status::ok();
}

Status Kernels::quantize_x(const float* x, int64_t ld_x, int64_t k, int64_t n_tok, XQuant& xq,
                           cudaStream_t stream) const {
  if (k <= 0 || k % 32 != 0 || k > xq.k_cap())
    return Error("cuda quantize_x: k = {} (a multiple of 32, at most the scratch's {})", k, xq.k_cap());
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda quantize_x: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  long long lx = ld_x;
  int kk = static_cast<int>(k);
  short* q = xq.q();
  float* s = xq.s();
  void* args[] = {&x, &lx, &kk, &q, &s};
  const dim3 grid(static_cast<unsigned>((k + 255) / 256), static_cast<unsigned>(n_tok));
  return launch(quantize_x16_, grid, dim3(256), args, 0, stream);
}

Status Kernels::gemv16(GGMLType type, const void* w, int64_t row_bytes, const XQuant& xq,
                       float* y, int64_t ld_y, int64_t n_rows, int64_t k, int64_t n_tok,
                       cudaStream_t stream) const {
  auto it = gemv16_.find(type);
  if (it == gemv16_.end())
    return Error("cuda gemv16: no integer GEMV for {}", ggml_type_name(static_cast<uint32_t>(type)));
  if (!gemv16_fits(type, w, row_bytes))
    return Error("cuda gemv16: {} rows at {} ({} bytes apart) are not aligned for its loads",
                 ggml_type_name(static_cast<uint32_t>(type)), w, row_bytes);
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(type), &be, &bb);
  if (k <= 0 || k % be != 0 || k % 32 != 0 || k > xq.k_cap())
    return Error("cuda gemv16: k = {} is not whole {} blocks within the scratch's {}", k,
                 ggml_type_name(static_cast<uint32_t>(type)), xq.k_cap());
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda gemv16: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  if (n_rows <= 0) return Status::ok();
  size_t v = 0;
  while (kGemv16Tokens[v] < n_tok) ++v;
  const int rw = gemv16_rows_per_warp(type, n_rows);
  const bool split = gemv16_split_k(type, n_rows, k);  // only where rw is 1
  int rows = static_cast<int>(n_rows), kk = static_cast<int>(k), nt = static_cast<int>(n_tok);
  const void* wp = w;
  const short* q = xq.q();
  const float* s = xq.s();
  long long rb = row_bytes, ly = ld_y;
  void* args[] = {&wp, &rb, &q, &s, &y, &ly, &rows, &kk, &nt};
  const int64_t per_block = split ? 1 : int64_t{kGemv16Warps} * rw;
  const dim3 grid(static_cast<unsigned>((n_rows + per_block - 1) / per_block));
  return launch(it->second[v][split ? kSplitK : rows_variant(rw)], grid, dim3(32 * kGemv16Warps),
                args, 0, stream);
}

bool Kernels::gemv16_split_k(GGMLType type, int64_t n_rows, int64_t k) const {
  auto it = gemv16_.find(type);
  return gemv16_split_k_ && it != gemv16_.end() && it->second[0][kSplitK] != nullptr &&
         k >= kSplitKMinK && gemv16_rows_per_warp(type, n_rows) == 1;
}

int Kernels::gemv16_rows_per_warp(GGMLType type, int64_t n_rows) const {
  auto it = gemv16_.find(type);
  if (it == gemv16_.end()) return 1;
  const auto& v = it->second[0];
  for (int rw : {4, 2}) {
    if (rw > gemv16_max_rows_ || v[rows_variant(rw)] == nullptr) continue;
    if (n_rows >= int64_t{gemv16_min_blocks_} * kGemv16Warps * rw) return rw;
  }
  return 1;
}

Status Kernels::rms_norm(const float* x, int64_t ld_x, const float* w, float* y, int64_t ld_y,
                         int64_t n_rows, int64_t n, float eps, cudaStream_t stream) const {
  if (n_rows <= 0) return Status::ok();
  long long lx = ld_x, ly = ld_y;
  int nn = static_cast<int>(n);
  void* args[] = {&x, &lx, &w, &y, &ly, &nn, &eps};
  // About one float4 per thread and pass, whole warps, 32 .. kNormThreads threads.
  const int64_t threads = std::clamp<int64_t>((n / 4 + 31) / 32 * 32, 32, kNormThreads);
  return launch(rms_norm_, dim3(static_cast<unsigned>(n_rows)), dim3(static_cast<unsigned>(threads)),
                args, 0, stream);
}

bool Kernels::add_rms_norm_fits(const float* a, const float* b, const float* sum, const float* w,
                                const float* y, int64_t ld_y, int64_t n) const {
  const auto bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                    reinterpret_cast<uintptr_t>(sum) | reinterpret_cast<uintptr_t>(w) |
                    reinterpret_cast<uintptr_t>(y);
  return add_rms_norm_ != nullptr && (bits & 15) == 0 && n % 4 == 0 && ld_y % 4 == 0;
}

Status Kernels::add_rms_norm(const float* a, const float* b, float* sum, const float* w, float* y,
                             int64_t ld_y, int64_t n_rows, int64_t n, float eps,
                             cudaStream_t stream) const {
  if (!add_rms_norm_fits(a, b, sum, w, y, ld_y, n))
    return Error("cuda add_rms_norm: no ktx_add_rms_norm in the plan's code, or rows of {} / "
                 "pointers not 16-byte aligned", n);
  if (n_rows <= 0) return Status::ok();
  long long ly = ld_y;
  int nn = static_cast<int>(n);
  void* args[] = {&a, &b, &sum, &w, &y, &ly, &nn, &eps};
  // rms_norm's thread count for n: the sums round as there.
  const int64_t threads = std::clamp<int64_t>((n / 4 + 31) / 32 * 32, 32, kNormThreads);
  return launch(add_rms_norm_, dim3(static_cast<unsigned>(n_rows)), dim3(static_cast<unsigned>(threads)),
                args, 0, stream);
}

Status Kernels::silu_mul(const float* g, const float* u, float* y, int64_t n, cudaStream_t stream) const {
  if (n <= 0) return Status::ok();
  long long nn = n;
  void* args[] = {&g, &u, &y, &nn};
  return launch(silu_mul_, dim3(static_cast<unsigned>((n + kElementThreads - 1) / kElementThreads)),
                dim3(kElementThreads), args, 0, stream);
}

Status Kernels::add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) const {
  if (n <= 0) return Status::ok();
  long long nn = n;
  void* args[] = {&a, &b, &y, &nn};
  return launch(add_, dim3(static_cast<unsigned>((n + kElementThreads - 1) / kElementThreads)),
                dim3(kElementThreads), args, 0, stream);
}

Status Kernels::flag_set(unsigned* flags, int index, cudaStream_t stream) const {
  if (!has_handoff()) return Error("cuda: the plan's GPU code has no ktx_flag_set (re-plan with ktc)");
  void* args[] = {&flags, &index};
  return launch(flag_set_, dim3(1), dim3(1), args, 0, stream);
}

Status Kernels::flag_wait(const unsigned* flags, int index, cudaStream_t stream) const {
  if (!has_handoff()) return Error("cuda: the plan's GPU code has no ktx_flag_wait (re-plan with ktc)");
  void* args[] = {&flags, &index};
  return launch(flag_wait_, dim3(1), dim3(1), args, 0, stream);
}

}  // namespace ktx::cuda
