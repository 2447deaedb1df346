"""Triton's Python backend serves ``export_triton(..., backend="python")`` repositories: the
model.py's batching and error answers (with a stand-in pb_utils), then a real tritonserver
(PyTriton's, from the serve venv named by FCN_SERVE_VENV; ``make test`` sets it) loading the
model, its argmax and the labels ensemble, and answering as onnxruntime does."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pb_utils_stub
import pytest
from google.protobuf import json_format, text_format
from helpers import export_tiny, tiny_meta
from pb_utils_stub import Tensor

from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.contract.kinds import sidecar_path
from fcn_deploy.contract.metadata import EngineInfo
from fcn_deploy.contract.sidecar import read_sidecar
from fcn_deploy.errors import ExportError, OptionError
from fcn_deploy.exporters.triton import PYTHON_MODEL, export_triton, model_config_pb2
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.serving.tritonserver import Install, free_ports, stop, wait_ready

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
SERVE_VENV = os.environ.get("FCN_SERVE_VENV")
needs_server = pytest.mark.skipif(not SERVE_VENV, reason="FCN_SERVE_VENV (serve venv) not set")
SIZES = ((40, 56), (33, 47), (64, 64))  # three images of different sizes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-init width-1/16 FCN-8s logits ONNX file (random: non-trivial labels)."""
    return export_tiny(tmp_path_factory.mktemp("tpb") / "seg.onnx")


@pytest.fixture(scope="module")
def repo(tiny, tmp_path_factory):
    repo = tmp_path_factory.mktemp("tpb") / "repo"
    written = export_triton(tiny, repo, "seg", max_batch_size=4, kind="cpu", backend="python")
    assert [p.name for p in written] == ["seg", "seg_argmax", "seg_labels"]
    return repo


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())


def images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) for h, w in SIZES]


def test_python_repository_layout(repo, tiny):
    config = parse(repo / "seg" / "config.pbtxt")
    assert config.backend == "python" and not config.platform
    assert config.parameters["fcn_python_model"].string_value == "segmenter"
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("logits", mc.TYPE_FP32, [7, -1, -1])]
    assert (repo / "seg" / "1" / "model.onnx").read_bytes() == tiny.read_bytes()
    argmax = parse(repo / "seg_argmax" / "config.pbtxt")
    assert argmax.backend == "python" and argmax.input[0].name == "logits"
    assert argmax.parameters["fcn_python_model"].string_value == "argmax"
    for model in ("seg", "seg_argmax"):
        assert (repo / model / "1" / "model.py").read_text() == PYTHON_MODEL.read_text()
    assert not (repo / "seg_argmax" / "1" / "model.onnx").exists()
    ensemble = parse(repo / "seg_labels" / "config.pbtxt")
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["seg", "seg_argmax"]
    with pytest.raises(OptionError, match="unknown Triton backend"):
        export_triton(tiny, repo, "x", backend="tensorflow")


def fake_engine(folder: Path) -> Path:
    """A TensorRT-RTX "engine" (plan magic, then filler) with a sidecar that matches it."""
    engine = folder / "m.engine"
    engine.write_bytes(b"vtrt" + bytes(60))
    info = EngineInfo(
        backend="tensorrt_rtx", backend_version="1.2", engine_sha256=sha256_file(engine),
        engine_bytes=64, build_seconds=1.0,
        inputs=[{"name": "input", "dtype": "float", "shape": [-1, 3, -1, -1]}],
        outputs=[{"name": "logits", "dtype": "float", "shape": [-1, 7, -1, -1]}],
        profiles=[{"min": [1, 3, 64, 64], "opt": [1, 3, 256, 256], "max": [4, 3, 512, 512]}])
    meta = tiny_meta(precision="fp16", engine=info)
    sidecar_path(engine).write_text(json.dumps(meta.to_dict()))
    return engine


def test_engines_go_with_their_sidecar_and_may_be_tensorrt_rtx(tmp_path):
    engine = fake_engine(tmp_path)
    with pytest.raises(ExportError, match="full TensorRT"):  # tensorrt_plan cannot load it
        export_triton(engine, tmp_path / "repo", "eng", max_batch_size=4)
    with pytest.raises(ExportError, match="GPU instances only"):
        export_triton(engine, tmp_path / "repo", "eng", kind="cpu", backend="python")
    export_triton(engine, tmp_path / "repo", "eng", max_batch_size=4, backend="python")
    version = tmp_path / "repo" / "eng" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.plan", "model.plan.json",
                                                         "model.py"]
    assert read_sidecar(version / "model.plan") == read_sidecar(engine)
    config = parse(tmp_path / "repo" / "eng" / "config.pbtxt")
    assert config.backend == "python" and not config.platform
    assert not config.instance_group[0].profile  # tensorrt_plan's field; the runtime picks
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


# -- model.py with a stand-in triton_python_backend_utils: batching and error answers ---------

