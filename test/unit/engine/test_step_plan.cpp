// The step plan of calls that mix device and host ops (runtime/engine/step_plan.h): copies only
// where an op reads a buffer whose newest value is in the other arena, waits across streams for
// every read-after-write, write-after-read and write-after-write, and the overlap it exists
// for: the shared experts on the device do not wait for the routed experts on the host.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>

#include "runtime/engine/step_plan.h"

namespace ktx {
namespace {

ProgramOp op(OpKind kind, const std::string& name, std::vector<int> in, int out) {
  ProgramOp o;
  o.kind = kind;
  o.name = name;
  o.in = std::move(in);
  o.out = out;
  return o;
}

// A MoE layer between an embedding and the lm_head, buffers as ktc would reuse them:
//   0 embed -> b0; 1 norm(b0) -> b1; 2 router(b1) -> b2 (route); 3 moe(b1, b2) -> b3;
//   4 shexp(b1) -> b4; 5 add(b3, b4) -> b1 (reuses b1); 6 add(b0, b1) -> b3; 7 lm_head(b3) -> b5
Program moe_program() {
  Program p;
  p.buffers.resize(6);
  for (auto& b : p.buffers) b.kind = "act", b.width = 8;
  p.buffers[2].kind = "route";
  p.ops = {op(OpKind::embed, "embed", {}, 0),          op(OpKind::rms_norm, "norm", {0}, 1),
           op(OpKind::router, "router", {1}, 2),       op(OpKind::routed_experts, "moe", {1, 2}, 3),
           op(OpKind::shared_experts, "shexp", {1}, 4), op(OpKind::add, "add1", {3, 4}, 1),
           op(OpKind::add, "add2", {0, 1}, 3),         op(OpKind::lm_head, "head", {3}, 5)};
  p.logits_buffer = 5;
  return p;
}

bool on_device(const ProgramOp& o) {
  return o.kind != OpKind::embed && o.kind != OpKind::routed_experts;
}

int find_op(const Program& p, const std::vector<Step>& s, const std::string& name) {
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i].op >= 0 && p.ops[static_cast<size_t>(s[i].op)].name == name) return static_cast<int>(i);
  return -1;
}

int find_copy(const std::vector<Step>& s, Step::Kind kind, int buffer, int after = -1) {
  for (size_t i = static_cast<size_t>(after + 1); i < s.size(); ++i)
    if (s[i].kind == kind && s[i].buffer == buffer) return static_cast<int>(i);
  return -1;
}

bool waits_for(const Step& s, int step) {
  return std::find(s.waits.begin(), s.waits.end(), step) != s.waits.end();
}

TEST(StepPlan, AllOnTheHostIsTheOpListWithNoCopies) {
  const Program p = moe_program();
  auto steps = plan_steps(p, [](const ProgramOp&) { return false; });
  ASSERT_EQ(steps.size(), p.ops.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].kind, Step::Kind::host_op);
    EXPECT_EQ(steps[i].op, static_cast<int>(i));
    EXPECT_TRUE(steps[i].waits.empty());
  }
}

TEST(StepPlan, CopiesWhereDevicesMeetAndTheSharedExpertsOverlap) {
  const Program p = moe_program();
  const auto s = plan_steps(p, on_device);
  SCOPED_TRACE(describe_steps(p, s));
  const int embed = find_op(p, s, "embed"), norm = find_op(p, s, "norm");
  const int router = find_op(p, s, "router"), moe = find_op(p, s, "moe");
  const int shexp = find_op(p, s, "shexp"), add1 = find_op(p, s, "add1");
  const int head = find_op(p, s, "head");
  ASSERT_TRUE(embed >= 0 && norm >= 0 && router >= 0 && moe >= 0 && shexp >= 0 && add1 >= 0);
  EXPECT_EQ(s[static_cast<size_t>(moe)].stream, kHostStream);
  EXPECT_EQ(s[static_cast<size_t>(shexp)].stream, kDeviceStream);

  // The embedding goes up once, before the norm reads it; the norm waits for that copy.
  const int up0 = find_copy(s, Step::Kind::to_device, 0);
  ASSERT_GT(up0, embed);
  EXPECT_LT(up0, norm);
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(norm)], up0));
  EXPECT_EQ(find_copy(s, Step::Kind::to_device, 0, up0), -1) << "add2 reads b0 on the device again";

  // The routed experts read the normed state and the route from the host: both come down
  // after their device producers.
  const int down1 = find_copy(s, Step::Kind::to_host, 1), down2 = find_copy(s, Step::Kind::to_host, 2);
  ASSERT_GE(down1, 0);
  ASSERT_GE(down2, 0);
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(down1)], norm));
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(down2)], router));
  EXPECT_LT(std::max(down1, down2), moe);

  // Overlap: the shared experts wait for nothing on the host stream.
  EXPECT_TRUE(s[static_cast<size_t>(shexp)].waits.empty()) << "shexp waits for the host stream";

  // The add waits for the experts' result going up; it rewrites b1, which the host stream's
  // copy read (write-after-read): it waits for that copy too.
  const int up3 = find_copy(s, Step::Kind::to_device, 3);
  ASSERT_GT(up3, moe);
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(add1)], up3));
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(add1)], down1))
      << "add1 overwrites b1 while its copy to the host may still read it";

  // add2 rewrites b3 on the device, last written there by the copy up (write-after-write).
  const int add2 = find_op(p, s, "add2");
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(add2)], up3));

  // The logits end on the host, after the lm_head.
  const int down5 = find_copy(s, Step::Kind::to_host, 5);
  ASSERT_GT(down5, head);
  EXPECT_TRUE(waits_for(s[static_cast<size_t>(down5)], head));

  // Every step that is waited on signals, and no step waits on its own stream.
  for (const Step& st : s)
    for (int w : st.waits) {
      EXPECT_TRUE(s[static_cast<size_t>(w)].signals);
      EXPECT_NE(s[static_cast<size_t>(w)].stream, st.stream);
      EXPECT_LT(w, &st - s.data());
    }
}

