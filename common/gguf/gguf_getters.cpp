// Typed metadata getters of GGUFFile. Models written by different converters store the same
// key with different integer widths (u32 in one, i32 or u64 in another), so integer getters
// accept every integer type and float getters accept integers too; anything else is an error
// naming the key, the type found and the type expected.
#include "common/gguf/gguf_internal.h"

namespace ktx {

std::string gguf_type_text(const GGUFValue& v) {
  if (v.type != GGUFValueType::ARRAY) return gguf_value_type_name(v.type);
  return fmt::format("ARRAY of {}", gguf_value_type_name(v.elem_type));
}

Expected<int64_t> gguf_value_to_int(const GGUFValue& v, const std::string& path,
                                    std::string_view key) {
  switch (v.type) {
    case GGUFValueType::INT8: case GGUFValueType::INT16: case GGUFValueType::INT32:
    case GGUFValueType::INT64:
      return v.i;
    case GGUFValueType::UINT8: case GGUFValueType::UINT16: case GGUFValueType::UINT32:
    case GGUFValueType::UINT64:
      if (v.u > uint64_t(INT64_MAX)) {
        return Error("gguf: {}: key '{}' = {} does not fit in int64", path, key, v.u);
      }
      return int64_t(v.u);
    default:
      return Error("gguf: {}: key '{}' has type {}, expected an integer type", path, key,
                   gguf_type_text(v));
  }
}

namespace {

Expected<double> value_to_float(const GGUFValue& v, const std::string& path,
                                std::string_view key) {
  if (v.is_float()) return v.f;
  if (v.is_integer()) {
    KTX_ASSIGN_OR_RETURN(int64_t i, gguf_value_to_int(v, path, key));
    return double(i);
  }
  return Error("gguf: {}: key '{}' has type {}, expected a float or integer type", path, key,
               gguf_type_text(v));
}

}  // namespace

// Shared by every getter: the value, or "key not found" naming the file.
#define KTX_GGUF_LOOKUP(var, key)                                              \
  const GGUFValue* var = find(key);                                            \
  if (var == nullptr) return Error("gguf: {}: key '{}' not found", path_, key)

Expected<std::string> GGUFFile::get_string(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  if (v->type != GGUFValueType::STRING) {
    return Error("gguf: {}: key '{}' has type {}, expected STRING", path_, key, gguf_type_text(*v));
  }
  return v->s;
}

Expected<int64_t> GGUFFile::get_int(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  return gguf_value_to_int(*v, path_, key);
}

Expected<double> GGUFFile::get_float(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  return value_to_float(*v, path_, key);
}

Expected<bool> GGUFFile::get_bool(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  if (v->type == GGUFValueType::BOOL) return v->u != 0;
  if (v->is_integer()) {
    KTX_ASSIGN_OR_RETURN(int64_t i, gguf_value_to_int(*v, path_, key));
    if (i == 0 || i == 1) return i == 1;
    return Error("gguf: {}: key '{}' = {} ({}), expected BOOL or an integer 0/1", path_, key, i,
                 gguf_type_text(*v));
  }
  return Error("gguf: {}: key '{}' has type {}, expected BOOL", path_, key, gguf_type_text(*v));
}

Expected<std::vector<std::string>> GGUFFile::get_string_array(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  if (v->type != GGUFValueType::ARRAY || v->elem_type != GGUFValueType::STRING) {
    return Error("gguf: {}: key '{}' has type {}, expected ARRAY of STRING", path_, key,
                 gguf_type_text(*v));
  }
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const GGUFValue& item : v->items) out.push_back(item.s);
  return out;
}

Expected<std::vector<int64_t>> GGUFFile::get_int_array(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  GGUFValue probe;
  probe.type = v->elem_type;
  if (v->type != GGUFValueType::ARRAY || !probe.is_integer()) {
    return Error("gguf: {}: key '{}' has type {}, expected an ARRAY of an integer type", path_,
                 key, gguf_type_text(*v));
  }
  std::vector<int64_t> out;
  out.reserve(v->items.size());
  for (const GGUFValue& item : v->items) {
    KTX_ASSIGN_OR_RETURN(int64_t i, gguf_value_to_int(item, path_, key));
    out.push_back(i);
  }
  return out;
}

Expected<std::vector<double>> GGUFFile::get_float_array(std::string_view key) const {
  KTX_GGUF_LOOKUP(v, key);
  GGUFValue probe;
  probe.type = v->elem_type;
  if (v->type != GGUFValueType::ARRAY || !(probe.is_integer() || probe.is_float())) {
    return Error("gguf: {}: key '{}' has type {}, expected an ARRAY of a float or integer type",
                 path_, key, gguf_type_text(*v));
  }
  std::vector<double> out;
  out.reserve(v->items.size());
  for (const GGUFValue& item : v->items) {
    KTX_ASSIGN_OR_RETURN(double f, value_to_float(item, path_, key));
    out.push_back(f);
  }
  return out;
}

#undef KTX_GGUF_LOOKUP

Expected<int64_t> GGUFFile::get_int_or(std::string_view key, int64_t dflt) const {
  return has(key) ? get_int(key) : Expected<int64_t>(dflt);
}

Expected<double> GGUFFile::get_float_or(std::string_view key, double dflt) const {
  return has(key) ? get_float(key) : Expected<double>(dflt);
}

Expected<bool> GGUFFile::get_bool_or(std::string_view key, bool dflt) const {
  return has(key) ? get_bool(key) : Expected<bool>(dflt);
}

Expected<std::string> GGUFFile::get_string_or(std::string_view key, std::string dflt) const {
  return has(key) ? get_string(key) : Expected<std::string>(std::move(dflt));
}

}  // namespace ktx
