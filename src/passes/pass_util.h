// Helpers shared by the passes (internal to src/passes/).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "onnxq/ir/graph.h"
#include "onnxq/passes/pass.h"

namespace onnxq::passes {

// Factories of the built-in passes (listed by the registry in pass_manager.cc; a static library
// would drop self-registering objects nobody references).
std::unique_ptr<Pass> MakeRemoveIdentityPass();
std::unique_ptr<Pass> MakeRemoveDropoutPass();
std::unique_ptr<Pass> MakeDeadCodePass();
std::unique_ptr<Pass> MakeFoldConstantsPass();
std::unique_ptr<Pass> MakeFoldBatchNormPass();
std::unique_ptr<Pass> MakeFoldConvMulAddPass();
std::unique_ptr<Pass> MakeMatMulAddToGemmPass();
std::unique_ptr<Pass> MakeMarkActivationGroupsPass();
std::unique_ptr<Pass> MakeEqualizePass();
std::unique_ptr<Pass> MakeUpgradeOpsetPass();

// The tensor of a value that is a true constant: an initializer that is not also a graph input
// (a caller may override those). nullptr otherwise.
const Tensor* ConstantOf(const Graph& g, ValueId v);
// Float32 constant, or nullptr.
const Tensor* FloatConstantOf(const Graph& g, ValueId v);
// v has exactly one consumer slot and is not a graph output.
bool HasSingleUse(const Graph& g, ValueId v);
bool IsUsedOrOutput(const Graph& g, ValueId v);

// Makes input `index` of node `n` a constant that only n uses (cloning a shared initializer into a
// new one) and returns it for editing. The value must be a constant.
Tensor* ExclusiveConstant(Graph& g, NodeId n, size_t index);

// Removes a single-input pass-through node (Identity, inference Dropout) whose output `out` equals
// its input `in`. Keeps graph output names: if `out` is a graph output, the producer of `in` is made
// to write `out` instead. Returns false (graph unchanged) with *why set when that is impossible.
bool BypassNode(Graph& g, NodeId n, ValueId in, ValueId out, std::string* why);

// Bounds of a Clip node (attributes before opset 11, inputs from 11). False if they are not
// constants. Missing bounds are -inf / +inf.
bool GetClipBounds(const Model& model, const Node& clip, float* lo, float* hi);

// Static output-channel count of a conv-like weight etc.
int64_t AttrInt(const Node& n, const char* name, int64_t fallback);

// Removes a value if it became dangling (no producer, no use, not a graph input/output).
void DropIfDangling(Graph& g, ValueId v);

}  // namespace onnxq::passes
