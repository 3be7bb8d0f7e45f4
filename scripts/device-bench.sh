#!/usr/bin/env bash
# The benchmark run of docs/performance.md, on the lent accelerator machine (16-core Xeon):
#   stage "build":  the runtime without MLIR (-DKTX_WITH_COMPILER=OFF, header-only deps and
#                   GoogleTest carried in .deps/), its CPU kernel tests, and, when .ik/ holds
#                   ik_llama.cpp's source, its CPU llama-bench
#   stage MODEL:    `ktx-run gen` of the benchmark file at the path its plan names (plans are
#                   made on a machine with ktc and carried in .devplans/NAME.plan: a plan checks
#                   only the GGUF's size and header hash, and gen is deterministic; the file is
#                   written to /tmp/gen/NAME.gguf and given with --gguf), `ktx-run probe` (DRAM read
#                   bandwidth of this lease), `ktx-run bench`, then ik_llama.cpp's llama-bench
#                   with its best CPU flags on the same file.
#   stage "linear": ktx-linear-bench, the non-expert linear ops at DeepSeek-V3 shapes.
#   stage "gpu":    the runtime with CUDA (build dir /tmp/ktx-gpu, test models from .devshared/
#                   carried with -DKTX_SHARED_DIR), the GPU kernel and backend tests, then
#                   `ktx-run eval` of every .devplans/gpu-STEM.plan (made with ktc plan --hw
#                   plans/spr-h100.toml) on .devshared/models/STEM.gguf.
#   stage "gpubench": ktx-run bench of .devplans/dsv3-l5-gpu.plan and dsv3-l5.plan on the
#                   generated DeepSeek-V3 --layers 5 file (GPU plan vs CPU plan, same run).
#   stage "unpack": .carry/devdata.tar.xz (the .devplans and .devshared folders, xz-packed to
#                   fit the device's 64 MiB transfer: make it with `tar -cJf .carry/devdata.tar.xz
#                   .devplans .devshared` after scripts/make-devplans.sh) into the repo root.
#   stage "ikcuda": ik_llama.cpp's CUDA llama-bench from .carry/ik.tar.xz (its source tree,
#                   `git archive` of ggml src common include cmake examples vendor ...), built in
#                   /tmp/ik-cuda in the background (setsid: it outlives the call while the
#                   machine stays warm); stage "ikhybrid" waits for it and runs its best hybrid
#                   flags on the generated DeepSeek-V3 slice, then KTX's GPU plan on the same file.
#   stage "gemvbench": ktx-cuda-gemv-bench (float and integer GEMV paths, Q4_K and Q6_K).
#   stage "gpuprofile": the GPU plan's decode with --profile (op kinds per device, GPU idle).
#   stage "moebench": ktx-moe-bench of the DeepSeek-V3 routed-expert layer alone (1, 8 tokens).
#   stage "nsysprof": nsys per-kernel times of the GPU plan's decode (when the toolkit has nsys).
#   stage "ncuprof": ncu per-kernel times of a few eager decode steps ($out/ncu.csv).
#   stage "q3hybrid": the Qwen3-30B-A3B shape, ik_llama.cpp hybrid vs KTX's GPU plan, same call.
#   stage "gemvab": decode with the integer GEMVs at 1 row per warp vs 4, alternated.
#   stage "gemmab": prefill (pp128, pp512) of the GPU plan without vs with the prefill GEMM.
#   stage "mmaab":  the same prefill with the GEMMs' float tiles (KTX_CUDA_MMA=0) vs tensor cores.
#   stage "fuseab": decode with the fused kernels off (KTX_CUDA_FUSE=0) vs on, alternated.
#   stage "pdlab": decode without vs with programmatic dependent launch (KTX_CUDA_PDL=1).
#   stage "handoff": the GPU plan's decode with KTX_CUDA_HANDOFF=host and =flags, alternated.
#   stage "streambench": long prompts (pp512, 2048, 8192) of the DeepSeek-V3 slice: KTX's GPU plan
#                   with the routed experts on the CPU (--stream off) and streamed to the GPU
#                   (kt-stream), then ik_llama.cpp's best hybrid flags (after ikcuda), same file.
#   stage "servebench": `ktx-run serve` of .devplans/q3.plan (CPU plan, --parallel 64) on the
#                   generated Qwen3-30B-A3B file from the CPU build ($kb, stage "build"), then
#                   ktx-serve-bench: aggregate decode tok/s at 1, 4, 16, 64 streams and TTFT on a
#                   prefix-cache miss vs hit ($out/serve-bench.txt, server log $out/serve-q3.log).
# Usage (repo root): scripts/device-bench.sh build dsv3   (stages in order; logs to $OUT)
# Models: dsv3 = deepseek-v3 --layers 5 --type Q4_K, q3 = qwen3-30b-a3b --type Q4_K.
set -uo pipefail
out=${OUT:-/tmp/ktx-out}
mkdir -p "$out"
jobs=$(nproc)
kb=${KTX_BUILD:-/tmp/ktx-build}
ik=/tmp/ik-build

