// Shared by the AMX lab benches: the frame and tile configuration their generated loops start
// with (the kernels in runtime/cpu/jit configure their own tiles).
#pragma once

#include <xbyak/xbyak.h>

#include <array>

namespace ktx::bench {

// Sets rbp = rsp, reserves 128 bytes at a 64-byte-aligned rsp and loads palette 1 with tile t
// of rows[t] rows of colsb[t] bytes. The caller restores rsp from rbp before returning.
inline void emit_tile_frame(Xbyak::CodeGenerator& g, const std::array<int, 8>& colsb,
                            const std::array<int, 8>& rows) {
  using namespace Xbyak::util;
  g.mov(rbp, rsp);
  g.sub(rsp, 128);
  g.and_(rsp, -64);
  g.vpxord(zmm0, zmm0, zmm0);
  g.vmovups(g.ptr[rsp], zmm0);
  g.mov(g.byte[rsp], 1);
  for (int t = 0; t < 8; ++t) {
    g.mov(g.word[rsp + 16 + 2 * t], colsb[t]);
    g.mov(g.byte[rsp + 48 + t], rows[t]);
  }
  g.ldtilecfg(g.ptr[rsp]);
}

}  // namespace ktx::bench
