"""The OpenVINO backend against onnxruntime on the same ONNX files: labels, INT8 agreement,
dynamic shapes, the compiled-model cache and its errors; real files, real runtimes."""
import numpy as np
import pytest
from helpers import assert_one_line_error, export_tiny, run

from fcn_deploy.benchmarks.machine import cpu_info
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.registry import installed

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """FP32, INT8 (S8S8) and INT8 with 7-bit weights: exports of the same random-init
    width-1/16 FCN-8s (seeded)."""
    folder = tmp_path_factory.mktemp("ov")
    return {"fp32": export_tiny(folder / "m.onnx"),
            "int8": export_tiny(folder / "m_int8.onnx", "--precision", "int8",
                                "--calib-samples", 4, "--eval-samples", 0),
            "int8-7bit": export_tiny(folder / "m_int8r.onnx", "--precision", "int8",
                                     "--calib-samples", 4, "--eval-samples", 0, "--reduce-range")}


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), np.uint8)


def _pair(path, tmp_path):
    return (open_segmenter(path, threads=2),
            open_segmenter(path, threads=2, backend="openvino", cache_dir=tmp_path / "cache"))


@pytest.mark.parametrize("n, h, w", [(1, 97, 131), (1, 333, 500), (2, 64, 80)])
def test_fp32_logits_and_labels_match_onnxruntime_at_any_shape(models, tmp_path, n, h, w):
    ort, ov = _pair(models["fp32"], tmp_path)
    with ort, ov:
        x = ort.preprocess(_images(n, h, w))
        a, b = ort.infer(x), ov.infer(x)
    assert b.shape == a.shape == (n, 7, h, w)
    np.testing.assert_allclose(b, a, atol=1e-4 * float(np.abs(a).max()))
    assert np.array_equal(a.argmax(1), b.argmax(1))


@pytest.mark.parametrize("name", ["int8", "int8-7bit"])
def test_int8_labels_agree_with_onnxruntimes_int8(models, tmp_path, name):
    # Full-range weights: without VNNI both runtimes multiply in saturating int16 pairs
    # (vpmaddubsw) and round differently (measured on an AVX2 EPYC: 96.4% agreement); 7-bit
    # weights (--reduce-range) cannot saturate, so there both come near the graph's exact
    # arithmetic.
    if name == "int8" and not cpu_info()["vnni"]:
        pytest.skip("x86 without VNNI: 8-bit weights saturate int16 sums (export --reduce-range)")
    images = _images(2, 120, 160, seed=1)
    ort, ov = _pair(models[name], tmp_path)
    with ort, ov:
        assert ov.precision == ort.precision == {"int8": "int8 s8s8",
                                                 "int8-7bit": "int8 s8s8 7-bit"}[name]
        agree = (ort.predict(images) == ov.predict(images)).mean()
    assert agree >= 0.999, agree


def test_second_load_comes_from_the_compiled_model_cache(models, tmp_path):
    cache = tmp_path / "cache"
    first = open_segmenter(models["fp32"], backend="openvino", cache_dir=cache)
    with first:
        labels = first.predict(_images(1, 64, 64))
    assert any(cache.iterdir())  # the compiled model was written
    second = open_segmenter(models["fp32"], backend="openvino", cache_dir=cache)
    with second:
        assert np.array_equal(second.predict(_images(1, 64, 64)), labels)
    assert second.phases["load_s"] > 0


def test_cli_runs_openvino_and_refuses_it_off_the_cpu(models, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.fromarray(_images(1, 40, 56)[0]).save(images / "a.png")
    result = run("predict", models["fp32"], images, "--out", tmp_path / "out", "--backend",
                 "openvino", "--threads", 1)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.png").is_file()
    assert_one_line_error(run("predict", models["fp32"], images, "--out", tmp_path / "o2",
                              "--backend", "openvino", "--device", "cuda"), "runs on the CPU",
                          code=2)
    assert_one_line_error(run("predict", models["fp32"], images, "--out", tmp_path / "o3",
                              "--backend", "tvm"), "'tvm' is not one of", code=2)


def test_tiled_predict_and_eval_give_the_same_labels_and_scores_in_both_runtimes(models,
                                                                               tmp_path):
    import json

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_images(1, 90, 120, seed=2)[0]).save(images / "a.png")
    labels, scores = {}, {}
    for backend in ("onnxruntime", "openvino"):
        out, metrics = tmp_path / backend, tmp_path / f"{backend}.json"
        assert run("predict", models["fp32"], images, "--out", out, "--backend", backend,
                   "--tile", "48x64", "--overlap", 16, "--no-overlay").exit_code == 0
        labels[backend] = np.asarray(Image.open(out / "a.png"))
        assert run("eval", models["fp32"], "--backend", backend, "--samples", 4,
                   "--image-size", 48, "--json", metrics).exit_code == 0
        (row,) = json.loads(metrics.read_text())["results"].values()
        assert row["backend"] == backend
        scores[backend] = [row[k] for k in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc")]
    assert np.array_equal(labels["onnxruntime"], labels["openvino"])
    assert scores["onnxruntime"] == pytest.approx(scores["openvino"], rel=1e-6)


def test_installed_backends_and_the_default():
    assert installed("onnx", "cpu") == ["onnxruntime", "openvino"]
    assert installed("onnx", "cuda") == []  # no GPU execution provider in this onnxruntime
    with pytest.raises(FcnDeployError, match="unknown OpenVINO performance hint"):
        from fcn_deploy.runtime.ov_segmenter import OpenVINOSegmenter

        OpenVINOSegmenter("x.onnx", hint="fast")
