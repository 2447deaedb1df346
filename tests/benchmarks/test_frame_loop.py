"""The frame-loop benchmark on a few small frames: every artifact gets its three modes in
every round, and the report holds them with the host times and bytes per frame."""
import json

import numpy as np
from helpers import export_tiny
from PIL import Image

from fcn_deploy.benchmarks.frame_loop import bytes_per_frame, frame_loop, write_results


def test_frame_loop_measures_every_mode(onnx_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            frames / f"{i}.jpg")
    rgb8 = export_tiny(tmp_path / "rgb8.onnx", "--input", "rgb8", "--output", "labels")
    report = frame_loop([onnx_model, rgb8], frames, threads=1, rounds=2, model_iters=2,
                        log=lambda line: None)
    modes = [(r["artifact"], r["mode"]) for r in report["rows"]]
    assert modes == [(a, m) for a in ("m.onnx", "rgb8.onnx")
                     for m in ("model alone", "sequential loop", "pipelined loop")]
    assert all(len(r["per_round"]) == 2 and r["frames_per_s"] > 0 for r in report["rows"])
    assert report["rows"][3]["convention"] == "rgb8, labels"
    assert (report["height"], report["width"], report["frames"]) == (48, 64, 4)
    assert set(report["host_ms"]) == {"decode", "normalize", "argmax", "label PNG"}
    paths = write_results(report, tmp_path / "out")
    assert json.loads(paths[0].read_text())["rows"][0]["artifact"] == "m.onnx"
    text = paths[1].read_text()
    assert "| rgb8.onnx | onnxruntime | rgb8, labels | pipelined loop |" in text and "100%" in text


def test_bytes_per_frame_is_a_quarter_for_uint8():
    row = next(r for r in bytes_per_frame() if r["size"] == "720x1280")
    assert row["float32_nchw"] == 11_059_200 == 4 * row["uint8_nhwc"]
