"""Every command line in README.md and docs/*.md is exercised by a test.

Commands are collected from every page: each line of ```sh/console/bash/shell/text and untagged
fenced blocks (a console block's `$ ` lines), each line of indented code blocks, and each inline code
span, that starts (after VAR=value assignments) with something one runs: ./scripts/*, bench/*,
python/pip/cmake/ctest/ninja, `onnxq <command>`, onnxq_*_bench, build*/bin/*, build-fuzz/fuzz/*.
The first entry of RULES that matches the whole command says how it is exercised:

- run here, against the build under test: `build/bin/...`, `build-xx/bin/...`, `BUILD/bin/...` and
  `--build build-xx` mean the build tree of the imported package, `.venv/bin/python` and `python` this
  interpreter with PYTHONPATH set to the package under test, `/tmp/...` outputs a scratch folder, and
  the working folder is the repository (bench commands) or a scratch folder whose ../shared is the
  shared data (onnxq commands);
- benchmarks run with ONNXQ_BENCH_SMOKE=1 (a minimal run that still prints its complete JSON): the
  JSON must parse, have the documented keys and say "smoke": true (every benchmark must honour the
  variable: one that does not fails here rather than running for minutes);
- synopses (placeholders such as MODEL, [--opt N]) are instantiated with concrete values and run, or,
  for `onnxq` lines, checked by test_every_onnxq_line_names_a_real_command_and_options;
- run by another test or script (test_docs.py, test_pip_install.py, scripts/test, ...), which is
  checked to exist and to run it;
- not runnable here: NOT_RUNNABLE, an exact list with the reason for each.

A command that matches no rule fails the test, and so does a rule that no longer matches any command.
The fuzzing commands need a clang fuzz build (build-fuzz/ or $ONNXQ_FUZZ_BUILD_DIR) and skip without
one; commands that read the shared data skip without it.
"""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest

import onnxq
import test_docs

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELL_LANGS = ("sh", "console", "bash", "shell", "text", "")
LAUNCHER = re.compile(
    r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"  # environment assignments
    r"(?:\.?/?scripts/\w+"
    r"|bench/fuzz\b|bench/\w+\.py\s"
    r"|(?:\.venv/bin/|/tmp/[\w-]+/bin/)?python3?\s"
    r"|(?:/tmp/[\w-]+/bin/)?pip\s|cmake\s|ctest\s|ninja\s|cd\s"
    r"|(?:(?:build[\w-]*|BUILD)/bin/)?onnxq\s+[a-z<]"
    r"|(?:(?:build[\w-]*|BUILD)/bin/)?onnxq_\w+_bench\b"
    r"|build-fuzz/fuzz/)")
SMOKE_ENV = "ONNXQ_BENCH_SMOKE"
# Benchmarks whose smoke JSON must say "smoke": true (bench/fuzz is checked by its own test).
SMOKE_OWN = ("bench/mobilenetv2.py", "bench/quantize_mobilenetv2.py", "bench/calib_bench.py", "bench/kernels_bench.cc")


# ----------------------------------------------------------------------------- extraction

def _strip_comment(line):
    return re.sub(r"\s+#\s.*$", "", line).strip()


def extract(page):
    """[(where, command)] of a page, in page order."""
    text = (REPO / page).read_text()
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in SHELL_LANGS:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            line = _strip_comment(line)
            if LAUNCHER.match(line):
                found.append((f"```{lang}", " ".join(line.split())))
    rest = FENCE.sub("", text)
    # Indented code blocks: 4-space lines after a blank line (not list continuations).
    for m in re.finditer(r"(?:^\n)((?:(?: {4}|\t).*\n)+)", rest, re.MULTILINE):
        for line in m.group(1).replace("\\\n", " ").splitlines():
            line = _strip_comment(line.strip())
            if LAUNCHER.match(line):
                found.append(("indented", " ".join(line.split())))
    for m in re.finditer(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)*)`(?!`)", rest):
        span = " ".join(m.group(1).split())
        if LAUNCHER.match(span):
            found.append(("inline", span))
    return found


def all_commands():
    return [(page, where, cmd) for page in PAGES for where, cmd in extract(page)]


