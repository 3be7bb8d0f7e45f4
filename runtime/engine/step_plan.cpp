// runtime/engine/step_plan.h.
#include "runtime/engine/step_plan.h"

#include <fmt/format.h>

#include <algorithm>

namespace ktx {
namespace {

constexpr int kHost = 1, kDevice = 2;  // bits of a buffer's valid homes

// Hazard bookkeeping per (buffer, home): the last step that wrote it and the steps that read
// it since.
struct Home {
  int writer = -1;
  std::vector<int> readers;
};

class Planner {
 public:
  explicit Planner(size_t n_buffers) : homes_(2 * n_buffers), valid_(n_buffers, 0) {}

  // Adds a step reading `reads` homes and writing `write`; returns its index.
  int add(Step st, const std::vector<int>& reads, int write) {
    std::vector<int> deps;
    for (int r : reads)
      if (homes_[r].writer >= 0) deps.push_back(homes_[r].writer);
    if (homes_[write].writer >= 0) deps.push_back(homes_[write].writer);
    deps.insert(deps.end(), homes_[write].readers.begin(), homes_[write].readers.end());
    const int idx = static_cast<int>(steps_.size());
    std::sort(deps.begin(), deps.end());
    deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    for (int d : deps)
      if (d != idx && steps_[d].stream != st.stream) {
        st.waits.push_back(d);
        steps_[d].signals = true;
      }
    steps_.push_back(std::move(st));
    for (int r : reads) homes_[r].readers.push_back(idx);
    homes_[write].writer = idx;
    homes_[write].readers.clear();
    return idx;
  }

  // Makes buffer b valid in `home` (kHost or kDevice), planning a copy on the host stream.
  void need(int b, int home) {
    if (valid_[b] & home) return;
    Step st;
    st.buffer = b;
    st.stream = kHostStream;
    if (home == kDevice) {
      st.kind = Step::Kind::to_device;
      add(std::move(st), {loc(b, kHost)}, loc(b, kDevice));
    } else {
      st.kind = Step::Kind::to_host;
      add(std::move(st), {loc(b, kDevice)}, loc(b, kHost));
    }
    valid_[b] |= home;
  }

  void op(const ProgramOp& op, int index, bool dev) {
    const int home = dev ? kDevice : kHost;
    for (int b : op.in) need(b, home);
    Step st;
    st.kind = dev ? Step::Kind::device_op : Step::Kind::host_op;
    st.op = index;
    st.stream = dev ? kDeviceStream : kHostStream;
    std::vector<int> reads;
    for (int b : op.in) reads.push_back(loc(b, home));
    add(std::move(st), reads, loc(op.out, home));
    valid_[op.out] = home;
  }

  std::vector<Step> take() { return std::move(steps_); }

 private:
  static int loc(int b, int home) { return 2 * b + (home == kDevice ? 1 : 0); }

  std::vector<Home> homes_;
  std::vector<int> valid_;
  std::vector<Step> steps_;
};

}  // namespace

std::vector<Step> plan_steps(const Program& prog,
                             const std::function<bool(const ProgramOp&)>& on_device) {
  Planner p(prog.buffers.size());
  for (size_t i = 0; i < prog.ops.size(); ++i)
    p.op(prog.ops[i], static_cast<int>(i), on_device(prog.ops[i]));
  if (prog.logits_buffer >= 0) p.need(prog.logits_buffer, kHost);
  return p.take();
}

std::string describe_steps(const Program& prog, const std::vector<Step>& steps) {
  std::string s;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    switch (st.kind) {
      case Step::Kind::device_op: s += fmt::format("{}: d {}", i, prog.ops[st.op].name); break;
      case Step::Kind::host_op: s += fmt::format("{}: h {}", i, prog.ops[st.op].name); break;
      case Step::Kind::to_device: s += fmt::format("{}: h->d buffer {}", i, st.buffer); break;
      case Step::Kind::to_host: s += fmt::format("{}: d->h buffer {}", i, st.buffer); break;
    }
    if (!st.waits.empty()) {
      s += " (waits";
      for (int w : st.waits) s += fmt::format(" {}", w);
      s += ")";
    }
    s += "\n";
  }
  return s;
}

}  // namespace ktx
