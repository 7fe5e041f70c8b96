// Input checks run before handing image bytes to stb_image (Debian's 2.27), which has known
// memory-safety bugs in its JPEG Huffman code (docs/fuzzing.md findings 7 and 8) and parses many
// formats onnxq does not document. Keep stb's reachable surface to well-formed JPEG and PNG.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "onnxq/base/status.h"

namespace onnxq::calib {

// Refuses anything whose magic bytes are not JPEG (FF D8 FF) or PNG (89 50 4E 47 0D 0A 1A 0A),
// so stb's BMP/GIF/PSD/TGA/HDR/PIC/PNM parsers are never reached.
[[nodiscard]] Status CheckImageMagic(const uint8_t* data, size_t size, const std::string& display_name);

// True when the bytes start like a JPEG the way stb accepts it (FF fill bytes, then D8).
bool LooksLikeJpeg(const uint8_t* data, size_t size);

// Walks the JPEG markers the way stb_image 2.27 does and refuses the two inputs that reach its
// known bugs: a DHT table whose 16 code counts sum to more than 256 (out-of-bounds write), and a
// scan that selects a Huffman table no earlier DHT defined (out-of-bounds read). Conservative:
// anything stb would refuse anyway may also be refused here. Non-JPEG input returns Ok.
[[nodiscard]] Status CheckJpegSafeForStb(const uint8_t* data, size_t size, const std::string& display_name);

}  // namespace onnxq::calib