# ----------------------------------------------------------------------------- rules

class Rule:
    """pattern: a regex that must match the whole command; kind: how it is exercised."""

    def __init__(self, pattern, kind, **kw):
        self.pattern = re.compile(pattern)
        self.kind = kind
        self.kw = kw

    def matches(self, cmd):
        return self.pattern.fullmatch(cmd) is not None

    def __repr__(self):
        return f"Rule({self.pattern.pattern!r}, {self.kind})"


def _has_test(path, name):
    return re.search(rf"^def {re.escape(name)}\(", (REPO / path).read_text(), re.MULTILINE) is not None


def _mentions(path, fragment):
    return fragment in (REPO / path).read_text()


PLACEHOLDER = re.compile(r"\b(?:MODEL|DIR|OUT|N|B|J|STATS|FILE|NAME|BUILD|NODE)\b|[\[<|]|\.\.\.|OUT\.onnx")

RULES = [
    # -- onnxq CLI lines
    Rule(r"onnxq <command> (\[options\]|--help)( .*)?", "cli-help"),  # cli.md: the rest is a description
    # Synopses and option fragments (`onnxq bench --json`): command and options checked against --help.
    Rule(r"(?:\S+=\S+ )*onnxq [a-z][a-z/-]*(?: -.*)?", "onnxq-fragment"),
    Rule(r"onnxq [a-z][a-z-]* .*", "onnxq-synopsis", when=lambda c: PLACEHOLDER.search(c) is not None),
    # Concrete onnxq lines of the pages test_docs.py runs (README, quickstart, troubleshooting, ...).
    Rule(r"(build/bin/|python -m )?onnxq (inspect|convert|quantize|eval) \.\./shared/.*|"
         r"python -m onnxq eval mobilenetv2_int8\.onnx .*", "test_docs", pages=tuple(test_docs.PAGES)),
    Rule(r"build/bin/onnxq [a-z]+ \.\./shared/models/mobilenetv2-1\.0\.onnx.*", "run", pages=("docs/cli.md",)),
    Rule(r"onnxq quantize mobilenetv2-1\.0\.onnx -o q\.onnx --calib imagenet-sample --calib-count 100 "
         r"--preprocess imagenet-tf", "run"),
    Rule(r"onnxq inspect some\.fifo", "fifo"),
    Rule(r"ONNXQ_ISA=avx2 build/bin/onnxq bench model\.onnx --json", "run", json_keys=("latency_ms", "isa"),
         expect={"isa": "avx2"}),
    Rule(r"python -m onnxq", "run-as", as_cmd="python -m onnxq --help"),
    Rule(r"python -m onnxq <command> \.\.\.", "run-as",
         as_cmd="python -m onnxq inspect ../shared/models/mobilenetv2-1.0.onnx"),
    Rule(r'PYTHONPATH=build/python python -c "import onnxq"', "run"),
    # -- benchmarks (ONNXQ_BENCH_SMOKE=1)
    Rule(r"(?:\.venv/bin/python )?bench/mobilenetv2\.py (--build \S+ )?--iters 100", "smoke",
         json_keys=("onnxq", "onnxruntime", "ratio_onnxq_over_ort_1thread", "interleaved_1thread", "gemm")),
    Rule(r"\.venv/bin/python bench/mobilenetv2\.py --build BUILD", "smoke",
         json_keys=("onnxq", "onnxruntime", "ratio_onnxq_over_ort_1thread", "interleaved_1thread", "gemm")),
    Rule(r"\.venv/bin/python bench/mobilenetv2\.py \[--build build\] \[--iters 100\]", "smoke",
         as_cmd=".venv/bin/python bench/mobilenetv2.py --build build --iters 100",
         json_keys=("onnxq", "onnxruntime", "ratio_onnxq_over_ort_1thread", "interleaved_1thread", "gemm")),
    Rule(r"PYTHONPATH=\S+ \.venv/bin/python bench/quantize_mobilenetv2\.py .*", "smoke",
         json_keys=("timing", "float", "table")),
    Rule(r"PYTHONPATH=\S+ \.venv/bin/python bench/calib_bench\.py", "smoke",
         json_keys=("histogram_update_gaussian_GBps", "calibrate_kl_ms_signed", "merge_us"),
         shared_keys=("images_per_s_1_threads", "mobilenetv2_weights_4bit_mse_s")),
    Rule(r"(?:PYTHONPATH=\S+ )?\.venv/bin/python bench/int8_mobilenetv2\.py .*", "smoke", json_keys=()),
    Rule(r"PYTHONPATH=\S+ \.venv/bin/python bench/mixed_precision\.py .*", "smoke", json_keys=()),
    Rule(r"PYTHONPATH=build/python \.venv/bin/python tests/python/test_quantize_dynamic\.py", "smoke", json_keys=()),
    Rule(r"(?:\S+/bin/)?onnxq_kernels_bench(?: --micro-only| --isa avx512)?", "smoke",
         json_keys=("threads", "active_isa", "isas")),
    Rule(r"build/bin/onnxq_kernels_bench \[--quick\] \[--threads N\] \[--isa NAME\] \[--micro-only\]", "smoke",
         as_cmd="build/bin/onnxq_kernels_bench --quick --threads 2 --isa avx2", json_keys=("threads", "active_isa", "isas")),
    Rule(r"(?:build|BUILD)/bin/onnxq_kernels_bench --profile MODEL \[--threads N\]( \[--iters N\])?", "smoke",
         as_cmd="build/bin/onnxq_kernels_bench --profile ../shared/models/mobilenetv2-1.0.onnx --threads 2 --iters 50",
         json_keys=("run_ms", "profiled_run_ms", "steps", "min_us_by_op")),
    # int8.md profiles the exported W8A8 model: W8A8 is one quantized here (onnxq quantize, 4 images).
    Rule(r"(?:build/bin/)?onnxq_kernels_bench --profile( MODEL --iters 50)?", "smoke",
         as_cmd="build/bin/onnxq_kernels_bench --profile W8A8 --iters 50",
         json_keys=("run_ms", "profiled_run_ms", "steps", "min_us_by_op")),
    Rule(r"onnxq_int8_gemm_bench( --seconds 0\.5)?", "smoke", json_keys=("vnni_peak_gops", "tiles", "gemm")),
    # -- fuzzing (needs the clang fuzz build; the regression inputs replay in ctest's FuzzRegressions.*)
    Rule(r"bench/fuzz --no-build --build-dir build-fuzz --seconds 600 (onnx_import|npy|external_data|image)",
         "fuzz", json_keys=("target", "executions", "cov", "corpus_units", "findings", "exit_status")),
    Rule(r"bench/fuzz --keep-going", "fuzz",
         json_keys=("target", "executions", "cov", "findings", "exit_status")),
    Rule(r"bench/fuzz \[--seconds N\] \[--jobs J\] \[--keep-going\] \[--build-dir DIR\] \[--no-build\] \[target \.\.\.\]",
         "help-options", tool="bench/fuzz"),
    Rule(r"build-fuzz/fuzz/<target>_fuzzer <file>", "fuzz-replay"),
    # -- run elsewhere (evidence checked)
    Rule(r"\./scripts/demo", "covered", evidence=lambda: _has_test("tests/python/test_docs.py", "test_demo_script")),
    Rule(r"\./scripts/demo path/to/model\.onnx", "covered",
         evidence=lambda: _has_test("tests/python/test_scripts.py", "test_demo_refuses_a_missing_model_before_building")),
    Rule(r"\.?/?scripts/test", "covered", evidence=lambda: _mentions("scripts/test", "tests/python")),
    Rule(r"\.?/?scripts/build", "covered", evidence=lambda: _mentions("scripts/test", "./scripts/build")),
    Rule(r"\./scripts/setup", "covered", evidence=lambda: _mentions("scripts/test", "./scripts/setup")),
    Rule(r"cmake --preset release && cmake --build --preset release|ctest --preset release|"
         r"cmake --preset asan && cmake --build --preset asan && ctest --preset asan", "covered",
         evidence=lambda: _mentions("scripts/build", "cmake --preset release") and
         _mentions("scripts/test", "cmake --preset asan") and _mentions("scripts/test", "--preset release")),
    Rule(r"cmake --install", "covered",
         evidence=lambda: _mentions("tests/python/test_install_find_package.py", '"cmake", "--install"')),
    Rule(r"pip install \.|pip install --no-build-isolation \.|pip wheel \.( -w dist/)?|python3 -m venv /tmp/onnxq-venv|"
         r"/tmp/onnxq-venv/bin/pip install .*|cd /tmp && /tmp/onnxq-venv/bin/python -c .*", "covered",
         evidence=lambda: _has_test("tests/python/test_pip_install.py", "test_pip_install_in_a_new_venv") and
         _mentions("tests/python/test_pip_install.py", '"wheel"') and
         _mentions("tests/python/test_pip_install.py", '"--no-build-isolation"')),
    Rule(r"python examples/mobilenetv2/(quantize|mixed_precision)\.py .*|python -m nbconvert .*", "test_docs"),
    # -- not runnable here
    Rule(r"CC=clang CXX=clang\+\+ cmake -S \. -B build-fuzz .*|ninja -C build-fuzz -j2 onnxq_fuzzers", "not-runnable"),
]

