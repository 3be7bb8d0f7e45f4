// GGUFWriter: collects metadata and tensors and writes a GGUF v3 file. Tensor data may be
// produced at write time (the model generator writes multi-GB files this way); it goes through
// one large buffer so the disk sees big sequential writes. The file is written under a
// temporary name and renamed at the end, so a failed write never leaves a truncated model at
// the requested path.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "common/gguf/gguf_internal.h"

namespace ktx {

struct GGUFWriter::PendingTensor {
  std::string name;
  GGMLType type = GGMLType::F32;
  std::vector<int64_t> ne;
  uint64_t n_bytes = 0;
  std::vector<uint8_t> data;  // in-memory tensors
  FillFn fill;                // lazy tensors
};

namespace {

constexpr uint64_t kWriteBufferBytes = 64ull << 20;

void put_bytes(std::vector<uint8_t>* out, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  out->insert(out->end(), b, b + n);
}
template <class T>
void put(std::vector<uint8_t>* out, T v) { put_bytes(out, &v, sizeof(v)); }
void put_string(std::vector<uint8_t>* out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

// Checks a value built by hand (set_value) before it is serialized: array items must all have
// the array's element type, nesting is bounded like the reader's.
Status check_value(const std::string& key, const GGUFValue& v, int depth) {
  if (!gguf_valid_value_type(uint32_t(v.type))) {
    return Error("gguf writer: key '{}': invalid value type id {}", key, uint32_t(v.type));
  }
  if (v.type != GGUFValueType::ARRAY) return Status::ok();
  if (depth >= kGGUFMaxArrayDepth) {
    return Error("gguf writer: key '{}': arrays nested deeper than {} levels", key,
                 kGGUFMaxArrayDepth);
  }
  for (size_t i = 0; i < v.items.size(); ++i) {
    if (v.items[i].type != v.elem_type) {
      return Error("gguf writer: key '{}': array element {} has type {}, expected {}", key, i,
                   gguf_value_type_name(v.items[i].type), gguf_value_type_name(v.elem_type));
    }
    KTX_RETURN_IF_ERROR(check_value(key, v.items[i], depth + 1));
  }
  return Status::ok();
}

void put_value(std::vector<uint8_t>* out, const GGUFValue& v) {
  switch (v.type) {
    case GGUFValueType::UINT8: put<uint8_t>(out, uint8_t(v.u)); break;
    case GGUFValueType::INT8: put<int8_t>(out, int8_t(v.i)); break;
    case GGUFValueType::UINT16: put<uint16_t>(out, uint16_t(v.u)); break;
    case GGUFValueType::INT16: put<int16_t>(out, int16_t(v.i)); break;
    case GGUFValueType::UINT32: put<uint32_t>(out, uint32_t(v.u)); break;
    case GGUFValueType::INT32: put<int32_t>(out, int32_t(v.i)); break;
    case GGUFValueType::UINT64: put<uint64_t>(out, v.u); break;
    case GGUFValueType::INT64: put<int64_t>(out, v.i); break;
    case GGUFValueType::FLOAT32: put<float>(out, float(v.f)); break;
    case GGUFValueType::FLOAT64: put<double>(out, v.f); break;
    case GGUFValueType::BOOL: put<uint8_t>(out, v.u ? 1 : 0); break;
    case GGUFValueType::STRING: put_string(out, v.s); break;
    case GGUFValueType::ARRAY:
      put<uint32_t>(out, uint32_t(v.elem_type));
      put<uint64_t>(out, v.items.size());
      for (const GGUFValue& item : v.items) put_value(out, item);
      break;
  }
}

Expected<uint64_t> writer_alignment(const std::vector<GGUFKV>& kvs) {
  for (const GGUFKV& kv : kvs) {
    if (kv.key != "general.alignment") continue;
    if (kv.value.type != GGUFValueType::UINT32 || kv.value.u == 0 ||
        (kv.value.u & (kv.value.u - 1)) != 0) {
      return Error("gguf writer: general.alignment must be a UINT32 power of two, found {} {}",
                   gguf_value_type_name(kv.value.type), kv.value.u);
    }
    return kv.value.u;
  }
  return kGGUFDefaultAlignment;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// A file descriptor with buffered, error-checked writes; errors name the user's path.
class OutFile {
 public:
  OutFile(std::string path, std::string tmp) : path_(std::move(path)), tmp_(std::move(tmp)) {}
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  Status open() {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return Error("gguf writer: cannot create '{}' (temporary '{}'): {}", path_, tmp_,
                   std::strerror(errno));
    }
    return Status::ok();
  }
  Status write_all(const uint8_t* p, uint64_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<uint64_t>(n, 1ull << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        return Error("gguf writer: writing '{}' failed after {} bytes: {}", path_, written_,
                     w < 0 ? std::strerror(errno) : "no progress");
      }
      p += w;
      n -= uint64_t(w);
      written_ += uint64_t(w);
    }
    return Status::ok();
  }
  Status commit() {
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      return Error("gguf writer: closing '{}' failed: {}", path_, std::strerror(errno));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      return Error("gguf writer: renaming '{}' to '{}' failed: {}", tmp_, path_,
                   std::strerror(errno));
    }
    committed_ = true;
    return Status::ok();
  }
  uint64_t written() const { return written_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

}  // namespace

// ---- metadata setters: a key set twice keeps its first position and the latest value ----

void GGUFWriter::set_value(const std::string& k, GGUFValue v) {
  for (GGUFKV& kv : kvs_) {
    if (kv.key == k) {
      kv.value = std::move(v);
      return;
    }
  }
  kvs_.push_back(GGUFKV{k, std::move(v)});
}

namespace {
GGUFValue make_u(GGUFValueType t, uint64_t u) { GGUFValue v; v.type = t; v.u = u; return v; }
GGUFValue make_i(GGUFValueType t, int64_t i) { GGUFValue v; v.type = t; v.i = i; return v; }
GGUFValue make_f(GGUFValueType t, double f) { GGUFValue v; v.type = t; v.f = f; return v; }
GGUFValue make_s(const std::string& s) {
  GGUFValue v;
  v.type = GGUFValueType::STRING;
  v.s = s;
  return v;
}
template <class T, class Make>
GGUFValue make_array(GGUFValueType elem, const std::vector<T>& xs, Make make) {
  GGUFValue v;
  v.type = GGUFValueType::ARRAY;
  v.elem_type = elem;
  v.items.reserve(xs.size());
  for (const T& x : xs) v.items.push_back(make(x));
  return v;
}
}  // namespace

void GGUFWriter::set_u8(const std::string& k, uint8_t v) { set_value(k, make_u(GGUFValueType::UINT8, v)); }
void GGUFWriter::set_i8(const std::string& k, int8_t v) { set_value(k, make_i(GGUFValueType::INT8, v)); }
void GGUFWriter::set_u16(const std::string& k, uint16_t v) { set_value(k, make_u(GGUFValueType::UINT16, v)); }
void GGUFWriter::set_i16(const std::string& k, int16_t v) { set_value(k, make_i(GGUFValueType::INT16, v)); }
void GGUFWriter::set_u32(const std::string& k, uint32_t v) { set_value(k, make_u(GGUFValueType::UINT32, v)); }
void GGUFWriter::set_i32(const std::string& k, int32_t v) { set_value(k, make_i(GGUFValueType::INT32, v)); }
void GGUFWriter::set_u64(const std::string& k, uint64_t v) { set_value(k, make_u(GGUFValueType::UINT64, v)); }
void GGUFWriter::set_i64(const std::string& k, int64_t v) { set_value(k, make_i(GGUFValueType::INT64, v)); }
void GGUFWriter::set_f32(const std::string& k, float v) { set_value(k, make_f(GGUFValueType::FLOAT32, v)); }
void GGUFWriter::set_f64(const std::string& k, double v) { set_value(k, make_f(GGUFValueType::FLOAT64, v)); }
void GGUFWriter::set_bool(const std::string& k, bool v) { set_value(k, make_u(GGUFValueType::BOOL, v)); }
void GGUFWriter::set_str(const std::string& k, const std::string& v) { set_value(k, make_s(v)); }

void GGUFWriter::set_str_array(const std::string& k, const std::vector<std::string>& v) {
  set_value(k, make_array(GGUFValueType::STRING, v, make_s));
}
void GGUFWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  set_value(k, make_array(GGUFValueType::INT32, v,
                          [](int32_t x) { return make_i(GGUFValueType::INT32, x); }));
}
void GGUFWriter::set_f32_array(const std::string& k, const std::vector<float>& v) {
  set_value(k, make_array(GGUFValueType::FLOAT32, v,
                          [](float x) { return make_f(GGUFValueType::FLOAT32, x); }));
}

// ---- tensors ----

namespace {

// Validates name and shape and returns the tensor's byte size.
Expected<uint64_t> check_new_tensor(const std::string& name, GGMLType type,
                                    const std::vector<int64_t>& ne,
                                    const std::unordered_set<std::string>& names) {
  if (name.empty() || name.size() > kGGUFMaxNameLen) {
    return Error("gguf writer: tensor name '{}' has length {}, expected 1..{}", name,
                 name.size(), kGGUFMaxNameLen);
  }
  if (names.count(name) != 0) return Error("gguf writer: duplicate tensor name '{}'", name);
  if (ne.empty() || ne.size() > 4) {
    return Error("gguf writer: tensor '{}': {} dimensions, expected 1..4", name, ne.size());
  }
  int64_t be = 0, bb = 0;
  if (!gguf_type_layout(uint32_t(type), &be, &bb)) {
    return Error("gguf writer: tensor '{}': {}", name, gguf_unknown_type_text(uint32_t(type)));
  }
  int64_t n = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 1) {
      return Error("gguf writer: tensor '{}': ne[{}] = {}, expected >= 1", name, d, ne[d]);
    }
    if (__builtin_mul_overflow(n, ne[d], &n)) {
      return Error("gguf writer: tensor '{}': element count overflows 64 bits", name);
    }
  }
  if (ne[0] % be != 0) {
    return Error("gguf writer: tensor '{}': row length {} is not a multiple of the {} block "
                 "size {}", name, ne[0], ggml_type_name(uint32_t(type)), be);
  }
  return uint64_t(n / be) * uint64_t(bb);
}

}  // namespace

