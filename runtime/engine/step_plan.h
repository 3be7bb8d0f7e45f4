// The order of work of one call when some ops run on a device with its own memory (the GPU):
// every op becomes a step on one of two streams, the device stream (device ops) or the host
// stream (host ops, in order, and the copies between the host arena and the device arena that
// they need), and every step lists the steps of the other stream it must wait for. So the
// routed experts of a MoE layer (host stream: copy the normed hidden state and the route down,
// run the CPU kernels, copy the result up) overlap the shared experts on the device stream, and
// the residual add waits for both.
//
// Each buffer has two homes, host and device; a copy is planned only where an op reads a buffer
// whose newest value lives in the other home. Waits cover read-after-write, write-after-read
// and write-after-write on each home, so buffer reuse by ktc's memory plan stays safe. Pure
// C++ (no CUDA): the CUDA backend enqueues the steps, or captures them into a graph, and tests
// check the plan on any host.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/engine/program.h"

namespace ktx {

struct Step {
  enum class Kind : uint8_t { device_op, host_op, to_device, to_host };
  Kind kind = Kind::device_op;
  int op = -1;      // device_op, host_op: index into Program::ops
  int buffer = -1;  // to_device, to_host: the buffer copied
  int stream = 0;   // 0: device stream, 1: host stream
  std::vector<int> waits;  // earlier steps on the other stream that must finish first
  bool signals = false;    // some later step of the other stream waits for this one
};

inline constexpr int kDeviceStream = 0;
inline constexpr int kHostStream = 1;

// The steps of one call of `prog`; on_device(op) says whether an op runs on the device. The
// logits buffer ends on the host.
std::vector<Step> plan_steps(const Program& prog,
                             const std::function<bool(const ProgramOp&)>& on_device);

// One line per step ("d blk.0.attn_norm", "h<-d 3 (wait 2)"): tests and KTX_CUDA_DEBUG.
std::string describe_steps(const Program& prog, const std::vector<Step>& steps);

}  // namespace ktx