# The device's copy of the tree keeps this machine's file times, which can be older than the
# outputs of an earlier call on the same warm machine: ninja would then skip changed files.
# A content hash of the sources decides instead; a build dir of another tree starts afresh.
fresh_if_changed() {
  local dir=$1 h
  h=$(find CMakeLists.txt common runtime tools test bench dev -type f \( -name '*.cpp' -o -name '*.h' \
        -o -name '*.cuh' -o -name 'CMakeLists.txt' -o -name '*.cmake' \) -print0 2>/dev/null |
      sort -z | xargs -0 md5sum | md5sum | cut -d' ' -f1)
  if [[ -d "$dir" && $(cat "$dir/.ktx-src-hash" 2>/dev/null) != "$h" ]]; then
    echo "sources changed since the last build in $dir: building afresh"; rm -rf "$dir"
  fi
  mkdir -p "$dir" && echo "$h" >"$dir/.ktx-src-hash"
}

build() {
  fresh_if_changed "$kb"
  cmake -S . -B "$kb" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKTX_WITH_COMPILER=OFF \
    -DKTX_WITH_CUDA=OFF $(httplib_flag) >"$out/build.log" 2>&1 &&
    cmake --build "$kb" -j "$jobs" >>"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; return 1; }
  echo "ktx built"
  if [[ -d .ik ]]; then
    (cmake -S .ik -B "$ik" -G Ninja -DGGML_CUDA=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
       -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release &&
     cmake --build "$ik" --target llama-bench -j "$jobs") >"$out/ik-build.log" 2>&1 &
  fi
  for t in "$kb"/test/unit/cpu/cpu_test_linear "$kb"/test/unit/cpu/cpu_test_gemm_bf16 \
           "$kb"/test/unit/cpu/cpu_test_attention \
           "$kb"/test/unit/cpu/cpu_test_moe_conformance; do
    "$t" 2>&1 | tail -1 | sed "s|^|$(basename "$t"): |"
  done
  wait
  [[ -x "$ik/bin/llama-bench" ]] && echo "ik_llama.cpp llama-bench built" || tail -20 "$out/ik-build.log"
}

