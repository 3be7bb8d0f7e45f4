// GGUFFile: opening a model (one file, or every part of a split model), combining the parts'
// tensor tables, the identity hash that plans record, and the typed metadata getters. Parsing
// and validation of each single file live in gguf_parse.cpp.
#include "common/gguf/gguf.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/gguf/gguf_internal.h"
#include "common/gguf/sha256.h"

namespace ktx {

namespace {

// "NAME-00002-of-00005.gguf" -> {prefix "NAME", index 2, count 5}.
struct SplitName {
  std::string prefix;
  int index = 0;
  int count = 0;
};

std::optional<SplitName> parse_split_name(const std::string& path) {
  static constexpr size_t kSuffixLen = 20;  // "-00001-of-00003.gguf"
  if (path.size() <= kSuffixLen) return std::nullopt;
  std::string_view tail(path.data() + path.size() - kSuffixLen, kSuffixLen);
  auto digits = [&](size_t at, int* out) {
    *out = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (tail[i] < '0' || tail[i] > '9') return false;
      *out = *out * 10 + (tail[i] - '0');
    }
    return true;
  };
  SplitName s;
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-" || tail.substr(15) != ".gguf" ||
      !digits(1, &s.index) || !digits(10, &s.count)) {
    return std::nullopt;
  }
  s.prefix = path.substr(0, path.size() - kSuffixLen);
  return s;
}

std::string split_part_path(const SplitName& s, int index) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", s.prefix, index, s.count);
}

const GGUFValue* find_in(const std::vector<GGUFKV>& kvs, std::string_view key) {
  for (const GGUFKV& kv : kvs) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

// split.no / split.count / split.tensors.count of one part, as integers.
Expected<int64_t> split_key(const std::vector<GGUFKV>& kvs, const std::string& path,
                            std::string_view key) {
  const GGUFValue* v = find_in(kvs, key);
  if (v == nullptr) return Error("gguf: {}: split model part lacks key '{}'", path, key);
  return gguf_value_to_int(*v, path, key);
}

Status check_split_keys(const std::vector<GGUFKV>& kvs, const std::string& path, int index,
                        int count) {
  KTX_ASSIGN_OR_RETURN(int64_t no, split_key(kvs, path, "split.no"));
  KTX_ASSIGN_OR_RETURN(int64_t n, split_key(kvs, path, "split.count"));
  if (n != count) {
    return Error("gguf: {}: split.count = {}, but the file name says {} parts", path, n, count);
  }
  if (no != index) {
    return Error("gguf: {}: split.no = {}, expected {} (0-based) for part {} of {}", path, no,
                 index, index + 1, count);
  }
  return Status::ok();
}

}  // namespace

// Builds GGUFFile objects (it is GGUFFile's friend, so it can fill the private members).
class GGUFParser {
 public:
  static Expected<std::unique_ptr<GGUFFile>> open(const std::string& path);

 private:
  static Status add_part(GGUFFile* f, GGUFParsedPart parsed);
  static Status open_split(GGUFFile* f, const SplitName& split);
  static void finish(GGUFFile* f);
};

Status GGUFParser::add_part(GGUFFile* f, GGUFParsedPart parsed) {
  if (f->parts_.empty()) {
    f->version_ = parsed.part->version;
    f->kvs_ = std::move(parsed.kvs);
  }
  f->tensors_.reserve(f->tensors_.size() + parsed.tensors.size());
  for (GGUFTensorInfo& t : parsed.tensors) {
    auto [it, inserted] = f->tensor_index_.emplace(t.name, f->tensors_.size());
    if (!inserted) {
      const GGUFTensorInfo& prev = f->tensors_[it->second];
      return Error("gguf: {}: tensor '{}' also appears in {}", parsed.part->path, t.name,
                   f->parts_[prev.split]->path);
    }
    f->tensors_.push_back(std::move(t));
  }
  f->parts_.push_back(std::move(parsed.part));
  return Status::ok();
}

