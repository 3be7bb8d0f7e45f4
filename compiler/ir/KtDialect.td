// The kt dialect: a MoE transformer at block granularity, as imported from a GGUF file.
// Each op is one block of work the runtime schedules as a unit (an attention block, the
// routed experts of a layer, ...). Weights are named by GGUF tensor name, ggml type and shape,
// so later passes (placement, kernel selection) can decide from the IR alone.
#ifndef KT_DIALECT_TD
#define KT_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"

def Kt_Dialect : Dialect {
  let name = "kt";
  let summary = "KTX block-level dialect for Mixture-of-Experts LLMs";
  let description = [{
    A program is a func.func (@prefill, @decode) over activations (!kt.act<width>). The module
    carries the model identity (kt.arch, kt.gguf) and the normalized model config (kt.config,
    the JSON of ModelConfig as a dictionary) so a plan can be emitted from the IR alone.
  }];
  let cppNamespace = "::ktx::kt";
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let useFoldAPI = kEmitFoldAdaptorFolder;
}

#endif  // KT_DIALECT_TD
