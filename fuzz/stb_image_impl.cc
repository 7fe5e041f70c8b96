// Instrumented build of Debian's stb_image for the fuzzers (see fuzz/CMakeLists.txt).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
