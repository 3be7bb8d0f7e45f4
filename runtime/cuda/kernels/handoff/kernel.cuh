// The CPU-op hand-off inside a call's graph without host functions (KTX_CUDA_HANDOFF=flags):
// `flags` is mapped pinned host memory, flags[0] the call's sequence number (written by the
// host before the launch), then two words per CPU op. On the host stream, before the op,
// ktx_flag_set writes the sequence number into the op's "ready" word once the copies before it
// (its inputs, to the host) are done; the host thread that launched the call spins on that word,
// runs the op, writes its "done" word; ktx_flag_wait, the next node on that stream, spins on it
// (one thread, nanosleep between reads) so the copies back to the device wait for the CPU.
// Words are compared for equality: every call has a new number.
#pragma once

#include "common/pdl.cuh"

extern "C" __global__ void __launch_bounds__(1) ktx_flag_set(unsigned* flags, int index) {
  KTX_PDL_ENTER();
  volatile unsigned* f = flags;
  __threadfence_system();  // the stream's earlier writes (the copies' data) before the flag
  f[index] = f[0];
  __threadfence_system();
}

extern "C" __global__ void __launch_bounds__(1) ktx_flag_wait(const unsigned* flags, int index) {
  KTX_PDL_ENTER();
  const volatile unsigned* f = flags;
  const unsigned seq = f[0];
  while (f[index] != seq) __nanosleep(128);
  __threadfence_system();  // what the host wrote before the flag is read after it
}