Status GGUFParser::open_split(GGUFFile* f, const SplitName& split) {
  for (int i = 0; i < split.count; ++i) {
    std::string part_path = split_part_path(split, i + 1);
    if (::access(part_path.c_str(), F_OK) != 0) {
      return Error("gguf: split model {}: part {} of {} is missing: '{}' ({})", f->path_, i + 1,
                   split.count, part_path, std::strerror(errno));
    }
    KTX_ASSIGN_OR_RETURN(GGUFParsedPart parsed, gguf_parse_file(part_path, uint32_t(i)));
    KTX_RETURN_IF_ERROR(check_split_keys(parsed.kvs, part_path, i, split.count));
    KTX_RETURN_IF_ERROR(add_part(f, std::move(parsed)));
  }
  KTX_ASSIGN_OR_RETURN(int64_t n_total, split_key(f->kvs_, f->path_, "split.tensors.count"));
  if (n_total != int64_t(f->tensors_.size())) {
    return Error("gguf: {}: split.tensors.count = {}, but the {} parts hold {} tensors",
                 f->path_, n_total, split.count, f->tensors_.size());
  }
  return Status::ok();
}

void GGUFParser::finish(GGUFFile* f) {
  f->kv_index_.reserve(f->kvs_.size());
  for (size_t i = 0; i < f->kvs_.size(); ++i) f->kv_index_.emplace(f->kvs_[i].key, i);
  // Header, KV and tensor-table bytes of every part, then the total size: any change to
  // metadata, shapes, types, offsets or file length changes the identity.
  Sha256 h;
  for (const auto& part : f->parts_) h.update(part->base, part->data_offset);
  uint64_t total = f->total_size();
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = uint8_t(total >> (8 * i));
  h.update(le, sizeof(le));
  f->identity_hash_ = h.finish_hex();
}

Expected<std::unique_ptr<GGUFFile>> GGUFParser::open(const std::string& path) {
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->path_ = path;
  std::optional<SplitName> split = parse_split_name(path);
  if (split && (split->count < 1 || split->index < 1 || split->index > split->count)) {
    return Error("gguf: {}: split file name with part {} of {} is invalid", path, split->index,
                 split->count);
  }
  if (split && split->index != 1) {
    return Error("gguf: {} is part {} of {} of a split model; open the first part '{}'", path,
                 split->index, split->count, split_part_path(*split, 1));
  }
  if (split) {
    KTX_RETURN_IF_ERROR(open_split(f.get(), *split));
  } else {
    KTX_ASSIGN_OR_RETURN(GGUFParsedPart parsed, gguf_parse_file(path, 0));
    KTX_RETURN_IF_ERROR(add_part(f.get(), std::move(parsed)));
    const GGUFValue* count = find_in(f->kvs_, "split.count");
    if (count != nullptr && (!count->is_integer() || count->u > 1 || count->i > 1)) {
      return Error("gguf: {}: file has split.count = {} but its name is not of the form "
                   "NAME-00001-of-0000N.gguf, so the other parts cannot be found", path,
                   count->is_integer() ? std::max<int64_t>(count->i, int64_t(count->u)) : -1);
    }
  }
  finish(f.get());
  return f;
}

Expected<std::unique_ptr<GGUFFile>> GGUFFile::open(const std::string& path) {
  return GGUFParser::open(path);
}

GGUFFile::~GGUFFile() = default;

uint64_t GGUFFile::total_size() const {
  uint64_t total = 0;
  for (const auto& p : parts_) total += p->size;
  return total;
}

const GGUFValue* GGUFFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GGUFTensorInfo* GGUFFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string GGUFFile::describe() const {
  const GGUFValue* arch = find("general.architecture");
  std::string arch_text =
      (arch && arch->type == GGUFValueType::STRING) ? arch->s : std::string("(none)");
  std::string s = fmt::format("{}: GGUF v{}, {} tensors, {} KV, architecture {}", path_,
                              version_, tensors_.size(), kvs_.size(), arch_text);
  if (parts_.size() > 1) s += fmt::format(", {} parts", parts_.size());
  return s;
}

}  // namespace ktx
