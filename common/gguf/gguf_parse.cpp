// Parsing and validation of one GGUF file. The file is mmapped read-only and read through a
// cursor that checks every length against the bytes left before it is used, so a corrupt or
// truncated file yields an error naming the field and offset, never a crash or a huge
// allocation. Everything (header, KV section, tensor table, data bounds) is validated here
// before any caller sees the file.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "common/gguf/gguf_internal.h"

namespace ktx {

GGUFFile::Part::~Part() {
  if (base != nullptr) munmap(const_cast<uint8_t*>(base), size);
}

namespace {

Status map_file(const std::string& path, GGUFFile::Part* part) {
  part->path = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error("gguf: cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    ::close(fd);
    return S_ISREG(st.st_mode) ? Error("gguf: cannot stat '{}': {}", path, std::strerror(err))
                               : Error("gguf: '{}' is not a regular file", path);
  }
  part->size = uint64_t(st.st_size);
  if (part->size < kGGUFHeaderBytes) {
    ::close(fd);
    return Error("gguf: {}: file is {} bytes, smaller than the {}-byte GGUF header "
                 "(truncated, or not a GGUF file)", path, part->size, kGGUFHeaderBytes);
  }
  void* p = mmap(nullptr, part->size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) {
    return Error("gguf: cannot mmap '{}' ({} bytes): {}", path, part->size, std::strerror(err));
  }
  part->base = static_cast<const uint8_t*>(p);
  return Status::ok();
}

// Bounds-checked little-endian cursor over a mapping. `what` callbacks build the field
// description only when an error is reported, keeping the 100k-string tokenizer arrays cheap.
class Reader {
 public:
  explicit Reader(const GGUFFile::Part& part) : p_(part.base), size_(part.size), path_(part.path) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

