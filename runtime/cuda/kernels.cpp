// runtime/cuda/kernels.h.
#include "runtime/cuda/kernels.h"

#include <fmt/format.h>

namespace ktx::cuda {
namespace {

constexpr GGMLType kGemvTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16,
                                   GGMLType::Q4_0, GGMLType::Q5_0, GGMLType::Q8_0, GGMLType::Q4_K,
                                   GGMLType::Q5_K, GGMLType::Q6_K};
constexpr int kGemvWarps = 4;       // KTX_GEMV_WARPS
constexpr int kNormThreads = 256;   // KTX_NORM_THREADS
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

Expected<Kernels> Kernels::bind(const Library& lib) {
  Kernels k;
  for (GGMLType t : kGemvTypes) {
    KTX_ASSIGN_OR_RETURN(k.gemv_[t], lib.kernel(gemv_kernel_name(t)));
  }
  KTX_ASSIGN_OR_RETURN(k.rms_norm_, lib.kernel("ktx_rms_norm"));
  KTX_ASSIGN_OR_RETURN(k.silu_mul_, lib.kernel("ktx_silu_mul"));
  KTX_ASSIGN_OR_RETURN(k.add_, lib.kernel("ktx_add"));
  return k;
}

Status Kernels::gemv(GGMLType type, const void* w, int64_t row_bytes, const float* x,
                     int64_t ld_x, float* y, int64_t ld_y, int64_t n_rows, int64_t k,
                     int64_t n_tok, cudaStream_t stream) const {
  auto it = gemv_.find(type);
  if (it == gemv_.end())
    return Error("cuda gemv: no kernel for {}", ggml_type_name(static_cast<uint32_t>(type)));
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(type), &be, &bb);
  if (k <= 0 || k % 32 != 0 || k % be != 0)
    return Error("cuda gemv: k = {} is not whole 32-element chunks of {} blocks", k,
                 ggml_type_name(static_cast<uint32_t>(type)));
  if (n_tok < 1 || n_tok > kGemvMaxTokens)
    return Error("cuda gemv: {} tokens (1..{} per call)", n_tok, kGemvMaxTokens);
  if (n_rows <= 0) return Status::ok();
  int rows = static_cast<int>(n_rows), kk = static_cast<int>(k), nt = static_cast<int>(n_tok);
  const void* wp = w;
  const float* xp = x;
  float* yp = y;
  long long rb = row_bytes, lx = ld_x, ly = ld_y;
  void* args[] = {&wp, &rb, &xp, &lx, &yp, &ly, &rows, &kk, &nt};
  const dim3 grid(static_cast<unsigned>((n_rows + kGemvWarps - 1) / kGemvWarps));
  return launch(it->second, grid, dim3(32 * kGemvWarps), args, 0, stream);
}

Status Kernels::rms_norm(const float* x, int64_t ld_x, const float* w, float* y, int64_t ld_y,
                         int64_t n_rows, int64_t n, float eps, cudaStream_t stream) const {
  if (n_rows <= 0) return Status::ok();
  long long lx = ld_x, ly = ld_y;
  int nn = static_cast<int>(n);
  void* args[] = {&x, &lx, &w, &y, &ly, &nn, &eps};
  return launch(rms_norm_, dim3(static_cast<unsigned>(n_rows)), dim3(kNormThreads), args, 0, stream);
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

}  // namespace ktx::cuda
