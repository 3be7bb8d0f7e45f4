#!/usr/bin/env bash
# The main job on a built-in default: build, generate a tiny random-weight model, probe this
# host, plan the model for it, and start the chat. Extra arguments go to ktx-run (e.g. -p "Hi").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${KTX_BUILD_DIR:-$root/build}
work="$build/demo"
mkdir -p "$work"
[[ -f "$work/tiny.gguf" ]] || "$build/tools/ktx-run" gen tiny -o "$work/tiny.gguf"
"$build/tools/ktx-run" probe -o "$work/host.toml" --bw-seconds 0.3
# --gpu off: ktx-run's CUDA backend does not run plan ops yet, so a GPU host plans for its CPU.
"$build/tools/ktc" plan --hw "$work/host.toml" --gpu off "$work/tiny.gguf" -o "$work/tiny.plan"
exec "$build/tools/ktx-run" "$work/tiny.plan" "$@"
