// `ktx-run tune`: placeholder until the tuner lands; says so instead of pretending.
#include "tools/ktx-run/commands.h"

namespace ktx::cli {

int cmd_tune(int argc, char** argv) {
  return fail("tune: not implemented yet in this build");
}

}  // namespace ktx::cli
