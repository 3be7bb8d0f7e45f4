// Load generator for `ktx-run serve` (issue 13's benchmark): aggregate decode tokens/s at
// several numbers of concurrent streams, and time to first token with and without a
// prefix-cache hit. Plain Node (fetch), no packages. Start the server with at least as many
// slots as the largest concurrency (--parallel 64), then:
//   node bench/serve-bench.cjs http://127.0.0.1:8080 [--streams 1,4,16,64] [--tokens 128]
//        [--prompt-words 1000] [--key KEY]
// Prints one markdown table row per concurrency and the two TTFT lines.
"use strict";

const args = process.argv.slice(2);
const base = args[0] || "http://127.0.0.1:8080";
const opt = (name, def) => {
  const i = args.indexOf("--" + name);
  return i >= 0 ? args[i + 1] : def;
};
const streams = opt("streams", "1,4,16,64").split(",").map(Number);
const tokens = Number(opt("tokens", "128"));
const promptWords = Number(opt("prompt-words", "1000"));
const key = opt("key", "");

// One streamed chat request; returns seconds to the first token, completion tokens, cached.
async function one(content, maxTokens) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = "Bearer " + key;
  const t0 = performance.now();
  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST", headers,
    body: JSON.stringify({ messages: [{ role: "user", content }], stream: true, max_tokens: maxTokens,
                           temperature: 0, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "", ttft = null, usage = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) usage = j.usage;
      const d = j.choices && j.choices[0] && j.choices[0].delta;
      if (ttft === null && d && d.content) ttft = (performance.now() - t0) / 1000;
    }
  }
  return { ttft, completion: usage ? usage.completion_tokens : 0,
           cached: usage ? usage.prompt_tokens_details.cached_tokens : 0 };
}

async function main() {
  console.log(`| streams | completion tokens | wall s | aggregate tok/s | per stream tok/s | mean TTFT s |`);
  console.log(`| ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const n of streams) {
    const t0 = performance.now();
    // Distinct prompts, so no stream rides on another's prefix.
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => one(`Stream ${i}: tell me a story.`, tokens)));
    const wall = (performance.now() - t0) / 1000;
    const total = rs.reduce((a, r) => a + r.completion, 0);
    const ttft = rs.reduce((a, r) => a + (r.ttft || 0), 0) / n;
    console.log(`| ${n} | ${total} | ${wall.toFixed(2)} | ${(total / wall).toFixed(1)} | ` +
                `${(total / wall / n).toFixed(1)} | ${ttft.toFixed(3)} |`);
  }
  const long = `Session ${Date.now()}. ` + "The quick brown fox jumps over the lazy dog. ".repeat(promptWords / 9);
  const miss = await one(long, 1);
  const hit = await one(long, 1);
  console.log(`TTFT, ${promptWords}-word prompt, prefix-cache miss: ${miss.ttft.toFixed(3)} s (cached ${miss.cached})`);
  console.log(`TTFT, same prompt again, prefix-cache hit: ${hit.ttft.toFixed(3)} s (cached ${hit.cached})`);
}

main().catch((e) => {
  console.error("serve-bench:", e.message);
  process.exit(1);
});
