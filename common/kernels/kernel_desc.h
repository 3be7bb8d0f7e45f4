// The plan's kernel vocabulary, shared by ktc (which chooses) and ktx-run (which generates and
// runs): ISA tiers, and for each kernel family the problem kept apart from the code.
// `LinearDesc` is one linear layer's matrix (type, shape, tier). For one routed-expert (MoE)
// layer on the CPU, `MoeDesc` says what is computed (shapes, weight types, tokens per expert, ISA tier),
// `MoeConfig` says how (row blocking, K unrolling, threads). The plan stores both in their
// stable string forms; the runtime parses them back and regenerates the kernels, so the cache
// key of a generated kernel is (descriptor, config, ISA).
#pragma once

#include <cstdint>
#include <string>

#include "common/hw/hw_profile.h"
#include "common/quant/quant.h"
#include "common/util/status.h"

namespace ktx::cpu {

// Instruction-set tiers a kernel may be generated for, weakest first. `reference` is plain
// C++ (every CPU); the others need the features listed in isa_tier_supported().
enum class IsaTier : uint8_t { reference = 0, avx2 = 1, avx512 = 2, amx = 3 };

const char* isa_tier_name(IsaTier tier);
Expected<IsaTier> parse_isa_tier(const std::string& name);
// Whether a CPU offers everything the tier's kernels use:
//   avx2:   AVX2 + FMA + F16C
//   avx512: AVX-512 F/BW/VL + VNNI (and everything avx2 needs)
//   amx:    AMX tile + INT8 + BF16 with OS permission (and everything avx512 needs)
bool isa_tier_supported(IsaTier tier, const CpuIsa& isa);
// The strongest tier this CPU supports.
IsaTier best_isa_tier(const CpuIsa& isa);

// A GGML type by its name ("Q4_K"); an error naming the text otherwise.
Expected<GGMLType> parse_ggml_type(const std::string& name);

// One linear layer's weight matrix: [n_rows][k] of `type` (GGUF ne = [k, n_rows, ...]: 3-D
// tensors are seen as their rows) and the strongest tier its kernels may use.
struct LinearDesc {
  GGMLType type = GGMLType::F32;
  int64_t k = 0;        // elements per row (a whole number of the type's blocks)
  int64_t n_rows = 0;   // output width
  IsaTier isa = IsaTier::reference;

  // "linear:type=Q4_K,k=7168,n_rows=1536,isa=avx512"; parse() accepts exactly what
  // to_string() writes.
  std::string to_string() const;
  static Expected<LinearDesc> parse(const std::string& text);
  // Shape positive, type supported, rows a whole number of blocks.
  Status validate() const;
  bool operator==(const LinearDesc&) const = default;
};

// One routed-expert layer. Tensor shapes in GGUF `ne` order (fastest dimension first):
//   gate, up: [n_embd, n_ff, n_expert]   (row n of expert e: n_embd elements)
//   down:     [n_ff, n_embd, n_expert]   (row k of expert e: n_ff elements)
struct MoeDesc {
  int64_t n_embd = 0;           // K: hidden size, input and output width of the layer
  int64_t n_ff = 0;             // N: expert FFN width
  int64_t n_expert = 0;         // routed experts in the layer
  int64_t top_k = 0;            // experts selected per token
  GGMLType gate_type = GGMLType::F32;
  GGMLType up_type = GGMLType::F32;
  GGMLType down_type = GGMLType::F32;
  int64_t max_tokens = 1;       // most tokens one call may route to one expert (decode: few)
  IsaTier isa = IsaTier::reference;  // tier the kernels are generated for

  // "moe:n_embd=7168,n_ff=2048,n_expert=256,top_k=8,gate=Q4_K,up=Q4_K,down=Q4_K,
  //  max_tokens=16,isa=avx2" (one line); parse() accepts exactly what to_string() writes.
  std::string to_string() const;
  static Expected<MoeDesc> parse(const std::string& text);
  // Shapes positive, top_k <= n_expert, types supported, rows a whole number of blocks.
  Status validate() const;
  bool operator==(const MoeDesc&) const = default;
};

// How the layer is run. Defaults are safe everywhere; select_moe_config() tunes them.
struct MoeConfig {
  int64_t rows_per_task = 64;   // output rows one thread task computes (work-split grain)
  int unroll = 2;               // K blocks per inner-loop iteration (independent accumulators)
  int threads = 0;              // worker threads; 0 = all hardware threads
  // Prefill activations of the K-quant GEMM: 16 (int16-grade, q16_k) or 8 (int8 per 32
  // elements, q8_k32: the AVX-512 VNNI int8 kernel, twice the multiply rate). Written as
  // ",act=i8" only when 8, so int16 configs keep their strings.
  int prefill_act = 16;

  // "cfg:rows_per_task=64,unroll=2,threads=0[,act=i8]"; parse() accepts what to_string()
  // writes (and act=i16).
  std::string to_string() const;
  static Expected<MoeConfig> parse(const std::string& text);
  Status validate() const;
  bool operator==(const MoeConfig&) const = default;
};

// The configuration for a descriptor on a host with `threads` usable cores: enough row tasks
// per expert to keep every thread busy at decode, never fewer than 8 rows per task.
MoeConfig select_moe_config(const MoeDesc& desc, int threads);

}  // namespace ktx::cpu
