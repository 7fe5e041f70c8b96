"""Every command and code block in README.md and the user docs is exercised.

Pages: README.md and docs/{README,quickstart,concepts,python-api,python,cpp-api,troubleshooting}.md.
For each fenced block:
- ```python: the page's blocks run in order in one interpreter (the package under test), in a
  scratch folder whose ../shared is the shared data;
- ```sh / ```console: each command runs (onnxq -> the CLI under test, python -> this interpreter)
  in that folder; a console block's output must match what the page shows; commands too slow or
  too invasive to run here (./scripts/*, pip install, nbconvert) must be in COVERED, which names
  the test or script that runs them, and that evidence is checked to exist;
- ```cpp: compiled against include/ (syntax and types; -fsyntax-only);
- ```cmake: the find_package/target_link_libraries lines that examples/cpp/CMakeLists.txt uses
  (built against an install by test_install_find_package.py);
- ```text and untagged blocks: output samples and signatures; they must not hold commands.
On every page (the reference pages too: cli, quantization, mixed-precision, ...), each `onnxq <command>`
line, runnable or a synopsis with placeholders, must name a real command and only options its
--help lists.
The command lines of the other pages (benchmarks, fuzzing, the CLI reference) and the inline ones
are collected and exercised by test_doc_commands.py.
"""

import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import onnxq

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + [f"docs/{p}.md" for p in
                         ("README", "quickstart", "concepts", "python-api", "python", "cpp-api", "troubleshooting")]
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _read(rel):
    return (REPO / rel).read_text()


def blocks(rel):
    return [(lang, body) for lang, body in FENCE.findall(_read(rel))]


def _has_test(path, name):
    text = (REPO / path).read_text()
    return re.search(rf"^def {re.escape(name)}\(", text, re.MULTILINE) is not None


def _script_runs(script, fragment):
    return fragment in (REPO / script).read_text()


# Commands exercised elsewhere: command prefix -> (evidence description, check).
COVERED = {
    "./scripts/demo": ("tests/python/test_docs.py::test_demo_script (ONNXQ_TEST_DEMO=1)",
                       lambda: _has_test("tests/python/test_docs.py", "test_demo_script")),
    "./scripts/test": ("the test runner itself, which runs this file",
                       lambda: _script_runs("scripts/test", "tests/python")),
    "cmake --preset release && cmake --build --preset release": (
        "scripts/build (run by scripts/test)",
        lambda: _script_runs("scripts/build", "cmake --preset release") and
        _script_runs("scripts/build", "cmake --build --preset release")),
    "ctest --preset release": ("scripts/test", lambda: _script_runs("scripts/test", "--preset release")),
    "cmake --preset asan && cmake --build --preset asan && ctest --preset asan": (
        "scripts/test's sanitizer stage",
        lambda: _script_runs("scripts/test", "cmake --preset asan") and
        _script_runs("scripts/test", "cmake --build --preset asan") and _script_runs("scripts/test", "--preset asan")),
    "python3 -m venv /tmp/onnxq-venv": ("tests/python/test_pip_install.py",
                                        lambda: _has_test("tests/python/test_pip_install.py", "test_pip_install_in_a_new_venv")),
    "/tmp/onnxq-venv/bin/pip install": ("tests/python/test_pip_install.py",
                                        lambda: _has_test("tests/python/test_pip_install.py", "test_pip_install_in_a_new_venv")),
    "cd /tmp && /tmp/onnxq-venv/bin/python -c": ("tests/python/test_pip_install.py",
                                                 lambda: _has_test("tests/python/test_pip_install.py", "test_pip_install_in_a_new_venv")),
    # The examples, with these and more options, against ONNX Runtime as the reference.
    "python examples/mobilenetv2/quantize.py": (
        "tests/python/test_examples.py::test_quantize_example_on_the_shared_model",
        lambda: _has_test("tests/python/test_examples.py", "test_quantize_example_on_the_shared_model")),
    "python examples/mobilenetv2/mixed_precision.py": (
        "tests/python/test_examples.py::test_mixed_precision_example_plots_the_pareto_front",
        lambda: _has_test("tests/python/test_examples.py", "test_mixed_precision_example_plots_the_pareto_front")),
    "python -m nbconvert --to notebook --execute examples/notebooks/mobilenetv2_ptq.ipynb": (
        "tests/python/test_notebook.py (the same nbconvert run, on a kernel of the package under test)",
        lambda: _has_test("tests/python/test_notebook.py", "test_notebook_runs_top_to_bottom")),
}
RUNNABLE = ("onnxq ", "build/bin/onnxq ", "python -m onnxq ")


