import dataclasses
import importlib.util
import shutil

import numpy as np
import pytest
import torch

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.exporters.onnx_export import export_onnx
from fcn_deploy.exporters.tensorrt_build import build_engine
from fcn_deploy.models.checkpoint import load_model
from fcn_deploy.models.heads import OUTPUT_MODES
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.ort_segmenter import OrtSegmenter
from fcn_deploy.runtime.tensorrt import Profile
from fcn_deploy.runtime.torch_segmenter import TorchSegmenter
from fcn_deploy.runtime.trt_segmenter import TensorRTSegmenter
from fcn_deploy.tasks.train import TrainConfig, train

has_trt = importlib.util.find_spec("tensorrt_rtx") is not None
needs_trt = pytest.mark.skipif(not has_trt, reason="tensorrt_rtx is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
# TensorRT-RTX 1.7's targets (its support matrix: 7.5, 8.6, 8.9, 12.x; the enum adds 8.0).
RTX_CAPABILITIES = {(7, 5), (8, 0), (8, 6), (8, 9), (12, 0), (12, 1)}
PROFILES = [Profile((1, 3, 32, 32), (1, 3, 64, 64), (2, 3, 128, 128)),
            Profile((1, 3, 128, 128), (1, 3, 256, 256), (1, 3, 320, 320))]  # they share 128x128


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A briefly trained width-0.125 FCN-8s checkpoint and an ONNX file per output mode."""
    d = tmp_path_factory.mktemp("rt")
    data = SyntheticShapes("train", 32, 48)
    cfg = TrainConfig(arch="fcn8s-vgg16", width=0.125, epochs=1, batch_size=8)
    train(cfg, data, d / "m.safetensors", log=lambda s: None)
    model, meta = load_model(d / "m.safetensors")
    for output in OUTPUT_MODES:
        export_onnx(model, meta, d / f"{output}.onnx", output, verify_shapes=((1, 3, 40, 40),))
    return d


@pytest.fixture(scope="module")
def engine(artifacts):
    """A TensorRT-RTX engine of the logits ONNX with two profiles (built without a GPU)."""
    if not has_trt:
        pytest.skip("tensorrt_rtx is not installed")
    out = artifacts / "m.engine"
    if torch.cuda.is_available() and torch.cuda.get_device_capability() not in RTX_CAPABILITIES:
        pytest.skip("TensorRT-RTX does not support compute capability %d.%d (its engines "
                    "refuse to deserialize there, e.g. on H100/H200)"
                    % torch.cuda.get_device_capability())
    ccs = ["CURRENT"] if torch.cuda.is_available() else ["SM86"]
    build_engine(artifacts / "logits.onnx", out, PROFILES, "tensorrt-rtx", ccs, log=lambda s: None)
    return out


def val_images(n=8, size=48):
    data = SyntheticShapes("val", n, size)
    return np.stack([data[i][0] for i in range(n)])


def test_backend_is_chosen_by_content(artifacts, tmp_path):
    disguised = tmp_path / "model.onnx"
    shutil.copy(artifacts / "m.safetensors", disguised)
    assert isinstance(open_segmenter(disguised), TorchSegmenter)
    assert isinstance(open_segmenter(artifacts / "logits.onnx"), OrtSegmenter)


def test_load_is_lazy_and_close_releases(artifacts):
    seg = open_segmenter(artifacts / "logits.onnx")
    assert not seg._loaded and not hasattr(seg, "_session")
    with seg:
        assert seg._session is not None
    assert seg._session is None and not seg._loaded
    out = seg.infer(np.zeros((1, 3, 40, 56), np.float32))  # infer loads again on demand
    assert out.shape == (1, 7, 40, 56) and out.dtype == np.float32


def test_checkpoint_and_onnx_give_the_same_labels(artifacts):
    images = val_images()
    torch_labels = open_segmenter(artifacts / "m.safetensors").predict(images)
    onnx_labels = open_segmenter(artifacts / "logits.onnx", threads=1).predict(images)
    labels_graph = open_segmenter(artifacts / "labels.onnx").predict(images)
    assert torch_labels.shape == (8, 48, 48) and torch_labels.dtype == np.uint8
    assert (torch_labels == onnx_labels).mean() >= 0.9999
    assert np.array_equal(onnx_labels, labels_graph)


def test_output_modes_return_their_tensors_and_the_same_labels(artifacts):
    x = OrtSegmenter(artifacts / "logits.onnx").preprocess(val_images(2))
    logits = OrtSegmenter(artifacts / "logits.onnx").infer(x)
    probs = OrtSegmenter(artifacts / "probs.onnx").run(x)["probs"]
    both = OrtSegmenter(artifacts / "labels+score.onnx").run(x)
    assert probs.dtype == np.float32 and probs.shape == logits.shape
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert sorted(both) == ["labels", "score"] and both["labels"].dtype == np.uint8
    assert both["score"].dtype == np.float32 and both["score"].shape == (2, 48, 48)
    np.testing.assert_allclose(both["score"], probs.max(1), atol=1e-6)
    assert (both["labels"] == logits.argmax(1)).mean() >= 0.9999
    images = val_images(2)
    labels = [open_segmenter(artifacts / f"{m}.onnx").predict(images) for m in OUTPUT_MODES]
    assert all((label == labels[0]).mean() >= 0.9999 for label in labels)


def test_torch_channels_last_matches(artifacts):
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40), dtype=np.float32)
    plain = TorchSegmenter(artifacts / "m.safetensors").infer(x)
    cl = TorchSegmenter(artifacts / "m.safetensors", channels_last=True).infer(x)
    np.testing.assert_allclose(plain, cl, atol=1e-4)


def test_gpu_only_options_are_refused_on_cpu(artifacts):
    for kwargs in ({"cuda_graph": True}, {"fp16": True}):
        with pytest.raises(FcnDeployError):
            TorchSegmenter(artifacts / "m.safetensors", **kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(FcnDeployError, match="no CUDA GPU"):
            TorchSegmenter(artifacts / "m.safetensors", device="cuda")


def test_unknown_or_missing_onnxruntime_provider(artifacts):
    with pytest.raises(FcnDeployError, match="unknown onnxruntime provider"):
        OrtSegmenter(artifacts / "logits.onnx", providers=("rocm",))
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(FcnDeployError, match="CUDAExecutionProvider"):
            OrtSegmenter(artifacts / "logits.onnx", providers=("cuda",)).load()


@needs_trt
def test_engine_profiles_are_chosen_tightest_first_and_refused_outside(engine):
    seg = TensorRTSegmenter(engine)
    assert seg.backend == "tensorrt-rtx" and seg.output == "logits"
    assert seg.profile_for((1, 3, 64, 64)) == 0
    assert seg.profile_for((1, 3, 128, 128)) == 0  # both fit: the smaller max wins
    assert seg.profile_for((1, 3, 300, 200)) == 1
    with pytest.raises(FcnDeployError,
                       match=r"outside every profile .*1x3x32x32:1x3x64x64:2x3x128x128"):
        seg.profile_for((1, 3, 16, 16))
    with pytest.raises(FcnDeployError, match="outside every profile"):
        seg.profile_for((2, 3, 200, 200))
    assert TensorRTSegmenter(engine, pad=True).profile_for((1, 3, 16, 16)) == 0
    logged = []  # verbose mode: the choice, once per new shape
    seg = TensorRTSegmenter(engine, log=logged.append)
    for shape in ((1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 300, 200)):
        seg.profile_for(shape)
    assert logged == ["m.engine: input 1x3x64x64 runs in profile 0 "
                      "(1x3x32x32:1x3x64x64:2x3x128x128) of 2",
                      "m.engine: input 1x3x300x200 runs in profile 1 "
                      "(1x3x128x128:1x3x256x256:1x3x320x320) of 2"]


@needs_trt
def test_runtime_cache_is_for_tensorrt_rtx_engines(engine, tmp_path):
    from fcn_deploy.contract.sidecar import read_sidecar

    meta = read_sidecar(engine)
    full = meta.replace(engine=dataclasses.replace(meta.engine, backend="tensorrt"))
    with pytest.raises(FcnDeployError, match="--runtime-cache is for TensorRT-RTX engines"):
        TensorRTSegmenter(engine, meta=full, runtime_cache=tmp_path / "c")


@needs_trt
def test_tiles_must_fit_an_engine_profile(engine):
    from fcn_deploy.runtime.tiling import parse_tile

    seg = TensorRTSegmenter(engine)
    assert parse_tile("auto", seg) == (320, 320) and parse_tile("128x300", seg) == (128, 300)
    with pytest.raises(FcnDeployError, match="larger than every profile"):
        parse_tile("400", seg)


@needs_trt
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_engine_without_a_gpu_fails_with_one_clear_line(engine):
    with pytest.raises(FcnDeployError, match="GPU"):
        TensorRTSegmenter(engine).load()


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_modes_agree_with_cpu(artifacts):
    images = val_images()
    cpu = TorchSegmenter(artifacts / "m.safetensors").predict(images)
    for kwargs, need in (({}, 0.9999), ({"fp16": True}, 0.99),
                         ({"fp16": True, "channels_last": True}, 0.99),
                         ({"cuda_graph": True}, 0.9999)):
        with TorchSegmenter(artifacts / "m.safetensors", device="cuda", **kwargs) as seg:
            got = seg.predict(images)
            again = seg.predict(images)  # a replayed CUDA graph gives the same result
        assert np.array_equal(got, again)
        assert (got == cpu).mean() >= need, kwargs


@pytest.mark.gpu
@needs_cuda
@needs_trt
def test_engine_runs_and_matches_onnxruntime(engine, artifacts):
    images = val_images(8, 48)
    reference = OrtSegmenter(artifacts / "logits.onnx").predict(images)
    for graph in (False, True):
        with TensorRTSegmenter(engine, cuda_graph=graph) as seg:
            got = np.concatenate([seg.predict(images[i:i + 2]) for i in range(0, 8, 2)])
            big = seg.infer(np.zeros((1, 3, 300, 200), np.float32))  # the second profile
            with pytest.raises(FcnDeployError, match="outside every profile"):
                seg.infer(np.zeros((1, 3, 400, 400), np.float32))
            timed = seg.timer((1, 3, 64, 64))
            assert timed() > 0
        assert (got == reference).mean() >= 0.999
        assert big.shape == (1, 7, 300, 200)
    with TensorRTSegmenter(engine, pad=True) as seg:  # 16x16 padded up to the 32x32 minimum
        assert seg.infer(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 7, 16, 16)


@pytest.mark.gpu
@needs_cuda
@needs_trt
def test_engine_with_two_outputs_matches_onnxruntime(engine, artifacts):
    out = artifacts / "ls.engine"  # `engine` has skipped already where TensorRT-RTX cannot run
    build_engine(artifacts / "labels+score.onnx", out, PROFILES, "tensorrt-rtx", ["CURRENT"],
                 log=lambda s: None)
    x = OrtSegmenter(artifacts / "labels+score.onnx").preprocess(val_images(2))
    want = OrtSegmenter(artifacts / "labels+score.onnx").run(x)
    with TensorRTSegmenter(out) as seg:
        got = seg.run(x)
    assert got["labels"].dtype == np.uint8 and got["score"].dtype == np.float32
    assert (got["labels"] == want["labels"]).mean() >= 0.999
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-3)


@pytest.mark.gpu
@needs_cuda
@needs_trt
def test_runtime_cache_is_written_and_reused(engine, tmp_path):
    cache = tmp_path / "kernels.cache"
    x = np.zeros((1, 3, 64, 64), np.float32)
    with TensorRTSegmenter(engine, runtime_cache=cache) as seg:
        first = seg.infer(x)
    assert cache.stat().st_size > 0 and "runtime_cache_hit" not in seg.phases
    with TensorRTSegmenter(engine, runtime_cache=cache) as again:
        np.testing.assert_array_equal(again.infer(x), first)
    assert again.phases["runtime_cache_hit"] is True
