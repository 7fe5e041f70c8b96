"""`cmake --install` gives a package that find_package(onnxq) finds: examples/cpp builds against it,
and both the example and the installed CLI read a backend test model correctly."""

import json
import os
import shutil
import subprocess

import onnx
import pytest
from onnx import numpy_helper

MODEL = ("node", "test_conv_with_strides_padding")


def run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(build_dir, tmp_path_factory):
    if not (build_dir / "CMakeCache.txt").is_file():
        pytest.skip(f"no CMake build tree at {build_dir}")
    prefix = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", build_dir, "--prefix", prefix])
    return prefix


def test_install_layout(installed, repo_root):
    assert (installed / "lib" / "libonnxq.a").is_file()
    assert os.access(installed / "bin" / "onnxq", os.X_OK)
    assert (installed / "lib" / "cmake" / "onnxq" / "onnxqConfig.cmake").is_file()
    assert (installed / "lib" / "cmake" / "onnxq" / "onnxqConfigVersion.cmake").is_file()
    # Every public header is installed, and nothing from src/ (private headers) is.
    public = sorted(p.relative_to(repo_root / "include") for p in (repo_root / "include").rglob("*.h"))
    got = sorted(p.relative_to(installed / "include") for p in (installed / "include").rglob("*.h"))
    assert got == public


def test_example_builds_against_installed_package(installed, repo_root, tmp_path, backend_model,
                                                  onnxq_cli):
    model = backend_model(*MODEL)
    build = tmp_path / "build"
    configure = ["cmake", "-S", repo_root / "examples" / "cpp", "-B", build,
                 f"-DCMAKE_PREFIX_PATH={installed}", "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    run(configure)
    run(["cmake", "--build", build])

    out = json.loads(run([build / "inspect_model", model, "--json"]).stdout)
    ref = onnx.load(model)
    assert out["op_counts"] == {"Conv": 1}
    assert out["parameter_count"] == sum(numpy_helper.to_array(t).size for t in ref.graph.initializer)
    assert [i["name"] for i in out["inputs"]] == [i.name for i in ref.graph.input]
    assert out["inputs"][0]["shape"] == "[1,1,7,5]"
    assert [o["name"] for o in out["outputs"]] == [o.name for o in ref.graph.output]
    # The installed CLI and the build tree's CLI print the same summary.
    installed_cli = json.loads(run([installed / "bin" / "onnxq", "inspect", model, "--json"]).stdout)
    assert installed_cli == out == json.loads(run([onnxq_cli, "inspect", model, "--json"]).stdout)

    # Errors come back as a Status with the file named, and exit code 1.
    missing = tmp_path / "missing.onnx"
    result = subprocess.run([str(build / "inspect_model"), str(missing)], capture_output=True, text=True)
    assert result.returncode == 1
    assert str(missing) in result.stderr


def test_quantize_example_matches_the_cli(installed, repo_root, tmp_path, mobilenetv2_path,
                                          shared_dir, onnxq_cli):
    """examples/cpp/quantize.cpp, built against the installed package, writes the same bytes as
    `onnxq quantize` with the same data and defaults, and reports float vs int8 accuracy."""
    build = tmp_path / "build"
    configure = ["cmake", "-S", repo_root / "examples" / "cpp", "-B", build,
                 f"-DCMAKE_PREFIX_PATH={installed}", "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    run(configure)
    run(["cmake", "--build", build, "--target", "quantize"])
    images = shared_dir / "data" / "imagenet-sample"
    out = run([build / "quantize", mobilenetv2_path, images, tmp_path / "ex.onnx",
               "--preprocess", "imagenet-tf", "--calib-count", 16, "--eval-count", 16]).stdout
    assert "top-1" in out and "weights (MB)" in out and "latency, batch 1 (ms)" in out
    agreement = float(out.split("top-1 agreement ")[1].split(" %")[0])
    assert agreement >= 87.5, out  # 16 images: at most 2 flips
    run([onnxq_cli, "quantize", mobilenetv2_path, "-o", tmp_path / "cli.onnx", "--calib", images,
         "--calib-count", 16, "--preprocess", "imagenet-tf"])
    assert (tmp_path / "ex.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()

    bad = subprocess.run([str(build / "quantize"), str(mobilenetv2_path), str(tmp_path / "nowhere"),
                          str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert bad.returncode == 1 and "nowhere" in bad.stderr
    assert not (tmp_path / "x.onnx").exists()