def _commands(lang, body):
    """(command, expected output or None) of a sh/console block."""
    if lang == "console":
        out, cmd, expected = [], None, []
        for line in body.splitlines():
            if line.startswith("$ "):
                if cmd is not None:
                    out.append((cmd, "\n".join(expected)))
                cmd, expected = line[2:], []
            else:
                expected.append(line)
        if cmd is not None:
            out.append((cmd, "\n".join(expected)))
        return out
    cmds = []
    for line in body.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            cmds.append((line, None))
    return cmds


def _all_commands():
    for page in PAGES:
        for lang, body in blocks(page):
            if lang in ("sh", "console", "bash", "shell"):
                for cmd, expected in _commands(lang, body):
                    yield page, cmd, expected


def test_every_block_has_a_known_kind():
    for page in PAGES:
        for lang, body in blocks(page):
            assert lang in ("python", "sh", "console", "cpp", "cmake", "text", ""), f"{page}: ```{lang} block"
            if lang in ("text", ""):
                for line in body.splitlines():
                    assert not re.match(r"\s*(\$ |onnxq |\./scripts/|python |pip )", line), \
                        f"{page}: a command in an untagged/text block: {line!r} (tag it sh or console)"


def test_every_command_is_run_here_or_covered_elsewhere():
    seen = 0
    for page, cmd, _ in _all_commands():
        seen += 1
        if cmd.startswith(RUNNABLE):
            continue
        match = [k for k in COVERED if cmd.startswith(k)]
        assert match, f"{page}: `{cmd}` is neither run by test_docs.py nor listed in COVERED"
        evidence, check = COVERED[match[0]]
        assert check(), f"{page}: `{cmd}` is said to be covered by {evidence}, which does not run it"
    assert seen >= 10


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, request):
    """A folder whose ../shared is the shared data and which has the examples, as the docs assume."""
    shared = pathlib.Path(os.environ.get("ONNXQ_SHARED") or REPO.parent / "shared")
    if not (shared / "models" / "mobilenetv2-1.0.onnx").is_file():
        pytest.skip(f"shared data not found at {shared} (set ONNXQ_SHARED)")
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(shared.resolve())
    work = root / "work"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    return work


def _env():
    package_parent = pathlib.Path(os.path.abspath(onnxq.__file__)).parents[1]
    return dict(os.environ, PYTHONPATH=str(package_parent), MPLBACKEND="Agg")


