"""Users' own data: images/ + masks/ folders, plain image folders, open_dataset's dispatch, and
evaluation without labels."""
import numpy as np
import pytest
from helpers import export_tiny
from PIL import Image

from fcn_deploy.data import open_dataset
from fcn_deploy.data.folders import ImageFolder, ImageMaskFolders
from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.data.voc import VOCSegmentation, voc_palette, write_voc_fixture
from fcn_deploy.errors import DataError, FcnDeployError
from fcn_deploy.tasks.evaluate import evaluate, evaluate_onnx, label_agreement

H, W = 12, 16


def rgb(seed, size=(H, W)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def ids(seed, size=(H, W), top=3):
    mask = np.random.default_rng(seed).integers(0, top, size, dtype=np.uint8)
    mask[0] = 255  # a void row
    return mask


def save_mask(mask, path, mode="P"):
    if mode == "P":
        im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        im.putpalette(voc_palette())
    elif mode == "I;16":
        im = Image.fromarray(mask.astype(np.uint16))
    else:
        im = Image.fromarray(mask).convert(mode)
    im.save(path)


@pytest.fixture
def root(tmp_path):
    """images/ (a PNG, a JPEG, a BMP) and masks/ (palette, gray and 16-bit PNGs)."""
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n, (suffix, mode) in enumerate([(".png", "P"), (".jpg", "L"), (".bmp", "I;16")]):
        Image.fromarray(rgb(n)).save(root / "images" / f"img{n}{suffix}")
        save_mask(ids(n), root / "masks" / f"img{n}.png", mode)
    (root / "images" / "notes.txt").write_text("not an image")
    (root / "masks" / ".DS_Store").write_bytes(b"\0")
    return root


def test_image_mask_folders(root):
    data = ImageMaskFolders(root)
    assert data.has_labels and len(data) == 3 and data.ids == ["img0", "img1", "img2"]
    assert data.num_classes is None and data.class_names is None and data.skipped == []
    for n in range(3):
        image, mask = data[n]
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        assert mask.dtype == np.uint8 and np.array_equal(mask, ids(n))
    assert np.array_equal(data[0][0], rgb(0))
    assert data.paths("img1") == (root / "images" / "img1.jpg", root / "masks" / "img1.png")


def test_labels_are_checked_once_the_class_count_is_known(root):
    data = ImageMaskFolders(root, num_classes=2)
    assert data.class_names == ["class0", "class1"]
    with pytest.raises(DataError, match="label 2 outside the classes 0..1") as e:
        [data[i] for i in range(len(data))]
    assert "img" in str(e.value) and "\n" not in str(e.value)
    data = ImageMaskFolders(root)
    data.set_classes(3)
    assert [data[i][1].max() for i in range(3)] == [255] * 3
    with pytest.raises(DataError, match="has 3 classes, not 4"):
        data.set_classes(4)


def test_class_names_file(root):
    (root / "class_names.txt").write_text("ground\nsky\ntree\n")
    data = open_dataset(str(root), "val")
    assert data.num_classes == 3 and data.class_names == ["ground", "sky", "tree"]
    (root / "class_names.txt").write_text("ground\nsky\nground\n")
    with pytest.raises(DataError, match="repeats class name 'ground'"):
        ImageMaskFolders(root)


def refusal(root, needles, **kw):
    with pytest.raises(DataError) as e:
        data = ImageMaskFolders(root, **kw)
        [data[i] for i in range(len(data))]
    message = str(e.value)
    assert "\n" not in message and all(str(n) in message for n in needles), message
    return message


def test_unpaired_files_are_refused(root):
    Image.fromarray(rgb(5)).save(root / "images" / "extra.png")
    refusal(root, ["extra.png", "no mask", "1 of 4 images"])
    (root / "images" / "extra.png").unlink()
    save_mask(ids(5), root / "masks" / "lonely.png")
    refusal(root, ["lonely.png", "no image", "1 of 4 masks"])


@pytest.mark.parametrize("mode, needle", [("RGB", "colour image (mode RGB)"),
                                          ("RGBA", "colour image (mode RGBA)"),
                                          ("LA", "not an index image (mode LA)")])
def test_colour_masks_are_refused(root, mode, needle):
    save_mask(ids(0), root / "masks" / "img0.png", mode)
    message = refusal(root, ["img0.png", needle, "index PNG"])
    assert "mode P or L" in message


def test_other_bad_masks_are_refused(root, tmp_path):
    save_mask(ids(0, (H, W + 1)), root / "masks" / "img0.png")
    refusal(root, ["img0.png", f"mask size {W + 1}x{H}", f"size {W}x{H}"])
    save_mask(ids(0), root / "masks" / "img0.png")
    Image.fromarray(np.full((H, W), 300, np.uint16)).save(root / "masks" / "img1.png")
    refusal(root, ["img1.png", "value 300", "0..254"])
    (root / "masks" / "img1.png").unlink()
    Image.fromarray(ids(1)).save(root / "masks" / "img1.jpg")
    refusal(root, ["img1.jpg", "JPEG", "lossy"])


def test_empty_and_half_layouts_are_refused(tmp_path):
    root = tmp_path / "empty"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    refusal(root, ["hold no images"])
    (root / "masks").rmdir()
    refusal(root, ["no masks/ folder"])
    with pytest.raises(DataError, match="not found"):
        ImageMaskFolders(tmp_path / "missing")


def test_two_files_with_one_stem_are_refused(root):
    Image.fromarray(rgb(9)).save(root / "images" / "img0.jpg")
    refusal(root, ["img0.jpg", "img0.png", "rename one"])


def test_skip_bad(root):
    Image.fromarray(rgb(5)).save(root / "images" / "extra.png")
    save_mask(ids(1), root / "masks" / "img1.png", "RGB")
    data = ImageMaskFolders(root, skip_bad=True)
    assert data.ids == ["img0", "img2"]
    reasons = {path.name: reason for path, reason in data.skipped}
    assert set(reasons) == {"extra.png", "img1.png"} and "colour" in reasons["img1.png"]
    for name in ("img0", "img2"):
        (root / "masks" / f"{name}.png").unlink()
    with pytest.raises(DataError, match="no usable samples: all 4 skipped"):
        ImageMaskFolders(root, skip_bad=True)


@pytest.fixture
def plain(tmp_path):
    """Three images of two sizes (one 16-bit gray), a subfolder and a text file."""
    root = tmp_path / "plain"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rgb(0)).save(root / "b.png")
    Image.fromarray(rgb(1, (H + 4, W))).save(root / "a.jpg")
    Image.fromarray(np.full((H, W), 65535, np.uint16)).save(root / "c.png")
    Image.fromarray(rgb(2)).save(root / "sub" / "deeper.png")
    (root / "readme.txt").write_text("hi")
    return root


