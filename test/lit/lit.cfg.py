# lit configuration of ktc's tests. Tools are found through PATH (ktc, FileCheck, not) and
# through substitutions:
#   %ktc %ktx-run %FileCheck %python3  the tools of this build / LLVM 16
#   %shared                            ../shared (models/, tokenizer/)
#   %models                            ../shared/models
#   %host                              the example CPU-only host profile (Inputs/cpu-avx2.toml)
#   %inputs                            test/lit/Inputs
#   %plans                             plans/ (the example host profiles, e.g. spr-h100.toml)
import os

import lit.formats

config.name = "ktx"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = config.lit_source_dir
config.test_exec_root = config.lit_binary_dir

ktc_dir = os.path.dirname(config.ktc)
ktx_run_dir = os.path.dirname(config.ktx_run)
config.environment["PATH"] = os.pathsep.join(
    [ktc_dir, ktx_run_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])

inputs = os.path.join(config.lit_source_dir, "Inputs")
config.substitutions.append(("%ktc", config.ktc))
config.substitutions.append(("%ktx-run", config.ktx_run))
config.substitutions.append(("%FileCheck", os.path.join(config.llvm_tools_dir, "FileCheck")))
config.substitutions.append(("%python3", config.python3))
config.substitutions.append(("%models", os.path.join(config.shared_dir, "models")))
config.substitutions.append(("%shared", config.shared_dir))
config.substitutions.append(("%host", os.path.join(inputs, "cpu-avx2.toml")))
config.substitutions.append(("%inputs", inputs))
config.substitutions.append(("%plans", os.path.join(config.lit_source_dir, "..", "..", "plans")))

# Host features for tests whose outcome depends on this CPU (a plan made for an AMX host is
# refused only where AMX is missing).
try:
    with open("/proc/cpuinfo") as f:
        cpu_flags = set(f.read().split())
except OSError:
    cpu_flags = set()
if "amx_tile" not in cpu_flags:
    config.available_features.add("no-amx")
# GPU plans carry their kernels, compiled by ktc with NVRTC: a ktc built without the CUDA
# toolkit refuses to write them, so those tests need this.
if getattr(config, "ktc_has_nvrtc", False):
    config.available_features.add("nvrtc")