# model NAME PRESET GEN_FLAGS BENCH_FLAGS
model() {
  local name=$1 preset=$2 gen=$3 bench=$4
  local plan=.devplans/$name.plan
  local gguf=/tmp/gen/$name.gguf
  mkdir -p /tmp/gen
  [[ -f "$gguf" ]] || "$kb"/tools/ktx-run gen "$preset" $gen -o "$gguf" >"$out/gen-$name.log" 2>&1 ||
    { tail -5 "$out/gen-$name.log"; return 1; }
  "$kb"/tools/ktx-run probe --no-gpu -o "$out/host.toml" 2>/dev/null
  grep -E "read_bw|bandwidth" "$out/host.toml" | head -3
  "$kb"/tools/ktx-run bench "$plan" --gguf "$gguf" $bench --profile 2>"$out/bench-$name.err" | tee "$out/ktx-$name.txt"
  if [[ -x "$ik/bin/llama-bench" ]]; then
    local p n r
    p=$(sed -E 's/.*-p ([0-9,]+).*/\1/' <<<"$bench")
    n=$(sed -E 's/.*-n ([0-9]+).*/\1/' <<<"$bench")
    r=$(sed -E 's/.*-r ([0-9]+).*/\1/' <<<"$bench")
    "$ik/bin/llama-bench" -m "$gguf" -ngl 0 -fmoe 1 -mla 3 -fa 1 -t "$jobs" -p "$p" -n "$n" \
      -r "$r" 2>"$out/ik-$name.err" | tee "$out/ik-$name.txt"
  fi
}

