// The arena's buffer reuse, one rule for both producers of a program (ktc's memory plan in
// compiler/codegen/EmitPlan.cpp and the runtime's reference_program): a value takes a free
// buffer of its kind (widened to fit) or a new one, and gives it back after its last reader.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/plan/plan.h"

namespace ktx {

class BufferAllocator {
 public:
  explicit BufferAllocator(std::vector<PlanBuffer>& buffers) : buffers_(buffers) {}
  // A buffer of `kind` ("act" | "route") at least `width` wide.
  int take(const std::string& kind, int64_t width);
  // `buffer` may be taken again (by a value of its kind).
  void release(int buffer);

 private:
  std::vector<PlanBuffer>& buffers_;
  std::vector<int> free_act_, free_route_;
};

}  // namespace ktx
