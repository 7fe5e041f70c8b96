"""The Python API of onnxq (issue 2): load / inspect / save, model properties, exceptions.

References are independent of onnxq: the onnx package (models built with onnx.helper, files read
with onnx.load), onnx.checker, ONNX Runtime on the backend test data, numpy.
"""

import ast
import copy
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxq
import onnxq.__main__

BACKEND_CASES = [
    ("node", "test_conv_with_strides_padding"),
    ("node", "test_gemm_default_single_elem_vector_bias"),
    ("node", "test_maxpool_2d_pads"),
    ("pytorch-converted", "test_Conv2d"),
    ("pytorch-operator", "test_operator_conv"),
]


def tiny_model(tmp_path, name="tiny.onnx"):
    """x[N,3,?] -> Relu -> Add(w) -> y, opset 13, with metadata: every field known exactly."""
    w = numpy_helper.from_array(np.arange(3, dtype=np.float32).reshape(1, 3, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Add", ["r", "w"], ["y"], name="add")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, None])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="onnxq-tests", producer_version="1.0", ir_version=8)
    helper.set_model_props(model, {"author": "tests", "purpose": "round trip"})
    path = tmp_path / name
    onnx.save(model, path)
    return path


def onnx_dims(value_info):
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return tuple(dims)


def np_dtype_name(elem_type):
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


def assert_same_graph(a: onnx.ModelProto, b: onnx.ModelProto):
    """Same nodes (op, domain, inputs, outputs, attributes), initializer bytes and graph outputs."""
    assert len(a.graph.node) == len(b.graph.node)
    for na, nb in zip(a.graph.node, b.graph.node):
        assert (na.op_type, na.domain, list(na.input), list(na.output)) == \
               (nb.op_type, nb.domain, list(nb.input), list(nb.output))
        assert {x.name: x for x in na.attribute} == {x.name: x for x in nb.attribute}
    ia = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    ib = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    assert ia.keys() == ib.keys()
    for k in ia:
        assert ia[k].dtype == ib[k].dtype and ia[k].shape == ib[k].shape
        assert ia[k].tobytes() == ib[k].tobytes(), k
    assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output]


# ---------------------------------------------------------------- package


def test_version_is_the_cmake_project_version(repo_root):
    if not hasattr(onnxq._onnxq, "__version__"):
        pytest.skip("_onnxq was built without -DONNXQ_VERSION (CMakeLists.txt does not pass it yet)")
    cmake = (repo_root / "CMakeLists.txt").read_text()
    expected = re.search(r"project\(onnxq VERSION ([0-9.]+)", cmake).group(1)
    assert onnxq.__version__ == expected


def test_exceptions_derive_from_matching_builtins():
    assert issubclass(onnxq.InvalidModelError, ValueError)
    assert issubclass(onnxq.LimitError, ValueError)
    assert issubclass(onnxq.NotFoundError, FileNotFoundError)
    assert issubclass(onnxq.UnsupportedError, NotImplementedError)
    assert issubclass(onnxq.IoError, OSError)
    for cls in (onnxq.InvalidModelError, onnxq.NotFoundError, onnxq.UnsupportedError,
                onnxq.LimitError, onnxq.IoError, onnxq.CancelledError):
        assert issubclass(cls, onnxq.OnnxqError)
        assert cls.__module__ == "onnxq"


def test_stubs_name_what_the_compiled_module_has(repo_root):
    """python/onnxq/_onnxq.pyi and the compiled module name the same functions, classes and members."""
    tree = ast.parse((repo_root / "python" / "onnxq" / "_onnxq.pyi").read_text())
    stub = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stub[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            stub[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            stub[node.target.id] = None
    compiled = onnxq._onnxq
    public = {n for n in dir(compiled) if not n.startswith("_") or n == "__version__"}
    stub_public = {n for n in stub if not n.startswith("_") or n == "__version__"}
    # Bound only once CMakeLists.txt defines ONNXQ_VERSION and links the CLI commands into _onnxq.
    for pending in ("__version__", "cli_main"):
        if not hasattr(compiled, pending):
            stub_public.discard(pending)
    assert not public - stub_public, f"add to python/onnxq/_onnxq.pyi: {sorted(public - stub_public)}"
    assert not stub_public - public, f"not in the module: {sorted(stub_public - public)}"
    for name, members in stub.items():
        if members is None:
            continue
        cls = getattr(compiled, name)
        own = {n for n in vars(cls) if not n.startswith("_")}
        stub_members = {n for n in members if not n.startswith("_")}
        if not issubclass(cls, BaseException):
            assert not own - stub_members, f"add to {name} in _onnxq.pyi: {sorted(own - stub_members)}"
            assert not stub_members - own, f"not in {name}: {sorted(stub_members - own)}"


def test_public_api_reexports_the_compiled_module():
    for name in ("Model", "load", "save", "OnnxqError"):
        assert getattr(onnxq, name) is getattr(onnxq._onnxq, name)
        assert name in onnxq.__all__
    with pytest.raises(AttributeError):
        onnxq.no_such_thing


def test_python_m_onnxq_mirrors_the_cli(tmp_path, onnxq_cli):
    if not hasattr(onnxq._onnxq, "cli_main"):
        pytest.skip("_onnxq has no cli_main: the CLI commands are not linked into the module yet")
    path = tiny_model(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for args, code in ([["inspect", str(path), "--json"], 0], [["--help"], 0],
                       [["inspect", str(tmp_path / "missing.onnx")], 1], [["no-such-command"], 2]):
        py = subprocess.run([sys.executable, "-m", "onnxq", *args], capture_output=True, text=True,
                            env=env)
        cli = subprocess.run([str(onnxq_cli), *args], capture_output=True, text=True)
        assert (py.returncode, py.stdout, py.stderr) == (cli.returncode, cli.stdout, cli.stderr)
        assert py.returncode == code
    out = tmp_path / "converted.onnx"
    assert onnxq.__main__.main(["convert", str(path), "-o", str(out)]) == 0
    assert_same_graph(onnx.load(path), onnx.load(out))


# ---------------------------------------------------------------- load: properties


def test_load_exposes_inputs_outputs_opset_metadata(tmp_path):
    path = tiny_model(tmp_path)
    model = onnxq.load(path)  # a pathlib.Path works as well as a str
    assert model.inputs == [onnxq.load(str(path)).inputs[0]]
    (x,) = model.inputs
    assert (x.name, x.dtype, x.shape) == ("x", "float32", ("N", 3, None))
    (y,) = model.outputs
    assert (y.name, y.dtype) == ("y", "float32")
    assert model.opset == 13
    assert model.opset_imports == {"": 13}
    assert model.num_nodes == 2
    assert model.metadata == {"author": "tests", "purpose": "round trip"}
    assert model.ir_version == 8
    assert (model.producer_name, model.producer_version) == ("onnxq-tests", "1.0")
    assert model.source_path.endswith("tiny.onnx")
    assert "opset 13" in repr(model) and "2 nodes" in repr(model)


@pytest.mark.parametrize("kind,name", BACKEND_CASES)
def test_load_matches_onnx_on_backend_models(backend_model, kind, name):
    path = backend_model(kind, name)
    ref = onnx.load(path)
    model = onnxq.load(path)
    inits = {t.name for t in ref.graph.initializer}
    ref_inputs = [vi for vi in ref.graph.input if vi.name not in inits]
    assert [i.name for i in model.inputs] == [vi.name for vi in ref_inputs]
    for info, vi in zip(model.inputs, ref_inputs):
        assert info.dtype == np_dtype_name(vi.type.tensor_type.elem_type)
        assert info.shape == onnx_dims(vi)
    assert [o.name for o in model.outputs] == [vi.name for vi in ref.graph.output]
    for info, vi in zip(model.outputs, ref.graph.output):
        assert info.dtype == np_dtype_name(vi.type.tensor_type.elem_type)
    assert model.num_nodes == len(ref.graph.node)
    default = [o.version for o in ref.opset_import if o.domain in ("", "ai.onnx")]
    assert model.opset == default[0]


def test_copy_is_independent(tmp_path):
    model = onnxq.load(tiny_model(tmp_path))
    for other in (model.copy(), copy.copy(model), copy.deepcopy(model)):
        other.set_metadata("author", "someone else")
        assert other.metadata["author"] == "someone else"
    assert model.metadata["author"] == "tests"


# ---------------------------------------------------------------- inspect


def reference_summary(proto: onnx.ModelProto):
    """op histogram, parameter count and initializer bytes by dtype, computed with onnx + numpy."""
    ops = {}
    for n in proto.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
        ops[key] = ops.get(key, 0) + 1
    params, nbytes = 0, {}
    for t in proto.graph.initializer:
        a = numpy_helper.to_array(t)
        params += a.size
        nbytes[a.dtype.name] = nbytes.get(a.dtype.name, 0) + a.nbytes
    return ops, params, nbytes


@pytest.mark.parametrize("kind,name", BACKEND_CASES)
def test_inspect_counts_match_onnx(backend_model, kind, name):
    path = backend_model(kind, name)
    info = onnxq.load(path).inspect()
    ops, params, nbytes = reference_summary(onnx.load(path))
    assert info["op_counts"] == ops
    assert info["parameter_count"] == params
    assert info["bytes_by_dtype"] == nbytes
    assert info["num_nodes"] == sum(ops.values())
    assert info["path"] == str(path)


def test_inspect_equals_cli_json(tmp_path, onnxq_cli):
    path = tiny_model(tmp_path)
    model = onnxq.load(path)
    cli = subprocess.run([str(onnxq_cli), "inspect", str(path), "--json"], check=True,
                         capture_output=True, text=True)
    assert model.inspect() == json.loads(cli.stdout)
    text = subprocess.run([str(onnxq_cli), "inspect", str(path)], check=True,
                          capture_output=True, text=True)
    assert model.summary() == text.stdout
    info = model.inspect()
    assert info["metadata"] == {"author": "tests", "purpose": "round trip"}
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": "[N,3,?]"}]
    assert info["parameter_count"] == 3 and info["params_by_dtype"] == {"float32": 3}


def test_inspect_mobilenetv2(mobilenetv2_path):
    info = onnxq.load(mobilenetv2_path).inspect()
    assert info["parameter_count"] == 3_487_886
    assert info["op_counts"] == {"Conv": 53, "Clip": 35, "Add": 10, "GlobalAveragePool": 1,
                                 "Flatten": 1, "Identity": 1}
    ops, params, nbytes = reference_summary(onnx.load(mobilenetv2_path))
    assert (info["op_counts"], info["parameter_count"], info["bytes_by_dtype"]) == (ops, params, nbytes)


# ---------------------------------------------------------------- save


def test_save_round_trip_keeps_everything(tmp_path):
    src = tiny_model(tmp_path)
    model = onnxq.load(src)
    model.set_metadata("quantized", "no")
    out = tmp_path / "out.onnx"
    onnxq.save(model, out)
    saved = onnx.load(out)
    onnx.checker.check_model(saved)
    assert_same_graph(onnx.load(src), saved)
    props = {p.key: p.value for p in saved.metadata_props}
    assert props == {"author": "tests", "purpose": "round trip", "quantized": "no"}
    assert onnx_dims(saved.graph.input[0]) == ("N", 3, None)
    # Model.save and to_bytes write the same model.
    model.save(tmp_path / "again.onnx")
    assert_same_graph(saved, onnx.load(tmp_path / "again.onnx"))
    assert_same_graph(saved, onnx.load_from_string(model.to_bytes()))
    assert onnxq.load_bytes(model.to_bytes()).metadata == model.metadata


@pytest.mark.parametrize("kind,name", BACKEND_CASES)
def test_save_round_trip_runs_like_the_original(backend_model, tmp_path, kind, name):
    """The saved model is accepted by onnx.checker, has the same graph, and ONNX Runtime computes the
    backend test's expected outputs with it."""
    ort = pytest.importorskip("onnxruntime")
    path = backend_model(kind, name)
    out = tmp_path / "model.onnx"
    onnxq.save(onnxq.load(path), out)
    saved = onnx.load(out)
    onnx.checker.check_model(saved)
    assert_same_graph(onnx.load(path), saved)

    data = path.parent / "test_data_set_0"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        t = onnx.TensorProto()
        t.ParseFromString((data / f"input_{i}.pb").read_bytes())
        feeds[meta.name] = numpy_helper.to_array(t)
    results = sess.run(None, feeds)
    for i, got in enumerate(results):
        t = onnx.TensorProto()
        t.ParseFromString((data / f"output_{i}.pb").read_bytes())
        np.testing.assert_allclose(got, numpy_helper.to_array(t), rtol=1e-4, atol=1e-5)


def test_mobilenetv2_round_trip(mobilenetv2_path, tmp_path):
    model = onnxq.load(mobilenetv2_path)
    assert model.inputs[0].shape == ("N", 3, 224, 224)
    assert model.outputs[0].shape == ("N", 1000)
    assert model.num_nodes == 101
    out = tmp_path / "mobilenetv2.onnx"
    onnxq.save(model, out)
    saved = onnx.load(out)
    onnx.checker.check_model(saved)
    assert_same_graph(onnx.load(mobilenetv2_path), saved)


def test_save_replaces_an_existing_file(tmp_path):
    model = onnxq.load(tiny_model(tmp_path))
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old contents " * 100000)
    onnxq.save(model, out)
    assert_same_graph(onnx.load(tmp_path / "tiny.onnx"), onnx.load(out))


def test_failed_save_leaves_nothing_behind(tmp_path):
    model = onnxq.load(tiny_model(tmp_path))
    # The output path is an existing folder: the save fails, and neither a temporary file next to
    # it nor a change inside it is left behind.
    target = tmp_path / "out.onnx"
    target.mkdir()
    (target / "keep").write_text("untouched")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(onnxq.OnnxqError) as err:
        onnxq.save(model, target)
    assert str(target) in str(err.value)
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file left next to it
    assert (target / "keep").read_text() == "untouched"


def test_save_into_missing_folder_names_it(tmp_path):
    model = onnxq.load(tiny_model(tmp_path))
    out = tmp_path / "no" / "such" / "out.onnx"
    with pytest.raises(onnxq.OnnxqError) as err:
        onnxq.save(model, out)
    assert isinstance(err.value, OSError)
    assert str(out.parent) in str(err.value)
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- errors


def test_missing_file_raises_file_not_found_with_the_path(tmp_path):
    path = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError) as err:
        onnxq.load(path)
    assert isinstance(err.value, onnxq.NotFoundError)
    assert str(path) in str(err.value)


def test_garbage_file_raises_value_error_naming_the_file(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError) as err:
        onnxq.load(path)
    assert isinstance(err.value, onnxq.OnnxqError)
    assert "garbage.onnx" in str(err.value)


def test_truncated_model_raises_value_error(tmp_path):
    good = tiny_model(tmp_path).read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError) as err:
        onnxq.load(path)
    assert "truncated.onnx" in str(err.value)


def test_undefined_node_input_names_the_node(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["y"], name="the_relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "undefined.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    with pytest.raises(ValueError) as err:
        onnxq.load(path)
    assert "the_relu" in str(err.value) and "nowhere" in str(err.value)