Status GGUFWriter::add_tensor(const std::string& name, GGMLType type,
                              const std::vector<int64_t>& ne, const void* data, size_t n_bytes) {
  KTX_ASSIGN_OR_RETURN(uint64_t expected, check_new_tensor(name, type, ne, tensor_names_));
  if (n_bytes != expected) {
    return Error("gguf writer: tensor '{}': {} bytes given, but {} {} needs {}", name, n_bytes,
                 ggml_type_name(uint32_t(type)), fmt::join(ne, "x"), expected);
  }
  auto t = std::make_shared<PendingTensor>();
  t->name = name;
  t->type = type;
  t->ne = ne;
  t->n_bytes = expected;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  t->data.assign(p, p + n_bytes);
  tensor_names_.insert(name);
  tensors_.push_back(std::move(t));
  return Status::ok();
}

Status GGUFWriter::add_tensor_lazy(const std::string& name, GGMLType type,
                                   const std::vector<int64_t>& ne, FillFn fill) {
  KTX_ASSIGN_OR_RETURN(uint64_t expected, check_new_tensor(name, type, ne, tensor_names_));
  if (!fill) return Error("gguf writer: tensor '{}': empty fill function", name);
  auto t = std::make_shared<PendingTensor>();
  t->name = name;
  t->type = type;
  t->ne = ne;
  t->n_bytes = expected;
  t->fill = std::move(fill);
  tensor_names_.insert(name);
  tensors_.push_back(std::move(t));
  return Status::ok();
}

