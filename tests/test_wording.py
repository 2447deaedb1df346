"""Counts and file names as messages show them: "1 frame", and two files of one name told
apart by their folders (eval's rows, bench's)."""
import shutil

from helpers import export_tiny, run

from fcn_deploy.wording import counted, short_names


def test_counts_agree_with_their_number():
    assert [counted(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]
    assert counted(1, "label map") == "1 label map" and counted(3, "batch", "batches") == \
        "3 batches"


def test_same_named_files_keep_as_many_folders_as_tell_them_apart(tmp_path):
    a, b, c = tmp_path / "fcn8s.onnx", tmp_path / "ex2" / "fcn8s.onnx", tmp_path / "m.onnx"
    assert short_names([a, b, c]) == [f"{tmp_path.name}/fcn8s.onnx", "ex2/fcn8s.onnx", "m.onnx"]
    assert short_names([a]) == ["fcn8s.onnx"]


def test_eval_rows_of_same_named_files_differ(tmp_path):
    (tmp_path / "ex1").mkdir()
    (tmp_path / "ex2").mkdir()
    first = export_tiny(tmp_path / "ex1" / "fcn8s.onnx")
    second = shutil.copy(first, tmp_path / "ex2" / "fcn8s.onnx")
    result = run("eval", first, second, "--samples", "2", "--image-size", "32")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "fcn8s.onnx" in line]
    assert any("ex1/fcn8s.onnx" in r for r in rows)
    assert any("ex2/fcn8s.onnx" in r for r in rows)