  template <class What>
  Status need(uint64_t n, const What& what) const {
    if (n <= size_ - pos_) return Status::ok();
    return Error("gguf: {}: {} at offset {:#x} needs {} bytes but only {} remain (file is {} "
                 "bytes; truncated?)", path_, what(), pos_, n, size_ - pos_, size_);
  }
  template <class T, class What>
  Status read(T* out, const What& what) {
    KTX_RETURN_IF_ERROR(need(sizeof(T), what));
    std::memcpy(out, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }
  // A GGUF string: u64 length then bytes. Zero length is refused when min_len is 1.
  template <class What>
  Status read_string(std::string* out, uint64_t min_len, uint64_t max_len, const What& what) {
    uint64_t len = 0;
    KTX_RETURN_IF_ERROR(read(&len, [&] { return what() + " length"; }));
    if (len < min_len || len > max_len) {
      return Error("gguf: {}: {} length {} at offset {:#x}, expected {}..{}", path_, what(), len,
                   pos_ - 8, min_len, max_len);
    }
    if (len > size_ - pos_) {
      return Error("gguf: {}: {} at offset {:#x}: string of {} bytes runs past end of file "
                   "({} bytes)", path_, what(), pos_ - 8, len, size_);
    }
    out->assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return Status::ok();
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

template <class What>
Status read_scalar(Reader& r, GGUFValueType type, GGUFValue* v, const What& what) {
  switch (type) {
    case GGUFValueType::UINT8: { uint8_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->u = x; break; }
    case GGUFValueType::UINT16: { uint16_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->u = x; break; }
    case GGUFValueType::UINT32: { uint32_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->u = x; break; }
    case GGUFValueType::UINT64: { uint64_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->u = x; break; }
    case GGUFValueType::INT8: { int8_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->i = x; break; }
    case GGUFValueType::INT16: { int16_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->i = x; break; }
    case GGUFValueType::INT32: { int32_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->i = x; break; }
    case GGUFValueType::INT64: { int64_t x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->i = x; break; }
    case GGUFValueType::FLOAT32: { float x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->f = x; break; }
    case GGUFValueType::FLOAT64: { double x; KTX_RETURN_IF_ERROR(r.read(&x, what)); v->f = x; break; }
    case GGUFValueType::BOOL: {
      uint8_t x;
      KTX_RETURN_IF_ERROR(r.read(&x, what));
      if (x > 1) {
        return Error("gguf: {}: {} at offset {:#x}: bool byte is {}, expected 0 or 1", r.path(),
                     what(), r.pos() - 1, x);
      }
      v->u = x;
      break;
    }
    case GGUFValueType::STRING:
      return r.read_string(&v->s, 0, UINT64_MAX, what);
    case GGUFValueType::ARRAY:
      break;  // handled by parse_value
  }
  return Status::ok();
}

// Reads one value of `type` (already validated) for key `key`; arrays recurse up to a depth
// limit so a file of nested array headers cannot exhaust the stack.
Status parse_value(Reader& r, GGUFValueType type, GGUFValue* v, const std::string& key,
                   int depth) {
  v->type = type;
  if (type != GGUFValueType::ARRAY) {
    return read_scalar(r, type, v, [&] { return fmt::format("key '{}': value", key); });
  }
  if (depth >= kGGUFMaxArrayDepth) {
    return Error("gguf: {}: key '{}': arrays nested deeper than {} levels", r.path(), key,
                 kGGUFMaxArrayDepth);
  }
  uint32_t elem = 0;
  uint64_t n = 0;
  KTX_RETURN_IF_ERROR(r.read(&elem, [&] { return fmt::format("key '{}': array type", key); }));
  if (!gguf_valid_value_type(elem)) {
    return Error("gguf: {}: key '{}': array element type id {} at offset {:#x} is not a GGUF "
                 "value type (0..12)", r.path(), key, elem, r.pos() - 4);
  }
  KTX_RETURN_IF_ERROR(r.read(&n, [&] { return fmt::format("key '{}': array length", key); }));
  auto elem_type = GGUFValueType(elem);
  if (n > kGGUFMaxArrayElems) {
    return Error("gguf: {}: key '{}': array of {} elements exceeds this reader's limit of {}",
                 r.path(), key, n, kGGUFMaxArrayElems);
  }
  // Every element takes at least this many bytes, so n is bounded by what is left.
  uint64_t min_elem = gguf_scalar_size(elem_type);
  if (elem_type == GGUFValueType::STRING) min_elem = 8;
  if (elem_type == GGUFValueType::ARRAY) min_elem = 12;
  if (n > r.remaining() / min_elem) {
    return Error("gguf: {}: key '{}': array of {} {} elements at offset {:#x} needs at least {} "
                 "bytes but only {} remain", r.path(), key, n, gguf_value_type_name(elem_type),
                 r.pos() - 8, n * min_elem, r.remaining());
  }
  v->elem_type = elem_type;
  v->items.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    GGUFValue& item = v->items[i];
    if (elem_type == GGUFValueType::ARRAY) {
      KTX_RETURN_IF_ERROR(parse_value(r, elem_type, &item, key, depth + 1));
      continue;
    }
    item.type = elem_type;
    KTX_RETURN_IF_ERROR(read_scalar(r, elem_type, &item, [&] {
      return fmt::format("key '{}': element {} of {}", key, i, n);
    }));
  }
  return Status::ok();
}

Status check_version(const std::string& path, uint32_t version) {
  if (version == 2 || version == 3) return Status::ok();
  if (version == 1) {
    return Error("gguf: {}: version 1 is not supported (GGUF v1 used 32-bit counts; re-convert "
                 "the model with a current converter); expected version 2 or 3", path);
  }
  uint32_t swapped = __builtin_bswap32(version);
  if (swapped == 2 || swapped == 3) {
    return Error("gguf: {}: version field reads {:#x}: this is a big-endian GGUF; only "
                 "little-endian files are supported", path, version);
  }
  return Error("gguf: {}: version {} is not supported; expected version 2 or 3", path, version);
}

Status parse_header(Reader& r, GGUFFile::Part* part, uint64_t* n_tensors, uint64_t* n_kv) {
  uint32_t magic = 0;
  KTX_RETURN_IF_ERROR(r.read(&magic, [] { return std::string("magic"); }));
  if (magic != kGGUFMagic) {
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      char c = char((magic >> (8 * i)) & 0xff);
      shown += (c >= 0x20 && c < 0x7f) ? c : '.';
    }
    return Error("gguf: {}: bad magic '{}' ({:#010x}), expected 'GGUF': not a GGUF file",
                 part->path, shown, magic);
  }
  KTX_RETURN_IF_ERROR(r.read(&part->version, [] { return std::string("version"); }));
  KTX_RETURN_IF_ERROR(check_version(part->path, part->version));
  KTX_RETURN_IF_ERROR(r.read(n_tensors, [] { return std::string("tensor count"); }));
  KTX_RETURN_IF_ERROR(r.read(n_kv, [] { return std::string("kv count"); }));
  // Counts are checked against the smallest possible encodings before anything is reserved.
  uint64_t left = r.remaining();
  if (*n_kv > left / kGGUFMinKVBytes) {
    return Error("gguf: {}: kv count {} is implausible: {} key/value pairs need at least {} "
                 "bytes each, but only {} bytes follow the header", part->path, *n_kv, *n_kv,
                 kGGUFMinKVBytes, left);
  }
  if (*n_tensors > (left - *n_kv * kGGUFMinKVBytes) / kGGUFMinTensorBytes) {
    return Error("gguf: {}: tensor count {} is implausible: tensor entries need at least {} "
                 "bytes each, but only {} bytes follow the header", part->path, *n_tensors,
                 kGGUFMinTensorBytes, left);
  }
  return Status::ok();
}

Status parse_kvs(Reader& r, uint64_t n_kv, std::vector<GGUFKV>* kvs) {
  kvs->resize(n_kv);
  std::unordered_set<std::string_view> seen;
  seen.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    GGUFKV& kv = (*kvs)[k];
    uint64_t key_pos = r.pos();
    KTX_RETURN_IF_ERROR(r.read_string(&kv.key, 1, kGGUFMaxKeyLen, [&] {
      return fmt::format("key #{} of {}", k, n_kv);
    }));
    if (!seen.insert(kv.key).second) {
      return Error("gguf: {}: duplicate key '{}' (second occurrence at offset {:#x})", r.path(),
                   kv.key, key_pos);
    }
    uint32_t type = 0;
    KTX_RETURN_IF_ERROR(r.read(&type, [&] { return fmt::format("key '{}': type", kv.key); }));
    if (!gguf_valid_value_type(type)) {
      return Error("gguf: {}: key '{}': value type id {} at offset {:#x} is not a GGUF value "
                   "type (0..12)", r.path(), kv.key, type, r.pos() - 4);
    }
    KTX_RETURN_IF_ERROR(parse_value(r, GGUFValueType(type), &kv.value, kv.key, 0));
  }
  return Status::ok();
}

// Shape, type and size of one entry; offsets and bounds are checked once the data section's
// start is known.
Status check_tensor_shape(const std::string& path, GGUFTensorInfo* t) {
  int64_t be = 0, bb = 0;
  if (!gguf_type_layout(uint32_t(t->type), &be, &bb)) {
    return Error("gguf: {}: tensor '{}': {}", path, t->name,
                 gguf_unknown_type_text(uint32_t(t->type)));
  }
  int64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; ++d) {
    if (t->ne[d] < 1) {
      return Error("gguf: {}: tensor '{}': ne[{}] = {}, expected >= 1 (shape {})", path, t->name,
                   d, t->ne[d], t->shape_str());
    }
    if (__builtin_mul_overflow(n, t->ne[d], &n)) {
      return Error("gguf: {}: tensor '{}': element count of shape {} overflows 64 bits", path,
                   t->name, t->shape_str());
    }
  }
  if (t->ne[0] % be != 0) {
    return Error("gguf: {}: tensor '{}': row length ne[0] = {} is not a multiple of the {} "
                 "block size {}", path, t->name, t->ne[0], ggml_type_name(uint32_t(t->type)), be);
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t(n / be), uint64_t(bb), &bytes)) {
    return Error("gguf: {}: tensor '{}': byte size of shape {} overflows 64 bits", path, t->name,
                 t->shape_str());
  }
  t->n_bytes = bytes;
  return Status::ok();
}

