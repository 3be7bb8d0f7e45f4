#!/usr/bin/env bash
# Everything CI checks: install dependencies, build, run every unit and lit test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${KTX_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure -j "${KTX_JOBS:-$(nproc)}"
