// Internals of the plan format shared by its .cpp files: the checksum, the byte layout
// constants (docs/plan-format.md) and the JSON codecs of the section payloads.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/plan/plan.h"

namespace ktx::plan_detail {

// FNV-1a, 64-bit: simple, byte-order independent and good enough to catch corruption (the
// plan is not a security boundary; the GGUF identity uses SHA-256).
uint64_t fnv1a64(const void* data, size_t n);

constexpr char kMagic[8] = {'K', 'T', 'X', 'P', 'L', 'A', 'N', '\0'};
constexpr size_t kPrefixBytes = 16;       // magic, version, section count
constexpr size_t kEntryBytes = 48;        // one section table entry
constexpr size_t kSectionNameBytes = 16;  // NUL-padded ASCII
constexpr size_t kHeaderChecksumBytes = 8;
constexpr uint32_t kMaxSections = 64;
constexpr uint32_t kFlagRequired = 1u;    // a reader that does not know it must refuse the file
constexpr size_t kPayloadAlign = 8;

// Section names in file order; every one is required in version 1.
constexpr const char* kSectionGguf = "gguf";
constexpr const char* kSectionHw = "hw";
constexpr const char* kSectionModel = "model";
constexpr const char* kSectionProgram = "program";
// Optional, but required when present (a reader that cannot load GPU code must not run the
// plan): the raw cubin bytes of Plan::gpu_code, not JSON.
constexpr const char* kSectionGpuCode = "gpu_code";

// Payload codecs. Decoders name the offending field ("ops[3].device: expected \"cpu\" or
// \"gpu\", found \"tpu\""); the caller prefixes the section.
nlohmann::json encode_gguf(const GGUFIdentity& g);
nlohmann::json encode_hw(const HwAssumption& hw);
nlohmann::json encode_program(const Plan& plan);
Status decode_gguf(const nlohmann::json& j, GGUFIdentity* out);
Status decode_hw(const nlohmann::json& j, HwAssumption* out);
Status decode_program(const nlohmann::json& j, Plan* out);

}  // namespace ktx::plan_detail
