// Importer + plan emitter on the shipped models: the IR's kt.config rebuilds exactly the
// ModelConfig the file gives, every layer has the ops its config asks for, and the emitted
// plan lists one op per kt op with the file's identity.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "common/gguf/gguf.h"
#include "common/model/config.h"
#include "compiler/codegen/EmitPlan.h"
#include "compiler/import/ImportGGUF.h"
#include "compiler/ir/JsonAttr.h"
#include "compiler/ir/KtDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace ktx::kt {
namespace {

const char* const kModels[] = {"dsv3.Q8_0", "dsv3.Q4_K_M", "qwen3moe.Q8_0", "qwen3moe.Q4_K_M",
                               "qwen2moe.Q8_0", "qwen2moe.Q4_K_M", "mixtral.Q8_0",
                               "mixtral.Q4_K_M"};

std::string model_path(const std::string& stem) {
  return std::string(KTX_SHARED_DIR) + "/models/" + stem + ".gguf";
}

class ImportTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ImportTest, ConfigRoundTripsAndLayersHaveTheirOps) {
  const std::string path = model_path(GetParam());
  auto file = GGUFFile::open(path);
  ASSERT_TRUE(file) << file.status().message();
  auto config = ModelConfig::from_gguf(**file);
  ASSERT_TRUE(config) << config.status().message();

  mlir::MLIRContext ctx;
  auto module = import_model(ctx, **file, *config, {1024});
  ASSERT_TRUE(module) << module.status().message();

  // kt.config -> JSON -> ModelConfig gives back the same JSON.
  auto j = attr_to_json((**module)->getAttr(kConfigAttr));
  ASSERT_TRUE(j) << j.status().message();
  auto back = ModelConfig::from_json(*j);
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(back->to_json(), config->to_json());

  // Per layer: norm, attention, residual, norm, FFN part(s), residual.
  auto fn = (**module).lookupSymbol<mlir::func::FuncOp>("decode");
  ASSERT_TRUE(fn);
  std::vector<int> attention(config->n_layer), dense(config->n_layer), moe(config->n_layer),
      shared(config->n_layer);
  fn.walk([&](mlir::Operation* op) {
    int64_t il = is_kt_op(op) ? view_kt_op(op).layer : -1;
    if (il < 0) return;
    if (isa<AttentionOp>(op)) ++attention[il];
    if (isa<DenseFfnOp>(op)) ++dense[il];
    if (isa<RoutedExpertsOp>(op)) ++moe[il];
    if (isa<SharedExpertsOp>(op)) ++shared[il];
  });
  for (int il = 0; il < config->n_layer; ++il) {
    EXPECT_EQ(attention[il], 1) << "layer " << il;
    EXPECT_EQ(dense[il], config->layer_is_dense(il) ? 1 : 0) << "layer " << il;
    EXPECT_EQ(moe[il], config->layer_is_dense(il) ? 0 : 1) << "layer " << il;
    EXPECT_EQ(shared[il], !config->layer_is_dense(il) && config->n_ff_shexp > 0 ? 1 : 0);
  }

  // Every weight the IR names exists in the file with that shape.
  fn.walk([&](mlir::Operation* op) {
    if (!is_kt_op(op)) return;
    for (TensorAttr w : view_kt_op(op).weights) {
      const GGUFTensorInfo* t = (*file)->find_tensor(w.getName().str());
      ASSERT_NE(t, nullptr) << w.getName().str();
      ASSERT_EQ(w.getShape().size(), t->n_dims);
      for (uint32_t d = 0; d < t->n_dims; ++d) EXPECT_EQ(w.getShape()[d], t->ne[d]);
    }
  });

  // Place by hand (as --kt-place would) and emit.
  size_t n_ops = 0;
  fn.walk([&](mlir::Operation* op) {
    if (!is_kt_op(op)) return;
    op->setAttr("device", mlir::StringAttr::get(&ctx, "cpu"));
    ++n_ops;
  });
  HwProfile hw;
  hw.cpu.physical_cores = 6;
  auto plan = emit_plan(**module, hw, "test");
  ASSERT_TRUE(plan) << plan.status().message();
  EXPECT_EQ(plan->program.size(), n_ops);
  EXPECT_EQ(plan->gguf.hash, (*file)->identity_hash());
  EXPECT_EQ(plan->gguf.total_size, (*file)->total_size());
  EXPECT_EQ(plan->hw.threads, 6);
  EXPECT_EQ(plan->model.to_json(), config->to_json());
  EXPECT_EQ(plan->program.front().name, "token_embd");
  EXPECT_EQ(plan->program.back().kind, "lm_head");
}

INSTANTIATE_TEST_SUITE_P(Models, ImportTest, ::testing::ValuesIn(kModels));

TEST(EmitPlanTest, UnplacedOpIsAnErrorNamingIt) {
  mlir::MLIRContext ctx;
  auto module = import_gguf(ctx, model_path("qwen3moe.Q8_0"));
  ASSERT_TRUE(module) << module.status().message();
  auto plan = emit_plan(**module, HwProfile{}, "test");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.status().message().find("'token_embd' is not placed"), std::string::npos)
      << plan.status().message();
}

TEST(JsonAttrTest, KeepsNumberClasses) {
  mlir::MLIRContext ctx;
  nlohmann::json j = {{"i", 3}, {"f", 0.5}, {"b", true}, {"s", "x"}, {"a", {1, 2.5}}};
  auto back = attr_to_json(json_to_attr(&ctx, j));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, j);
  EXPECT_TRUE((*back)["i"].is_number_integer());
  EXPECT_TRUE((*back)["f"].is_number_float());
}

}  // namespace
}  // namespace ktx::kt
