// JSON <-> attribute conversion (see JsonAttr.h). Numbers keep their class: a JSON integer
// becomes an i64 IntegerAttr and comes back as an integer, a float as an f64 FloatAttr, so
// ModelConfig::from_json's type checks pass on the round trip.
#include "compiler/ir/JsonAttr.h"

#include <string>

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/Support/raw_ostream.h"

namespace ktx::kt {

using nlohmann::json;

mlir::Attribute json_to_attr(mlir::MLIRContext* ctx, const json& j) {
  mlir::Builder b(ctx);
  switch (j.type()) {
    case json::value_t::object: {
      llvm::SmallVector<mlir::NamedAttribute> items;
      for (const auto& [key, value] : j.items())
        items.push_back(b.getNamedAttr(key, json_to_attr(ctx, value)));
      return b.getDictionaryAttr(items);
    }
    case json::value_t::array: {
      llvm::SmallVector<mlir::Attribute> items;
      for (const json& value : j) items.push_back(json_to_attr(ctx, value));
      return b.getArrayAttr(items);
    }
    case json::value_t::string: return b.getStringAttr(j.get<std::string>());
    case json::value_t::boolean: return b.getBoolAttr(j.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return b.getI64IntegerAttr(j.get<int64_t>());
    case json::value_t::number_float: return b.getF64FloatAttr(j.get<double>());
    default: return b.getUnitAttr();  // null, binary, discarded: nothing ModelConfig writes
  }
}

Expected<json> attr_to_json(mlir::Attribute attr) {
  if (auto dict = attr.dyn_cast<mlir::DictionaryAttr>()) {
    json out = json::object();
    for (mlir::NamedAttribute item : dict) {
      KTX_ASSIGN_OR_RETURN(json value, attr_to_json(item.getValue()));
      out[item.getName().str()] = std::move(value);
    }
    return out;
  }
  if (auto arr = attr.dyn_cast<mlir::ArrayAttr>()) {
    json out = json::array();
    for (mlir::Attribute item : arr) {
      KTX_ASSIGN_OR_RETURN(json value, attr_to_json(item));
      out.push_back(std::move(value));
    }
    return out;
  }
  if (auto s = attr.dyn_cast<mlir::StringAttr>()) return json(s.getValue().str());
  if (auto b = attr.dyn_cast<mlir::BoolAttr>()) return json(b.getValue());
  if (auto i = attr.dyn_cast<mlir::IntegerAttr>()) return json(i.getInt());
  if (auto f = attr.dyn_cast<mlir::FloatAttr>()) return json(f.getValueAsDouble());
  if (attr.isa<mlir::UnitAttr>()) return json(nullptr);
  std::string text;
  llvm::raw_string_ostream os(text);
  attr.print(os);
  return Error("attribute {} has no JSON form (expected a dictionary, array, string, bool, "
               "integer or float)", os.str());
}

}  // namespace ktx::kt
