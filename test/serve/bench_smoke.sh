#!/usr/bin/env bash
# ctest serve_bench_smoke: ktx-serve-bench against `ktx-run serve` on the tiny qwen3moe model
# (planned with the float32 reference kernels, as run.sh does), a few seconds; checks exit code
# 0, the table rows of both concurrencies and the two TTFT lines. No node needed.
# usage: bench_smoke.sh KTX_RUN KTC KTX_SERVE_BENCH SHARED_DIR WORK_DIR
set -euo pipefail
ktx_run=$1 ktc=$2 bench=$3 shared=$4 work=$5
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
plan=$work/qwen3moe.bench_smoke.plan
"$ktc" plan --kernels reference --hw "$root/test/lit/Inputs/cpu-avx2.toml" \
  "$shared/models/qwen3moe.Q8_0.gguf" -o "$plan" 2>/dev/null
err=$work/bench_smoke.server.err
"$ktx_run" serve "$plan" --port 0 --parallel 2 --ctx 512 -t 2 2>"$err" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
# The port is printed when the socket is bound; "ready:" once the plan is loaded.
for _ in $(seq 600); do
  grep -q "ready:" "$err" && break
  kill -0 $server 2>/dev/null || { echo "server exited:"; cat "$err"; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$err" || { echo "server not ready after 60 s:"; cat "$err"; exit 1; }
port=$(grep -oE 'listening on http://[^ ]+:[0-9]+' "$err" | grep -oE '[0-9]+$')
out=$work/bench_smoke.out
rc=0
"$bench" "http://127.0.0.1:$port" --streams 1,2 --tokens 4 --prompt-words 20 >"$out" 2>&1 || rc=$?
cat "$out"
[[ $rc == 0 ]] || { echo "FAIL: ktx-serve-bench exit code $rc"; exit 1; }
for re in '^\| streams \| completion tokens \|' '^\| 1 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|' \
          '^\| 2 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|' '^TTFT, 20-word prompt, prefix-cache miss: [0-9.]+ s' \
          '^TTFT, same prompt again, prefix-cache hit: [0-9.]+ s \(cached [1-9]'; do
  grep -qE "$re" "$out" || { echo "FAIL: no line matching /$re/"; exit 1; }
done
# A server that is not there: one message, non-zero exit.
rc=0
"$bench" "http://127.0.0.1:1" --streams 1 --tokens 1 >"$out.down" 2>&1 || rc=$?
[[ $rc != 0 ]] && grep -q "ktx-serve-bench: .*Connection" "$out.down" ||
  { echo "FAIL: no clear connection error (rc $rc):"; cat "$out.down"; exit 1; }
echo "PASS"
