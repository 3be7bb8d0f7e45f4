// Internals shared by the GGUF reader's files (not part of the contract): the mapped part of a
// model, the bounds-checked cursor the parser reads through, and the tensor layout table.
#pragma once

#include <string>
#include <vector>

#include "common/gguf/gguf.h"

namespace ktx {

// Format limits. Keys and tensor names in real files are short (ggml caps names at 63 bytes);
// the limits only stop a corrupt length from being taken at face value.
inline constexpr uint32_t kGGUFMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint64_t kGGUFDefaultAlignment = 32;
inline constexpr uint64_t kGGUFMaxKeyLen = 65535;
inline constexpr uint64_t kGGUFMaxNameLen = 65535;
inline constexpr int kGGUFMaxArrayDepth = 8;
// Each parsed element costs ~100 bytes of GGUFValue, so an array's length is capped well above
// any real vocabulary (~262k) but low enough that a corrupt length cannot exhaust memory.
inline constexpr uint64_t kGGUFMaxArrayElems = uint64_t(1) << 24;
inline constexpr uint64_t kGGUFHeaderBytes = 24;  // magic, version, n_tensors, n_kv
// Smallest possible encodings, used to reject counts the file cannot possibly hold.
inline constexpr uint64_t kGGUFMinKVBytes = 8 + 1 + 4 + 1;             // len, key, type, u8
inline constexpr uint64_t kGGUFMinTensorBytes = 8 + 1 + 4 + 8 + 4 + 8;  // len, name, n_dims, ne, type, offset

// One mmapped file of a (possibly split) model. The mapping lives as long as the Part.
struct GGUFFile::Part {
  std::string path;
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  uint32_t version = 0;
  uint64_t alignment = kGGUFDefaultAlignment;
  uint64_t data_offset = 0;  // start of the data section (== size for a tensor-less file)
  uint64_t tables_end = 0;   // end of the tensor table (before alignment padding)
  ~Part();
};

// What parsing one file yields before parts are combined.
struct GGUFParsedPart {
  std::unique_ptr<GGUFFile::Part> part;
  std::vector<GGUFKV> kvs;
  std::vector<GGUFTensorInfo> tensors;  // offsets validated, data pointers set
};

// Maps and fully validates one file. split_index is stored in each tensor's `split`.
Expected<GGUFParsedPart> gguf_parse_file(const std::string& path, uint32_t split_index);

// Block layout of a ggml type id: from quant.h where it knows the type, else from the table of
// ggml types KTX does not compute with (IQ*, TQ*, MXFP4, integer types), so such files can
// still be listed. False for ids with no known layout.
bool gguf_type_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes);
// Error text for a type id without a layout ("ggml type 142 is unknown (ids above 96 ...)").
std::string gguf_unknown_type_text(uint32_t type);

// Byte size of one scalar of a GGUF value type (0 for STRING/ARRAY).
uint64_t gguf_scalar_size(GGUFValueType t);
// "UINT32", or "ARRAY of STRING": how errors show a value's type.
std::string gguf_type_text(const GGUFValue& v);
// Integer value of any integer type; errors name path and key.
Expected<int64_t> gguf_value_to_int(const GGUFValue& v, const std::string& path,
                                    std::string_view key);

inline bool gguf_valid_value_type(uint32_t t) { return t <= uint32_t(GGUFValueType::FLOAT64); }

}  // namespace ktx