# Exactly these commands are not run by any test, and why.
NOT_RUNNABLE = {
    "CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "
    "-DONNXQ_BUILD_FUZZERS=ON -DONNXQ_BUILD_PYTHON=OFF -DONNXQ_BUILD_TESTS=OFF -DONNXQ_BUILD_BENCH=OFF":
        "configures the clang ASan+UBSan+coverage fuzz build, whose compile (next line) is ~24 CPU-minutes "
        "(1439 s of compile steps in build-fuzz/.ninja_log): beyond the test budget. bench/fuzz runs both "
        "lines itself when build-fuzz/ is missing; test_fuzz_command_runs_in_smoke_mode uses an existing one.",
    "ninja -C build-fuzz -j2 onnxq_fuzzers": "the fuzz build itself (see above)",
}


def classify(cmd, page):
    for rule in RULES:
        if not rule.matches(cmd):
            continue
        if "when" in rule.kw and not rule.kw["when"](cmd):
            continue
        if "pages" in rule.kw and page not in rule.kw["pages"]:
            continue
        return rule
    return None


def test_every_command_has_a_way_to_be_exercised():
    commands = all_commands()
    assert len(commands) >= 60, len(commands)
    unmatched = [f"{page} ({where}): {cmd}" for page, where, cmd in commands if classify(cmd, page) is None]
    assert not unmatched, "commands no rule exercises (add a rule to RULES):\n" + "\n".join(unmatched)
    used = {id(classify(cmd, page)) for page, _, cmd in commands}
    stale = [r for r in RULES if id(r) not in used]
    assert not stale, f"rules that match no command any more: {stale}"
    not_runnable = {cmd for page, _, cmd in commands if classify(cmd, page).kind == "not-runnable"}
    assert not_runnable == set(NOT_RUNNABLE), "the commands not run here changed:\n" + \
        "\n".join(sorted(not_runnable ^ set(NOT_RUNNABLE)))
    for page, _, cmd in commands:
        rule = classify(cmd, page)
        if rule.kind == "covered":
            assert rule.kw["evidence"](), f"{page}: `{cmd}` is said to be run by another test, which does not run it"


