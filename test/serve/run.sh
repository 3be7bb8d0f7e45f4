#!/usr/bin/env bash
# ctest driver of the ktx-run serve tests: plans the tiny qwen3moe model with the exact float32
# kernels (so greedy answers do not depend on batching) and runs one node test against it.
# usage: run.sh TEST KTX_RUN KTC SHARED_DIR WORK_DIR
# The node packages (openai, playwright-core) come from scripts/install-deps.sh, in .deps/node.
set -euo pipefail
test=$1 ktx_run=$2 ktc=$3 shared=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
modules=${KTX_NODE_MODULES:-$root/.deps/node/node_modules}
if ! command -v node >/dev/null || [[ ! -d $modules/openai || ! -d $modules/playwright-core ]]; then
  echo "serve tests need node and the npm packages openai and playwright-core in $modules:" \
       "run scripts/install-deps.sh" >&2
  exit 1
fi
mkdir -p "$work"
plan=$work/qwen3moe.$test.plan
"$ktc" plan --kernels reference --hw "$root/test/lit/Inputs/cpu-avx2.toml" \
  "$shared/models/qwen3moe.Q8_0.gguf" -o "$plan" 2>/dev/null
export NODE_PATH=$modules
exec node "$here/${test}_test.cjs" "$ktx_run" "$plan"
