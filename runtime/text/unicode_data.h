// The generated Unicode general-category table (unicode_data.cpp, made by
// scripts/gen_unicode_data.py). Only runtime/text/unicode.cpp reads it; everything else asks
// unicode.h's general_category().
#pragma once

#include <cstddef>
#include <cstdint>

namespace ktx::unicode_detail {

// A run of code points [first, next run's first) sharing one general category; `category` is
// the index of a GeneralCategory enumerator (same order as the generator's CATEGORIES list).
struct CategoryRun {
  uint32_t first;
  uint8_t category;
};

extern const CategoryRun kCategoryRuns[];
extern const size_t kNumCategoryRuns;

}  // namespace ktx::unicode_detail
