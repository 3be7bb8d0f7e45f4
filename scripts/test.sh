#!/usr/bin/env bash
# Everything CI checks: install dependencies, build, run every unit and lit test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${KTX_BUILD_DIR:-$root/build}
cd "$build"
# A hung test fails after 20 minutes instead of running out the CI clock.
ctest --output-on-failure --timeout 1200 -j "${KTX_JOBS:-$(nproc)}"
