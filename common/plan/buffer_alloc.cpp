// BufferAllocator (see buffer_alloc.h).
#include "common/plan/buffer_alloc.h"

#include <algorithm>

namespace ktx {

int BufferAllocator::take(const std::string& kind, int64_t width) {
  std::vector<int>& pool = kind == "act" ? free_act_ : free_route_;
  if (pool.empty()) {
    buffers_.push_back({kind, width});
    return static_cast<int>(buffers_.size()) - 1;
  }
  const int b = pool.back();
  pool.pop_back();
  buffers_[b].width = std::max(buffers_[b].width, width);
  return b;
}

void BufferAllocator::release(int buffer) {
  (buffers_[buffer].kind == "act" ? free_act_ : free_route_).push_back(buffer);
}

}  // namespace ktx
