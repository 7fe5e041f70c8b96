#include <string>
#include <vector>

#include "cli/command.h"

int main(int argc, char** argv) {
  return onnxq::cli::RunCli(std::vector<std::string>(argv + 1, argv + argc));
}