TEST(StepPlan, NoCopyWhenTheReaderIsOnTheSameSide) {
  Program p;
  p.buffers.resize(3);
  for (auto& b : p.buffers) b.kind = "act", b.width = 4;
  p.ops = {op(OpKind::embed, "embed", {}, 0), op(OpKind::rms_norm, "norm", {0}, 1),
           op(OpKind::lm_head, "head", {1}, 2)};
  p.logits_buffer = 2;
  auto s = plan_steps(p, [](const ProgramOp&) { return false; });
  for (const Step& st : s) EXPECT_TRUE(st.kind == Step::Kind::host_op);
  // Head on the device: b1 goes up, logits come down, nothing else.
  s = plan_steps(p, [](const ProgramOp& o) { return o.kind == OpKind::lm_head; });
  int copies = 0;
  for (const Step& st : s) copies += st.op < 0;
  EXPECT_EQ(copies, 2) << describe_steps(p, s);
  EXPECT_GE(find_copy(s, Step::Kind::to_device, 1), 0);
  EXPECT_GE(find_copy(s, Step::Kind::to_host, 2), 0);
}

}  // namespace
}  // namespace ktx

namespace ktx {
namespace {

// A call that streams the layer's routed experts to the GPU runs them as a device op: the
// only copies left are the embedding up and the logits down.
TEST(StepPlan, StreamedExpertsLeaveOnlyTheEmbeddingAndLogitsCopies) {
  const Program p = moe_program();
  const auto s = plan_steps(p, [](const ProgramOp& o) { return o.kind != OpKind::embed; });
  int copies = 0;
  for (const Step& st : s) copies += st.kind == Step::Kind::to_device || st.kind == Step::Kind::to_host;
  EXPECT_EQ(copies, 2) << describe_steps(p, s);
  EXPECT_GE(find_copy(s, Step::Kind::to_device, 0), 0);
  EXPECT_GE(find_copy(s, Step::Kind::to_host, 5), 0);
  EXPECT_EQ(s[static_cast<size_t>(find_op(p, s, "moe"))].stream, kDeviceStream);
}

// kt-stream's attributes as build_program reads them: both counts, positive; routed experts
// only; "gpu" only.
TEST(StepPlan, StreamAttributesAreCheckedAtLoad) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  auto plan_ops = [] {
    std::vector<PlanOp> ops;
    auto add = [&](const char* kind, const char* name, std::vector<int> in, int out) {
      PlanOp o;
      o.kind = kind, o.name = name, o.device = "cpu", o.in = std::move(in), o.out = out;
      ops.push_back(o);
    };
    add("embed", "embed", {}, 0);
    add("router", "router", {0}, 1);
    add("routed_experts", "blk.1.ffn_moe", {0, 1}, 2);
    add("lm_head", "head", {2}, 3);
    return ops;
  };
  std::vector<PlanBuffer> bufs(4);
  for (auto& b : bufs) b.kind = "act", b.width = 8;
  bufs[1].kind = "route";
  auto load = [&](const std::map<std::string, std::string>& attrs, int op = 2) {
    auto ops = plan_ops();
    ops[static_cast<size_t>(op)].attrs = attrs;
    return build_program(ops, bufs, {cpu.get()});
  };
  auto ok = load({{"stream", "gpu"}, {"stream_min_tokens", "256"}, {"stream_chunk", "4096"}});
  ASSERT_TRUE(ok) << ok.status().message();
  EXPECT_EQ(ok->ops[2].stream_min_tokens, 256);
  EXPECT_EQ(ok->ops[2].stream_chunk, 4096);
  EXPECT_EQ(ok->ops[1].stream_min_tokens, 0);
  const std::pair<std::map<std::string, std::string>, const char*> bad[] = {
      {{{"stream", "gpu"}, {"stream_chunk", "4096"}}, "without stream_min_tokens"},
      {{{"stream", "gpu"}, {"stream_min_tokens", "0"}, {"stream_chunk", "4096"}}, "stream_min_tokens = '0' is not a positive integer"},
      {{{"stream", "gpu"}, {"stream_min_tokens", "12x"}, {"stream_chunk", "4096"}}, "'12x' is not a positive integer"},
      {{{"stream", "cpu"}, {"stream_min_tokens", "1"}, {"stream_chunk", "1"}}, "stream = 'cpu'"},
  };
  for (const auto& [attrs, want] : bad) {
    auto r = load(attrs);
    ASSERT_FALSE(r) << want;
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("blk.1.ffn_moe"), std::string::npos) << r.status().message();
  }
  auto other = load({{"stream", "gpu"}, {"stream_min_tokens", "1"}, {"stream_chunk", "1"}}, 1);
  ASSERT_FALSE(other);
  EXPECT_NE(other.status().message().find("only routed experts stream"), std::string::npos)
      << other.status().message();
}

}  // namespace
}  // namespace ktx
