// Random-weight GGUF model generator (`ktx-run gen`). A preset names a model shape (a tiny
// runnable demo model, or the real shapes of DeepSeek-V3, Qwen3-MoE and Mixtral); the generator
// writes a GGUF with every metadata key and tensor the llama.cpp converter would write, a
// consistent synthetic tokenizer, and random weights whose scale keeps activations sane.
//
// Big tensors are never built as floats and quantized: quantized blocks are filled directly
// with random bytes and only their scale fields are set, so tens of GB are written at disk
// speed. Output bytes depend only on (preset, type, layers, seed), never on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/quant/quant.h"
#include "common/util/status.h"

namespace ktx {

struct GenOptions {
  std::string preset;                  // one of gen_preset_names()
  std::string output;                  // path of the .gguf to write
  GGMLType type = GGMLType::Q8_0;      // type of the big matrices (norms, router stay F32)
  int64_t n_layers = 0;                // > 0: cut the layer count (keeps leading dense layers first)
  uint64_t seed = 42;
  int n_threads = 0;                   // 0: hardware concurrency
  bool force = false;                  // overwrite an existing output file
  // Called as tensor data is written: (bytes done, bytes total). May be empty.
  std::function<void(uint64_t, uint64_t)> progress;
};

// How a tensor's values are drawn.
enum class GenInit {
  Weight,  // zero-mean random, standard deviation `std` (quantized blocks filled directly)
  Ones,    // RMSNorm weights: 1.0
  Small,   // small zero-mean uniform values of standard deviation `std` (biases)
};

struct GenTensor {
  std::string name;
  GGMLType type = GGMLType::F32;
  std::vector<int64_t> ne;        // ne[0] is the row length
  GenInit init = GenInit::Weight;
  float std = 0.0f;               // target standard deviation of the dequantized values
  uint64_t n_bytes = 0;
  GGMLType requested = GGMLType::F32;  // type asked for before a row-length fallback

  int64_t n_elements() const;
  bool fell_back() const { return type != requested; }
};

// Everything about a model except the tokenizer and the data: what `--list` and the dry-run
// tests inspect without writing anything.
struct GenModelPlan {
  std::string preset;
  std::string arch;               // general.architecture
  std::vector<GenTensor> tensors; // in file order
  uint64_t data_bytes = 0;        // sum of tensor bytes (without alignment padding)
  uint64_t n_params = 0;
  int64_t n_layers = 0;
  int64_t n_vocab = 0;
};

// Presets, in the order `--list` shows them.
std::vector<std::string> gen_preset_names();
// One-line description of a preset ("DeepSeek-V3/R1 671B shape (deepseek2, MLA ...)").
Expected<std::string> gen_preset_description(const std::string& preset);

// Parse a weight type name as ggml_type_name spells it ("Q4_K"); error lists the valid ones.
Expected<GGMLType> gen_parse_type(const std::string& name);
// The types `--type` accepts, in display order.
std::vector<GGMLType> gen_weight_types();

// The tensor list and sizes for these options (preset, type, n_layers); writes nothing.
Expected<GenModelPlan> gen_plan_model(const GenOptions& opts);

// Generate the file. Refuses to overwrite unless opts.force, checks free disk space first,
// writes through a temporary file renamed when complete.
Status generate_model(const GenOptions& opts);

}  // namespace ktx
