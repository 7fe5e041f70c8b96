"""`python -m onnxq ...`: the onnxq command-line tool, run in-process.

The subcommands are the C++ ones that build/bin/onnxq runs (same registry, same options, same
output and exit codes); nothing is re-implemented here.
"""

import sys

from . import _onnxq


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cli_main = getattr(_onnxq, "cli_main", None)
    if cli_main is None:
        print("onnxq: error: this build of the onnxq module has no command-line bindings; "
              "use the onnxq executable", file=sys.stderr)
        return 2
    # The C++ commands write to the process's stdout/stderr: flush Python's buffers first so the
    # output keeps its order.
    sys.stdout.flush()
    sys.stderr.flush()
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