def test_image_folder(plain):
    data = ImageFolder(plain)
    assert not data.has_labels and data.num_classes is None
    assert data.ids == ["a", "b", "c"] and len(data) == 3  # sorted, not recursive
    image, label = data[1]
    assert label is None and np.array_equal(image, rgb(0))
    assert data[0][0].shape == (H + 4, W, 3)
    assert np.all(data[2][0] == 255)  # 16 bits scaled by their full range
    [(conversion, names)] = data.conversions.items()
    assert conversion.what == "16-bit" and names == {"c.png"}


def test_image_folder_refusals(tmp_path, plain):
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="folder holds no images"):
        ImageFolder(tmp_path / "none")
    (plain / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="b.png: cannot decode"):
        ImageFolder(plain)[1]
    data = ImageFolder(plain, skip_bad=True)
    assert data.ids == ["a", "c"] and data.skipped[0][0].name == "b.png"


def test_open_dataset_dispatch(tmp_path, root, plain):
    for split in ("train", "val", "anything"):  # no splits: the whole folder each time
        assert type(open_dataset(str(root), split)) is ImageMaskFolders
        assert len(open_dataset(str(plain), split)) == 3
    assert type(open_dataset(str(plain), "val")) is ImageFolder
    voc = write_voc_fixture(tmp_path / "voc")
    assert type(open_dataset(str(voc), "val")) is VOCSegmentation
    assert open_dataset(str(voc), "val", class_names=[f"c{i}" for i in range(21)]
                        ).class_names[0] == "c0"
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("")
    for bad, needle in [(tmp_path / "texts", "holds none of the accepted layouts"),
                        (tmp_path / "texts" / "a.txt", "is a file, not a folder"),
                        (tmp_path / "missing", "does not exist")]:
        with pytest.raises(DataError, match=needle) as e:
            open_dataset(str(bad), "val")
        assert "images/ and masks/" in str(e.value) and "folder of images" in str(e.value)
    (root / "masks").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="no masks/ folder"):
        open_dataset(str(root), "val")


def test_every_data_set_says_whether_it_has_labels(tmp_path, plain):
    assert SyntheticShapes("val", 1, 8).has_labels
    assert VOCSegmentation(write_voc_fixture(tmp_path / "voc"), "val").has_labels
    assert not open_dataset(str(plain), "val").has_labels


def brightest(images):
    """A stand-in predictor: class 1 where the red channel is bright, else 0."""
    return (images[..., 0] > 127).astype(np.uint8)


def test_evaluate_without_labels_reports_no_metrics(plain):
    data, labels = ImageFolder(plain), []
    result = evaluate(brightest, data, 2, batch_size=2, labels_out=labels, bands=(1,))
    assert {k: result[k] for k in ("pixel_acc", "mean_acc", "mean_iu", "fwavacc", "iu",
                                   "boundary")} == dict.fromkeys(
        ("pixel_acc", "mean_acc", "mean_iu", "fwavacc", "iu", "boundary"))
    assert result["ms_per_image"] >= 0 and data.num_classes == 2
    assert [b.shape for b in labels] == [(1, H + 4, W), (2, H, W)]  # a size change, a batch
    other: list = []
    evaluate(lambda x: np.zeros(x.shape[:3], np.uint8), data, 2, labels_out=other)
    bright = sum(int(b.sum()) for b in labels)
    assert label_agreement(labels, labels) == 1.0
    assert label_agreement(labels, other) == pytest.approx(1 - bright / (3 * H * W + 4 * W))


def test_evaluate_on_masks_takes_the_model_class_count(root):
    result = evaluate(lambda x: np.zeros(x.shape[:3], np.uint8), ImageMaskFolders(root), 3)
    assert 0 < result["pixel_acc"] < 1 and len(result["iu"]) == 3
    with pytest.raises(DataError, match="label 2 outside the classes 0..1"):
        evaluate(brightest, ImageMaskFolders(root), 2)


def test_evaluate_onnx_on_an_unlabelled_folder(tmp_path, plain):
    onnx_path = export_tiny(tmp_path / "tiny.onnx", num_classes=5)
    data = ImageFolder(plain)
    result, labels = evaluate_onnx(onnx_path, data, batch_size=2)
    assert result["mean_iu"] is None and result["iu"] is None and result["ms_per_image"] > 0
    assert data.num_classes == 5 and len(data.class_names) == 5
    assert sum(b.size for b in labels) == 3 * H * W + 4 * W
    assert label_agreement(labels, evaluate_onnx(onnx_path, data)[1]) == 1.0
    with pytest.raises(FcnDeployError, match="predicts 5 classes but the data set has 3"):
        evaluate_onnx(onnx_path, ImageFolder(plain, num_classes=3))
