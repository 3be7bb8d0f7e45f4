// A bounded soak on loopback: 100 concurrent streaming clients for KTX_SOAK_SECONDS (60 by
// default), about 10% disconnecting early and 10% sending bad requests. Afterwards the server
// still answers, its RSS is back within 10% of its level after warm-up, and every completed
// stream ended with [DONE].
// usage: node soak_test.cjs KTX_RUN PLAN
"use strict";
const { startServer, rawStream, assert, assertEq, fail } = require("./common.cjs");

const [ktxRun, plan] = process.argv.slice(2);
const SECONDS = Number(process.env.KTX_SOAK_SECONDS || 60);
const CLIENTS = 100;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  // Enough HTTP workers for every client's connection, not many more: each worker that ever
  // runs keeps the stack it touched, which is no leak but would blur the RSS check.
  const srv = await startServer(ktxRun, plan, ["--parallel", "16", "--max-queue", "256", "--ctx", "256",
                                               "-t", "2", "--http-threads", "160"]);
  const stats = { completed: 0, withoutDone: 0, aborted: 0, bad: 0, badWrong: 0, busy: 0 };
  let rng = 12345;
  const rand = () => ((rng = (rng * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const prompts = ["hello", "tell me a story", "what is the capital of France?", "count to ten",
                   "a" + " b".repeat(40)];
  let stopAt = 0;
  async function client(id) {
    while (Date.now() < stopAt) {
      const r = rand();
      if (r < 0.1) {
        const bad = await fetch(srv.base + "/v1/chat/completions", {
          method: "POST", body: id % 2 ? '{"messages": [' : JSON.stringify({ messages: [{ role: "x", content: 1 }] }) });
        await bad.text();
        if (bad.status === 400) ++stats.bad;
        else ++stats.badWrong;
        continue;
      }
      const body = { messages: [{ role: "user", content: prompts[id % prompts.length] }], stream: true,
                     temperature: 0.8, max_tokens: 8 + Math.floor(rand() * 40) };
      const res = await rawStream(srv.base, "/v1/chat/completions", body,
                                  { abortAfter: r < 0.2 ? 1 + Math.floor(rand() * 3) : undefined });
      if (res.status === 503) {
        ++stats.busy;
        await sleep(100);
      } else if (res.status !== 200) {
        fail(`unexpected status ${res.status}: ${res.body}`);
      } else if (res.aborted) {
        ++stats.aborted;
      } else if (res.done) {
        ++stats.completed;
      } else {
        ++stats.withoutDone;
      }
    }
  }
  try {
    // Warm-up: a few seconds of the same load, then the RSS reference.
    const warm = Math.min(10, Math.max(2, SECONDS / 6));
    stopAt = Date.now() + warm * 1000;
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    await sleep(1000);
    const rssWarm = srv.rssKb();
    stopAt = Date.now() + SECONDS * 1000;
    const samples = [];
    const sampler = setInterval(() => samples.push(srv.rssKb()), 5000);
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    clearInterval(sampler);
    console.log(`RSS every 5 s under load (kB): ${samples.join(" ")}`);
    await sleep(1000);
    const rssEnd = srv.rssKb();
    console.log(`soak ${SECONDS} s, ${CLIENTS} clients: ${JSON.stringify(stats)}; RSS after warm-up ` +
                `${rssWarm} kB, at the end ${rssEnd} kB`);
    assertEq(stats.withoutDone, 0, "completed streams without [DONE]");
    assertEq(stats.badWrong, 0, "bad requests not answered 400");
    assert(stats.completed > CLIENTS, "too few completed streams");
    assert(stats.aborted > 0 && stats.bad > 0, "the mix did not happen");
    assert(rssEnd <= rssWarm * 1.1, `RSS grew from ${rssWarm} kB to ${rssEnd} kB (more than 10%)`);
    // Still answering, and nothing left running.
    const h = await fetch(srv.base + "/health");
    assertEq(h.status, 200, "/health after the soak");
    const one = await rawStream(srv.base, "/v1/chat/completions",
                                { messages: [{ role: "user", content: "still there?" }], stream: true, max_tokens: 4 });
    assert(one.done, "a stream after the soak did not end with [DONE]");
    // A sequence is freed at the engine step after its stream ends (or its client leaves):
    // the gauges must reach zero within a few seconds, not on the first read.
    let m = "", active = -1, queued = -1;
    for (let i = 0; i < 50; ++i) {
      m = await (await fetch(srv.base + "/metrics")).text();
      active = Number(m.match(/^ktx_active_sequences (\d+)/m)[1]);
      queued = Number(m.match(/^ktx_queue_depth (\d+)/m)[1]);
      if (active === 0 && queued === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assertEq(active, 0, "active sequences 5 s after the soak");
    assertEq(queued, 0, "queue 5 s after the soak");
    assertEq(await srv.stop(), 0, "exit code after SIGTERM");
    console.log("serve soak test: all checks passed");
  } catch (e) {
    process.stderr.write("server stderr:\n" + srv.stderr().slice(-4000) + "\n");
    await srv.stop();
    throw e;
  }
}

main().catch((e) => {
  console.error("FAIL:", e.stack || e);
  process.exit(1);
});
