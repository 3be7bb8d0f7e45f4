#!/usr/bin/env bash
# Configure and build KTX into ${KTX_BUILD_DIR:-build} (Release with debug info, Ninja).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KTX_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${KTX_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$build" -j "${KTX_JOBS:-$(nproc)}"
