// runtime/cuda/moe.h.
#include "runtime/cuda/moe.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "runtime/cuda/cuda_check.h"

namespace ktx::cuda {
namespace {

constexpr int kSortThreads = 256;     // KTX_MOE_SORT_THREADS
constexpr int kMaxExperts = 1024;     // KTX_MOE_MAX_EXPERTS
constexpr int kElementThreads = 256;  // gather, combine
constexpr GGMLType kTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16,
                               GGMLType::Q4_0, GGMLType::Q5_0, GGMLType::Q8_0,
                               GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K};

int64_t padded(int64_t bytes) { return (bytes + 255) / 256 * 256; }

std::string type_name(GGMLType t) { return ggml_type_name(static_cast<uint32_t>(t)); }

// The product of one expert matrix over the sorted pairs: y [pairs][rows] = W_e · x.
Status grouped_gemm(cudaKernel_t kern, const ExpertMatrix& m, int64_t n_expert, const float* x,
                    int64_t ld_x, float* y, int64_t ld_y, int64_t max_tok, const int* offsets,
                    cudaStream_t stream) {
  const void* w = m.data;
  long long eb = m.expert_bytes, rb = m.row_bytes, lx = ld_x, ly = ld_y;
  int rows = static_cast<int>(m.rows), k = static_cast<int>(m.k);
  void* args[] = {&w, &eb, &rb, &x, &lx, &y, &ly, &rows, &k, &offsets};
  const dim3 grid(static_cast<unsigned>((m.rows + kGemmRows - 1) / kGemmRows),
                  static_cast<unsigned>((max_tok + kGemmTokens - 1) / kGemmTokens),
                  static_cast<unsigned>(n_expert));
  return launch(kern, grid, dim3(kGemmThreads), args, 0, stream);
}

Status check_matrix(const char* what, const ExpertMatrix& m, int64_t rows, int64_t k) {
  if (!m.data) return Error("cuda moe: {} weights are not on the device", what);
  if (m.rows != rows || m.k != k)
    return Error("cuda moe: {} is {} x {}, expected {} x {}", what, m.rows, m.k, rows, k);
  int64_t be = 0, bb = 0;
  ggml_type_block(static_cast<uint32_t>(m.type), &be, &bb);
  if (k % 32 != 0 || k % be != 0)
    return Error("cuda moe: {}: k = {} is not whole 32-element chunks of {} blocks", what, k,
                 type_name(m.type));
  if (m.expert_bytes < m.rows * m.row_bytes)
    return Error("cuda moe: {}: experts {} bytes apart hold {} rows of {} bytes", what,
                 m.expert_bytes, m.rows, m.row_bytes);
  return Status::ok();
}

}  // namespace

uint64_t MoeWorkspace::bytes_for(int64_t max_pairs, int64_t n_embd, int64_t n_ff,
                                 int64_t n_expert) {
  return static_cast<uint64_t>(padded((n_expert + 1) * 4) + 2 * padded(max_pairs * 4) +
                               padded(max_pairs * n_embd * 4) + 2 * padded(max_pairs * n_ff * 4));
}

Expected<MoeWorkspace> MoeWorkspace::create(int64_t max_pairs, int64_t n_embd, int64_t n_ff,
                                            int64_t n_expert) {
  if (max_pairs <= 0 || n_embd <= 0 || n_ff <= 0 || n_expert <= 0 || n_expert > kMaxExperts)
    return Error("cuda moe workspace: {} pairs, n_embd {}, n_ff {}, {} experts (at most {})",
                 max_pairs, n_embd, n_ff, n_expert, kMaxExperts);
  MoeWorkspace ws;
  ws.max_pairs = max_pairs, ws.n_embd = n_embd, ws.n_ff = n_ff, ws.n_expert = n_expert;
  KTX_ASSIGN_OR_RETURN(ws.buf, DeviceBuffer::alloc(bytes_for(max_pairs, n_embd, n_ff, n_expert)));
  auto* base = ws.buf.as<char>();
  int64_t off = 0;
  auto take = [&](int64_t bytes) {
    char* p = base + off;
    off += padded(bytes);
    return p;
  };
  ws.offsets = reinterpret_cast<int*>(take((n_expert + 1) * 4));
  ws.perm = reinterpret_cast<int*>(take(max_pairs * 4));
  ws.inv = reinterpret_cast<int*>(take(max_pairs * 4));
  ws.xg = reinterpret_cast<float*>(take(max_pairs * n_embd * 4));
  ws.g = reinterpret_cast<float*>(take(max_pairs * n_ff * 4));
  ws.u = reinterpret_cast<float*>(take(max_pairs * n_ff * 4));
  return ws;
}

