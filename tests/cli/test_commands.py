import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_one_line_error, run
from PIL import Image

from fcn_deploy.data.voc import write_voc_fixture

TINY = ["--width", "0.0625", "--image-size", "32", "--samples", "4", "--batch-size", "4"]






def test_help_lists_the_commands():
    proc = subprocess.run([sys.executable, "-m", "fcn_deploy.cli", "--help"],
                          capture_output=True, text=True, check=True)
    for name in ("train", "eval", "predict", "info", "export", "build"):
        assert name in proc.stdout
    assert "fcn32s-alexnet" in run("train", "--help").output


def test_train_eval_info_predict_round_trip(checkpoint, tmp_path):
    metrics = tmp_path / "m.json"
    result = run("eval", checkpoint, "--image-size", "32", "--samples", "4", "--json", metrics)
    assert result.exit_code == 0, result.output
    r = json.loads(metrics.read_text())["results"][str(checkpoint)]
    assert 0 <= r["mean_iu"] <= 1 and set(r) >= {"pixel_acc", "mean_acc", "fwavacc", "iu"}

    result = run("info", checkpoint)
    assert result.exit_code == 0 and "fcn8s-vgg16" in result.output and "H, W >= 1" in result.output

    img = tmp_path / "in" / "scene.png"
    img.parent.mkdir()
    Image.fromarray(np.full((37, 45, 3), 120, np.uint8)).save(img)
    result = run("predict", checkpoint, img.parent, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    labels = Image.open(tmp_path / "pred" / "scene.png")
    assert labels.mode == "P" and labels.size == (45, 37)
    assert (tmp_path / "pred" / "scene_overlay.png").exists()


def test_train_on_a_voc_layout_folder_with_crops(tmp_path):
    root = write_voc_fixture(tmp_path / "voc", n_train=2, n_val=1, num_classes=4)
    out = tmp_path / "voc.safetensors"
    result = run("train", "--arch", "fcn32s-alexnet", "--width", "0.0625", "--data", root,
                 "--crop", "32", "--epochs", "1", "--batch-size", "2", "--out", out)
    assert result.exit_code == 0, result.output
    result = run("eval", out, "--data", root)
    assert result.exit_code == 0, result.output


def test_missing_and_corrupt_checkpoints(tmp_path):
    assert_one_line_error(run("eval", tmp_path / "nope.safetensors"), "nope.safetensors",
                          "does not exist")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    assert_one_line_error(run("info", bad), "bad.safetensors")


def test_truncated_checkpoint(checkpoint, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    assert_one_line_error(run("eval", cut), "cut.safetensors")


def test_missing_data_folder(tmp_path):
    assert_one_line_error(run("train", "--data", tmp_path / "nodata",
                              "--out", tmp_path / "x.safetensors"), "nodata")
    assert not (tmp_path / "x.safetensors").exists()


def test_class_count_mismatch(checkpoint, tmp_path):
    root = write_voc_fixture(tmp_path / "voc")
    assert_one_line_error(run("eval", checkpoint, "--data", root), "7 classes", "21")


def test_init_from_another_architecture(tmp_path, checkpoint):
    import torch

    from fcn_deploy.models import alexnet
    clf = tmp_path / "alexnet.pth"
    torch.save(alexnet(width=0.0625).state_dict(), clf)
    result = run("train", "--arch", "fcn32s-vgg16", *TINY, "--epochs", "1", "--init", clf,
                 "--out", tmp_path / "o.safetensors")
    assert_one_line_error(result, "does not fit")
    assert not (tmp_path / "o.safetensors").exists()


def test_predict_refuses_a_non_image(checkpoint, tmp_path):
    txt = tmp_path / "notes.jpg"
    txt.write_text("not an image")
    assert_one_line_error(run("predict", checkpoint, txt, "--out", tmp_path / "p"), "notes.jpg")
    assert not list((tmp_path / "p").glob("notes*"))
    assert_one_line_error(run("predict", checkpoint, tmp_path / "none.png",
                              "--out", tmp_path / "p"), "none.png")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / "x.png")
    assert_one_line_error(run("predict", checkpoint, tmp_path / "a", tmp_path / "b", "--out",
                              tmp_path / "q"), "x.png")
    assert_one_line_error(run("predict", checkpoint, tmp_path / "a", "--out", tmp_path / "r",
                              "--device", "tpu"), "'tpu' is not one of", code=2)
    assert not (tmp_path / "r").exists()


def test_unknown_arch_is_a_usage_error(tmp_path):
    result = run("train", "--arch", "fcn4s-resnet", "--out", tmp_path / "x.safetensors")
    assert result.exit_code == 2


def test_resume_with_other_settings_is_refused(checkpoint, tmp_path):
    import shutil
    ckpt = tmp_path / "c.safetensors"
    shutil.copy(checkpoint, ckpt)
    shutil.copy(checkpoint.with_name("fcn8s.optim.safetensors"), tmp_path / "c.optim.safetensors")
    for args, needle in ((["--width", "0.125"], "width"), (["--optimizer", "sgd"], "optimizer")):
        result = run("train", "--arch", "fcn8s-vgg16", *TINY, *args, "--epochs", "2", "--resume",
                     "--out", ckpt)
        assert_one_line_error(result, "cannot resume", needle)


def test_checkpoint_is_recognised_by_content_not_suffix(checkpoint, tmp_path):
    import shutil
    odd = tmp_path / "model.ckpt"
    shutil.copy(checkpoint, odd)
    result = run("info", odd)
    assert result.exit_code == 0 and "fcn8s-vgg16" in result.output


def test_verbose_shows_the_traceback(tmp_path):
    result = run("--verbose", "eval", tmp_path / "nope.safetensors")
    assert result.exit_code != 0 and result.exception is not None


def test_corrupt_sample_fails_or_is_skipped_and_counted(tmp_path):
    root = write_voc_fixture(tmp_path / "voc", n_train=2, n_val=2, num_classes=4)
    bad = sorted((root / "JPEGImages").glob("*.jpg"))[-1]
    bad.write_text("garbage")
    ckpt = tmp_path / "m.safetensors"
    result = run("train", "--arch", "fcn32s-alexnet", "--width", "0.0625", "--data", root,
                 "--crop", "32", "--epochs", "1", "--batch-size", "2", "--out", ckpt)
    assert result.exit_code == 0, result.output
    assert_one_line_error(run("eval", ckpt, "--data", root), bad.name)
    result = run("eval", ckpt, "--data", root, "--skip-bad")
    assert result.exit_code == 0 and "skipped 1 bad samples" in result.output


def test_export_and_info_of_onnx(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    result = run("export", checkpoint, "-o", out, "--output", "labels")
    assert result.exit_code == 0, result.output
    assert "argmax agreement 100.0000%" in result.output
    result = run("info", out)
    assert result.exit_code == 0 and "uint8 [N x H x W]" in result.output


def test_export_int8_reports_layers_and_iu(checkpoint, tmp_path):
    result = run("export", checkpoint, "-o", tmp_path / "q.onnx", "--precision", "int8",
                 "--calib-samples", "2", "--eval-samples", "4", "--image-size", "32")
    assert result.exit_code == 0, result.output
    assert "INT8 conv layers: 18 of 21; fp16: /model/upscore2/ConvTranspose" in result.output
    assert "int8 vs fp32" in result.output
    result = run("export", checkpoint, "-o", tmp_path / "all.onnx", "--precision", "int8",
                 "--upsample", "int8", "--calib-samples", "2", "--eval-samples", "0",
                 "--image-size", "32")
    assert "INT8 conv layers: 21 of 21" in result.output


def test_export_random_init(tmp_path):
    out = tmp_path / "r.onnx"
    result = run("export", "--random-init", "--arch", "fcn32s-alexnet", "--width", "0.0625",
                 "--num-classes", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert_one_line_error(run("export", "--random-init", "-o", out), "--arch", code=2)
    assert_one_line_error(run("export", "-o", out), "CHECKPOINT", code=2)


def test_export_bad_inputs_leave_nothing(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    assert_one_line_error(run("export", tmp_path / "none.safetensors", "-o", out), "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("export", checkpoint, "-o", blocker / "m.onnx"), "cannot write")
    assert_one_line_error(run("export", checkpoint, "-o", out, "--precision", "int4"), "int4",
                          code=2)
    assert_one_line_error(run("export", checkpoint, "-o", out, "--precision", "int8",
                              "--keep-fp32", "conv9", "--image-size", "32"), "conv9", code=2)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    assert_one_line_error(run("info", bad), "bad.onnx")


def test_eval_compares_checkpoint_and_onnx(checkpoint, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    out = tmp_path / "cmp.json"
    result = run("eval", checkpoint, onnx_path, "--image-size", "32", "--samples", "4",
                 "--json", out)
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())["results"]
    assert r[str(onnx_path)]["agreement_vs_first"] >= 0.9999
    assert r[str(onnx_path)]["mean_iu"] == pytest.approx(r[str(checkpoint)]["mean_iu"], abs=1e-4)
    assert r[str(onnx_path)]["ms_per_image"] > 0


def test_build_engine_and_refuse_bad_input(checkpoint, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    engine = tmp_path / "m.engine"
    result = run("build", onnx_path, "-o", engine, "--min", "1x3x32x32", "--opt", "1x3x64x64",
                 "--max", "2x3x128x128", "--profile", "1x3x128x128:1x3x256x256:1x3x512x512",
                 "--compute-capability", "SM86")
    assert result.exit_code == 0, result.output
    result = run("info", engine)
    assert (result.exit_code == 0 and "tensorrt_rtx" in result.output
            and "engine_sha256" in result.output)
    buckets = tmp_path / "b.engine"
    result = run("build", onnx_path, "-o", buckets, "--buckets", "96x128,64", "--max-batch", "2",
                 "--compute-capability", "SM86")
    assert result.exit_code == 0, result.output
    profiles = json.loads((tmp_path / "b.engine.json").read_text())["profiles"]
    assert [p["max"] for p in profiles] == [[2, 3, 64, 64], [2, 3, 96, 128]]
    for bad, needle in ((["--max", "1x3x64"], "--min, --opt and --max together"),
                        (["--min", "1x3x64", "--opt", "1x3x64x64", "--max", "1x3x64x64"],
                         "malformed shape"),
                        (["--profile", "1x3x64x64:1x3x64x64"], "malformed profile"),
                        (["--profile", ""], "malformed profile"),
                        (["--profile", "1x3x64x64:1x3x128x128:1x3x256x256", "--profile",
                          "1x3x128x128:1x3x256x256:1x3x512x512"], "overlap"),
                        (["--buckets", ","], "--buckets is empty"),
                        (["--min", "1x3x600x600", "--opt", "1x3x64x64", "--max", "1x3x64x64"],
                         "min <= opt <= max")):
        assert_one_line_error(run("build", onnx_path, "-o", tmp_path / "x.engine", *bad), needle,
                              code=2)
    assert_one_line_error(run("build", checkpoint, "-o", tmp_path / "x.engine"), checkpoint.name,
                          "is a checkpoint; export it to ONNX first")
    assert_one_line_error(run("eval", engine), "GPU")
    assert not (tmp_path / "x.engine").exists()
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    assert_one_line_error(run("predict", engine, image, "--out", tmp_path / "p", "--tile", "600"),
                          "tile 600x600 is larger than every profile", code=2)
    assert not (tmp_path / "p").exists()


def test_truncated_onnx_is_refused_by_build_and_eval(checkpoint, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_path.read_bytes()[: onnx_path.stat().st_size // 2])
    assert_one_line_error(run("build", cut, "-o", tmp_path / "c.engine"), "cut.onnx")
    assert_one_line_error(run("eval", cut), "cut.onnx")
    assert not (tmp_path / "c.engine").exists()


def test_one_shot_export_and_engine(checkpoint, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    result = run("export", checkpoint, "-o", tmp_path / "m.onnx", "--precision", "fp16",
                 "--eval-samples", "0", "--engine", tmp_path / "m.engine")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.engine").exists() and (tmp_path / "m.engine.json").exists()


def test_export_triton_from_the_cli(checkpoint, tmp_path):
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    result = run("export-triton", onnx_path, "--repo", tmp_path / "repo", "--name", "fcn8s")
    assert result.exit_code == 0, result.output
    assert "fcn8s, fcn8s_argmax, fcn8s_labels" in result.output
    assert (tmp_path / "repo" / "fcn8s" / "1" / "model.onnx").is_file()
    assert_one_line_error(run("export-triton", checkpoint, "--repo", tmp_path / "r2"), "checkpoint")
    assert_one_line_error(run("export-triton", onnx_path, "--repo", tmp_path / "repo", "--name",
                              "fcn8s"), "--force")
    assert not (tmp_path / "r2").exists()


def test_quant_report_and_fallback(checkpoint, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    assert run("export", checkpoint, "-o", onnx_path).exit_code == 0
    small = ["--samples", "4", "--image-size", "32", "--calib-samples", "2"]
    result = run("quant-report", onnx_path, "--out", tmp_path / "qr", "--max-drop", "0", *small)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "qr" / "quant_report.json").read_text())
    assert len(report["layers"]) == 21  # every conv and transposed conv of FCN-8s, one at a time
    deltas = [r["delta_mean_iu_points"] for r in report["layers"]]
    assert deltas == sorted(deltas) and all(0 <= r["agreement"] <= 1 for r in report["layers"])
    # Threshold 0: every layer whose INT8 alone lowers mean IU at all is in the fallback list,
    # and the INT8 export keeps exactly those in float.
    fallback = tmp_path / "qr" / "fallback.txt"
    harmful = [r["layer"] for r in report["layers"] if r["delta_mean_iu_points"] < 0]
    assert fallback.read_text().split() == harmful == report["fallback"]
    out = tmp_path / "int8.onnx"
    result = run("export", checkpoint, "-o", out, "--precision", "int8", "--fallback", fallback,
                 "--image-size", "32", "--calib-samples", "2", "--eval-samples", "0")
    assert result.exit_code == 0, result.output
    # Upsampling layers not in the list run in FP16 (the default --upsample fp16).
    upsampling = {r["layer"] for r in report["layers"] if r["layer"].endswith("ConvTranspose")}
    assert f"INT8 conv layers: {21 - len(upsampling | set(harmful))} of 21" in result.output
    bad = tmp_path / "bad.txt"
    bad.write_text("# from another model\n/conv9_9/Conv\n")
    assert_one_line_error(run("export", checkpoint, "-o", tmp_path / "x.onnx",
                              "--precision", "int8", "--fallback", bad, "--eval-samples", "0"),
                          "/conv9_9/Conv", code=2)
    assert not (tmp_path / "x.onnx").exists()
    assert_one_line_error(run("quant-report", out, "--out", tmp_path / "q2", *small), "FP32")
    assert not (tmp_path / "q2").exists()
    photos = tmp_path / "photos"  # images only: no mean IU to rank layers by
    photos.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photos / "a.png")
    assert_one_line_error(run("quant-report", onnx_path, "--out", tmp_path / "q3", "--data",
                              photos), "needs labels")
    assert not (tmp_path / "q3").exists()


def test_output_modes_from_the_cli_and_bad_precision_options(checkpoint, tmp_path):
    out = tmp_path / "ls.onnx"
    result = run("export", checkpoint, "-o", out, "--output", "labels+score", "--precision", "int8",
                 "--image-size", "32", "--calib-samples", "2", "--eval-samples", "4")
    assert result.exit_code == 0, result.output
    assert "fp16: /model/upscore2/ConvTranspose" in result.output
    result = run("info", out)
    assert "output labels " in result.output and "output score " in result.output
    int8 = ["--precision", "int8", "--eval-samples", "0"]
    for bad, needle in ((["--output", "mask"], "'mask' is not one of"),
                        ([*int8, "--upsample", "int4"], "'int4' is not one of"),
                        (["--precision", "fp16", "--keep-fp16", "/model/conv1_1/Conv"],
                         "INT8 exports"),
                        ([*int8, "--keep-fp16", "/model/pool1/MaxPool"], "unknown conv layer")):
        assert_one_line_error(run("export", checkpoint, "-o", tmp_path / "x.onnx", *bad), needle,
                              code=2)
    assert not (tmp_path / "x.onnx").exists()
