// GGUF importer: ModelConfig + tensor table -> kt IR. One builder walks the layers the same way
// for both programs (prefill and decode differ only in how the runtime batches tokens, not in
// the ops), emitting per layer:
//
//   %n  = kt.rms_norm "blk.L.attn_norm"(%h)
//   %a  = kt.attention "blk.L.attn"(%n)            kind gqa | mla, with every variant attribute
//   %h1 = kt.add "blk.L.attn_residual"(%h, %a)
//   %m  = kt.rms_norm "blk.L.ffn_norm"(%h1)
//   dense layers:  %f = kt.dense_ffn "blk.L.ffn"(%m)
//   MoE layers:    %r = kt.router "blk.L.ffn_router"(%m)
//                  %f = kt.routed_experts "blk.L.ffn_moe"(%m, %r)
//                  (+ kt.shared_experts "blk.L.ffn_shexp" and kt.add "blk.L.ffn_moe_shexp")
//   %h2 = kt.add "blk.L.ffn_residual"(%h1, %f)
#include "compiler/import/ImportGGUF.h"

#include <nlohmann/json.hpp>

#include "compiler/ir/JsonAttr.h"
#include "compiler/ir/KtDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace ktx::kt {
namespace {

using mlir::Value;

// Builds one program function; `st` keeps the first error (a tensor missing from the file).
class ProgramBuilder {
 public:
  ProgramBuilder(mlir::OpBuilder& b, const GGUFFile& f, const ModelConfig& c)
      : b_(b), f_(f), c_(c), loc_(b.getUnknownLoc()) {}

  Status build(llvm::StringRef fn_name, mlir::ModuleOp module);

 private:
  // Tensor reference; records an error if the file lacks it.
  mlir::Attribute tensor(const std::string& name);
  // Tensor reference if present (optional variants such as MLA's split k_b/v_b).
  void tensor_if(llvm::SmallVector<mlir::Attribute>& out, const std::string& name) {
    if (f_.find_tensor(name)) out.push_back(tensor(name));
  }
  mlir::ArrayAttr weights(std::initializer_list<std::string> names);
  mlir::ArrayAttr weights(llvm::ArrayRef<mlir::Attribute> ws) { return b_.getArrayAttr(ws); }
  ActType act(int64_t width) { return ActType::get(b_.getContext(), width); }
  mlir::StringAttr str(const std::string& s) { return b_.getStringAttr(s); }
  mlir::IntegerAttr i64(int64_t v) { return b_.getI64IntegerAttr(v); }
  mlir::FloatAttr f32(float v) { return b_.getF32FloatAttr(v); }
  mlir::UnitAttr unit(bool set) { return set ? b_.getUnitAttr() : nullptr; }

  Value rms_norm(const std::string& name, int il, const std::string& weight, Value x);
  Value attention(int il, Value x);
  Value ffn(int il, Value x);
  Value add(const std::string& name, int il, Value lhs, Value rhs) {
    return b_.create<AddOp>(loc_, act(c_.n_embd), lhs, rhs, str(name), i64(il),
                            b_.getArrayAttr({}), nullptr);
  }