MoeKernels MoeKernels::bind(const Library& lib) {
  MoeKernels m;
  auto sort = lib.kernel("ktx_moe_sort");
  auto gather = lib.kernel("ktx_moe_gather");
  auto combine = lib.kernel("ktx_moe_combine");
  if (!sort || !gather || !combine) return m;
  m.sort_ = *sort, m.gather_ = *gather, m.combine_ = *combine;
  for (GGMLType t : kTypes) {
    std::string n = "ktx_moe_gemm_" + type_name(t);
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto g = lib.kernel(n)) m.gemm_[t] = *g;
    n.replace(0, 13, "ktx_moe_gemm_mma_");
    if (auto g = lib.kernel(n)) m.gemm_mma_[t] = *g;
  }
  if (const char* e = std::getenv("KTX_CUDA_MMA"); e && std::strcmp(e, "0") == 0) m.mma_on_ = false;
  return m;
}

Status MoeKernels::run(const Kernels& k, const ExpertWeights& w, const float* x, int64_t ld_x,
                       const int32_t* ids, const float* weights, int64_t n_tok, int64_t top_k,
                       float* out, int64_t ld_out, MoeWorkspace& ws, cudaStream_t stream) const {
  const int64_t D = ws.n_embd, F = ws.n_ff, E = w.n_expert, n = n_tok * top_k;
  for (const ExpertMatrix* m : {&w.gate, &w.up, &w.down})
    if (!has(m->type))
      return Error("cuda moe: no expert GEMM for {} in the plan's code", type_name(m->type));
  if (E != ws.n_expert) return Error("cuda moe: {} experts, the workspace is for {}", E, ws.n_expert);
  KTX_RETURN_IF_ERROR(check_matrix("gate", w.gate, F, D));
  KTX_RETURN_IF_ERROR(check_matrix("up", w.up, F, D));
  KTX_RETURN_IF_ERROR(check_matrix("down", w.down, D, F));
  if (top_k < 1 || n_tok < 0 || n > ws.max_pairs)
    return Error("cuda moe: {} tokens x top-{} = {} pairs (the workspace holds {})", n_tok,
                 top_k, n, ws.max_pairs);
  if (n_tok == 0) return Status::ok();
  if ((n_tok + kGemmTokens - 1) / kGemmTokens > 65535)
    return Error("cuda moe: {} tokens in one call", n_tok);
  {
    int nn = static_cast<int>(n), ne = static_cast<int>(E);
    int *off = ws.offsets, *perm = ws.perm, *inv = ws.inv;
    void* args[] = {&ids, &nn, &ne, &off, &perm, &inv};
    KTX_RETURN_IF_ERROR(launch(sort_, dim3(1), dim3(kSortThreads), args, 0, stream));
  }
  {
    long long lx = ld_x;
    int ne = static_cast<int>(E), tk = static_cast<int>(top_k), kk = static_cast<int>(D);
    const int *perm = ws.perm, *off = ws.offsets;
    float* xg = ws.xg;
    void* args[] = {&x, &lx, &perm, &off, &ne, &tk, &kk, &xg};
    KTX_RETURN_IF_ERROR(launch(gather_, dim3(static_cast<unsigned>(n)), dim3(kElementThreads),
                               args, 0, stream));
  }
  // An expert takes each token at most once: n_tok tokens per expert at most.
  KTX_RETURN_IF_ERROR(grouped_gemm(gemm_for(w.gate.type), w.gate, E, ws.xg, D, ws.g, F, n_tok,
                                   ws.offsets, stream).with_context("cuda moe gate"));
  KTX_RETURN_IF_ERROR(grouped_gemm(gemm_for(w.up.type), w.up, E, ws.xg, D, ws.u, F, n_tok,
                                   ws.offsets, stream).with_context("cuda moe up"));
  KTX_RETURN_IF_ERROR(k.silu_mul(ws.g, ws.u, ws.g, n * F, stream));
  // The down products overwrite the gathered inputs (read by gate and up only).
  KTX_RETURN_IF_ERROR(grouped_gemm(gemm_for(w.down.type), w.down, E, ws.g, F, ws.xg, D, n_tok,
                                   ws.offsets, stream).with_context("cuda moe down"));
  {
    const float* y = ws.xg;
    const int* inv = ws.inv;
    int tk = static_cast<int>(top_k), d = static_cast<int>(D);
    long long lo = ld_out;
    void* args[] = {&y, &inv, &weights, &tk, &d, &out, &lo};
    const dim3 grid(static_cast<unsigned>((D + kElementThreads - 1) / kElementThreads),
                    static_cast<unsigned>(n_tok));
    return launch(combine_, grid, dim3(kElementThreads), args, 0, stream);
  }
}

// ExpertStream.

