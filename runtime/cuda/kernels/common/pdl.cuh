// Programmatic dependent launch (sm_90+): every kernel entry starts with KTX_PDL_ENTER(), which
// waits until the grids it depends on have finished and their writes are visible
// (griddepcontrol.wait), then lets the next grid in the stream be scheduled at once
// (griddepcontrol.launch_dependents), so its blocks are resident and waiting when this grid
// ends instead of being launched after it. Without the launch attribute (launch() in
// runtime/cuda/library.cpp, KTX_CUDA_PDL) both instructions do nothing, and on older archs they
// are not emitted. The wait comes first in every entry, before any global read or write, so
// no kernel can touch memory a predecessor still reads or writes; test_cuda_kernels checks
// that every entry point starts with it.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KTX_PDL_ENTER()                                             \
  do {                                                              \
    asm volatile("griddepcontrol.wait;" ::: "memory");              \
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); \
  } while (0)
#else
#define KTX_PDL_ENTER() \
  do {                  \
  } while (0)
#endif
