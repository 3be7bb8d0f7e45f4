// Plan container: writes and validates the binary layout of docs/plan-format.md. The reader
// checks, in this order, everything a damaged or foreign file can get wrong (magic, version,
// table bounds, header checksum, each section's bounds and checksum, unknown and missing
// sections, payloads) and names what it found, so `ktx-run` fails with one clear message.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/plan/plan_internal.h"

namespace ktx {
namespace {

using namespace plan_detail;
using nlohmann::json;

void put_u32(std::string& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | uint8_t(b[at + size_t(i)]);
  return v;
}
uint64_t get_u64(const std::string& b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(b[at + size_t(i)]);
  return v;
}

struct Section {
  std::string name;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
};

const char* const kKnownSections[] = {kSectionGguf, kSectionHw, kSectionModel, kSectionProgram};

// Printable form of the first bytes of a file that is not a plan: "GGUF\x03\x00\x00\x00".
std::string escape_bytes(const std::string& b, size_t n) {
  std::string out;
  for (size_t i = 0; i < std::min(n, b.size()); ++i) {
    const unsigned char c = uint8_t(b[i]);
    out += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? std::string(1, char(c))
                                                            : fmt::format("\\x{:02x}", c);
  }
  return out;
}

Expected<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error("cannot open plan: {}", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Error("read error: {}", std::strerror(errno));
  return bytes;
}

// Magic, version, section count, table bounds and header checksum.
Expected<std::vector<Section>> parse_header(const std::string& b) {
  const std::string magic(kMagic, sizeof(kMagic));
  if (b.compare(0, std::min(b.size(), magic.size()), magic, 0,
                std::min(b.size(), magic.size())) != 0) {
    return Error("not a KTX plan (magic \"{}\", expected \"KTXPLAN\\x00\")", escape_bytes(b, 8));
  }
  if (b.size() < kPrefixBytes) {
    return Error("truncated: {} bytes, the plan header needs at least {}", b.size(), kPrefixBytes);
  }
  const uint32_t version = get_u32(b, 8);
  if (version != kPlanVersion) {
    return Error("plan format version {}; this ktx-run reads version {} (re-run ktc plan with a "
                 "matching ktc)", version, kPlanVersion);
  }
  const uint32_t n = get_u32(b, 12);
  if (n > kMaxSections) return Error("section count {} is implausible (at most {})", n, kMaxSections);
  const size_t table_end = kPrefixBytes + size_t(n) * kEntryBytes;
  const size_t header_end = table_end + kHeaderChecksumBytes;
  if (b.size() < header_end) {
    return Error("truncated: {} bytes, the header with {} sections needs {}", b.size(), n,
                 header_end);
  }
  const uint64_t stored = get_u64(b, table_end);
  const uint64_t computed = fnv1a64(b.data(), table_end);
  if (stored != computed) {
    return Error("header checksum mismatch (stored {:016x}, computed {:016x}): file is corrupt",
                 stored, computed);
  }
  std::vector<Section> sections(n);
  for (uint32_t i = 0; i < n; ++i) {
    const size_t at = kPrefixBytes + size_t(i) * kEntryBytes;
    const std::string raw = b.substr(at, kSectionNameBytes);
    Section& s = sections[i];
    s.name = raw.substr(0, raw.find('\0'));
    s.flags = get_u32(b, at + 16);
    s.offset = get_u64(b, at + 24);
    s.size = get_u64(b, at + 32);
    s.checksum = get_u64(b, at + 40);
    if (s.name.empty() || raw.find('\0') == std::string::npos) {
      return Error("section table entry {}: name \"{}\" is empty or not NUL-terminated", i,
                   escape_bytes(raw, raw.size()));
    }
    if (s.flags & ~kFlagRequired) {
      return Error("section '{}': unknown flags 0x{:x}", s.name, s.flags & ~kFlagRequired);
    }
  }
  return sections;
}

// Bounds (inside the file, after the header, no trailing bytes) and payload checksums.
Status check_sections(const std::string& b, const std::vector<Section>& sections) {
  const uint64_t header_end = kPrefixBytes + sections.size() * kEntryBytes + kHeaderChecksumBytes;
  uint64_t end_max = header_end;
  for (const Section& s : sections) {
    if (s.offset < header_end) {
      return Error("section '{}': offset {} lies inside the header ({} bytes)", s.name, s.offset,
                   header_end);
    }
    if (s.offset > b.size() || s.size > b.size() - s.offset) {
      return Error("section '{}': offset {} + size {} runs past end of file ({} bytes); "
                   "truncated?", s.name, s.offset, s.size, b.size());
    }
    const uint64_t computed = fnv1a64(b.data() + s.offset, s.size);
    if (computed != s.checksum) {
      return Error("section '{}': checksum mismatch (stored {:016x}, computed {:016x}): file is "
                   "corrupt", s.name, s.checksum, computed);
    }
    end_max = std::max(end_max, s.offset + s.size);
  }
  if (end_max != b.size()) {
    return Error("{} unexpected bytes after the last section (file {} bytes, sections end at {})",
                 b.size() - end_max, b.size(), end_max);
  }
  return Status::ok();
}

Status decode_section(const std::string& name, const std::string& payload, Plan* plan) {
  if (name == kSectionGpuCode) {
    if (payload.empty()) return Error("empty GPU code");
    plan->gpu_code.assign(payload.begin(), payload.end());
    return Status::ok();
  }
  const json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error("payload is not valid JSON");
  // The decoders check types before every access; the catch is a backstop so that no payload
  // can make the reader throw.
  try {
    if (name == kSectionGguf) return decode_gguf(j, &plan->gguf);
    if (name == kSectionHw) return decode_hw(j, &plan->hw);
    if (name == kSectionProgram) return decode_program(j, plan);
    auto model = ModelConfig::from_json(j);
    if (!model) return model.status();
    plan->model = std::move(model).value();
    return Status::ok();
  } catch (const json::exception& e) {
    return Error("malformed payload: {}", e.what());
  }
}

Expected<Plan> parse_plan(const std::string& b) {
  KTX_ASSIGN_OR_RETURN(std::vector<Section> sections, parse_header(b));
  KTX_RETURN_IF_ERROR(check_sections(b, sections));
  Plan plan;
  std::vector<std::string> seen;
  for (const Section& s : sections) {
    const bool known = s.name == kSectionGpuCode ||
                       std::find(std::begin(kKnownSections), std::end(kKnownSections), s.name) !=
                           std::end(kKnownSections);
    if (!known) {
      if (s.flags & kFlagRequired) {
        return Error("unknown required section '{}' (this ktx-run knows gguf, hw, model, "
                     "program, gpu_code); the plan needs a newer ktx-run", s.name);
      }
      continue;  // optional: written by a newer ktc, safe to ignore
    }
    if (std::find(seen.begin(), seen.end(), s.name) != seen.end()) {
      return Error("section '{}' appears twice", s.name);
    }
    seen.push_back(s.name);
    KTX_RETURN_IF_ERROR(decode_section(s.name, b.substr(s.offset, s.size), &plan)
                            .with_context("section '" + s.name + "'"));
  }
  for (const char* name : kKnownSections) {
    if (std::find(seen.begin(), seen.end(), name) == seen.end()) {
      return Error("missing section '{}'", name);
    }
  }
  return plan;
}

}  // namespace

namespace plan_detail {
uint64_t fnv1a64(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
}  // namespace plan_detail

Status write_plan(const Plan& plan, const std::string& path) {
  std::vector<std::pair<const char*, std::string>> payloads = {
      {kSectionGguf, encode_gguf(plan.gguf).dump(1)},
      {kSectionHw, encode_hw(plan.hw).dump(1)},
      {kSectionModel, plan.model.to_json().dump(1)},
      {kSectionProgram, encode_program(plan).dump(1)},
  };
  if (!plan.gpu_code.empty())
    payloads.emplace_back(kSectionGpuCode, std::string(plan.gpu_code.begin(), plan.gpu_code.end()));
  const size_t n = payloads.size();
  std::string b(kMagic, sizeof(kMagic));
  put_u32(b, kPlanVersion);
  put_u32(b, uint32_t(n));
  uint64_t offset = kPrefixBytes + n * kEntryBytes + kHeaderChecksumBytes;
  std::string body;
  for (const auto& [name, payload] : payloads) {
    const uint64_t pad = (kPayloadAlign - offset % kPayloadAlign) % kPayloadAlign;
    body.append(pad, '\0');
    offset += pad;
    std::string field(kSectionNameBytes, '\0');
    std::memcpy(field.data(), name, std::strlen(name));
    b += field;
    put_u32(b, kFlagRequired);
    put_u32(b, 0);  // reserved
    put_u64(b, offset);
    put_u64(b, payload.size());
    put_u64(b, fnv1a64(payload.data(), payload.size()));
    body += payload;
    offset += payload.size();
  }
  put_u64(b, fnv1a64(b.data(), b.size()));
  b += body;
  // Write next to the target and rename, so a crash never leaves a half-written plan.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Error("{}: cannot open for writing: {}", tmp, std::strerror(errno));
    out.write(b.data(), std::streamsize(b.size()));
    out.close();
    if (!out) return Error("{}: write failed: {}", tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Error("{}: cannot rename {} into place: {}", path, tmp, std::strerror(errno));
  }
  return Status::ok();
}

Expected<Plan> read_plan(const std::string& path) {
  auto bytes = read_file(path);
  if (!bytes) return bytes.status().with_context(path);
  auto plan = parse_plan(*bytes);
  if (!plan) return plan.status().with_context(path);
  return plan;
}

}  // namespace ktx
