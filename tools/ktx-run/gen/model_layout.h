// Internal to runtime/gen: from a preset to the list of tensors (names, shapes, types, how each
// is initialized) and the model's metadata keys, named exactly as llama.cpp's converter names
// them (checked against ../shared/models/*.gguf).
#pragma once

#include <cstdint>

#include "common/gguf/gguf.h"
#include "tools/ktx-run/gen/generate.h"
#include "tools/ktx-run/gen/presets.h"

namespace ktx::gen_detail {

// The type a matrix of row length ne0 gets when `requested` was asked for. Rows that are not a
// multiple of the block size fall back the way llama-quantize does: Q4_K -> Q5_0,
// Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0 (llama-quantize picks IQ4_NL, which KTX does
// not read; Q4_0 has the same size and 32-element blocks), and F16 when even that does not fit.
GGMLType fallback_type(GGMLType requested, int64_t ne0);

// Layers actually generated for a --layers request: n_layer (cut to `requested` when > 0) and
// how many of them are leading dense layers (at least one MoE layer is kept in a cut model, so
// `--layers 1` of deepseek-v3 still has experts).
struct LayerCounts {
  int64_t n_layer = 0;
  int64_t n_dense = 0;
};
LayerCounts layer_counts(const PresetSpec& p, int64_t requested);

// The tensor list in file order, with sizes.
Expected<GenModelPlan> build_plan(const PresetSpec& p, GGMLType type, int64_t n_layers);

// All non-tokenizer metadata keys (general.*, {arch}.*).
void write_model_keys(const PresetSpec& p, const GenModelPlan& plan, GGMLType type,
                      GGUFWriter& w);

// generate_model for a spec that need not be in the preset table (opts.preset is ignored):
// tests build reduced shapes with it. Defined in generate.cpp.
Status generate_from_spec(const PresetSpec& spec, const GenOptions& opts);

// llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) for a uniform weight type.
uint32_t llama_file_type(GGMLType type);

}  // namespace ktx::gen_detail