// ---- writing ----

namespace {

// What the header needs to know about a tensor.
struct TensorLayout {
  const std::string* name;
  GGMLType type;
  const std::vector<int64_t>* ne;
  uint64_t n_bytes;
  uint64_t offset;  // relative to the data section, aligned
};

std::vector<uint8_t> build_header(const std::vector<GGUFKV>& kvs,
                                  const std::vector<TensorLayout>& tensors, uint64_t alignment) {
  std::vector<uint8_t> out;
  put<uint32_t>(&out, kGGUFMagic);
  put<uint32_t>(&out, 3);
  put<uint64_t>(&out, tensors.size());
  put<uint64_t>(&out, kvs.size());
  for (const GGUFKV& kv : kvs) {
    put_string(&out, kv.key);
    put<uint32_t>(&out, uint32_t(kv.value.type));
    put_value(&out, kv.value);
  }
  for (const TensorLayout& t : tensors) {
    put_string(&out, *t.name);
    put<uint32_t>(&out, uint32_t(t.ne->size()));
    for (int64_t n : *t.ne) put<int64_t>(&out, n);
    put<uint32_t>(&out, uint32_t(t.type));
    put<uint64_t>(&out, t.offset);
  }
  out.resize(align_up(out.size(), alignment), 0);
  return out;
}

// Streams the data section through one large buffer. Tensors bigger than the buffer are filled
// into their own scratch area and written directly.
class ChunkWriter {
 public:
  ChunkWriter(OutFile* out, uint64_t capacity, uint64_t total,
              const std::function<void(uint64_t, uint64_t)>& progress)
      : out_(out), buf_(new uint8_t[capacity]), cap_(capacity), total_(total),
        progress_(progress) {}

