// JitKernel: creation with errors as Status, the ABI prologue/epilogue, and the KTX_JIT_DEBUG
// switch (prints each generated kernel's name and size, and writes its code to
// /tmp/ktx-jit-<name>.bin for `objdump -D -b binary -mi386:x86-64`).
#include "runtime/cpu/jit/jit_kernel.h"

#include <cstdio>
#include <cstdlib>

#include "common/hw/cpu_features.h"

namespace ktx::cpu {

Status require_amx_int8(const CpuIsa& cpu, const std::string& kernel) {
  if (!cpu.amx_tile || !cpu.amx_int8 || !cpu.avx512bw) {
    return Error("{}: this CPU lacks {}{}{}", kernel, cpu.amx_tile ? "" : "amx_tile ",
                 cpu.amx_int8 ? "" : "amx_int8 ", cpu.avx512bw ? "" : "avx512bw");
  }
  if (!request_amx_permission()) {
    return Error("{}: the OS refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)", kernel);
  }
  return Status::ok();
}

JitKernel::JitKernel(size_t max_code_bytes)
    : Xbyak::CodeGenerator(max_code_bytes, Xbyak::DontSetProtectRWE) {}

Status JitKernel::create(const std::string& what) {
  if (created_) return Error("jit: kernel '{}' created twice", what);
  try {
    generate();
    ready();  // resolves labels; protection is ours to set outside AutoGrow mode
    if (!setProtectMode(Xbyak::CodeArray::PROTECT_RE, false)) {
      return Error("jit: kernel '{}': cannot make its code executable (mprotect refused)", what);
    }
  } catch (const Xbyak::Error& e) {
    return Error("jit: generating kernel '{}' failed: {}", what, e.what());
  }
  created_ = true;
  const char* debug = std::getenv("KTX_JIT_DEBUG");
  if (debug && debug[0] == '1') {
    std::fprintf(stderr, "[jit] %s: %zu bytes of code\n", what.c_str(), getSize());
    const std::string path = "/tmp/ktx-jit-" + what + ".bin";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(getCode(), 1, getSize(), f);
      std::fclose(f);
    }
  }
  return Status::ok();
}

void JitKernel::preamble() {
  using namespace Xbyak::util;
  push(rbx);
  push(rbp);
  push(r12);
  push(r13);
  push(r14);
  push(r15);
}

void JitKernel::postamble() {
  using namespace Xbyak::util;
  vzeroupper();
  pop(r15);
  pop(r14);
  pop(r13);
  pop(r12);
  pop(rbp);
  pop(rbx);
  ret();
}

}  // namespace ktx::cpu