gb=/tmp/ktx-gpu
gpubuild() {
  fresh_if_changed "$gb"
  cmake -S . -B "$gb" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKTX_WITH_COMPILER=OFF \
    -DKTX_SHARED_DIR="$PWD/.devshared" $(httplib_flag) >"$out/gpu-build.log" 2>&1 || { tail -30 "$out/gpu-build.log"; return 1; }
  local targets
  targets=$(cd "$gb" && ninja -t targets all | grep -oE '^(cuda_test_[a-z_]+|engine_test_step_plan|ktx-run|ktx-cuda-gemv-bench|ktx-moe-bench|ktx-serve-bench):' | tr -d : | sort -u)
  cmake --build "$gb" -j "$jobs" --target $targets >>"$out/gpu-build.log" 2>&1 || { grep -B2 -A8 "error" "$out/gpu-build.log" | head -60; return 1; }
  echo "ktx (cuda) built"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
}
gputest() {
  local t tests=("$gb"/test/unit/cuda/cuda_test_* "$gb"/test/unit/engine/engine_test_step_plan)
  [[ -n ${GPUTESTS:-} ]] && tests=($(for n in $GPUTESTS; do ls "$gb"/test/unit/*/"$n"; done))  # names only
  # The NVRTC compile of every family for every plan arch needs no GPU (CI runs it) and takes
  # over three minutes of device time: left out here unless GPUTEST_FILTER says otherwise.
  for t in "${tests[@]}"; do
    "$t" --gtest_filter="${GPUTEST_FILTER:--*NvrtcCompilesEveryFamilyForPlanArchs*}" >"$out/$(basename "$t").log" 2>&1
    echo "$(basename "$t"): rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/$(basename "$t").log" | tr '\n' ' ')"
    grep -E "Failure|error:|FAILED  \]" -A3 "$out/$(basename "$t").log" | head -16
  done
}
gpueval() {
  for plan in .devplans/gpu-${EVALS:-*}.plan; do
    [[ -f "$plan" ]] || continue
    local stem=${plan#.devplans/gpu-}; stem=${stem%.plan}
    KTX_CUDA_GRAPH=${KTX_CUDA_GRAPH:-1} "$gb"/tools/ktx-run eval "$plan" --gguf ".devshared/models/$stem.gguf" \
      --ref ".devshared/models/$stem.ref.gguf" >"$out/eval-$stem.txt" 2>&1
    echo "eval gpu $stem: rc=$? $(grep -E 'PASS|FAIL|mean KL|error' "$out/eval-$stem.txt" | head -4 | tr '\n' ' ')"
    # The streamed experts forced on every call of 9 tokens and more (the plan streams from ~150).
    KTX_CUDA_STREAM_MIN=9 "$gb"/tools/ktx-run eval "$plan" --gguf ".devshared/models/$stem.gguf" \
      --ref ".devshared/models/$stem.ref.gguf" >"$out/eval-stream-$stem.txt" 2>&1
    echo "eval gpu $stem, streamed experts: rc=$? $(grep -E 'PASS|FAIL|mean KL|error' "$out/eval-stream-$stem.txt" | head -4 | tr '\n' ' ')"
  done
}
# The benchmark file, generated in the background (setsid) while other stages run.
genbg() {
  mkdir -p /tmp/gen
  [[ -f /tmp/gen/dsv3-l5.gguf ]] && return 0
  setsid bash -c "$gb/tools/ktx-run gen deepseek-v3 --layers 5 --type Q4_K -o /tmp/gen/dsv3-l5.part.gguf \
    >/tmp/gen-dsv3.log 2>&1 && mv /tmp/gen/dsv3-l5.part.gguf /tmp/gen/dsv3-l5.gguf" </dev/null >/dev/null 2>&1 &
  echo "generating /tmp/gen/dsv3-l5.gguf in the background"
}

# The DeepSeek-V3 slice of stage genbg (waits for it), or generated here when genbg did not run.
wait_dsv3() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0
  mkdir -p /tmp/gen
  while pgrep -f "ktx-run gen deepseek-v3" >/dev/null && [[ $waited -lt 400 ]]; do sleep 3; waited=$((waited + 3)); done
  [[ -f "$gguf" ]] || "$gb"/tools/ktx-run gen deepseek-v3 --layers 5 --type Q4_K -o "$gguf" >"$out/gen-dsv3.log" 2>&1 ||
    { tail -5 "$out/gen-dsv3.log"; return 1; }
}

gpubench() {
  local gguf=/tmp/gen/dsv3-l5.gguf
  wait_dsv3 || return 1
  for plan in .devplans/dsv3-l5-gpu.plan .devplans/dsv3-l5.plan; do
    [[ -f "$plan" ]] || continue
    echo "== $plan"
    "$gb"/tools/ktx-run bench "$plan" --gguf "$gguf" ${BENCH:--p 512 -n 64 -r 2} 2>"$out/bench-$(basename "$plan").err" |
      tee "$out/bench-$(basename "$plan").txt"
    grep -E "error|graph|step" "$out/bench-$(basename "$plan").err" | tail -4
  done
  if [[ -f .devplans/dsv3-l5-gpu.plan && ${GRAPH_OFF:-1} == 1 ]]; then  # the same decode without graphs
    echo "== dsv3-l5-gpu.plan, KTX_CUDA_GRAPH=0"
    KTX_CUDA_GRAPH=0 "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" -p 0 -n 32 -r 1 2>&1 | grep -vE "^ktx-run: (load|prep|repack)" | tail -6
  fi
}

# The GPU plan's decode with --profile: each op kind's time on its device (timing events in
# the graph), the GPU's busy and idle time per step; then the routed-expert layer alone.
gpuprofile() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0
  while pgrep -f "ktx-run gen deepseek-v3" >/dev/null && [[ $waited -lt 400 ]]; do sleep 3; waited=$((waited + 3)); done
  [[ -f "$gguf" ]] || { echo "no $gguf (run genbg or gpubench first)"; return 1; }
  echo "== dsv3-l5-gpu.plan --profile"
  "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" ${PBENCH:--p 128 -n 64 -r 1} --profile \
    2>"$out/profile-gpu.err" | tee "$out/profile-gpu.txt"
  grep -E "error|graph|step|idle" "$out/profile-gpu.err" | tail -6
}
# Decode of the GPU plan with each CPU-op hand-off (host functions, mapped-memory flags) and
# with the pool's workers allowed to sleep, alternated so drift shows.
handoff() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0
  while pgrep -f "ktx-run gen deepseek-v3" >/dev/null && [[ $waited -lt 400 ]]; do sleep 3; waited=$((waited + 3)); done
  [[ -f "$gguf" ]] || { echo "no $gguf (run genbg or gpubench first)"; return 1; }
  for rep in 1 2; do
    for env in "KTX_CUDA_HANDOFF=host" "KTX_CUDA_HANDOFF=flags" "KTX_CUDA_HANDOFF=flags KTX_POOL_HOT=1"; do
      echo "== $env (rep $rep)"
      env $env "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" \
        ${HBENCH:--p 0 -n 64 -r 3} 2>&1 | grep -E "tg|error" | tail -2
    done
  done
}
# Per-kernel GPU time of the GPU plan's decode (nsys, graph nodes traced one by one), when the
# toolkit has nsys; otherwise the list of the toolkit's profilers.
nsysprof() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0 nsys
  while pgrep -f "ktx-run gen deepseek-v3" >/dev/null && [[ $waited -lt 400 ]]; do sleep 3; waited=$((waited + 3)); done
  nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys \
         /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
  if [[ -z $nsys ]]; then
    echo "no nsys; /usr/local/cuda/bin: $(ls /usr/local/cuda/bin | tr '\n' ' ')"; return 0
  fi
  "$nsys" profile --cuda-graph-trace=node --trace=cuda -o /tmp/nsys-ktx --force-overwrite true \
    "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" -p 0 -n 64 -r 1 >"$out/nsys-run.log" 2>&1
  "$nsys" stats --report cuda_gpu_kern_sum --format csv /tmp/nsys-ktx.nsys-rep >"$out/nsys-kern.csv" 2>"$out/nsys-stats.err"
  head -30 "$out/nsys-kern.csv" | cut -c1-220
}
# Per-kernel GPU time with ncu (host-function hand-off and eager launches: ncu replays every
# kernel, which a kernel waiting on a CPU-written flag would not survive). CSV in $out/ncu.csv.
ncuprof() {
  local gguf=/tmp/gen/dsv3-l5.gguf ncu=/usr/local/cuda/bin/ncu
  [[ -x $ncu ]] || { echo "no ncu"; return 0; }
  KTX_CUDA_HANDOFF=host KTX_CUDA_GRAPH=0 timeout ${NCU_TIMEOUT:-240} "$ncu" --metrics gpu__time_duration.sum \
    --csv --print-units base "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" \
    -p 0 -n ${NCU_TOKENS:-3} -r 1 >"$out/ncu.csv" 2>"$out/ncu.err"
  echo "ncu rc=$? $(wc -l <"$out/ncu.csv") lines"; tail -3 "$out/ncu.err"
}
# Decode of the GPU plan under each value of one environment variable, alternated twice:
#   decode_ab VAR VALUE...   (HBENCH: the bench flags, default -p 0 -n 64 -r 3)
decode_ab() {
  local var=$1 gguf=/tmp/gen/dsv3-l5.gguf waited=0 rep val
  shift
  while pgrep -f "ktx-run gen deepseek-v3" >/dev/null && [[ $waited -lt 400 ]]; do sleep 3; waited=$((waited + 3)); done
  [[ -f "$gguf" ]] || { echo "no $gguf (run genbg or gpubench first)"; return 1; }
  for rep in 1 2; do
    for val in "$@"; do
      echo "== $var=$val (rep $rep)"
      env "$var=$val" "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" \
        ${HBENCH:--p 0 -n 64 -r 3} 2>&1 | grep -E "tg|pp|error|step takes" | tail -4
    done
  done
}
# The integer GEMVs capped at 1 row per warp vs 4 (the default).
gemvab() { decode_ab KTX_CUDA_GEMV_ROWS 1 4; }
# The fused kernels off (KTX_CUDA_FUSE=0) vs on.
fuseab() { decode_ab KTX_CUDA_FUSE 0 1; }
# Without vs with programmatic dependent launch (KTX_CUDA_PDL).
pdlab() { decode_ab KTX_CUDA_PDL 0 1; }
# The Qwen3-30B-A3B shape (48 layers) hybrid: generated here on the device at the plan's path,
# ik_llama.cpp's hybrid flags (after ikcuda), then KTX's GPU plan, same file, same call.
q3hybrid() {
  local gguf=/tmp/gen/q3.gguf waited=0
  mkdir -p /tmp/gen
  [[ -f "$gguf" ]] || "$gb"/tools/ktx-run gen qwen3-30b-a3b --type Q4_K -o "$gguf" >"$out/gen-q3.log" 2>&1 ||
    { tail -5 "$out/gen-q3.log"; return 1; }
  while [[ ! -f /tmp/ik-cuda.done && $waited -lt ${IK_WAIT:-420} ]]; do sleep 5; waited=$((waited + 5)); done
  if [[ -x $ikb/bin/llama-bench ]]; then
    echo "== ik_llama.cpp hybrid (qwen3-30b-a3b): -ngl 99 -ot exps=CPU -fmoe 1 -fa 1 -t $jobs"
    "$ikb/bin/llama-bench" -m "$gguf" -ngl 99 -ot exps=CPU -fmoe 1 -fa 1 -t "$jobs" \
      ${IK_BENCH:--p 512 -n 128 -r 2} 2>"$out/ik-hybrid-q3.err" | tee "$out/ik-hybrid-q3.txt"
  fi
  echo "== ktx GPU plan (qwen3-30b-a3b)"
  "$gb"/tools/ktx-run bench .devplans/q3-gpu.plan --gguf "$gguf" ${BENCH:--p 512 -n 128 -r 2} \
    2>"$out/ktx-hybrid-q3.err" | tee "$out/ktx-hybrid-q3.txt"
  grep -E "graph|step" "$out/ktx-hybrid-q3.err" | tail -3
}
# Prefill of the GPU plan without vs with the prefill GEMM (KTX_CUDA_GEMM, gemm/kernel.cuh).
gemmab() { HBENCH="${HBENCH:--p 128,512 -n 0 -r 2}" decode_ab KTX_CUDA_GEMM 0 1; }
# The GEMMs' float tiles vs their tensor-core form (KTX_CUDA_MMA), prefill.
mmaab() { HBENCH="${HBENCH:--p 128,512 -n 0 -r 2}" decode_ab KTX_CUDA_MMA 0 1; }
streambench() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0 plan
  wait_dsv3 || return 1
  for plan in dsv3-l5-gpu-long-nostream dsv3-l5-gpu-long; do
    [[ -f .devplans/$plan.plan ]] || { echo "no .devplans/$plan.plan (scripts/make-devplans.sh)"; continue; }
    echo "== ktx $plan"
    "$gb"/tools/ktx-run bench .devplans/$plan.plan --gguf "$gguf" ${SBENCH:--p 512,2048,8192 -n 0 -r 1} \
      2>"$out/stream-$plan.err" | tee "$out/stream-$plan.txt"
    grep -E "error|stream|pinn" "$out/stream-$plan.err" | tail -6
  done
  while [[ ! -f /tmp/ik-cuda.done && $waited -lt ${IK_WAIT:-420} ]]; do sleep 5; waited=$((waited + 5)); done
  if [[ -x $ikb/bin/llama-bench ]]; then
    echo "== ik_llama.cpp hybrid: -ngl 99 -ot exps=CPU -fmoe 1 -mla 3 -fa 1 -t $jobs"
    "$ikb/bin/llama-bench" -m "$gguf" -ngl 99 -ot exps=CPU -fmoe 1 -mla 3 -fa 1 -t "$jobs" \
      ${IK_SBENCH:--p 512,2048,8192 -n 0 -r 1} 2>"$out/ik-stream.err" | tee "$out/ik-stream.txt"
  fi
}
# ktx-run serve on the Qwen3-30B-A3B shape (CPU plan, 64 slots) and ktx-serve-bench against it
# (issue 13). The generated file carries gen's vocab and ChatML template, so chat requests work.
servebench() {
  local gguf=${SERVE_GGUF:-/tmp/gen/q3.gguf} plan=${SERVE_PLAN:-.devplans/q3.plan} port=${SERVE_PORT:-18080} server waited=0 b=$kb
  [[ -f $plan ]] || { echo "no $plan (scripts/make-devplans.sh with /tmp/gen/q3.gguf)"; return 1; }
  [[ -x $b/bench/ktx-serve-bench ]] || b=$gb  # the CUDA build runs the CPU plan as well
  [[ -x $b/bench/ktx-serve-bench ]] ||
    { echo "no ktx-serve-bench in $kb or $gb (stage build or gpubuild; ktx-run serve and the bench need cpp-httplib)"; return 1; }
  mkdir -p /tmp/gen
  [[ -f "$gguf" ]] || "$b"/tools/ktx-run gen qwen3-30b-a3b --type Q4_K -o "$gguf" >"$out/gen-q3.log" 2>&1 ||
    { tail -5 "$out/gen-q3.log"; return 1; }
  echo "== ktx-run serve $plan --parallel ${SERVE_PARALLEL:-64} ${SERVE_FLAGS:-} ($b)"
  "$b"/tools/ktx-run serve "$plan" --gguf "$gguf" --parallel ${SERVE_PARALLEL:-64} --port "$port" ${SERVE_FLAGS:-} \
    >"$out/serve-q3.log" 2>&1 &
  server=$!
  # The port opens at once (503 while the plan loads); ktx-serve-bench --wait polls /health.
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$server" 2>/dev/null || { echo "server exited:"; tail -10 "$out/serve-q3.log"; return 1; }
    ((waited >= 60)) && { echo "server not listening after ${waited}s"; kill "$server"; return 1; }
    sleep 1; waited=$((waited + 1))
  done
  local rc=0
  "$b"/bench/ktx-serve-bench "http://127.0.0.1:$port" --streams ${STREAMS:-1,4,16,64} --tokens ${TOKENS:-64} \
    --wait ${SERVE_WAIT:-300} ${SBENCH:-} 2>&1 | tee "$out/serve-bench.txt" || rc=$?
  kill "$server"; wait "$server" 2>/dev/null
  ((rc == 0)) || { echo "ktx-serve-bench rc=$rc; server log:"; tail -5 "$out/serve-q3.log"; }
  return $rc
}
moebench() {
  "$gb"/bench/ktx-moe-bench --model deepseek-v3 --types q4_k --tokens 1,8 --threads "$jobs" --iters 20 \
    2>&1 | tee "$out/moe-alone.txt" | tail -8
}

# The device has no cpp-httplib package: .carry/httplib.tar.xz holds Debian's header, shared
# library and the headers and libraries it needs (OpenSSL, zlib, brotli); stage "unpack" puts it
# in /tmp/ktx-httplib and the builds pass it as -DKTX_HTTPLIB_ROOT (ktx-run serve and
# ktx-serve-bench). Made on the development machine: include/ = /usr/include/{httplib.h,
# openssl (with the x86_64-linux-gnu/openssl headers), brotli, zlib.h, zconf.h}, lib/ = the
# resolved libcpp-httplib.so.0.11, libssl.so.3, libcrypto.so.3, libz.so.1, libbrotli{common,
# dec,enc}.so.1 with unversioned links; `tar -C DIR -cJf .carry/httplib.tar.xz .`.
httplib() {
  [[ -f .carry/httplib.tar.xz ]] || return 0
  mkdir -p /tmp/ktx-httplib && tar -xJf .carry/httplib.tar.xz -C /tmp/ktx-httplib || return 1
  echo "cpp-httplib carried to /tmp/ktx-httplib"
}
httplib_flag() { [[ -f /tmp/ktx-httplib/include/httplib.h ]] && echo "-DKTX_HTTPLIB_ROOT=/tmp/ktx-httplib"; }

ikb=/tmp/ik-cuda
ikcuda() {
  [[ -f .carry/ik.tar.xz ]] || { echo "no .carry/ik.tar.xz"; return 1; }
  mkdir -p /tmp/ik-src && tar -xJf .carry/ik.tar.xz -C /tmp/ik-src
  setsid bash -c "(cmake -S /tmp/ik-src -B $ikb -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=ON \
      -DCMAKE_BUILD_TYPE=Release && cmake --build $ikb --target llama-bench -j ${IK_JOBS:-10}) \
      >/tmp/ik-cuda.log 2>&1; echo done >/tmp/ik-cuda.done" </dev/null >/dev/null 2>&1 &
  echo "ik_llama.cpp CUDA build started in the background (/tmp/ik-cuda.log)"
}

ikhybrid() {
  local gguf=/tmp/gen/dsv3-l5.gguf waited=0
  while [[ ! -f /tmp/ik-cuda.done && $waited -lt ${IK_WAIT:-420} ]]; do sleep 5; waited=$((waited + 5)); done
  cp /tmp/ik-cuda.log "$out/ik-cuda.log" 2>/dev/null
  [[ -x $ikb/bin/llama-bench ]] || { echo "ik_llama.cpp CUDA build not ready after ${waited}s"; tail -5 /tmp/ik-cuda.log; return 1; }
  wait_dsv3 || return 1
  echo "== ik_llama.cpp hybrid: -ngl 99 -ot exps=CPU -fmoe 1 -mla 3 -fa 1 -t $jobs"
  "$ikb/bin/llama-bench" -m "$gguf" -ngl 99 -ot exps=CPU -fmoe 1 -mla 3 -fa 1 -t "$jobs" \
    ${IK_BENCH:--p 512 -n 128 -r 2} 2>"$out/ik-hybrid.err" | tee "$out/ik-hybrid.txt"
  echo "== ktx GPU plan, same file"
  "$gb"/tools/ktx-run bench .devplans/dsv3-l5-gpu.plan --gguf "$gguf" ${BENCH:--p 512 -n 128 -r 2} \
    2>"$out/ktx-hybrid.err" | tee "$out/ktx-hybrid.txt"
  grep -E "graph|step" "$out/ktx-hybrid.err" | tail -3
}

for stage in "$@"; do
  case $stage in
    build) build || exit 1 ;;
    dsv3) model dsv3-l5 deepseek-v3 "--layers 5 --type Q4_K" "-p 512,2048 -n 128 -r 2" ;;
    linear)  # the non-expert linear ops alone, both prefill precisions, vs the measured peaks
      "$kb"/bench/ktx-linear-bench --model dsv3 --tokens 1,512,2048 --threads "$jobs" | tee "$out/linear-dsv3.txt"
      "$kb"/bench/ktx-linear-bench --model dsv3 --tokens 512 --threads "$jobs" --precision bf16 | tee "$out/linear-dsv3-bf16.txt" ;;
    q3) model q3-30b qwen3-30b-a3b "--type Q4_K" "-p 512 -n 128 -r 2" ;;
    gpu) { gpubuild && gputest && gpueval; } || exit 1 ;;
    gpubuild) gpubuild || exit 1 ;;
    gputest) gputest ;;
    gpueval) gpueval ;;
    genbg) genbg ;;
    gpubench) gpubench ;;
    gpuprofile) gpuprofile ;;
    moebench) moebench ;;
    nsysprof) nsysprof ;;
    ncuprof) ncuprof ;;
    gemvab) gemvab ;;
    gemmab) gemmab ;;
    mmaab) mmaab ;;
    fuseab) fuseab ;;
    pdlab) pdlab ;;
    q3hybrid) q3hybrid ;;
    handoff) handoff ;;
    servebench) servebench ;;
    streambench) streambench ;;
    unpack) tar -xJf .carry/devdata.tar.xz && echo "unpacked .devplans .devshared"; httplib ;;
    ikcuda) ikcuda ;;
    ikhybrid) ikhybrid ;;
    gemvbench)
      for t in Q4_K Q6_K; do "$gb"/bench/ktx-cuda-gemv-bench --type $t --tokens 1,8 | tee "$out/gemv-$t.txt"; done ;;
    *) echo "unknown stage '$stage' (build, linear, dsv3, q3, gpu = gpubuild gputest gpueval, genbg, gpubench, gpuprofile, moebench, handoff, servebench, unpack, ikcuda, ikhybrid, gemvbench)"; exit 2 ;;
  esac
done
