#include "jpeg_guard.h"

#include <cstring>

namespace onnxq::calib {

namespace {

constexpr uint8_t kPngMagic[8] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};

// Markers without a length field: TEM, SOI, EOI, RSTn (and 00, stuffing).
bool IsStandalone(uint8_t m) { return m == 0x00 || m == 0x01 || m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7); }

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  // Past the end reads 0, as stb's stbi__get8 does at EOF.
  int At(size_t k) const { return k < n_ ? p_[k] : 0; }
  size_t Size() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

}  // namespace

bool LooksLikeJpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

Status CheckImageMagic(const uint8_t* data, size_t size, const std::string& display_name) {
  if (LooksLikeJpeg(data, size)) return Status::Ok();
  if (size >= sizeof(kPngMagic) && std::memcmp(data, kPngMagic, sizeof(kPngMagic)) == 0) return Status::Ok();
  return InvalidArgument(display_name, ": not a JPEG or PNG image (the file does not start with the JPEG "
                         "bytes FF D8 FF or the PNG signature)");
}

Status CheckJpegSafeForStb(const uint8_t* data, size_t size, const std::string& display_name) {
  const Reader r(data, size);
  const size_t n = r.Size();
  // stb's SOI: a marker is FF, any number of FF fill bytes, then the code.
  size_t i = 0;
  while (i < n && data[i] == 0xFF) ++i;
  if (i == 0 || i >= n || data[i] != 0xD8) return Status::Ok();  // not a JPEG: stb's JPEG parser refuses it
  ++i;
  bool defined[2][4] = {};  // [DC=0 / AC=1][table id]; tables persist across scans, as in stb
  bool progressive = false;
  auto malformed = [&](auto&&... why) {
    return InvalidArgument(display_name, ": malformed JPEG: ", why...);
  };
  while (i + 1 < n) {
    // stb skips junk between markers one byte at a time.
    if (data[i] != 0xFF) { ++i; continue; }
    const uint8_t m = data[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill byte
    if (IsStandalone(m)) { i += 2; continue; }
    const size_t len = (size_t(r.At(i + 2)) << 8) | size_t(r.At(i + 3));
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) {
      // One DHT segment may hold several tables: class/id byte, 16 counts, then the symbols.
      long left = static_cast<long>(len) - 2;
      size_t j = i + 4;
      while (left > 0 && j < n) {
        const int q = r.At(j);
        int codes = 0;
        for (size_t k = 1; k <= 16; ++k) codes += r.At(j + k);
        if (codes > 256)
          return malformed("Huffman table (DHT at byte ", i, ") declares ", codes,
                           " codes, more than the 256 a table can hold");
        if ((q >> 4) <= 1 && (q & 15) <= 3) defined[q >> 4][q & 15] = true;
        j += 17 + static_cast<size_t>(codes);
        left -= 17 + codes;
      }
    }
    if (m == 0xDA) {
      const int components = r.At(i + 4);
      const size_t tail = i + 5 + 2 * static_cast<size_t>(components);
      const int spectral_start = r.At(tail), approx_high = r.At(tail + 2) >> 4;
      for (int c = 0; c < components; ++c) {
        const int q = r.At(i + 5 + 2 * static_cast<size_t>(c) + 1);
        const int dc = q >> 4, ac = q & 15;
        // A progressive scan uses DC tables only in its first DC pass and AC tables only in AC scans.
        const bool uses_dc = !progressive || (spectral_start == 0 && approx_high == 0);
        const bool uses_ac = !progressive || spectral_start > 0;
        if (uses_dc && dc <= 3 && !defined[0][dc])
          return malformed("scan at byte ", i, " uses DC Huffman table ", dc, " before any DHT defines it");
        if (uses_ac && ac <= 3 && !defined[1][ac])
          return malformed("scan at byte ", i, " uses AC Huffman table ", ac, " before any DHT defines it");
      }
    }
    i += 2 + len;
    if (m == 0xDA) {  // entropy-coded data runs to the next marker that is not stuffing, fill or a restart
      while (i + 1 < n && !(data[i] == 0xFF && data[i + 1] != 0x00 && data[i + 1] != 0xFF &&
                            !(data[i + 1] >= 0xD0 && data[i + 1] <= 0xD7)))
        ++i;
    }
  }
  return Status::Ok();
}

}  // namespace onnxq::calib
