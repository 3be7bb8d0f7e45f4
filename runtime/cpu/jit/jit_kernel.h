// Base of every generated CPU kernel: an Xbyak code generator whose code is emitted by
// generate(), never in the constructor, and made executable by create(), which turns any Xbyak
// error (buffer too small, bad operand) into a Status instead of an exception. Subclasses name
// their registers at the top of the class and draw the loop nest they emit above generate().
#pragma once

#include <xbyak/xbyak.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/hw/hw_profile.h"
#include "common/util/status.h"

namespace ktx::cpu {

// What an AMX tile kernel needs before it is generated: the CPU's amx_tile, amx_int8 and
// avx512bw (its epilogues are AVX-512), and the OS's grant of tile state. Errors name
// `kernel` and what is missing.
Status require_amx_int8(const CpuIsa& cpu, const std::string& kernel);

class JitKernel : public Xbyak::CodeGenerator {
 public:
  explicit JitKernel(size_t max_code_bytes = 16 * 1024);
  ~JitKernel() override = default;
  JitKernel(const JitKernel&) = delete;
  JitKernel& operator=(const JitKernel&) = delete;

  // Emit the code and make it executable (read + execute, not writable). Call once.
  Status create(const std::string& what);
  bool created() const { return created_; }
  // The generated machine code (for ktc --emit-asm and KTX_JIT_DEBUG dumps).
  const uint8_t* code_bytes() const { return getCode(); }
  size_t code_bytes_size() const { return getSize(); }

 protected:
  virtual void generate() = 0;
  // Save / restore the callee-saved registers of the System V ABI (rbx, rbp, r12..r15) and
  // return; postamble also clears the upper YMM halves to avoid SSE transition penalties.
  void preamble();
  void postamble();

 private:
  bool created_ = false;
};

}  // namespace ktx::cpu
