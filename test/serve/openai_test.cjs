// ktx-run serve driven by the official `openai` npm package (and raw HTTP where the package
// hides what is checked): models, chat and completions non-stream vs stream at temperature 0,
// 32 concurrent streams equal to the lone request, mixed prompts concurrently each equal to
// its lone run, clients aborting mid-stream, every bad input, 401, 503 on a full queue,
// /metrics, /health.
// usage: node openai_test.cjs KTX_RUN PLAN
"use strict";
const { OpenAI } = require("openai");
const { startServer, rawStream, get, assert, assertEq, fail } = require("./common.cjs");

const [ktxRun, plan] = process.argv.slice(2);
const KEY = "test-key-123";
const CTX = 256;

function chatBody(content, extra = {}) {
  return { model: "tiny", messages: [{ role: "user", content }], temperature: 0, max_tokens: 24, ...extra };
}

async function streamText(client, body) {
  const s = await client.chat.completions.create({ ...body, stream: true });
  let text = "", finish = null;
  for await (const chunk of s) {
    const c = chunk.choices[0];
    if (!c) continue;
    text += c.delta.content || "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { text, finish };
}

async function badRequests(srv) {
  const post = (body, { raw, path = "/v1/chat/completions", key = KEY } = {}) =>
    fetch(srv.base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: raw !== undefined ? raw : JSON.stringify(body),
    });
  const cases = [
    ["malformed JSON", { raw: '{"messages": [' }, 400, null, "not valid JSON"],
    ["not an object", { raw: "[1]" }, 400, "body", "JSON object"],
    ["missing messages", { body: { model: "x" } }, 400, "messages", "required"],
    ["messages wrong type", { body: { messages: "hi" } }, 400, "messages", "must be an array"],
    ["unknown role", { body: { messages: [{ role: "wizard", content: "x" }] } }, 400, "messages[0].role", "unknown role"],
    ["content wrong type", { body: { messages: [{ role: "user", content: 3 }] } }, 400, "messages[0].content", "must be"],
    ["temperature wrong type", { body: chatBody("x", { temperature: "hot" }) }, 400, "temperature", "must be a number"],
    ["absurd max_tokens", { body: chatBody("x", { max_tokens: 1e12 }) }, 400, "max_tokens", "between 1 and"],
    ["negative max_tokens", { body: chatBody("x", { max_tokens: -1 }) }, 400, "max_tokens", "between 1 and"],
    ["n = 2", { body: chatBody("x", { n: 2 }) }, 400, "n", "must be 1"],
    ["stop wrong type", { body: chatBody("x", { stop: 5 }) }, 400, "stop", "a string or an array"],
    ["invalid UTF-8", { raw: Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'),
                                            Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]) },
     400, null, "not valid UTF-8"],
    ["lone surrogate", { raw: '{"messages":[{"role":"user","content":"\\ud800"}]}' }, 400, null, "not valid JSON"],
    ["oversized body", { raw: JSON.stringify(chatBody("x".repeat(70000))) }, 413, null, "too large"],
    ["prompt longer than the context", { body: chatBody("word ".repeat(400)) }, 400, "messages", `context of ${CTX} tokens`],
    ["completion without prompt", { body: { max_tokens: 3 }, path: "/v1/completions" }, 400, "prompt", "required"],
    ["token id out of range", { body: { prompt: [1, 99999] }, path: "/v1/completions" }, 400, "prompt[1]", "out of range"],
  ];
  for (const [name, opt, status, param, fragment] of cases) {
    const r = await post(opt.body, opt);
    const text = await r.text();
    assertEq(r.status, status, `${name}: status (${text})`);
    let j;
    try {
      j = JSON.parse(text);
    } catch (e) {
      fail(`${name}: error body is not JSON: ${text}`);
    }
    const e = j.error;
    assert(e && typeof e.message === "string" && "type" in e && "param" in e && "code" in e,
           `${name}: not an OpenAI error body: ${text}`);
    assertEq(e.param, param, `${name}: param`);
    assert(e.message.includes(fragment), `${name}: message '${e.message}' lacks '${fragment}'`);
    if (name === "prompt longer than the context")
      assert(/the prompt has \d+ tokens/.test(e.message), `${name}: prompt length missing: ${e.message}`);
  }
  // Unknown routes answer in the same shape.
  const nf = await get(srv.base, "/v1/nothing", KEY);
  assertEq(nf.status, 404, "unknown route");
  assert(JSON.parse(nf.text).error.message.includes("/v1/nothing"), "404 names the route");
  // The openai package turns a 400 into BadRequestError.
  const client = new OpenAI({ baseURL: srv.base + "/v1", apiKey: KEY, maxRetries: 0 });
  try {
    await client.chat.completions.create({ model: "x", messages: [{ role: "wizard", content: "x" }] });
    fail("unknown role accepted");
  } catch (e) {
    assert(e instanceof OpenAI.BadRequestError, "BadRequestError expected, got " + e);
    assertEq(e.status, 400, "status through the package");
  }
}