  Status append(const uint8_t* p, uint64_t n) {
    while (n > 0) {
      if (len_ == cap_) KTX_RETURN_IF_ERROR(flush());
      uint64_t take = std::min(n, cap_ - len_);
      std::memcpy(buf_.get() + len_, p, take);
      len_ += take;
      p += take;
      n -= take;
    }
    return Status::ok();
  }
  Status zeros(uint64_t n) {
    static const uint8_t kZero[256] = {};
    for (; n > 0; n -= std::min<uint64_t>(n, sizeof(kZero))) {
      KTX_RETURN_IF_ERROR(append(kZero, std::min<uint64_t>(n, sizeof(kZero))));
    }
    return Status::ok();
  }
  Status fill(uint64_t n, const GGUFWriter::FillFn& fn) {
    if (n > cap_ - len_) KTX_RETURN_IF_ERROR(flush());
    if (n <= cap_) {
      fn(buf_.get() + len_, n);
      len_ += n;
      return Status::ok();
    }
    if (scratch_.size() < n) scratch_.resize(n);
    fn(scratch_.data(), n);
    KTX_RETURN_IF_ERROR(out_->write_all(scratch_.data(), n));
    report();
    return Status::ok();
  }
  Status flush() {
    KTX_RETURN_IF_ERROR(out_->write_all(buf_.get(), len_));
    len_ = 0;
    report();
    return Status::ok();
  }

 private:
  void report() {
    if (progress_) progress_(out_->written(), total_);
  }
  OutFile* out_;
  std::unique_ptr<uint8_t[]> buf_;
  uint64_t cap_;
  uint64_t len_ = 0;
  uint64_t total_;
  const std::function<void(uint64_t, uint64_t)>& progress_;
  std::vector<uint8_t> scratch_;
};

}  // namespace

Status GGUFWriter::write(const std::string& path,
                         const std::function<void(uint64_t, uint64_t)>& progress) const {
  KTX_ASSIGN_OR_RETURN(uint64_t alignment, writer_alignment(kvs_));
  for (const GGUFKV& kv : kvs_) {
    if (kv.key.empty() || kv.key.size() > kGGUFMaxKeyLen) {
      return Error("gguf writer: key '{}' has length {}, expected 1..{}", kv.key, kv.key.size(),
                   kGGUFMaxKeyLen);
    }
    KTX_RETURN_IF_ERROR(check_value(kv.key, kv.value, 0));
  }
  // 1. Layout: each tensor at the next aligned offset of the data section.
  std::vector<TensorLayout> layout;
  layout.reserve(tensors_.size());
  uint64_t data_size = 0;
  for (const auto& t : tensors_) {
    layout.push_back({&t->name, t->type, &t->ne, t->n_bytes, data_size});
    data_size = align_up(data_size + t->n_bytes, alignment);
  }
  std::vector<uint8_t> header = build_header(kvs_, layout, alignment);
  const uint64_t total = header.size() + data_size;

  // 2. Header, then every tensor followed by its padding.
  OutFile out(path, path + ".tmp");
  KTX_RETURN_IF_ERROR(out.open());
  KTX_RETURN_IF_ERROR(out.write_all(header.data(), header.size()));
  ChunkWriter chunks(&out, std::clamp<uint64_t>(data_size, 1, kWriteBufferBytes), total,
                     progress);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const PendingTensor& t = *tensors_[i];
    if (t.fill) {
      KTX_RETURN_IF_ERROR(chunks.fill(t.n_bytes, t.fill));
    } else {
      KTX_RETURN_IF_ERROR(chunks.append(t.data.data(), t.n_bytes));
    }
    uint64_t end = layout[i].offset + t.n_bytes;
    KTX_RETURN_IF_ERROR(chunks.zeros(align_up(end, alignment) - end));
  }
  KTX_RETURN_IF_ERROR(chunks.flush());
  return out.commit();
}

}  // namespace ktx