Status parse_tensor_entry(Reader& r, uint64_t idx, uint64_t count, GGUFTensorInfo* t) {
  KTX_RETURN_IF_ERROR(r.read_string(&t->name, 1, kGGUFMaxNameLen, [&] {
    return fmt::format("tensor #{} of {}: name", idx, count);
  }));
  auto what = [&](const char* field) {
    return [t, field] { return fmt::format("tensor '{}': {}", t->name, field); };
  };
  KTX_RETURN_IF_ERROR(r.read(&t->n_dims, what("n_dims")));
  if (t->n_dims < 1 || t->n_dims > 4) {
    return Error("gguf: {}: tensor '{}': n_dims = {} at offset {:#x}, expected 1..4", r.path(),
                 t->name, t->n_dims, r.pos() - 4);
  }
  for (uint32_t d = 0; d < t->n_dims; ++d) KTX_RETURN_IF_ERROR(r.read(&t->ne[d], what("ne")));
  uint32_t type = 0;
  KTX_RETURN_IF_ERROR(r.read(&type, what("type")));
  t->type = GGMLType(type);
  KTX_RETURN_IF_ERROR(r.read(&t->offset, what("offset")));
  return check_tensor_shape(r.path(), t);
}

Status read_alignment(const GGUFFile::Part& part, const std::vector<GGUFKV>& kvs,
                      uint64_t* alignment) {
  *alignment = kGGUFDefaultAlignment;
  for (const GGUFKV& kv : kvs) {
    if (kv.key != "general.alignment") continue;
    if (kv.value.type != GGUFValueType::UINT32) {
      return Error("gguf: {}: key 'general.alignment' has type {}, expected UINT32", part.path,
                   gguf_value_type_name(kv.value.type));
    }
    if (kv.value.u == 0 || (kv.value.u & (kv.value.u - 1)) != 0) {
      return Error("gguf: {}: key 'general.alignment' = {}, expected a power of two", part.path,
                   kv.value.u);
    }
    *alignment = kv.value.u;
  }
  return Status::ok();
}

