// ktx-cuda-gemv-bench: the GPU GEMV families at model shapes, the float path (gemv/, every weight
// decoded to float) and the integer path (gemv_q16/, x rounded to int16 first, the rounding
// included in the time): time per call (CUDA events around `reps` back-to-back calls, as in a
// decode graph, cycling through copies of the weights so that none is read from L2), GB/s of
// weights read, and the share of the device's memory bandwidth (2 x memory clock x bus width,
// from the CUDA runtime). Not a test.
//
//   ktx-cuda-gemv-bench --type Q4_K --tokens 1,4,8 [--path both|float|int16]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/cuda/nvrtc.h"
#include "common/quant/quant.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/library.h"

using namespace ktx;
using namespace ktx::cuda;

namespace {

struct Shape {
  const char* name;
  int64_t rows, k;
};
const Shape kShapes[] = {
    {"dsv3 attn_q_b", 24576, 1536}, {"dsv3 attn_output", 7168, 16384}, {"dsv3 ffn_gate", 18432, 7168},
    {"dsv3 ffn_down", 7168, 18432}, {"dsv3 output", 129280, 7168},    {"qwen3 attn_q", 4096, 2048},
};

int fail(const std::string& m) {
  std::fprintf(stderr, "error: %s\n", m.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPU GEMV on GGUF blocks at model shapes: GB/s against the device's bandwidth"};
  std::string type_name = "Q4_K", tokens_list = "1,4,8";
  int reps = 20;
  std::string path = "both";
  app.add_option("--type", type_name, "weight type");
  app.add_option("--path", path, "float, int16 or both")->check(CLI::IsMember({"both", "float", "int16"}));
  app.add_option("--tokens", tokens_list, "comma-separated token counts (1..8)");
  app.add_option("--reps", reps, "timed repetitions (the best counts)")->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);
  GGMLType type = GGMLType::Q4_K;
  bool found = false;
  for (uint32_t t = 0; t < 40; ++t)
    if (ggml_type_supported(t) && ggml_type_name(t) == type_name) type = static_cast<GGMLType>(t), found = true;
  if (!found || !gemv_supported(type)) return fail("no GPU GEMV for type '" + type_name + "'");
  std::vector<int64_t> tokens;
  for (size_t p = 0; p < tokens_list.size();) {
    const size_t c = tokens_list.find(',', p);
    tokens.push_back(std::stoll(tokens_list.substr(p, c - p)));
    if (c == std::string::npos) break;
    p = c + 1;
  }
  if (device_count() == 0) return fail("no CUDA device");
  auto arch = device_arch(0);
  if (!arch) return fail(arch.status().message());
  auto cubin = compile_kernels(*arch);
  if (!cubin) return fail(cubin.status().message());
  auto lib = Library::load(*cubin);
  if (!lib) return fail(lib.status().message());
  auto kernels = Kernels::bind(*lib);
  if (!kernels) return fail(kernels.status().message());
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  int mem_clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  const double peak_gbs = 2.0 * mem_clock_khz * 1e3 * bus_bits / 8 / 1e9;
  std::printf("# %s (%s), memory bandwidth %.0f GB/s (2 x clock x bus), type %s\n", prop.name,
              arch->c_str(), peak_gbs, type_name.c_str());
  std::vector<bool> paths;
  if (path != "int16") paths.push_back(false);
  if (path != "float" && gemv16_supported(type)) paths.push_back(true);
  auto xq = XQuant::alloc(18432);
  if (!xq) return fail(xq.status().message());
  std::printf("%-18s %7s %6s %6s %6s %9s %8s %6s\n", "tensor", "rows", "k", "tokens", "x", "us", "GB/s", "%peak");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (const Shape& s : kShapes) {
    const size_t rb = *ggml_row_bytes(type, s.k);
    std::vector<uint8_t> distinct(64 * rb), w(rb * s.rows);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> f(static_cast<size_t>(s.k));
    for (int r = 0; r < 64; ++r) {
      for (auto& v : f) v = nd(rng);
      quantize_row(type, f.data(), distinct.data() + r * rb, s.k);
    }
    for (int64_t r = 0; r < s.rows; ++r) std::copy_n(distinct.data() + (r % 64) * rb, rb, w.data() + r * rb);
    const size_t copies = std::max<size_t>(1, (size_t(256) << 20) / w.size() + 1);  // > L2
    auto dw = DeviceBuffer::alloc(w.size() * copies);
    auto dx = DeviceBuffer::alloc(8 * s.k * sizeof(float));
    auto dy = DeviceBuffer::alloc(8 * s.rows * sizeof(float));
    if (!dw || !dx || !dy) return fail("device allocation failed");
    for (size_t c = 0; c < copies; ++c)
      if (cudaMemcpy(dw->as<uint8_t>() + c * w.size(), w.data(), w.size(), cudaMemcpyHostToDevice) != cudaSuccess)
        return fail("upload failed");
    std::vector<float> x(8 * s.k, 0.5f);
    if (Status st = dx->upload(x.data(), x.size() * sizeof(float)); !st) return fail(st.message());
    for (int64_t n : tokens)
      for (const bool integer : paths) {
        float best = 1e30f;
        for (int round = 0; round < 3; ++round) {  // the first warms up
          cudaEventRecord(e0);
          for (int r = 0; r < reps; ++r) {
            const uint8_t* wp = dw->as<uint8_t>() + (size_t(r) % copies) * w.size();
            Status st = kernels->gemv(type, wp, static_cast<int64_t>(rb), dx->as<float>(), s.k,
                                      dy->as<float>(), s.rows, s.rows, s.k, n, nullptr,
                                      integer ? &*xq : nullptr);
            if (!st) return fail(st.message());
          }
          cudaEventRecord(e1);
          cudaEventSynchronize(e1);
          float ms = 0;
          cudaEventElapsedTime(&ms, e0, e1);
          if (round > 0) best = std::min(best, ms / reps);
        }
        const double gbs = double(w.size()) / (best * 1e-3) / 1e9;
        std::printf("%-18s %7lld %6lld %6lld %6s %9.1f %8.0f %5.0f%%\n", s.name, (long long)s.rows,
                    (long long)s.k, (long long)n, integer ? "int16" : "float", best * 1e3, gbs,
                    100.0 * gbs / peak_gbs);
      }
  }
  return 0;
}