def load_model(monkeypatch, repo: Path, name: str):
    """model.py of ``repo/name`` initialized as the Python backend does."""
    config = json_format.MessageToDict(parse(repo / name / "config.pbtxt"),
                                       preserving_proto_field_name=True)
    return pb_utils_stub.load_model(monkeypatch, repo / name / "1" / "model.py", config,
                                    model_repository=str(repo / name), model_version="1",
                                    model_instance_kind="CPU")


def test_model_py_batches_by_shape_and_answers_bad_requests(monkeypatch, repo, tiny):
    model = load_model(monkeypatch, repo, "seg")
    seg = OrtSegmenter(tiny)
    x = [seg.preprocess(np.concatenate([im, im[:, ::-1]])) for im in images()]
    requests = [{"input": Tensor("input", a)} for a in (x[0][:1], x[1], x[0][1:], x[2][:1])]
    requests += [{"input": Tensor("input", x[0][:, :, :0])}, {}]  # empty image; no input
    batches, infer = [], model.infer
    model.infer = lambda b: batches.append(b.shape) or infer(b)
    responses = model.execute(requests)
    assert sorted(batches) == sorted([(2, 3, 40, 56), (2, 3, 33, 47), (1, 3, 64, 64)])
    for response, a in zip(responses, (x[0][:1], x[1], x[0][1:], x[2][:1])):
        assert response.error is None
        np.testing.assert_allclose(response.outputs["logits"], seg.run(a)["logits"], atol=1e-5)
    assert "must be float32 Nx3x?x?" in str(responses[4].error)
    assert responses[4].error.code == pb_utils_stub.TritonError.INVALID_ARG  # HTTP 400
    assert "no input 'input'" in str(responses[5].error)
    # A batch the runtime refuses is retried request by request: only the bad one fails.
    model.infer = lambda b: infer(b) if len(b) == 1 else 1 / 0
    responses = model.execute(requests[:3])
    assert [r.error is None for r in responses] == [True, False, True]
    assert "ZeroDivisionError" in str(responses[1].error)


def test_model_py_argmax(monkeypatch, repo):
    model = load_model(monkeypatch, repo, "seg_argmax")
    scores = np.random.default_rng(1).standard_normal((2, 7, 9, 11)).astype(np.float32)
    (response,) = model.execute([{"logits": Tensor("logits", scores)}])
    labels = response.outputs["labels"]
    assert labels.dtype == np.uint8 and np.array_equal(labels, scores.argmax(1))


# -- a real tritonserver ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    """An HTTP client of the bundled tritonserver serving ``repo`` on loopback ports."""
    tritonclient_http = pytest.importorskip("tritonclient.http")
    install = Install.of(Path(SERVE_VENV) / "bin" / "python")
    tmp = tmp_path_factory.mktemp("triton")
    ports, log = free_ports(3), tmp / "tritonserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(install.command(repo, install.backend_dir(tmp), ports),
                                stdout=out, stderr=subprocess.STDOUT, env=install.env())
    url = f"127.0.0.1:{ports[0]}"
    client = tritonclient_http.InferenceServerClient(url)
    try:
        wait_ready(proc, url, ("seg", "seg_argmax", "seg_labels"), log, timeout=45)
        yield client
    finally:
        client.close()  # Triton waits for open HTTP connections before it exits
        stop(proc)


def infer(client, model: str, x: np.ndarray, output: str) -> np.ndarray:
    from tritonclient.http import InferInput  # the serve test's client only

    tensor = InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer(model, [tensor]).as_numpy(output)


@needs_server
def test_server_answers_as_onnxruntime(server, tiny):
    assert server.get_model_config("seg")["backend"] == "python"
    seg = OrtSegmenter(tiny)
    for image in images():
        x = seg.preprocess(image)
        logits = infer(server, "seg", x, "logits")
        np.testing.assert_allclose(logits, seg.run(x)["logits"], rtol=1e-4, atol=1e-4)
        labels = infer(server, "seg_labels", x, "labels")
        assert labels.dtype == np.uint8 and np.array_equal(labels, seg.predict(image))
        assert len(np.unique(labels)) > 1  # random init: the labels say something
    pair = np.concatenate(images(1)[:1] * 2)  # a batch of two in one request
    assert np.array_equal(infer(server, "seg_labels", seg.preprocess(pair), "labels"),
                          seg.predict(pair))


@needs_server
def test_server_answers_bad_requests_with_errors_and_keeps_serving(server, tiny):
    from tritonclient.utils import InferenceServerException  # the serve test's client only

    seg = OrtSegmenter(tiny)
    x = seg.preprocess(images()[0])
    for model in ("seg", "seg_labels"):
        with pytest.raises(InferenceServerException, match="must be float32"):
            infer(server, model, x[:, :, :0], "logits")  # reaches model.py: an empty image
        with pytest.raises(InferenceServerException, match="unexpected shape"):
            infer(server, model, np.zeros((1, 4, 8, 8), np.float32), "logits")  # Triton's check
    assert server.is_model_ready("seg")
    assert np.array_equal(infer(server, "seg_labels", x, "labels"), seg.predict(images()[0]))
