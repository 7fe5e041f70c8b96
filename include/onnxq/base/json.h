// JSON string quoting shared by every JSON writer in onnxq (inspect, bench, pass and quantization
// reports). Model files may hold any bytes in names, so the output is always valid JSON.
#pragma once

#include <string>
#include <string_view>

namespace onnxq {

// s as a quoted JSON string: '"', '\\' and control characters escaped, invalid UTF-8 bytes
// replaced by U+FFFD.
std::string JsonQuote(std::string_view s);

}  // namespace onnxq
