#!/usr/bin/env bash
# Install KTX's build and test dependencies on Debian 12 / Ubuntu 24.04 (packages by name).
# KTX_NO_COMPILER=1 skips MLIR/LLVM (runtime-only builds).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config python3 git
      libxbyak-dev libtomlplusplus-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
      libcpp-httplib-dev libcli11-dev libhwloc-dev libnuma-dev
      libgtest-dev libgmock-dev libbenchmark-dev)
if [[ "${KTX_NO_COMPILER:-0}" != 1 ]]; then
  pkgs+=(libmlir-16-dev mlir-16-tools llvm-16-dev llvm-16-tools)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