async function auth(srv) {
  for (const key of ["wrong-key", "test-key-12", "test-key-1234"]) {
    const bad = new OpenAI({ baseURL: srv.base + "/v1", apiKey: key, maxRetries: 0 });
    try {
      await bad.models.list();
      fail("a wrong key was accepted: " + key);
    } catch (e) {
      assert(e instanceof OpenAI.AuthenticationError, "AuthenticationError expected, got " + e);
      assertEq(e.status, 401, "wrong key status");
    }
  }
  for (const path of ["/v1/models", "/metrics"]) assertEq((await get(srv.base, path)).status, 401, "no key " + path);
  const r = await fetch(srv.base + "/v1/chat/completions", { method: "POST", body: JSON.stringify(chatBody("x")) });
  assertEq(r.status, 401, "no key, chat");
  assertEq(JSON.parse(await r.text()).error.code, "invalid_api_key", "401 code");
  assertEq((await get(srv.base, "/health")).status, 200, "/health needs no key");
}

async function aborts(srv, client) {
  const before = await get(srv.base, "/metrics", KEY);
  const abortedBefore = Number(before.text.match(/^ktx_requests_aborted_total (\d+)/m)[1]);
  const body = chatBody("tell me a long story", { max_tokens: 200, stream: true });
  const results = await Promise.all(Array.from({ length: 8 }, () =>
    rawStream(srv.base, "/v1/chat/completions", body, { key: KEY, abortAfter: 2 })));
  for (const r of results) assert(r.aborted, "stream was not aborted");
  // Also through the package: abort the controller mid-stream.
  const controller = new AbortController();
  const s = await client.chat.completions.create(body, { signal: controller.signal });
  let n = 0;
  try {
    for await (const chunk of s) if (++n === 3) controller.abort();
  } catch (e) {
    assert(e instanceof OpenAI.APIUserAbortError || e.name === "AbortError", "abort error: " + e);
  }
  // Every aborted sequence leaves the batch.
  const t0 = Date.now();
  for (;;) {
    const m = (await get(srv.base, "/metrics", KEY)).text;
    const active = Number(m.match(/^ktx_active_sequences (\d+)/m)[1]);
    const aborted = Number(m.match(/^ktx_requests_aborted_total (\d+)/m)[1]);
    if (active === 0 && aborted >= abortedBefore + 9) break;
    if (Date.now() - t0 > 20000) fail(`aborted streams still active (${active}, aborted ${aborted})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metrics(srv) {
  const m = await get(srv.base, "/metrics", KEY);
  assertEq(m.status, 200, "/metrics status");
  assert(m.headers.get("content-type").startsWith("text/plain"), "/metrics content type");
  for (const name of ["ktx_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
                      "ktx_prompt_tokens_total", "ktx_completion_tokens_total", "ktx_queue_depth",
                      "ktx_active_sequences", "ktx_kv_cache_usage_ratio", "ktx_prefix_cache_hits_total",
                      "ktx_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
                      "ktx_inter_token_latency_seconds_count"])
    assert(m.text.includes(name), "/metrics lacks " + name);
  const hits = Number(m.text.match(/^ktx_prefix_cache_hits_total (\d+)/m)[1]);
  assert(hits > 0, "no prefix-cache hit after repeated prompts");
  // The KV block pool: used + cached + free = capacity / 64, and finished requests left blocks cached.
  const blocks = (state) => Number(m.text.match(new RegExp(`^ktx_kv_cache_blocks\\{state="${state}"\\} (\\d+)`, "m"))[1]);
  const capacity = Number(m.text.match(/^ktx_kv_cache_capacity_tokens (\d+)/m)[1]);
  assertEq(blocks("used") + blocks("cached") + blocks("free"), capacity / 64, "KV pool blocks");
  assert(blocks("cached") > 0, "no cached KV blocks after finished requests");
  assert(Number(m.text.match(/^ktx_prefix_cache_tokens (\d+)/m)[1]) > 0, "no cached prefix tokens");
  const h = await get(srv.base, "/health");
  assertEq(JSON.parse(h.text).status, "ok", "/health body");
}

async function queueFull() {
  const srv = await startServer(ktxRun, plan, ["--parallel", "1", "--max-queue", "1", "-t", "1", "--ctx", "512"]);
  try {
    const body = { messages: [{ role: "user", content: "go" }], temperature: 0, max_tokens: 400, stream: false };
    const rs = await Promise.all(Array.from({ length: 8 }, () =>
      fetch(srv.base + "/v1/chat/completions", { method: "POST", body: JSON.stringify(body) })
        .then(async (r) => ({ status: r.status, retry: r.headers.get("retry-after"), text: await r.text() }))));
    const busy = rs.filter((r) => r.status === 503);
    assert(busy.length > 0, "no 503 with 8 requests on 1 slot and a queue of 1: " + rs.map((r) => r.status));
    assert(busy[0].retry !== null, "503 without Retry-After");
    assertEq(JSON.parse(busy[0].text).error.code, "queue_full", "503 code");
    assert(rs.some((r) => r.status === 200), "nothing was served");
  } finally {
    await srv.stop();
  }
}

async function main() {
  const srv = await startServer(ktxRun, plan, ["--parallel", "32", "--ctx", String(CTX), "--api-key", KEY,
                                               "--max-body", "65536", "--alias", "tiny", "-t", "2"]);
  try {
    const client = new OpenAI({ baseURL: srv.base + "/v1", apiKey: KEY, maxRetries: 0 });
    const models = await client.models.list();
    assertEq(models.data.map((m) => m.id), ["tiny"], "models");

    // Non-stream and stream give the same text at temperature 0.
    const body = chatBody("Hello, who are you?");
    const full = await client.chat.completions.create(body);
    const msg = full.choices[0].message;
    assertEq(msg.role, "assistant", "role");
    assert(typeof msg.content === "string" && msg.content.length > 0, "empty answer");
    assert(["stop", "length"].includes(full.choices[0].finish_reason), "finish_reason");
    assert(full.usage.prompt_tokens > 0 && full.usage.completion_tokens > 0, "usage");
    assertEq(full.usage.total_tokens, full.usage.prompt_tokens + full.usage.completion_tokens, "total");
    const streamed = await streamText(client, body);
    assertEq(streamed.text, msg.content, "stream vs non-stream");
    assertEq(streamed.finish, full.choices[0].finish_reason, "stream finish_reason");
    // include_usage: a last chunk with empty choices and the usage, then [DONE]; cached
    // tokens show the prefix cache at work (the same prompt ran just before).
    const raw = await rawStream(srv.base, "/v1/chat/completions",
                                { ...body, stream: true, stream_options: { include_usage: true } }, { key: KEY });
    assert(raw.done, "no [DONE]");
    assertEq(raw.text, msg.content, "raw stream text");
    assertEq(raw.usage.completion_tokens, full.usage.completion_tokens, "stream usage");
    assert(raw.usage.prompt_tokens_details.cached_tokens > 0, "no cached tokens on a repeated prompt");
    // Completions: raw prompt, same both ways.
    const cbody = { model: "tiny", prompt: "Once upon a time", temperature: 0, max_tokens: 16 };
    const c1 = await client.completions.create(cbody);
    let c2 = "";
    for await (const ch of await client.completions.create({ ...cbody, stream: true })) c2 += ch.choices[0]?.text || "";
    assertEq(c2, c1.choices[0].text, "completions stream vs non-stream");
    assertEq(c1.object, "text_completion", "completion object");
    // max_tokens ends with length; stop strings cut the text.
    const short = await client.chat.completions.create(chatBody("Hello, who are you?", { max_tokens: 3 }));
    assertEq(short.choices[0].finish_reason, "length", "max_tokens finish");
    assertEq(short.usage.completion_tokens, 3, "max_tokens count");
    if (msg.content.length > 4) {
      const stopAt = msg.content.slice(2, 4);
      const cut = await client.chat.completions.create({ ...body, stop: [stopAt] });
      assertEq(cut.choices[0].message.content, msg.content.slice(0, msg.content.indexOf(stopAt)), "stop string");
      assertEq(cut.choices[0].finish_reason, "stop", "stop finish");
    }
    // Seeds make sampling reproducible.
    const seeded = chatBody("Pick a word", { temperature: 1.0, top_p: 0.9, seed: 42 });
    const s1 = await client.chat.completions.create(seeded);
    const s2 = await client.chat.completions.create(seeded);
    assertEq(s2.choices[0].message.content, s1.choices[0].message.content, "seeded sampling");

    // 32 concurrent streams of one prompt, each equal to the lone request.
    const many = await Promise.all(Array.from({ length: 32 }, () => streamText(client, body)));
    for (const r of many) assertEq(r.text, msg.content, "one of 32 concurrent streams");
    // Mixed prompts concurrently, each equal to its lone run.
    const prompts = ["a", "What is 2+2?", "Write a poem about the sea and the wind.", "hi there",
                     "Explain batching " + "in detail ".repeat(20), "zzz", "Tell me about KTX.", "ok"];
    const lone = [];
    for (const p of prompts) lone.push((await client.chat.completions.create(chatBody(p))).choices[0].message.content);
    const mixed = await Promise.all(prompts.map((p, i) =>
      i % 2 ? streamText(client, chatBody(p)).then((r) => r.text)
            : client.chat.completions.create(chatBody(p)).then((r) => r.choices[0].message.content)));
    for (let i = 0; i < prompts.length; ++i) assertEq(mixed[i], lone[i], `mixed prompt ${i}`);

    await aborts(srv, client);
    // The server still answers the same after the aborts.
    assertEq((await client.chat.completions.create(body)).choices[0].message.content, msg.content, "after aborts");
    await badRequests(srv);
    await auth(srv);
    await metrics(srv);
    assertEq(await srv.stop(), 0, "server exit code after SIGTERM");
  } catch (e) {
    process.stderr.write("server stderr:\n" + srv.stderr() + "\n");
    await srv.stop();
    throw e;
  }
  await queueFull();
  console.log("serve openai test: all checks passed");
}

main().catch((e) => {
  console.error("FAIL:", e.stack || e);
  process.exit(1);
});
