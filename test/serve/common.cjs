// Shared helpers of the ktx-run serve tests: start a server on a free loopback port and wait
// until /health says it is ready, read SSE streams by hand (to see [DONE]), small assertions.
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");

function fail(msg) {
  throw new Error(msg);
}

function assertEq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) fail(`${what}: got ${g}, want ${w}`);
}

function assert(cond, what) {
  if (!cond) fail(what);
}

// Starts `ktx-run serve PLAN --port 0 ARGS...`; resolves once /health answers 200.
async function startServer(ktxRun, plan, args, { log } = {}) {
  const proc = spawn(ktxRun, ["serve", plan, "--port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + stderr)), 30000);
    proc.stderr.on("data", (d) => {
      stderr += d.toString();
      if (log) process.stderr.write(d);
      const m = stderr.match(/listening on http:\/\/[^:]+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited (${code}):\n${stderr}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  let first = null;
  for (;;) {
    try {
      const r = await fetch(base + "/health");
      if (first === null) first = r.status;
      if (r.status === 200) break;
      assertEq(r.status, 503, "/health while loading");
    } catch (e) {
      /* not accepting yet */
    }
    if (Date.now() - t0 > 60000) fail("server not ready after 60 s:\n" + stderr);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc, port, base,
    stderr: () => stderr,
    rssKb: () => {
      const s = fs.readFileSync(`/proc/${proc.pid}/status`, "utf8");
      return Number(s.match(/VmRSS:\s+(\d+)/)[1]);
    },
    stop: () => new Promise((resolve) => {
      if (proc.exitCode !== null) return resolve(proc.exitCode);
      proc.on("exit", (code) => resolve(code));
      proc.kill("SIGTERM");
    }),
  };
}

// POSTs a streaming request and reads the SSE events by hand. Returns {status, text, events,
// done} where done says whether the stream ended with "data: [DONE]". abortAfter: stop
// reading (and drop the connection) after that many content events.
async function rawStream(base, path, body, { key, abortAfter } = {}) {
  const controller = new AbortController();
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = "Bearer " + key;
  const r = await fetch(base + path, {
    method: "POST", headers, body: JSON.stringify(body), signal: controller.signal,
  });
  if (r.status !== 200) return { status: r.status, body: await r.text(), done: false };
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "", text = "", events = 0, done = false, usage = null, finish = null;
  try {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        assert(!done, "an event after [DONE]");
        const j = JSON.parse(data);
        if (j.error) fail("stream error: " + j.error.message);
        if (j.usage) usage = j.usage;
        const c = j.choices && j.choices[0];
        if (!c) continue;
        if (c.finish_reason) finish = c.finish_reason;
        const piece = c.delta ? c.delta.content || "" : c.text || "";
        if (piece) {
          text += piece;
          ++events;
          if (abortAfter && events >= abortAfter) {
            controller.abort();
            return { status: 200, text, events, done: false, aborted: true };
          }
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") throw e;
  }
  return { status: 200, text, events, done, usage, finish };
}

// GET with an optional key, returning {status, text}.
async function get(base, path, key) {
  const r = await fetch(base + path, { headers: key ? { Authorization: "Bearer " + key } : {} });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

module.exports = { startServer, rawStream, get, assert, assertEq, fail };