def _shell(cmd, cwd, onnxq_cli):
    words = shlex.split(cmd)
    if words[0] in ("onnxq", "build/bin/onnxq"):
        words[0] = str(onnxq_cli)
    elif words[0] == "python":
        words[0] = sys.executable
    return subprocess.run(words, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, scratch):
    code = [body for lang, body in blocks(page) if lang == "python"]
    if not code:
        pytest.skip(f"{page} has no Python blocks")
    script = scratch.parent / ("blocks-" + page.replace("/", "-") + ".py")
    script.write_text("\n\n".join(code))
    run = subprocess.run([sys.executable, str(script)], cwd=scratch, env=_env(), capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, f"{page}:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"


@pytest.mark.parametrize("page", PAGES)
def test_commands_run(page, request):
    cmds = [(c, e) for p, c, e in _all_commands() if p == page and c.startswith(RUNNABLE)]
    if not cmds:
        pytest.skip(f"{page} has no commands run here")
    scratch, onnxq_cli = request.getfixturevalue("scratch"), request.getfixturevalue("onnxq_cli")
    for cmd, expected in cmds:
        run = _shell(cmd, scratch, onnxq_cli)
        assert run.returncode == 0, f"{page}: `{cmd}` failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
        if expected:
            assert run.stdout.rstrip("\n") == expected.rstrip("\n"), f"{page}: output of `{cmd}` differs"


def test_cpp_blocks_compile(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    n = 0
    for page in PAGES:
        for i, (lang, body) in enumerate(blocks(page)):
            if lang != "cpp":
                continue
            src = tmp_path / f"block{n}.cc"
            src.write_text(body)
            run = subprocess.run([cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                                  f"-I{REPO / 'include'}", str(src)], capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, f"{page} block {i}:\n{run.stderr[-3000:]}"
            n += 1
    assert n >= 1


def test_cmake_blocks_are_what_the_installed_example_uses():
    example = (REPO / "examples" / "cpp" / "CMakeLists.txt").read_text()
    assert _has_test("tests/python/test_install_find_package.py", "test_install_layout")
    for page in PAGES:
        for lang, body in blocks(page):
            if lang != "cmake":
                continue
            for line in body.splitlines():
                stmt = line.split("#")[0].strip()
                if not stmt:
                    continue
                name = stmt.split("(")[0]
                assert name in ("find_package", "target_link_libraries"), f"{page}: {stmt}"
                key = "find_package(onnxq" if name == "find_package" else "onnxq::onnxq)"
                assert key in example and key.rstrip(")") in stmt, f"{page}: {stmt}"


def test_demo_script(repo_root):
    """./scripts/demo end to end (set-up, build, quantize, evaluate: minutes): opt-in."""
    if os.environ.get("ONNXQ_TEST_DEMO") != "1":
        pytest.skip("set ONNXQ_TEST_DEMO=1 to run ./scripts/demo (it re-runs set-up and the build)")
    run = subprocess.run([str(repo_root / "scripts" / "demo")], cwd=repo_root, capture_output=True, text=True,
                         timeout=3600)
    assert run.returncode == 0, run.stderr[-3000:]
    for row in ("top-1 (400 images)", "top-5", "model file size", "latency, ONNX Runtime 1 thread"):
        assert row in run.stdout


# Every page, including the reference pages (cli, quantization, kernels, ...) whose command lines
# are synopses with placeholders (MODEL, DIR) or benchmark recipes rather than runnable commands.
ALL_PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
SYNOPSIS = re.compile(r"^\s*(?:\$ )?(?:[A-Z_]+=\S+ )*(?:build/bin/|build-\w+/bin/)?onnxq (?!<)([a-z][a-z-]*)(.*)$")


def _help(onnxq_cli, *args):
    run = subprocess.run([str(onnxq_cli), *args, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_every_onnxq_command_line_in_the_docs_names_real_options(onnxq_cli):
    """Each `onnxq <command> ...` line of any page (runnable or a synopsis) names a command that
    exists and only options that command's --help lists, so the docs cannot drift from the CLI."""
    commands = _help(onnxq_cli)
    helps, checked = {}, 0
    for page in ALL_PAGES:
        for lang, body in blocks(page):
            if lang not in ("sh", "console", "bash", "shell", "text", ""):
                continue
            for line in body.replace("\\\n", " ").splitlines():  # join continued lines
                m = SYNOPSIS.match(line)
                if not m:
                    continue
                name, rest = m.group(1), m.group(2)
                assert re.search(rf"^\s+{re.escape(name)}\b", commands, re.MULTILINE), \
                    f"{page}: `onnxq {name}` is not a command:\n{line}"
                if name not in helps:
                    helps[name] = _help(onnxq_cli, name)
                for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest.split("#")[0]):
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", helps[name]), \
                        f"{page}: `onnxq {name}` has no option {opt}:\n{line}"
                checked += 1
    assert checked >= 15, checked
