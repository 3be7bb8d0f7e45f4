// Real data: every tensor of every GGUF in ../shared/models (written by llama.cpp's converter
// and llama-quantize) decodes to finite values, and the Q8_0 and Q4_K_M files of one model,
// quantized from the same float weights, decode to nearly the same tensors. A mis-unpacked
// scale or a swapped element order in any K-quant shows up here as a large difference even
// when it round-trips through our own quantizer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf/gguf.h"
#include "common/quant/quant.h"

namespace ktx {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = fs::path(KTX_SHARED_DIR) / "models";

std::unique_ptr<GGUFFile> open_or_fail(const fs::path& p) {
  auto f = GGUFFile::open(p.string());
  EXPECT_TRUE(f.has_value()) << p << ": " << f.status().message();
  return f.has_value() ? std::move(f).value() : nullptr;
}

// The whole tensor as floats, row by row (rows are whole blocks by construction).
std::vector<float> decode_tensor(const GGUFTensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  const auto row_bytes = ggml_row_bytes(t.type, t.ne[0]);
  EXPECT_TRUE(row_bytes.has_value()) << t.name << ": " << row_bytes.status().message();
  if (!row_bytes.has_value()) return {};
  EXPECT_EQ(*row_bytes * static_cast<uint64_t>(t.n_rows()), t.n_bytes) << t.name;
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    dequantize_row(t.type, t.data + r * *row_bytes, out.data() + r * t.ne[0], t.ne[0]);
  }
  return out;
}

std::vector<fs::path> gguf_files() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kModels)) {
    if (e.path().extension() == ".gguf") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(RealModels, EveryTensorDecodesToFiniteValues) {
  const auto files = gguf_files();
  ASSERT_GE(files.size(), 8u) << "expected the model and reference GGUFs in " << kModels;
  for (const fs::path& p : files) {
    auto f = open_or_fail(p);
    ASSERT_NE(f, nullptr);
    const bool is_ref = p.string().ends_with(".ref.gguf");
    int decoded = 0;
    for (const GGUFTensorInfo& t : f->tensors()) {
      const uint32_t id = static_cast<uint32_t>(t.type);
      if (!ggml_type_supported(id)) {
        // Only the reference files hold non-weight tensors (I32 token ids).
        EXPECT_TRUE(is_ref && t.type == GGMLType::I32)
            << p.filename() << ": " << t.name << " has type " << ggml_type_name(id);
        continue;
      }
      const auto y = decode_tensor(t);
      ASSERT_EQ(y.size(), static_cast<size_t>(t.n_elements())) << t.name;
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << p.filename() << ": " << t.name << " ["
                                         << ggml_type_name(id) << "] element " << i;
      }
      ++decoded;
    }
    EXPECT_GT(decoded, 0) << p.filename();
  }
}

// Bound on ||q4km - q8|| / ||q8|| for a tensor by its type in the Q4_K_M file: the Q8_0 copy
// is within ~0.5% of the float weights, so this is the coarser type's own error (measured on
// these files: Q4_K 0.072, Q5_0 0.043, Q5_K 0.037, Q6_K 0.018; a mis-unpacked sub-block
// min alone pushes Q4_K and Q5_K to ~0.35).
double max_rel_diff(GGMLType t) {
  switch (t) {
    case GGMLType::F32: case GGMLType::F16: case GGMLType::BF16: return 0.01;
    case GGMLType::Q8_0: return 0.01;
    case GGMLType::Q6_K: return 0.04;
    case GGMLType::Q5_0: case GGMLType::Q5_1: case GGMLType::Q5_K: return 0.07;
    case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q4_K: return 0.1;
    default: return 0.3;  // Q3_K, Q2_K
  }
}

class SameWeights : public ::testing::TestWithParam<std::string> {};

TEST_P(SameWeights, Q4_K_MCloseToQ8_0) {
  const std::string stem = GetParam();
  auto q8 = open_or_fail(kModels / (stem + ".Q8_0.gguf"));
  auto q4 = open_or_fail(kModels / (stem + ".Q4_K_M.gguf"));
  ASSERT_TRUE(q8 && q4);
  std::map<std::string, int> compared_by_type;
  for (const GGUFTensorInfo& t4 : q4->tensors()) {
    const GGUFTensorInfo* t8 = q8->find_tensor(t4.name);
    // dsv3's two files use different attention layouts; compare what both hold alike.
    if (t8 == nullptr || t8->n_elements() != t4.n_elements() || t8->ne[0] != t4.ne[0]) continue;
    const auto a = decode_tensor(t4), b = decode_tensor(*t8);
    ASSERT_EQ(a.size(), b.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
      den += static_cast<double>(b[i]) * b[i];
    }
    const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (t4.type == t8->type) {
      // Same type in both files (norms in F32, tensors llama-quantize keeps at Q8_0): the
      // quantizer is deterministic, so the decoded values must agree exactly.
      EXPECT_EQ(rel, 0.0) << stem << ": " << t4.name << " differs between the two files";
    }
    EXPECT_LT(rel, max_rel_diff(t4.type)) << stem << ": " << t4.name << " " << t4.shape_str()
                                          << " " << ggml_type_name(static_cast<uint32_t>(t4.type));
    ++compared_by_type[ggml_type_name(static_cast<uint32_t>(t4.type))];
  }
  // The Q4_K_M files must exercise the K-quants this test exists for.
  EXPECT_GT(compared_by_type["Q4_K"], 0) << stem;
  EXPECT_GT(compared_by_type["Q6_K"], 0) << stem;
}

INSTANTIATE_TEST_SUITE_P(Models, SameWeights,
                         ::testing::Values("dsv3", "qwen3moe", "qwen2moe", "mixtral"));

}  // namespace
}  // namespace ktx