def test_commands_test_docs_runs_are_run_there():
    for page, _, cmd in all_commands():
        if getattr(classify(cmd, page), "kind", None) != "test_docs":
            continue
        assert page in test_docs.PAGES, f"{page}: `{cmd}` is on a page test_docs.py does not run"
        runs = [c for p, c, _ in test_docs._all_commands() if p == page]
        assert cmd in [" ".join(_strip_comment(c).split()) for c in runs], f"{page}: test_docs.py does not run `{cmd}`"
        assert cmd.startswith(test_docs.RUNNABLE) or any(cmd.startswith(k) for k in test_docs.COVERED), cmd


# ----------------------------------------------------------------------------- environment of a run

def _package_parent():
    return pathlib.Path(os.path.abspath(onnxq.__file__)).parents[1]


def _fuzz_build():
    return pathlib.Path(os.environ.get("ONNXQ_FUZZ_BUILD_DIR") or REPO / "build-fuzz").resolve()


def _cpu_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(m.group(1).split()) if m else set()


SHARED = pathlib.Path(os.environ.get("ONNXQ_SHARED") or REPO.parent / "shared")
SHARED_MODEL = SHARED / "models" / "mobilenetv2-1.0.onnx"
# Commands that read the shared model or images (directly or through a bench script's defaults).
NEEDS_SHARED = re.compile(r"\.\./shared|model\.onnx|imagenet-sample|MODEL|W8A8"
                          r"|bench/(?:mobilenetv2|quantize_mobilenetv2|int8_mobilenetv2|mixed_precision)\.py"
                          r"|test_quantize_dynamic")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Working folder for onnxq commands: ../shared is the shared data, and the names the pages use
    (model.onnx, mobilenetv2-1.0.onnx, imagenet-sample, some.fifo) exist when the shared data does."""
    root = tmp_path_factory.mktemp("doc-commands")
    work = root / "work"
    work.mkdir()
    (root / "tmp").mkdir()
    if SHARED_MODEL.is_file():
        (root / "shared").symlink_to(SHARED.resolve())
        (work / "model.onnx").symlink_to(SHARED_MODEL)
        (work / "mobilenetv2-1.0.onnx").symlink_to(SHARED_MODEL)
        (work / "imagenet-sample").symlink_to(SHARED / "data" / "imagenet-sample")
    os.mkfifo(work / "some.fifo")
    return work


@pytest.fixture(scope="module")
def w8a8_model(scratch, onnxq_cli):
    """The shared MobileNetV2 quantized with the CLI defaults (4 calibration images: enough to run)."""
    out = scratch / "w8a8.onnx"
    run = subprocess.run([str(onnxq_cli), "quantize", "mobilenetv2-1.0.onnx", "-o", str(out), "--calib",
                          "imagenet-sample", "--calib-count", "4", "--preprocess", "imagenet-tf"],
                         cwd=scratch, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return out


def _skip_without_shared(cmd):
    if NEEDS_SHARED.search(cmd) and not SHARED_MODEL.is_file():
        pytest.skip(f"`{cmd}` needs the shared data: {SHARED_MODEL} not found (set ONNXQ_SHARED)")


def _words(cmd, build_dir, onnxq_cli, scratch):
    """The command as argv + extra environment, mapped onto the build and package under test."""
    env = {}
    words = shlex.split(cmd)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = str(_package_parent()) if key == "PYTHONPATH" else value
    out = []
    for i, w in enumerate(words):
        m = re.match(r"^(?:build[\w-]*|BUILD)(/.*)?$", w)
        if w.startswith("/tmp/"):
            w = str(scratch.parent / "tmp" / w[len("/tmp/"):])
        elif w.startswith("../shared/"):
            w = str(scratch.parent / w[len("../"):])
        elif m and (i == 0 or words[i - 1] in ("--build", "--build-dir")):
            if w.startswith("build-fuzz"):
                w = str(_fuzz_build()) + (m.group(1) or "")
            else:
                w = str(build_dir) + (m.group(1) or "")
        out.append(w)
    words = out
    if words[0] in ("python", ".venv/bin/python"):
        words[0] = sys.executable
    elif words[0].startswith("bench/") and words[0].endswith(".py"):
        words = [sys.executable] + words  # its #! line would pick whatever python3 is first on PATH
    elif words[0] == "onnxq":
        words[0] = str(onnxq_cli)
    elif re.fullmatch(r"onnxq_\w+", words[0]):
        words[0] = str(build_dir / "bin" / words[0])
    elif words[0] == "bench/fuzz":
        words[0] = str(REPO / words[0])
        if "--build-dir" not in words:
            words += ["--build-dir", str(_fuzz_build())]
    # A bench script without --build would use <repo>/build: give it the build under test.
    script = next((w for w in words[1:2] if w.startswith("bench/") and w.endswith(".py")), None)
    if script and "--build" not in words and '"--build"' in (REPO / script).read_text():
        words += ["--build", str(build_dir)]
    if words[0] == sys.executable or words[0].endswith(".py"):
        env.setdefault("PYTHONPATH", str(_package_parent()))
    return words, env


def _run(words, env, cwd, timeout=600):
    full_env = dict(os.environ, MPLBACKEND="Agg", **env)
    full_env["PYTHONPATH"] = env.get("PYTHONPATH", str(_package_parent()))
    t0 = time.perf_counter()
    run = subprocess.run(words, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    return run, time.perf_counter() - t0


def _json_objects(stdout):
    text = stdout.strip()
    try:
        return [json.loads(text[text.index("{"):])]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def _selected(kind):
    """pytest params (page, command, rule) of every command of this kind, each distinct command once."""
    seen, out = set(), []
    for page, _, cmd in all_commands():
        rule = classify(cmd, page)
        if rule is not None and rule.kind == kind and cmd not in seen:
            seen.add(cmd)
            out.append(pytest.param(page, cmd, rule, id=f"{page}:{cmd[:70]}"))
    return out


TIMES = {}


@pytest.fixture(scope="module", autouse=True)
def _report_times():
    yield
    if TIMES:
        total = sum(TIMES.values())
        lines = "\n".join(f"  {t:6.1f} s  {c}" for c, t in sorted(TIMES.items(), key=lambda kv: -kv[1]))
        print(f"\ndoc commands run: {len(TIMES)}, {total:.1f} s in total\n{lines}")


# ----------------------------------------------------------------------------- the runs

@pytest.mark.parametrize("page,cmd,rule", _selected("run") + _selected("run-as"))
def test_command_runs(page, cmd, rule, scratch, build_dir, onnxq_cli):
    _skip_without_shared(rule.kw.get("as_cmd", cmd))
    isa = re.match(r"ONNXQ_ISA=(avx2|avx512)", cmd)
    if isa and {"avx2": "avx2", "avx512": "avx512f"}[isa.group(1)] not in _cpu_flags():
        pytest.skip(f"this CPU has no {isa.group(1)}")
    words, env = _words(rule.kw.get("as_cmd", cmd), build_dir, onnxq_cli, scratch)
    run, secs = _run(words, env, scratch)
    TIMES[cmd] = secs
    assert run.returncode == 0, f"{page}: `{cmd}` failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    if "json_keys" in rule.kw:
        obj = _json_objects(run.stdout)[0]
        for key in rule.kw["json_keys"]:
            assert key in obj, f"{page}: `{cmd}` printed no {key!r}:\n{run.stdout[:2000]}"
        for key, value in rule.kw.get("expect", {}).items():
            assert obj[key] == value, (key, obj[key])


def test_inspect_of_a_fifo_is_a_clear_error_not_a_hang(scratch, onnxq_cli):
    """docs/fuzzing.md: `onnxq inspect some.fifo` once blocked forever in open(); it must refuse."""
    run, secs = _run([str(onnxq_cli), "inspect", "some.fifo"], {}, scratch, timeout=60)
    TIMES["onnxq inspect some.fifo"] = secs
    assert run.returncode != 0
    assert "some.fifo" in run.stderr and "not a regular file" in run.stderr, run.stderr


def test_cli_help_lists_commands_whose_help_runs(onnxq_cli):
    """`onnxq <command> [options]` / `onnxq <command> --help` (cli.md, README.md, quickstart.md)."""
    top = subprocess.run([str(onnxq_cli), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    names = re.findall(r"^\s{2,}([a-z][a-z-]+)\s{2,}\S", top.stdout, re.MULTILINE)
    assert len(names) >= 8, top.stdout
    for name in names:
        run = subprocess.run([str(onnxq_cli), name, "--help"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and "--" in run.stdout, f"`onnxq {name} --help`:\n{run.stderr}"


def _smoke_source(words):
    for w in words[:2]:
        rel = os.path.relpath(w, REPO) if os.path.isabs(w) else w
        if rel.startswith(("bench/", "tests/")) and (REPO / rel).is_file():
            return rel
    return TOOL_SOURCES.get(pathlib.Path(words[0]).name)


@pytest.mark.parametrize("page,cmd,rule", _selected("smoke"))
def test_benchmark_runs_in_smoke_mode(page, cmd, rule, scratch, build_dir, onnxq_cli, request):
    _skip_without_shared(rule.kw.get("as_cmd", cmd))
    words, env = _words(rule.kw.get("as_cmd", cmd), build_dir, onnxq_cli, scratch)
    if "W8A8" in words:
        words[words.index("W8A8")] = str(request.getfixturevalue("w8a8_model"))
    source = _smoke_source(words)
    if source is not None and source.endswith(".py"):
        assert SMOKE_ENV in (REPO / source).read_text(), f"{source} does not honour {SMOKE_ENV}=1"
    if "onnxq_kernels_bench" in words[0] and "--isa" in words:
        isa = words[words.index("--isa") + 1]
        if isa == "avx512" and "avx512f" not in _cpu_flags() or isa == "avx2" and "avx2" not in _cpu_flags():
            pytest.skip(f"this CPU has no {isa}")
    if not pathlib.Path(words[0]).exists() and words[0] != sys.executable:
        pytest.fail(f"{page}: `{cmd}`: {words[0]} does not exist (is the build configured with ONNXQ_BUILD_BENCH=ON?)")
    env[SMOKE_ENV] = "1"
    run, secs = _run(words, env, REPO)
    TIMES[cmd] = secs
    assert run.returncode == 0, f"{page}: `{cmd}` failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    objs = _json_objects(run.stdout)
    assert objs, f"{page}: `{cmd}` printed no JSON:\n{run.stdout[:2000]}"
    for obj in objs:
        keys = rule.kw["json_keys"] + (rule.kw.get("shared_keys", ()) if SHARED_MODEL.is_file() else ())
        for key in keys:
            assert key in obj, f"{page}: `{cmd}` printed no {key!r}:\n{run.stdout[:3000]}"
        if source in SMOKE_OWN or "smoke" in obj:
            assert obj.get("smoke") is True, f"{page}: `{cmd}` did not report \"smoke\": true"
    if "--profile" in words and "w8a8" in words[words.index("--profile") + 1]:
        assert "QuantizeLinear" in objs[0]["min_us_by_op"], objs[0]  # int8.md reads its time from here
    if source == "bench/quantize_mobilenetv2.py":
        assert set(objs[0]["timing"]) == {"default_100", "kl_100", "mse_100", "default_400"}
        for row in objs[0]["table"]:
            assert {"onnxq_sim", "onnxruntime", "ort_vs_sim_top1_agreement"} <= set(row)
        if "acceptance" in words:  # ORT's own quantize_static on the same split
            assert [r["method"] for r in objs[0]["onnxruntime_quantize_static"]] == ["MinMax"]
    if "onnxq_kernels_bench" in words[0] and "--profile" not in words:
        isas = objs[0]["isas"]
        assert objs[0]["active_isa"] in isas or "--isa" in words
        for entry in isas.values():
            assert "microkernel" in entry
            if "--micro-only" not in words:
                assert {"gemm", "conv", "mobilenetv2_convs"} <= set(entry)


def _need_fuzz_build():
    fuzz = _fuzz_build()
    targets = ["onnx_import", "npy", "external_data", "image"]
    if not all(os.access(fuzz / "fuzz" / f"{t}_fuzzer", os.X_OK) for t in targets):
        pytest.skip(f"no fuzz build at {fuzz} (set ONNXQ_FUZZ_BUILD_DIR; docs/fuzzing.md#build): building one takes "
                    "~24 CPU-minutes, so the test suite replays the regression inputs in ctest's FuzzRegressions.* "
                    "instead")
    return fuzz


@pytest.mark.parametrize("page,cmd,rule", _selected("fuzz"))
def test_fuzz_command_runs_in_smoke_mode(page, cmd, rule, scratch, build_dir, onnxq_cli):
    _need_fuzz_build()
    words, env = _words(rule.kw.get("as_cmd", cmd), build_dir, onnxq_cli, scratch)
    env[SMOKE_ENV] = "1"
    run, secs = _run(words, env, REPO)
    TIMES[cmd] = secs
    assert run.returncode == 0, f"{page}: `{cmd}` failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    objs = _json_objects(run.stdout)
    targets = ["onnx_import", "external_data", "npy", "image"]
    expected = [w for w in words if w in targets] or targets
    assert [o["target"] for o in objs] == expected
    for obj in objs:
        for key in rule.kw["json_keys"]:
            assert key in obj, obj
        assert obj["smoke"] is True and obj["findings"] == [] and obj["exit_status"] == 0, obj
        assert obj["executions"] and obj["executions"] > 0, obj
        assert "/smoke/" in obj["log"], obj  # the real corpus is not touched


def test_fuzzer_replays_single_inputs():
    """`build-fuzz/fuzz/<target>_fuzzer <file>` (docs/fuzzing.md) on every regression input."""
    fuzz = _need_fuzz_build()
    n = 0
    for folder in sorted((REPO / "tests" / "data" / "fuzz_regressions").iterdir()):
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            run = subprocess.run([str(fuzz / "fuzz" / f"{folder.name}_fuzzer"), str(f)], capture_output=True,
                                 text=True, timeout=120)
            assert run.returncode == 0, f"{folder.name}/{f.name}:\n{run.stderr[-3000:]}"
            n += 1
    assert n >= 10


TOOL_SOURCES = {"onnxq_kernels_bench": "bench/kernels_bench.cc", "onnxq_int8_gemm_bench": "bench/int8_gemm_bench.cc"}


def _tool_help(tool, build_dir):
    if tool in TOOL_SOURCES and '"--help"' not in (REPO / TOOL_SOURCES[tool]).read_text():
        # A tool without --help (it would run the benchmark instead): its source's usage comment.
        return (REPO / TOOL_SOURCES[tool]).read_text().split("#include")[0]
    path = build_dir / "bin" / tool if tool.startswith("onnxq_") else REPO / tool
    argv = [sys.executable, str(path)] if tool.endswith(".py") else [str(path)]
    run = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(_package_parent())))
    assert run.returncode == 0, f"{tool} --help:\n{run.stderr}"
    return run.stdout


def test_benchmark_synopses_name_real_options(build_dir):
    """Options on every bench command line (synopses included) are options the tool's --help lists."""
    checked = 0
    for page, _, cmd in all_commands():
        rule = classify(cmd, page)
        if rule is None or rule.kind not in ("smoke", "fuzz", "help-options"):
            continue
        words = cmd.split()
        while re.match(r"^[A-Z_]+=", words[0]):
            words.pop(0)
        tool = words[1] if words[0].endswith("python") else words[0]
        tool = re.sub(r"^(?:build[\w-]*|BUILD)/bin/", "", tool)
        if not (tool.startswith(("bench/", "onnxq_")) and "--" in cmd) or tool == "bench/calib_bench.py":
            continue
        text = _tool_help(tool, build_dir)
        for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cmd):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", text), f"{page}: `{tool}` has no option {opt}:\n{cmd}"
        checked += 1
    assert checked >= 8, checked


