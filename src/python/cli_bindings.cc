// `python -m onnxq ...` and the `onnxq` console script of a pip install: the C++ subcommands of the
// onnxq executable (src/cli), run in-process.
#include <pybind11/stl.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "python/common.h"

namespace onnxq::python {

ONNXQ_PYTHON_BINDINGS(BindCli, 10) {
  m.def(
      "cli_main",
      [](const std::vector<std::string>& args) {
        int code;
        {
          py::gil_scoped_release nogil;
          code = cli::RunCli(args);
          // The commands print through C stdio; flush so that Python's later output follows it.
          std::fflush(stdout);
          std::fflush(stderr);
        }
        return code;
      },
      py::arg("args"),
      "Runs an onnxq subcommand in-process (args exclude the program name); returns the exit code.");
}

}  // namespace onnxq::python