// Offsets aligned, data inside the file, names unique, no two tensors sharing bytes.
Status check_tensor_data(const GGUFFile::Part& part, std::vector<GGUFTensorInfo>* tensors) {
  std::unordered_set<std::string_view> names;
  names.reserve(tensors->size());
  const uint64_t data_bytes = part.size - part.data_offset;
  for (GGUFTensorInfo& t : *tensors) {
    if (!names.insert(t.name).second) {
      return Error("gguf: {}: duplicate tensor name '{}'", part.path, t.name);
    }
    if (t.offset % part.alignment != 0) {
      return Error("gguf: {}: tensor '{}': offset {:#x} is not a multiple of the alignment {}",
                   part.path, t.name, t.offset, part.alignment);
    }
    if (t.offset > data_bytes || t.n_bytes > data_bytes - t.offset) {
      return Error("gguf: {}: tensor '{}': offset {:#x} + {} bytes runs past end of file ({} "
                   "bytes; data section starts at {:#x})", part.path, t.name, t.offset,
                   t.n_bytes, part.size, part.data_offset);
    }
    t.data = part.base + part.data_offset + t.offset;
  }
  std::vector<const GGUFTensorInfo*> by_offset;
  by_offset.reserve(tensors->size());
  for (const GGUFTensorInfo& t : *tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GGUFTensorInfo* a = by_offset[i - 1];
    const GGUFTensorInfo* b = by_offset[i];
    if (a->offset + a->n_bytes > b->offset) {
      return Error("gguf: {}: tensors '{}' [{:#x}, {:#x}) and '{}' [{:#x}, {:#x}) overlap",
                   part.path, a->name, a->offset, a->offset + a->n_bytes, b->name, b->offset,
                   b->offset + b->n_bytes);
    }
  }
  return Status::ok();
}

}  // namespace

Expected<GGUFParsedPart> gguf_parse_file(const std::string& path, uint32_t split_index) {
  GGUFParsedPart out;
  out.part = std::make_unique<GGUFFile::Part>();
  GGUFFile::Part& part = *out.part;
  KTX_RETURN_IF_ERROR(map_file(path, &part));
  Reader r(part);
  uint64_t n_tensors = 0, n_kv = 0;
  KTX_RETURN_IF_ERROR(parse_header(r, &part, &n_tensors, &n_kv));
  KTX_RETURN_IF_ERROR(parse_kvs(r, n_kv, &out.kvs));
  KTX_RETURN_IF_ERROR(read_alignment(part, out.kvs, &part.alignment));
  out.tensors.resize(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    out.tensors[i].split = split_index;
    KTX_RETURN_IF_ERROR(parse_tensor_entry(r, i, n_tensors, &out.tensors[i]));
  }
  part.tables_end = r.pos();
  // The data section starts at the next multiple of the alignment. A file without tensors may
  // end before that padding.
  uint64_t pad = (part.alignment - part.tables_end % part.alignment) % part.alignment;
  part.data_offset = part.tables_end + pad;
  if (part.data_offset > part.size) {
    if (n_tensors > 0) {
      return Error("gguf: {}: data section would start at {:#x} (tensor table ends at {:#x}, "
                   "aligned to {}), past end of file ({} bytes)", path, part.data_offset,
                   part.tables_end, part.alignment, part.size);
    }
    part.data_offset = part.size;
  }
  KTX_RETURN_IF_ERROR(check_tensor_data(part, &out.tensors));
  return out;
}

}  // namespace ktx
