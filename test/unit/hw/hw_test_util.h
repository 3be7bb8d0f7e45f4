// Shared fixtures of the host-profile tests: a minimal valid profile and a helper that expects
// a parse to fail and returns its message.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/hw/hw_profile.h"

namespace ktx::hw_test {

// A minimal valid profile; tests splice one bad line into it.
inline const std::string kMinimal =
    "schema_version = 1\n"
    "[cpu]\n"
    "physical_cores = 8\n"
    "[memory]\n"
    "total_bytes = 1000000\n"
    "read_bw_gbs = 20\n";

inline std::string parse_error(const std::string& text) {
  auto r = HwProfile::from_toml_string(text, "host.toml");
  EXPECT_FALSE(r.has_value()) << "accepted:\n" << text;
  return r.has_value() ? "" : r.status().message();
}

}  // namespace ktx::hw_test
