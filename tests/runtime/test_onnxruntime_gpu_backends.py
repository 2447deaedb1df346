"""onnxruntime's CUDA and TensorRT execution providers as backends (each one module under
runtime/backends/): listed, chosen for --device cuda, and on a machine without
onnxruntime-gpu refused in one line when used; on a GPU (with onnxruntime-gpu) they give the
CPU backend's labels."""
import numpy as np
import pytest
from helpers import export_tiny, gpu_usable, run

from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime import open_segmenter
from fcn_deploy.runtime.registry import backends, choose

GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("ort_gpu") / "m.onnx")


def test_they_are_in_the_table_for_onnx_files_on_cuda():
    for name in GPU_BACKENDS:
        b = backends()[name]
        assert b.kinds == ("onnx",) and b.devices == ("cuda",) and b.extra == "gpu"
    assert choose("onnx", "cuda").name in GPU_BACKENDS
    assert "onnxruntime-cuda" in run("predict", "--help").output


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_without_their_provider_they_say_so_in_one_line(onnx_file, tmp_path, name):
    reason = backends()[name].unavailable()
    if reason is None:
        pytest.skip(f"{name} runs here")
    assert "pip install 'fcn-deploy[gpu]'" in reason
    seg = open_segmenter(onnx_file, backend=name, device="cuda")
    assert seg.backend == name and seg.device == "cuda"
    with pytest.raises(FcnDeployError, match="here has no"):
        seg.load()
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(image)
    result = run("predict", onnx_file, image, "-o", tmp_path / "o", "--backend", name,
                 "--device", "cuda")
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and last.startswith("error: ") and "here has no" in last
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_usable(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_on_a_gpu_they_agree_with_the_cpu(onnx_file, name):
    if backends()[name].unavailable():
        pytest.skip(backends()[name].unavailable())
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 96, 3), np.uint8)
    with open_segmenter(onnx_file) as cpu, open_segmenter(onnx_file, backend=name,
                                                          device="cuda") as gpu:
        assert (cpu.predict(images) == gpu.predict(images)).mean() > 0.999
