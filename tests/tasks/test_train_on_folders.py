"""Training on a user's own labelled folder (images/ + masks/, class_names.txt naming the
classes); a folder without labels or without class names is refused in one line."""
import numpy as np
from helpers import assert_one_line_error, run
from PIL import Image

from fcn_deploy.models.checkpoint import model_metadata

TINY = ["--arch", "fcn32s-vgg16", "--width", "0.0625", "--image-size", "32", "--samples", "2",
        "--batch-size", "2", "--epochs", "1", "--crop", "32"]


def _folder(root, names: bool):
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for stem in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(
            root / "images" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 3, (40, 48), np.uint8), mode="L").save(
            root / "masks" / f"{stem}.png")
    if names:
        (root / "class_names.txt").write_text("ground\nroad\ncar\n")
    return root


def test_train_on_images_and_masks_with_class_names(tmp_path):
    data = _folder(tmp_path / "mine", names=True)
    out = tmp_path / "m.safetensors"
    result = run("train", *TINY, "--data", data, "-o", out)
    assert result.exit_code == 0, result.output
    assert model_metadata(out).class_names == ["ground", "road", "car"]


def test_folders_without_labels_or_class_names_are_refused(tmp_path):
    data = _folder(tmp_path / "unnamed", names=False)
    result = run("train", *TINY, "--data", data, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(result, "class_names.txt")
    plain = tmp_path / "plain"
    plain.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain / "x.png")
    result = run("train", *TINY, "--data", plain, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(result, "training needs labels")
    assert not (tmp_path / "m.safetensors").exists()