Expected<std::unique_ptr<ExpertStream>> ExpertStream::create(size_t slot_bytes, int slots,
                                                             int copy_threads) {
  if (slot_bytes == 0 || slots < 1) return Error("cuda expert stream: {} slots of {} bytes", slots, slot_bytes);
  std::unique_ptr<ExpertStream> s(new ExpertStream());
  s->slot_bytes_ = slot_bytes;
  for (int i = 0; i < slots; ++i) {
    auto b = DeviceBuffer::alloc(slot_bytes);
    if (!b) return b.status().with_context(fmt::format("expert slot {} of {}", i + 1, slots));
    s->slot_.push_back(std::move(*b));
    cudaEvent_t a = nullptr, f = nullptr;
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&a, cudaEventDisableTiming));
    s->loaded_ev_.push_back(a);
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&f, cudaEventDisableTiming));
    s->freed_ev_.push_back(f);
  }
  for (int i = 0; i < kStagingBuffers; ++i) {
    void* p = nullptr;
    KTX_CUDA_RETURN_IF_ERROR(cudaHostAlloc(&p, kStagingBytes, cudaHostAllocPortable));
    s->staging_.push_back(p);
    cudaEvent_t e = nullptr;
    // Blocking sync: the loading thread sleeps while a staging buffer drains.
    KTX_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));
    s->staged_ev_.push_back(e);
  }
  KTX_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s->copy_, cudaStreamNonBlocking));
  if (copy_threads <= 0) {
    const unsigned hw = std::max(2u, std::thread::hardware_concurrency());
    copy_threads = static_cast<int>(std::min(8u, hw / 2));
  }
  s->parts_ = copy_threads;
  for (int i = 1; i < copy_threads; ++i) s->team_.emplace_back([p = s.get(), i] { p->team_main(i); });
  return s;
}

ExpertStream::~ExpertStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : team_) t.join();
  if (copy_) {
    cudaStreamSynchronize(copy_);
    cudaStreamDestroy(copy_);
  }
  for (cudaEvent_t e : loaded_ev_) cudaEventDestroy(e);
  for (cudaEvent_t e : freed_ev_) cudaEventDestroy(e);
  for (cudaEvent_t e : staged_ev_) cudaEventDestroy(e);
  for (void* p : staging_) cudaFreeHost(p);
}

void ExpertStream::team_main(int index) {
  uint64_t seen = 0;
  for (;;) {
    char* dst;
    const char* src;
    size_t n;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || job_ != seen; });
      if (stop_) return;
      seen = job_;
      dst = job_dst_, src = job_src_, n = job_n_;
    }
    const size_t parts = static_cast<size_t>(parts_);
    const size_t per = (n + parts - 1) / parts;
    const size_t b = std::min(n, per * static_cast<size_t>(index)), e = std::min(n, b + per);
    if (e > b) std::memcpy(dst + b, src + b, e - b);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ExpertStream::parallel_copy(void* dst, const void* src, size_t n) {
  if (parts_ < 2 || n < (size_t{1} << 20)) {
    std::memcpy(dst, src, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_dst_ = static_cast<char*>(dst), job_src_ = static_cast<const char*>(src), job_n_ = n;
    pending_ = parts_ - 1;
    ++job_;
  }
  wake_.notify_all();
  const size_t parts = static_cast<size_t>(parts_), per = (n + parts - 1) / parts;
  std::memcpy(dst, src, std::min(n, per));  // the caller's share: part 0
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

Status ExpertStream::load(int i, const std::vector<Range>& ranges) {
  if (i < 0 || i >= slots()) return Error("cuda expert stream: slot {} of {}", i, slots());
  for (const Range& r : ranges)
    if (r.offset + r.bytes > slot_bytes_)
      return Error("cuda expert stream: {} bytes at offset {} past a {}-byte slot", r.bytes,
                   r.offset, slot_bytes_);
  KTX_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_, freed_ev_[static_cast<size_t>(i)], 0));
  char* dst = slot_[static_cast<size_t>(i)].as<char>();
  for (const Range& r : ranges) {
    for (size_t done = 0; done < r.bytes; done += kStagingBytes) {
      const size_t n = std::min(kStagingBytes, r.bytes - done);
      const size_t b = next_staging_;
      next_staging_ = (next_staging_ + 1) % staging_.size();
      KTX_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(staged_ev_[b]));  // its last copy is out
      parallel_copy(staging_[b], static_cast<const char*>(r.src) + done, n);
      KTX_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst + r.offset + done, staging_[b], n,
                                               cudaMemcpyHostToDevice, copy_));
      KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(staged_ev_[b], copy_));
    }
    loaded_ += r.bytes;
  }
  KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(loaded_ev_[static_cast<size_t>(i)], copy_));
  return Status::ok();
}

Status ExpertStream::acquire(int i, cudaStream_t compute) {
  if (i < 0 || i >= slots()) return Error("cuda expert stream: slot {} of {}", i, slots());
  KTX_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute, loaded_ev_[static_cast<size_t>(i)], 0));
  return Status::ok();
}

Status ExpertStream::release(int i, cudaStream_t compute) {
  if (i < 0 || i >= slots()) return Error("cuda expert stream: slot {} of {}", i, slots());
  KTX_CUDA_RETURN_IF_ERROR(cudaEventRecord(freed_ev_[static_cast<size_t>(i)], compute));
  return Status::ok();
}

}  // namespace ktx::cuda
