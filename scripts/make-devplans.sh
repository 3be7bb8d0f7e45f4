#!/usr/bin/env bash
# The plans of scripts/device-bench.sh, made here with ktc (the device has no MLIR) into
# .devplans/ (ignored; carried to the device). Run after any change to a GPU kernel: a GPU plan
# embeds the cubin of runtime/cuda/kernels. Needs .devshared/models/ (copies of ../shared/models
# files) and, for the benchmark plans, /tmp/gen/dsv3-l5.gguf (ktx-run gen deepseek-v3 --layers 5
# --type Q4_K; the device generates the same file at the same path) and /tmp/gen/q3.gguf
# (qwen3-30b-a3b --type Q4_K).
#   scripts/make-devplans.sh [build dir (default build)]
set -euo pipefail
b=${1:-build}
mkdir -p .devplans
for g in .devshared/models/*.gguf; do
  stem=$(basename "$g" .gguf)
  [[ $stem == *.ref ]] && continue
  "$b"/tools/ktc plan --hw plans/spr-h100.toml "$g" --context 1024 -o ".devplans/gpu-$stem.plan" >/dev/null
  echo "plan .devplans/gpu-$stem.plan"
done
if [[ -f /tmp/gen/dsv3-l5.gguf ]]; then
  "$b"/tools/ktc plan --hw plans/spr-h100.toml /tmp/gen/dsv3-l5.gguf --context 1024 -o .devplans/dsv3-l5-gpu.plan >/dev/null
  "$b"/tools/ktc plan --hw plans/spr-h100.toml --gpu off /tmp/gen/dsv3-l5.gguf --context 1024 -o .devplans/dsv3-l5.plan >/dev/null
  # Long prompts (stage streambench): the GPU plan with a context for pp8192, streaming its
  # routed experts (kt-stream's default) and not.
  "$b"/tools/ktc plan --hw plans/spr-h100.toml /tmp/gen/dsv3-l5.gguf --context 8704 -o .devplans/dsv3-l5-gpu-long.plan >/dev/null
  "$b"/tools/ktc plan --hw plans/spr-h100.toml --stream off /tmp/gen/dsv3-l5.gguf --context 8704 -o .devplans/dsv3-l5-gpu-long-nostream.plan >/dev/null
  echo "plans .devplans/dsv3-l5{,-gpu,-gpu-long,-gpu-long-nostream}.plan"
fi
if [[ -f /tmp/gen/q3.gguf ]]; then  # ktx-run gen qwen3-30b-a3b --type Q4_K -o /tmp/gen/q3.gguf
  "$b"/tools/ktc plan --hw plans/spr-h100.toml /tmp/gen/q3.gguf --context 1024 -o .devplans/q3-gpu.plan >/dev/null
  "$b"/tools/ktc plan --hw plans/spr-h100.toml --gpu off /tmp/gen/q3.gguf --context 1024 -o .devplans/q3.plan >/dev/null
  echo "plans .devplans/q3{,-gpu}.plan"
fi
