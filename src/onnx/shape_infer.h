// Internal to src/onnx/: ONNX type and shape inference, driven node by node.
//
// libonnx 1.12's InferShapes() runs every operator's inference function on whatever the file
// says; several of those functions index into shapes without checking ranks (ConvTranspose with a
// rank-1 weight, LSTM with missing inputs, ...) and crash on malformed models. Driving the
// per-node functions ourselves lets the importer skip a node whose inputs would trip them, so a
// hostile file costs inferred shapes, never the process.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace onnxq::onnx_io {

// Types inferred for node outputs (and the declared types of graph inputs, initializers and
// value_info), by value name. `order` lists the graph's node indexes in topological order. Never
// throws; nodes whose inference fails or looks unsafe get no entry for their outputs (or their
// declared type, if the file declares one).
std::unordered_map<std::string, onnx::TypeProto> InferTypes(onnx::ModelProto& model,
                                                            const std::vector<int>& order);

}  // namespace onnxq::onnx_io
