# Copies runtime/cuda/kernels with the two PTX asm conversions replaced by host calls, and
# writes kernels_emu.cpp: every family included, every entry point in a name table.
import os, re, shutil, sys
src=os.path.join(sys.argv[1], 'runtime/cuda/kernels')
out=sys.argv[2]
dst=os.path.join(out, 'k')
shutil.rmtree(dst, ignore_errors=True)
names=[]
for root, _, files in os.walk(src):
    for f in files:
        p=os.path.join(root,f); rel=os.path.relpath(p,src)
        s=open(p).read()
        s=s.replace('asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));','f = emu_h2f(h);')
        s=re.sub(r'asm\("\{ cvt\.rn\.f16\.f32 %0, %1; \}" : "=h"\(h\) : "f"\((.*)\)\);', r'h = emu_f2h(\1);', s)
        assert 'asm(' not in s or rel.endswith(('pdl.cuh', 'mma.cuh')), p  # device-only asm (#if)
        os.makedirs(os.path.dirname(os.path.join(dst,rel)), exist_ok=True)
        open(os.path.join(dst,rel),'w').write(s)
        names += [n for n in re.findall(r'_ENTRY\((ktx_\w+)', s) if not n.endswith('_')]
        names += ['ktx_gemv16_%s_%d%s' % (t, nt, r) for t in re.findall(r'^KTX_Q16_TYPE\((\w+),', s, re.M)
                  for nt in (1, 2, 4, 8) for r in ('', '_r2', '_r4')]
        if not rel.startswith('handoff'):  # CPU-flag spinning: not emulated (bind treats it as optional)
            names += re.findall(r'extern "C" __global__ void(?: __launch_bounds__\([^)]*\))?\s+(ktx_\w+)\(', s)
# router and sample need atomics and bit casts this emulator lacks (bench/cuda_emu covers them).
skip={'common', 'router', 'sample', 'handoff'}
stubs=sorted(set(n for n in names if n.startswith(('ktx_route', 'ktx_sample', 'ktx_shexp'))))
names=[n for n in names if n not in stubs]
fams=sorted(d for d in os.listdir(dst) if d not in skip)
with open(os.path.join(out, 'kernels_emu.cpp'),'w') as o:
    o.write('#include "emu.h"\n#include <cstdint>\nfloat emu_h2f(unsigned short h);\nunsigned short emu_f2h(float f);\n')
    for f in fams: o.write('#include "%s/kernel.cuh"\n' % f)
    o.write('#include "registry.h"\n#include <cstdio>\n#include <cstdlib>\n')
    o.write('static void emu_unsupported(void**) { std::fprintf(stderr, "emu: router/sample kernels are not emulated\\n"); std::abort(); }\n')
    o.write('extern const EmuEntry kEmuEntries[] = {\n')
    for n in sorted(set(names)): o.write('  {"%s", &emu_invoke<&%s>},\n' % (n,n))
    for n in stubs: o.write('  {"%s", &emu_unsupported},\n' % n)
    o.write('};\nextern const int kEmuEntryCount = sizeof(kEmuEntries) / sizeof(kEmuEntries[0]);\n')
print(len(set(names)), sorted(set(names))[:5])
