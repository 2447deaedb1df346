import json

import numpy as np
import pytest
from helpers import assert_one_line_error, export_tiny, run
from PIL import Image

from fcn_deploy.contract.hashing import sha256_file
from fcn_deploy.data.voc import write_voc_fixture
from fcn_deploy.tasks.segment_dataset import MANIFEST

pytest.importorskip("ray")



@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg")
    ckpt = d / "m.safetensors"
    assert run("train", "--arch", "fcn8s-vgg16", "--width", "0.0625", "--image-size", "48",
               "--samples", "16", "--epochs", "1", "--out", ckpt).exit_code == 0
    onnx_path = d / "m.onnx"
    assert run("export", ckpt, "-o", onnx_path).exit_code == 0
    voc = write_voc_fixture(d / "voc", n_train=1, n_val=9, size=(40, 56), num_classes=7)
    (voc / "JPEGImages" / "000005.jpg").write_bytes(b"not a jpeg")  # one corrupt image
    return onnx_path, voc


def test_two_workers_match_single_process_eval_and_resume(model_and_data, tmp_path):
    onnx_path, voc = model_and_data
    out = tmp_path / "labels"
    first = run("segment-dataset", onnx_path, voc, "--out", out, "--workers", "2",
                "--batch-size", "2", "--json", tmp_path / "s1.json")
    # A failed image makes the exit non-zero, after the others and the JSON are written.
    assert first.exit_code == 1, first.output
    assert first.output.strip().splitlines()[-1].startswith("error: 1 of 9 images failed")
    assert "Actor" not in first.output and "WARNING" not in first.output  # Ray's own notices
    s1 = json.loads((tmp_path / "s1.json").read_text())
    assert (s1["processed"], s1["skipped"], s1["failed"]) == (8, 0, 1)
    assert "000005.jpg" in s1["failures"][0]
    written = [f"{i:06d}.png" for i in range(1, 10) if i != 5]
    assert sorted(p.name for p in out.iterdir()) == sorted(written + [MANIFEST])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["labels"] == written and manifest["artifact_sha256"] == sha256_file(onnx_path)
    # The reference: the same data, one process, without the corrupt sample.
    ref = run("eval", onnx_path, "--data", voc, "--skip-bad", "--json", tmp_path / "ref.json")
    assert ref.exit_code == 0, ref.output
    expected = json.loads((tmp_path / "ref.json").read_text())["results"][str(onnx_path)]
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc"):
        assert s1["metrics"][key] == pytest.approx(expected[key], abs=1e-12)
    # Interrupted or not, a rerun skips what exists and scores it again from the saved labels;
    # a missing or stale label map (wrong size, cut off) is segmented again.
    (out / "000001.png").unlink()
    stale = out / "000002.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(stale)
    second = run("segment-dataset", onnx_path, voc, "--out", out, "--workers", "1",
                 "--json", tmp_path / "s2.json")
    assert second.exit_code == 1, second.output
    s2 = json.loads((tmp_path / "s2.json").read_text())
    assert (s2["processed"], s2["skipped"], s2["failed"]) == (2, 6, 1)
    assert np.asarray(Image.open(stale)).shape == (40, 56)
    assert s2["metrics"]["mean_iu"] == pytest.approx(s1["metrics"]["mean_iu"], abs=1e-12)
    assert "6 skipped (labels already there)" in second.output


def test_another_models_outputs_never_mix_into_a_folder(model_and_data, tmp_path):
    onnx_path, voc = model_and_data
    other = export_tiny(tmp_path / "other.onnx", "--eval-samples", "0")
    out = tmp_path / "labels"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"artifact": str(onnx_path), "labels": [],
                                            "artifact_sha256": sha256_file(onnx_path)}))
    result = run("segment-dataset", other, voc, "--out", out, "--workers", "1")
    assert_one_line_error(result, f"holds label maps of {onnx_path}", "another --out")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]
    (out / MANIFEST).unlink()  # label maps nobody recorded
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(out / "000001.png")
    result = run("segment-dataset", other, voc, "--out", out, "--workers", "1")
    assert_one_line_error(result, "already holds label maps (000001.png", MANIFEST)


def test_plain_folder_and_bad_inputs(model_and_data, tmp_path):
    onnx_path, voc = model_and_data
    images = tmp_path / "imgs"
    images.mkdir()
    for i in (1, 2, 3):
        (images / f"x{i}.jpg").write_bytes((voc / "JPEGImages" / f"{i:06d}.jpg").read_bytes())
    result = run("segment-dataset", onnx_path, images, "--out", tmp_path / "o", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "3 processed" in result.output and "mean IU" not in result.output
    single = run("predict", onnx_path, images / "x1.jpg", "--out", tmp_path / "single")
    assert single.exit_code == 0, single.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x1.png")),
                          np.asarray(Image.open(tmp_path / "single" / "x1.png")))
    tiled = run("segment-dataset", onnx_path, images, "--out", tmp_path / "t", "--workers", "1",
                "--tile", "32", "--overlap", "8")
    assert tiled.exit_code == 0, tiled.output
    one = run("predict", onnx_path, images / "x2.jpg", "--out", tmp_path / "pt", "--tile", "32",
              "--overlap", "8")
    assert one.exit_code == 0, one.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t" / "x2.png")),
                          np.asarray(Image.open(tmp_path / "pt" / "x2.png")))
    bad = run("segment-dataset", tmp_path / "nope.onnx", images, "--out", tmp_path / "p")
    assert bad.exit_code == 1 and bad.output.startswith("error:") and not (tmp_path / "p").exists()


def test_max_memory_tiles_each_image_past_the_budget_said_once(model_and_data, tmp_path):
    from fcn_deploy.runtime.factory import open_segmenter  # onnxruntime: this test only
    from fcn_deploy.runtime.memory import HEADROOM, estimate_peak

    onnx_path, _ = model_and_data
    voc = write_voc_fixture(tmp_path / "voc", n_train=1, n_val=2, size=(200, 260),
                            num_classes=7)
    with open_segmenter(onnx_path) as seg:
        need = estimate_peak(seg.meta, 1, 200, 260)  # measured at export
    result = run("segment-dataset", onnx_path, voc, "--out", tmp_path / "labels", "--workers",
                 "1", "--max-memory", str(int(need / HEADROOM / 2)))
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "segmenting in" in line]
    assert len(notes) == 1 and "200x260 needs ~" in notes[0], result.output
    assert "2 processed" in result.output