  mlir::OpBuilder& b_;
  const GGUFFile& f_;
  const ModelConfig& c_;
  mlir::Location loc_;
  Status st_;
};

mlir::Attribute ProgramBuilder::tensor(const std::string& name) {
  const GGUFTensorInfo* t = f_.find_tensor(name);
  if (!t) {
    if (st_) st_ = Error("tensor '{}' is missing", name);
    return TensorAttr::get(b_.getContext(), name, "F32", {1});
  }
  llvm::SmallVector<int64_t> shape(t->ne, t->ne + t->n_dims);
  return TensorAttr::get(b_.getContext(), t->name,
                         ggml_type_name(static_cast<uint32_t>(t->type)), shape);
}

mlir::ArrayAttr ProgramBuilder::weights(std::initializer_list<std::string> names) {
  llvm::SmallVector<mlir::Attribute> ws;
  for (const std::string& n : names) ws.push_back(tensor(n));
  return b_.getArrayAttr(ws);
}

Value ProgramBuilder::rms_norm(const std::string& name, int il, const std::string& weight,
                               Value x) {
  return b_.create<RmsNormOp>(loc_, act(c_.n_embd), x, f32(c_.rms_eps), str(name), i64(il),
                              weights({weight}), nullptr);
}

Value ProgramBuilder::attention(int il, Value x) {
  const std::string p = "blk." + std::to_string(il) + ".";
  const bool mla = c_.attn == AttnKind::MLA;
  llvm::SmallVector<mlir::Attribute> ws;
  if (mla) {
    if (c_.q_lora_rank > 0) {
      for (const char* n : {"attn_q_a.weight", "attn_q_a_norm.weight", "attn_q_b.weight"})
        ws.push_back(tensor(p + n));
    } else {
      ws.push_back(tensor(p + "attn_q.weight"));
    }
    ws.push_back(tensor(p + "attn_kv_a_mqa.weight"));
    ws.push_back(tensor(p + "attn_kv_a_norm.weight"));
    if (c_.mla_layout == MlaLayout::KvB || c_.mla_layout == MlaLayout::Both)
      ws.push_back(tensor(p + "attn_kv_b.weight"));
    if (c_.mla_layout == MlaLayout::SplitKV || c_.mla_layout == MlaLayout::Both) {
      ws.push_back(tensor(p + "attn_k_b.weight"));
      ws.push_back(tensor(p + "attn_v_b.weight"));
    }
  } else {
    for (const char* n : {"attn_q", "attn_k", "attn_v"}) {
      ws.push_back(tensor(p + n + ".weight"));
      if (c_.qkv_bias) ws.push_back(tensor(p + n + ".bias"));
    }
    if (c_.qk_norm) {
      ws.push_back(tensor(p + "attn_q_norm.weight"));
      ws.push_back(tensor(p + "attn_k_norm.weight"));
    }
  }
  ws.push_back(tensor(p + "attn_output.weight"));

  auto op = b_.create<AttentionOp>(
      loc_, act(c_.n_embd), x, str(mla ? "mla" : "gqa"), i64(c_.n_head), i64(c_.n_head_kv),
      i64(c_.head_dim_k), i64(c_.head_dim_v),
      str(c_.rope_style == RopeStyle::Neox ? "neox" : "normal"), i64(c_.n_rot),
      f32(c_.rope_freq_base), f32(c_.attn_scale), nullptr, nullptr, nullptr, nullptr, nullptr,
      nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, str(p + "attn"),
      i64(il), weights(ws), nullptr);
  if (c_.yarn) {
    op.setYarnFactorAttr(f32(c_.rope_scale_factor));
    op.setYarnOrigCtxAttr(i64(c_.rope_orig_ctx));
    op.setYarnLogMulAttr(f32(c_.yarn_log_multiplier));
    op.setYarnBetaFastAttr(f32(c_.yarn_beta_fast));
    op.setYarnBetaSlowAttr(f32(c_.yarn_beta_slow));
  }
  if (mla) {
    const char* layout = c_.mla_layout == MlaLayout::KvB       ? "kv_b"
                         : c_.mla_layout == MlaLayout::SplitKV ? "split_kv"
                                                               : "both";
    op.setMlaLayoutAttr(str(layout));
    op.setQLoraRankAttr(i64(c_.q_lora_rank));
    op.setKvLoraRankAttr(i64(c_.kv_lora_rank));
    op.setQkNopeDimAttr(i64(c_.qk_nope_dim));
    op.setQkRopeDimAttr(i64(c_.qk_rope_dim));
    op.setVHeadDimAttr(i64(c_.v_head_dim));
  }
  op.setQkvBias(c_.qkv_bias);
  op.setQkNorm(c_.qk_norm);
  return op.getResult();
}

Value ProgramBuilder::ffn(int il, Value x) {
  const std::string p = "blk." + std::to_string(il) + ".";
  if (c_.layer_is_dense(il)) {
    return b_.create<DenseFfnOp>(
        loc_, act(c_.n_embd), x, i64(c_.n_ff), str(p + "ffn"), i64(il),
        weights({p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight"}), nullptr);
  }
  llvm::SmallVector<mlir::Attribute> router_ws{tensor(p + "ffn_gate_inp.weight")};
  if (c_.exp_probs_bias) router_ws.push_back(tensor(p + "exp_probs_b.bias"));
  auto route_t = RouteType::get(b_.getContext(), c_.n_expert_used);
  Value route = b_.create<RouterOp>(
      loc_, route_t, x, str(c_.gating == GatingFunc::Sigmoid ? "sigmoid" : "softmax"),
      i64(c_.n_expert), i64(c_.n_expert_used), i64(c_.n_expert_groups), i64(c_.n_group_used),
      unit(c_.exp_probs_bias), unit(c_.expert_weights_norm), f32(c_.expert_weights_scale),
      unit(c_.softmax_after_topk), str(p + "ffn_router"), i64(il), weights(router_ws), nullptr);
  Value moe = b_.create<RoutedExpertsOp>(
      loc_, act(c_.n_embd), x, route, i64(c_.n_expert), i64(c_.n_expert_used),
      i64(c_.n_ff_exp), str(p + "ffn_moe"), i64(il),
      weights({p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight",
               p + "ffn_down_exps.weight"}),
      nullptr);
  if (c_.n_ff_shexp == 0) return moe;
  llvm::SmallVector<mlir::Attribute> sh_ws{tensor(p + "ffn_gate_shexp.weight"),
                                           tensor(p + "ffn_up_shexp.weight"),
                                           tensor(p + "ffn_down_shexp.weight")};
  if (c_.shexp_gate) sh_ws.push_back(tensor(p + "ffn_gate_inp_shexp.weight"));
  Value shared = b_.create<SharedExpertsOp>(loc_, act(c_.n_embd), x, i64(c_.n_ff_shexp),
                                            unit(c_.shexp_gate), str(p + "ffn_shexp"), i64(il),
                                            weights(sh_ws), nullptr);
  return add(p + "ffn_moe_shexp", il, moe, shared);
}

Status ProgramBuilder::build(llvm::StringRef fn_name, mlir::ModuleOp module) {
  b_.setInsertionPointToEnd(module.getBody());
  auto fn_type = b_.getFunctionType({TokensType::get(b_.getContext())}, {act(c_.n_vocab)});
  auto fn = b_.create<mlir::func::FuncOp>(loc_, fn_name, fn_type);
  mlir::Block* entry = fn.addEntryBlock();
  b_.setInsertionPointToStart(entry);

  Value h = b_.create<EmbedOp>(loc_, act(c_.n_embd), entry->getArgument(0), str("token_embd"),
                               i64(-1), weights({"token_embd.weight"}), nullptr);
  for (int il = 0; il < c_.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    Value n = rms_norm(p + "attn_norm", il, p + "attn_norm.weight", h);
    Value h1 = add(p + "attn_residual", il, h, attention(il, n));
    Value m = rms_norm(p + "ffn_norm", il, p + "ffn_norm.weight", h1);
    h = add(p + "ffn_residual", il, h1, ffn(il, m));
  }
  Value out = rms_norm("output_norm", -1, "output_norm.weight", h);
  const char* head = c_.tied_output ? "token_embd.weight" : "output.weight";
  Value logits = b_.create<LmHeadOp>(loc_, act(c_.n_vocab), out, unit(c_.tied_output), str("output"),
                                     i64(-1), weights({head}), nullptr);
  b_.create<mlir::func::ReturnOp>(loc_, logits);
  return st_;
}

}  // namespace

void register_ktc_dialects(mlir::MLIRContext& ctx) {
  ctx.loadDialect<KtDialect, mlir::func::FuncDialect>();
}

Expected<mlir::OwningOpRef<mlir::ModuleOp>> import_model(mlir::MLIRContext& ctx,
                                                         const GGUFFile& file,
                                                         const ModelConfig& config,
                                                         const ImportOptions& options) {
  register_ktc_dialects(ctx);
  mlir::OpBuilder b(&ctx);
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::ModuleOp::create(b.getUnknownLoc());
  module->getOperation()->setAttr(kArchAttr, b.getStringAttr(model_arch_name(config.arch)));
  module->getOperation()->setAttr(
      kGgufAttr, b.getDictionaryAttr({
                     b.getNamedAttr("path", b.getStringAttr(file.path())),
                     b.getNamedAttr("size", b.getI64IntegerAttr(int64_t(file.total_size()))),
                     b.getNamedAttr("hash", b.getStringAttr(file.identity_hash())),
                     b.getNamedAttr("n_splits", b.getI64IntegerAttr(int64_t(file.n_splits()))),
                 }));
  module->getOperation()->setAttr(kConfigAttr, json_to_attr(&ctx, config.to_json()));
  if (options.context > 0)
    module->getOperation()->setAttr(kContextAttr, b.getI64IntegerAttr(options.context));

  for (const char* fn : {"prefill", "decode"}) {
    ProgramBuilder builder(b, file, config);
    KTX_RETURN_IF_ERROR(builder.build(fn, *module).with_context(file.path()));
  }
  return module;
}

Expected<mlir::OwningOpRef<mlir::ModuleOp>> import_gguf(mlir::MLIRContext& ctx,
                                                        const std::string& path,
                                                        const ImportOptions& options) {
  KTX_ASSIGN_OR_RETURN(std::unique_ptr<GGUFFile> file, GGUFFile::open(path));
  auto config = ModelConfig::from_gguf(*file);
  if (!config) return config.status().with_context(path);
  KTX_RETURN_IF_ERROR(config->check_tensors(*file).with_context(path));
  return import_model(ctx, *file, *config, options);
}

}  // namespace ktx::kt
