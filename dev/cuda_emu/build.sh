#!/bin/bash
# Builds the GPU unit tests against a CPU emulation of the kernels: usage
#   dev/cuda_emu/build.sh [build dir (default build)] [out dir (default /tmp/ktx-cuda-emu)]
# after `cmake --build build --target cuda_test_cuda_attention cuda_test_cuda_attention_layers
# cuda_test_cuda_kernels cuda_test_cuda_moe`. Then run $out/test_cuda_* (skip the NVRTC/cubin tests: no cubin here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd); out=${2:-/tmp/ktx-cuda-emu}
mkdir -p "$out"
python3 "$here/gen.py" "$root" "$out" >/dev/null
inc="-I$root -I$build/generated -I/usr/local/cuda/include -I$here"
g++ -std=c++20 -O2 -g -c "$here/emu.cpp" -o "$out/emu.o"
g++ -std=c++20 -O2 -g -c "$out/kernels_emu.cpp" $inc -I"$out/k" -o "$out/kernels_emu.o"
g++ -std=c++20 -O2 -g -c "$here/library_emu.cpp" $inc -o "$out/library_emu.o"
cd "$build"
libs="common/libktx_quant.a runtime/libktx_engine.a common/libktx_plan.a common/libktx_model.a runtime/libktx_text.a common/libktx_gguf.a runtime/cpu/libktx_cpu.a runtime/cpu/libktx_cpu_jit.a common/libktx_kernels.a common/libktx_quant.a common/libktx_hw.a /usr/local/cuda/lib/libcudart_static.a -ldl -lrt -lfmt -lhwloc -lpthread"
cu=runtime/cuda/CMakeFiles/ktx_cuda.dir
for t in test_cuda_attention test_cuda_attention_layers test_cuda_kernels test_cuda_moe; do
  g++ -o "$out/$t" test/unit/cuda/CMakeFiles/cuda_$t.dir/$t.cpp.o $cu/kernels.cpp.o $cu/attention.cpp.o \
    $cu/attention_layers.cpp.o $cu/router.cpp.o $cu/moe.cpp.o "$out/library_emu.o" "$out/kernels_emu.o" "$out/emu.o" -lgtest -lgtest_main $libs
done
echo "built $out/test_cuda_{attention,attention_layers,kernels,moe}"
