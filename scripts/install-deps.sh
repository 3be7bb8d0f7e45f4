#!/usr/bin/env bash
# Install KTX's build and test dependencies on Debian 12 / Ubuntu 24.04 (packages by name).
# KTX_NO_COMPILER=1 skips MLIR/LLVM (runtime-only builds). KTX_NO_SERVE_TESTS=1 skips what the
# ktx-run serve tests need: Node.js with npm, Debian's chromium, and the npm packages openai and
# playwright-core (installed into .deps/node, which git ignores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(build-essential cmake ninja-build pkg-config python3 git
      libxbyak-dev libtomlplusplus-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
      libcpp-httplib-dev libcli11-dev libhwloc-dev libnuma-dev
      libgtest-dev libgmock-dev libbenchmark-dev)
if [[ "${KTX_NO_COMPILER:-0}" != 1 ]]; then
  pkgs+=(libmlir-16-dev mlir-16-tools llvm-16-dev llvm-16-tools)
fi
serve_tests=1
[[ "${KTX_NO_SERVE_TESTS:-0}" == 1 ]] && serve_tests=0
if ((serve_tests)); then
  pkgs+=(chromium)
  # Node from Debian only where none is installed (a NodeSource node already carries npm).
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
fi

# The npm packages of the serve tests, pinned.
npm_packages() {
  ((serve_tests)) || return 0
  local want=(openai@7.60.0 playwright-core@1.65.2) dir=$root/.deps/node p missing_npm=()
  for p in "${want[@]}"; do
    local name=${p%@*} version=${p##*@}
    grep -qs "\"version\": \"$version\"" "$dir/node_modules/$name/package.json" || missing_npm+=("$p")
  done
  if ((${#missing_npm[@]} == 0)); then
    echo "install-deps: npm packages present"
    return 0
  fi
  echo "install-deps: npm install ${missing_npm[*]} into $dir"
  mkdir -p "$dir"
  npm install --no-audit --no-fund --no-save --prefix "$dir" "${want[@]}"
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  npm_packages
  exit 0
fi
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_packages
