// GGUF reader and writer. The reader mmaps a file (or every part of a split model), validates
// the whole header, KV section and tensor table before anything is used, and exposes typed
// accessors. Every tool that opens a GGUF goes through GGUFFile::open.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/quant/quant.h"
#include "common/util/status.h"

namespace ktx {

enum class GGUFValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_value_type_name(GGUFValueType t);

// One metadata value. Scalars live in the field matching their type class; arrays keep their
// element type and their elements in `items` (arrays of arrays are allowed by the format).
struct GGUFValue {
  GGUFValueType type = GGUFValueType::UINT8;
  uint64_t u = 0;       // UINT8/16/32/64, BOOL
  int64_t i = 0;        // INT8/16/32/64
  double f = 0.0;       // FLOAT32/64
  std::string s;        // STRING
  GGUFValueType elem_type = GGUFValueType::UINT8;  // ARRAY only
  std::vector<GGUFValue> items;                    // ARRAY only

  bool is_integer() const;  // any of the 8 integer types (not BOOL)
  bool is_float() const;
};

struct GGUFKV {
  std::string key;
  GGUFValue value;
};

struct GGUFTensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the row length (innermost)
  GGMLType type = GGMLType::F32;
  uint64_t offset = 0;           // relative to its file's data section
  uint64_t n_bytes = 0;          // computed from type and shape
  uint32_t split = 0;            // which file of a split model holds it
  const uint8_t* data = nullptr; // points into the mapping, valid while the GGUFFile lives

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  std::string shape_str() const;  // "[256, 400]"
};

class GGUFFile {
 public:
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  // Open and fully validate. A path of the form NAME-00001-of-0000N.gguf opens all N parts
  // (each validated, split.* keys checked, tensor names unique across parts). Errors name
  // the file, the field, what was expected and what was found.
  static Expected<std::unique_ptr<GGUFFile>> open(const std::string& path);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t total_size() const;          // sum of all parts' file sizes
  size_t n_splits() const { return parts_.size(); }

  // Identity used by plans: hex SHA-256 (or equivalent strong hash) over every part's header,
  // KV section and tensor table bytes (not the tensor data), plus the total size.
  std::string identity_hash() const { return identity_hash_; }

  // Metadata (from the first part; split.* keys of later parts are only validated).
  const std::vector<GGUFKV>& kvs() const { return kvs_; }
  const GGUFValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed getters. Missing key or incompatible type -> error naming the key and both types.
  Expected<std::string> get_string(std::string_view key) const;
  Expected<int64_t> get_int(std::string_view key) const;   // any integer type
  Expected<double> get_float(std::string_view key) const;  // float or integer types
  Expected<bool> get_bool(std::string_view key) const;     // BOOL (or integer 0/1)
  Expected<std::vector<std::string>> get_string_array(std::string_view key) const;
  Expected<std::vector<int64_t>> get_int_array(std::string_view key) const;
  Expected<std::vector<double>> get_float_array(std::string_view key) const;
  // With a default when the key is absent (still an error when present with a bad type).
  Expected<int64_t> get_int_or(std::string_view key, int64_t dflt) const;
  Expected<double> get_float_or(std::string_view key, double dflt) const;
  Expected<bool> get_bool_or(std::string_view key, bool dflt) const;
  Expected<std::string> get_string_or(std::string_view key, std::string dflt) const;

  // Tensors of all parts, in file order.
  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(std::string_view name) const;

  // One line for logs and tools: "PATH: GGUF v3, 52 tensors, 40 KV, architecture deepseek2"
  // (split models add ", 3 parts").
  std::string describe() const;

  // One mapped file of the model; defined in gguf_internal.h (opaque to users).
  struct Part;

 private:
  // Hash and equality that accept std::string_view lookups without building a std::string.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using NameIndex = std::unordered_map<std::string, size_t, NameHash, std::equal_to<>>;

  GGUFFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  std::vector<std::unique_ptr<Part>> parts_;
  std::vector<GGUFKV> kvs_;
  std::vector<GGUFTensorInfo> tensors_;
  std::string identity_hash_;
  NameIndex kv_index_;      // key -> index in kvs_
  NameIndex tensor_index_;  // name -> index in tensors_
  friend class GGUFParser;
};

// Writer: collects KVs and tensors, then writes a valid v3 file (alignment from
// general.alignment if set, else 32). Tensor data may be given in memory or produced by a
// callback at write time (for multi-GB generated models written at disk speed).
class GGUFWriter {
 public:
  void set_u8(const std::string& k, uint8_t v);
  void set_i8(const std::string& k, int8_t v);
  void set_u16(const std::string& k, uint16_t v);
  void set_i16(const std::string& k, int16_t v);
  void set_u32(const std::string& k, uint32_t v);
  void set_i32(const std::string& k, int32_t v);
  void set_u64(const std::string& k, uint64_t v);
  void set_i64(const std::string& k, int64_t v);
  void set_f32(const std::string& k, float v);
  void set_f64(const std::string& k, double v);
  void set_bool(const std::string& k, bool v);
  void set_str(const std::string& k, const std::string& v);
  void set_value(const std::string& k, GGUFValue v);  // any value, arrays included
  void set_str_array(const std::string& k, const std::vector<std::string>& v);
  void set_i32_array(const std::string& k, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& k, const std::vector<float>& v);

  // Tensor with its bytes in memory (copied). ne has 1..4 entries.
  Status add_tensor(const std::string& name, GGMLType type, const std::vector<int64_t>& ne,
                    const void* data, size_t n_bytes);
  // Tensor whose bytes are produced at write time: fill(dst, n_bytes) must write exactly
  // n_bytes. Used by the model generator.
  using FillFn = std::function<void(uint8_t* dst, size_t n_bytes)>;
  Status add_tensor_lazy(const std::string& name, GGMLType type, const std::vector<int64_t>& ne,
                         FillFn fill);

  // Write the file. progress(bytes_done, bytes_total) is called as data is written.
  Status write(const std::string& path,
               const std::function<void(uint64_t, uint64_t)>& progress = {}) const;

 private:
  struct PendingTensor;
  std::vector<GGUFKV> kvs_;
  std::vector<std::shared_ptr<PendingTensor>> tensors_;
  std::unordered_set<std::string> tensor_names_;  // for duplicate checks
};

}  // namespace ktx