def test_every_onnxq_line_names_a_real_command_and_options(onnxq_cli):
    """Each `onnxq <command> ...` line anywhere (inline spans and indented blocks too; test_docs.py
    checks the fenced ones) names a command and only options its --help lists."""
    top = subprocess.run([str(onnxq_cli), "--help"], capture_output=True, text=True, timeout=60).stdout
    helps, checked = {}, 0
    for page, _, cmd in all_commands():
        m = re.match(r"^(?:\S+=\S+ )*(?:(?:build[\w-]*|BUILD)/bin/|python -m )?onnxq ([a-z][a-z-]*)(/[a-z]+)?(.*)$", cmd)
        if not m:
            continue
        names = [m.group(1)] + ([m.group(2)[1:]] if m.group(2) else [])  # `onnxq run/bench --float-qdq`
        for name in names:
            assert re.search(rf"^\s+{re.escape(name)}\b", top, re.MULTILINE), f"{page}: `onnxq {name}`: no such command"
            if name not in helps:
                helps[name] = subprocess.run([str(onnxq_cli), name, "--help"], capture_output=True, text=True,
                                             timeout=60).stdout
            for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m.group(3)):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", helps[name]), \
                    f"{page}: `onnxq {name}` has no option {opt}:\n{cmd}"
        checked += 1
    assert checked >= 40, checked
