// Ops of the kt dialect. Every op carries:
//   name    - the stable per-layer name of the block ("blk.3.ffn_moe"), used in plans and dumps
//   layer   - transformer block index, -1 outside the blocks
//   weights - the GGUF tensors it reads (#kt.tensor), possibly empty
//   device  - set by --kt-place ("cpu" | "gpu"); absent before placement
#ifndef KT_OPS_TD
#define KT_OPS_TD

include "KtAttrs.td"

class Kt_Op<string mnemonic, dag extraArgs, list<Trait> traits = []>
    : Op<Kt_Dialect, mnemonic, traits> {
  let arguments = !con(extraArgs, (ins StrAttr:$name, I64Attr:$layer,
                                       Kt_TensorArrayAttr:$weights,
                                       OptionalAttr<StrAttr>:$device));
  let assemblyFormat = "$name `(` operands `)` attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Kt_EmbedOp : Kt_Op<"embed", (ins Kt_TokensType:$tokens)> {
  let summary = "token embedding lookup (token_embd)";
  let results = (outs Kt_ActType:$result);
}

def Kt_RmsNormOp : Kt_Op<"rms_norm", (ins Kt_ActType:$input, F32Attr:$eps)> {
  let summary = "RMSNorm with a learned scale";
  let results = (outs Kt_ActType:$result);
}

def Kt_AttentionOp : Kt_Op<"attention", (ins
    Kt_ActType:$input,
    StrAttr:$kind,                      // "gqa" | "mla"
    I64Attr:$n_head, I64Attr:$n_head_kv,
    I64Attr:$head_dim_k, I64Attr:$head_dim_v,
    StrAttr:$rope_style,                // "normal" (interleaved) | "neox" (halves)
    I64Attr:$n_rot, F32Attr:$rope_base, F32Attr:$attn_scale,
    // YaRN, present only when the file asks for it.
    OptionalAttr<F32Attr>:$yarn_factor, OptionalAttr<I64Attr>:$yarn_orig_ctx,
    OptionalAttr<F32Attr>:$yarn_log_mul, OptionalAttr<F32Attr>:$yarn_beta_fast,
    OptionalAttr<F32Attr>:$yarn_beta_slow,
    // MLA only. q_lora_rank is 0 when attn_q projects directly.
    OptionalAttr<StrAttr>:$mla_layout,  // "kv_b" | "split_kv" | "both"
    OptionalAttr<I64Attr>:$q_lora_rank, OptionalAttr<I64Attr>:$kv_lora_rank,
    OptionalAttr<I64Attr>:$qk_nope_dim, OptionalAttr<I64Attr>:$qk_rope_dim,
    OptionalAttr<I64Attr>:$v_head_dim,
    // GQA variants.
    UnitAttr:$qkv_bias, UnitAttr:$qk_norm)> {
  let summary = "self-attention block: projections, RoPE, KV cache, softmax, output";
  let results = (outs Kt_ActType:$result);
}

def Kt_LinearOp : Kt_Op<"linear", (ins Kt_ActType:$input)> {
  let summary = "y = W x (+ b): weights [W] or [W, b]";
  let results = (outs Kt_ActType:$result);
}

def Kt_DenseFfnOp : Kt_Op<"dense_ffn", (ins Kt_ActType:$input, I64Attr:$n_ff)> {
  let summary = "SwiGLU feed-forward: down(silu(gate x) * up x)";
  let results = (outs Kt_ActType:$result);
}

def Kt_RouterOp : Kt_Op<"router", (ins
    Kt_ActType:$input,
    StrAttr:$gating,                    // "softmax" | "sigmoid"
    I64Attr:$n_expert, I64Attr:$top_k,
    I64Attr:$n_group, I64Attr:$n_group_used,
    UnitAttr:$bias,                     // exp_probs_b added for selection only
    UnitAttr:$renorm,                   // selected weights renormalized to sum 1
    F32Attr:$scale,
    UnitAttr:$softmax_after_topk)> {
  let summary = "expert selection: logits, gating, (grouped) top-k, weights";
  let results = (outs Kt_RouteType:$result);
}

def Kt_RoutedExpertsOp : Kt_Op<"routed_experts", (ins
    Kt_ActType:$input, Kt_RouteType:$route,
    I64Attr:$n_expert, I64Attr:$top_k, I64Attr:$n_ff)> {
  let summary = "weighted sum of the selected experts' SwiGLU FFNs";
  let results = (outs Kt_ActType:$result);
}

def Kt_SharedExpertsOp : Kt_Op<"shared_experts", (ins
    Kt_ActType:$input, I64Attr:$n_ff, UnitAttr:$gated)> {
  let summary = "always-active expert FFN; `gated` scales it by sigmoid(gate_inp_shexp . x)";
  let results = (outs Kt_ActType:$result);
}

def Kt_AddOp : Kt_Op<"add", (ins Kt_ActType:$lhs, Kt_ActType:$rhs)> {
  let summary = "elementwise sum (residual connection, routed + shared experts)";
  let results = (outs Kt_ActType:$result);
}

def Kt_LmHeadOp : Kt_Op<"lm_head", (ins Kt_ActType:$input, UnitAttr:$tied)> {
  let summary = "output projection to vocabulary logits (tied: uses token_embd)";
  let results = (outs Kt_ActType:$result);
}

#endif  // KT_OPS_TD
