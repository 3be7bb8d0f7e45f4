// Types and attributes of the kt dialect.
#ifndef KT_ATTRS_TD
#define KT_ATTRS_TD

include "KtDialect.td"

// Activations: one row of `width` floats per token. The token count is dynamic (prefill
// batches many, decode one), so it is not part of the type.
def Kt_ActType : TypeDef<Kt_Dialect, "Act"> {
  let mnemonic = "act";
  let summary = "per-token activation row of a fixed width";
  let parameters = (ins "int64_t":$width);
  let assemblyFormat = "`<` $width `>`";
}

// Token ids entering the program.
def Kt_TokensType : TypeDef<Kt_Dialect, "Tokens"> {
  let mnemonic = "tokens";
  let summary = "token ids of the batch";
}

// Router output: for each token, top_k (expert id, weight) pairs.
def Kt_RouteType : TypeDef<Kt_Dialect, "Route"> {
  let mnemonic = "route";
  let summary = "selected experts and their weights, per token";
  let parameters = (ins "int64_t":$top_k);
  let assemblyFormat = "`<` $top_k `>`";
}

// A weight: #kt.tensor<"blk.0.attn_q.weight", "Q4_K", [256, 256]> (shape in ggml ne order,
// ne[0] = row length). The type is the ggml type name, so fork-specific ids stay printable.
def Kt_TensorAttr : AttrDef<Kt_Dialect, "Tensor"> {
  let mnemonic = "tensor";
  let summary = "a GGUF tensor: name, ggml type name and shape (ne order)";
  let parameters = (ins StringRefParameter<"GGUF tensor name">:$name,
                        StringRefParameter<"ggml type name">:$ggml_type,
                        ArrayRefParameter<"int64_t", "shape, ne order">:$shape);
  let hasCustomAssemblyFormat = 1;
}

def Kt_TensorArrayAttr : TypedArrayAttrBase<Kt_TensorAttr, "array of #kt.tensor">;

#endif  // KT_ATTRS_TD
