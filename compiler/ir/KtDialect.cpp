// Dialect registration, the custom syntax of #kt.tensor, and op verifiers. Verifiers check
// what the importer guarantees, so that hand-written IR fed to `ktc opt` gets a clear error at
// the op instead of a confusing failure in a later pass.
#include "compiler/ir/KtDialect.h"

#include "llvm/ADT/TypeSwitch.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace ktx::kt;

#include "compiler/ir/KtDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "compiler/ir/KtTypes.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "compiler/ir/KtAttrs.cpp.inc"

#define GET_OP_CLASSES
#include "compiler/ir/KtOps.cpp.inc"

void KtDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "compiler/ir/KtTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "compiler/ir/KtAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "compiler/ir/KtOps.cpp.inc"
      >();
}

// #kt.tensor<"blk.0.attn_q.weight", "Q4_K", [256, 256]>
Attribute TensorAttr::parse(AsmParser& parser, Type) {
  std::string name, type;
  SmallVector<int64_t> shape;
  if (parser.parseLess() || parser.parseString(&name) || parser.parseComma() ||
      parser.parseString(&type) || parser.parseComma())
    return {};
  auto parse_dim = [&]() -> ParseResult {
    int64_t d = 0;
    if (parser.parseInteger(d)) return failure();
    shape.push_back(d);
    return success();
  };
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, parse_dim) ||
      parser.parseGreater())
    return {};
  if (shape.empty() || shape.size() > 4) {
    parser.emitError(parser.getNameLoc(), "#kt.tensor '")
        << name << "': expected 1 to 4 dimensions, found " << shape.size();
    return {};
  }
  return TensorAttr::get(parser.getContext(), name, type, shape);
}

void TensorAttr::print(AsmPrinter& printer) const {
  printer << "<\"" << getName() << "\", \"" << getGgmlType() << "\", [";
  llvm::interleaveComma(getShape(), printer);
  printer << "]>";
}

namespace ktx::kt {

bool is_kt_op(Operation* op) { return op->getDialect() && isa<KtDialect>(op->getDialect()); }

KtOpView view_kt_op(Operation* op) {
  KtOpView v;
  if (auto name = op->getAttrOfType<StringAttr>("name")) v.name = name.getValue();
  if (auto layer = op->getAttrOfType<IntegerAttr>("layer")) v.layer = layer.getInt();
  if (auto ws = op->getAttrOfType<ArrayAttr>("weights"))
    for (Attribute w : ws)
      if (auto t = w.dyn_cast<TensorAttr>()) v.weights.push_back(t);
  return v;
}

}  // namespace ktx::kt

namespace {

// Shared checks: device (if set) is a known one; the result row width is positive.
LogicalResult verify_common(Operation* op) {
  if (auto dev = op->getAttrOfType<StringAttr>("device"))
    if (dev.getValue() != "cpu" && dev.getValue() != "gpu")
      return op->emitOpError("device must be \"cpu\" or \"gpu\", found \"")
             << dev.getValue() << "\"";
  for (Type t : op->getResultTypes())
    if (auto act = t.dyn_cast<ActType>(); act && act.getWidth() <= 0)
      return op->emitOpError("activation width must be positive, found ") << act.getWidth();
  return success();
}

LogicalResult same_width(Operation* op, Value in, Value out) {
  auto a = in.getType().cast<ActType>(), b = out.getType().cast<ActType>();
  if (a.getWidth() != b.getWidth())
    return op->emitOpError("result width ") << b.getWidth() << " differs from input width "
                                            << a.getWidth();
  return success();
}

LogicalResult need_weights(Operation* op, ArrayAttr weights, size_t min_count) {
  if (weights.size() < min_count)
    return op->emitOpError("expects at least ") << min_count << " weight tensor(s), found "
                                                << weights.size();
  return success();
}

}  // namespace

LogicalResult EmbedOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  return success();
}

LogicalResult RmsNormOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  return same_width(*this, getInput(), getResult());
}

LogicalResult AttentionOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  StringRef kind = getKind(), rope = getRopeStyle();
  if (kind != "gqa" && kind != "mla")
    return emitOpError("kind must be \"gqa\" or \"mla\", found \"") << kind << "\"";
  if (rope != "normal" && rope != "neox")
    return emitOpError("rope_style must be \"normal\" or \"neox\", found \"") << rope << "\"";
  const int64_t n_head = getNHeadAttr().getInt(), n_head_kv = getNHeadKvAttr().getInt();
  if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0)
    return emitOpError("n_head (") << n_head << ") must be a positive multiple of n_head_kv ("
                                   << n_head_kv << ")";
  bool mla_attrs = getMlaLayout() || getKvLoraRank();
  if (kind == "mla") {
    if (!getMlaLayout() || !getKvLoraRank() || !getQLoraRank() || !getQkRopeDim())
      return emitOpError("kind \"mla\" needs mla_layout, q_lora_rank, kv_lora_rank, qk_rope_dim");
    StringRef layout = *getMlaLayout();
    if (layout != "kv_b" && layout != "split_kv" && layout != "both")
      return emitOpError("mla_layout must be kv_b, split_kv or both, found \"") << layout << "\"";
  } else if (mla_attrs) {
    return emitOpError("kind \"gqa\" must not carry MLA attributes");
  }
  return same_width(*this, getInput(), getResult());
}

LogicalResult LinearOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  return success();
}

LogicalResult DenseFfnOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 3)))
    return failure();
  return same_width(*this, getInput(), getResult());
}

LogicalResult RouterOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  if (getGating() != "softmax" && getGating() != "sigmoid")
    return emitOpError("gating must be \"softmax\" or \"sigmoid\", found \"") << getGating() << "\"";
  const int64_t top_k = getTopKAttr().getInt(), n_expert = getNExpertAttr().getInt();
  const int64_t n_group = getNGroupAttr().getInt(), n_used = getNGroupUsedAttr().getInt();
  if (top_k <= 0 || top_k > n_expert)
    return emitOpError("top_k ") << top_k << " must be in [1, n_expert=" << n_expert << "]";
  if (n_group <= 0 || n_expert % n_group != 0 || n_used <= 0 || n_used > n_group)
    return emitOpError("groups: n_group ") << n_group << " must divide n_expert " << n_expert
                                           << " and n_group_used " << n_used
                                           << " be in [1, n_group]";
  if (getResult().getType().cast<RouteType>().getTopK() != top_k)
    return emitOpError("result !kt.route<k> must have k = top_k = ") << top_k;
  return success();
}

LogicalResult RoutedExpertsOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 3)))
    return failure();
  if (getRoute().getType().cast<RouteType>().getTopK() != getTopKAttr().getInt())
    return emitOpError("route operand's k differs from top_k = ") << getTopKAttr().getInt();
  return same_width(*this, getInput(), getResult());
}

LogicalResult SharedExpertsOp::verify() {
  size_t need = getGated() ? 4 : 3;
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), need)))
    return failure();
  return same_width(*this, getInput(), getResult());
}

LogicalResult AddOp::verify() {
  if (failed(verify_common(*this))) return failure();
  if (failed(same_width(*this, getLhs(), getResult()))) return failure();
  return same_width(*this, getRhs(), getResult());
}

LogicalResult LmHeadOp::verify() {
  if (failed(verify_common(*this)) || failed(need_weights(*this, getWeights(), 1)))
    return failure();
  return success();
}
