import numpy as np
import pytest
from PIL import Image

from fcn_deploy.data.voc import (
    IGNORE_INDEX,
    VOC_CLASSES,
    VOCSegmentation,
    voc_palette,
    write_voc_fixture,
)
from fcn_deploy.errors import DataError


@pytest.fixture
def root(tmp_path):
    return write_voc_fixture(tmp_path / "voc")


def image_path(root, id_="000000"):
    return root / "JPEGImages" / f"{id_}.jpg"


def mask_path(root, id_="000000"):
    return root / "SegmentationClass" / f"{id_}.png"


def save_palette_mask(mask, path):
    im = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    im.putpalette(voc_palette())
    im.save(path)


def test_constants_and_palette():
    assert (len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
            and VOC_CLASSES[-1] == "tvmonitor")
    pal = voc_palette()
    assert len(pal) == 768 and all(0 <= v <= 255 for v in pal)
    assert pal[0:3] == [0, 0, 0] and pal[3:6] == [128, 0, 0] and pal[45:48] == [192, 128, 128]
    assert pal[3 * IGNORE_INDEX:] == [224, 224, 192]


def test_fixture_loads(root):
    train, val = VOCSegmentation(root, "train"), VOCSegmentation(root, "val")
    assert (len(train), len(val)) == (3, 2)
    assert set(train.ids).isdisjoint(val.ids) and train.skipped == []
    assert train.class_names == list(VOC_CLASSES) and train.num_classes == 21
    saw_ignore = False
    for ds in (train, val):
        for image, mask in (ds[i] for i in range(len(ds))):
            assert image.dtype == np.uint8 and image.shape == (40, 56, 3)
            assert mask.dtype == np.uint8 and mask.shape == (40, 56)
            assert np.all((mask < 21) | (mask == IGNORE_INDEX))
            assert (mask > 0).any()
            saw_ignore |= (mask == IGNORE_INDEX).any()
    assert saw_ignore


def test_fixture_is_deterministic(tmp_path):
    a = VOCSegmentation(write_voc_fixture(tmp_path / "a", seed=3))
    b = VOCSegmentation(write_voc_fixture(tmp_path / "b", seed=3))
    c = VOCSegmentation(write_voc_fixture(tmp_path / "c", seed=4))
    assert all(np.array_equal(a[i][1], b[i][1]) and np.array_equal(a[i][0], b[i][0])
               for i in range(3))
    assert not all(np.array_equal(a[i][1], c[i][1]) for i in range(3))


def test_palette_png_round_trip(root):
    mask = np.random.default_rng(0).integers(0, 21, (40, 56)).astype(np.uint8)
    mask[0] = IGNORE_INDEX
    save_palette_mask(mask, mask_path(root))
    assert np.array_equal(VOCSegmentation(root)[0][1], mask)


def test_grayscale_mask_and_image_accepted(root):
    mask = np.full((40, 56), 7, np.uint8)
    Image.fromarray(mask).save(mask_path(root))  # mode L
    Image.fromarray(np.full((40, 56), 90, np.uint8)).save(image_path(root))  # grayscale JPEG
    image, got = VOCSegmentation(root)[0]
    assert image.shape == (40, 56, 3) and np.array_equal(got, mask)


def test_class_names(tmp_path):
    root = write_voc_fixture(tmp_path / "voc", num_classes=3)
    ds = VOCSegmentation(root)
    assert ds.class_names == ["background", "aeroplane", "bicycle"] and ds.num_classes == 3
    assert all(ds[i][1][ds[i][1] != IGNORE_INDEX].max() < 3 for i in range(len(ds)))
    (root / "class_names.txt").write_text("bg\nroad\n\ncar\n")
    assert VOCSegmentation(root).class_names == ["bg", "road", "car"]
    assert VOCSegmentation(root, class_names=["a", "b", "c", "d"]).num_classes == 4


def error(match_path, fn):
    with pytest.raises(DataError) as info:
        fn()
    assert str(match_path) in str(info.value)
    return str(info.value)


def test_missing_root(tmp_path):
    error(tmp_path / "nope", lambda: VOCSegmentation(tmp_path / "nope"))


def test_missing_split_lists_available(root):
    msg = error("test.txt", lambda: VOCSegmentation(root, "test"))
    assert "train" in msg and "val" in msg


def test_empty_split(root):
    (root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n  \n")
    error("empty.txt", lambda: VOCSegmentation(root, "empty"))


@pytest.mark.parametrize("which", [image_path, mask_path])
def test_missing_file(root, which):
    which(root).unlink()
    error(which(root), lambda: VOCSegmentation(root))


def test_truncated_jpeg_fails_lazily(root):
    data = image_path(root).read_bytes()
    image_path(root).write_bytes(data[: len(data) // 2])
    ds = VOCSegmentation(root)  # construction only checks existence
    ds[1]
    error(image_path(root), lambda: ds[0])


def test_text_file_as_jpeg(root):
    image_path(root).write_text("not an image\n")
    error(image_path(root), lambda: VOCSegmentation(root)[0])


def test_size_mismatch(root):
    save_palette_mask(np.zeros((30, 56), np.uint8), mask_path(root))
    msg = error(mask_path(root), lambda: VOCSegmentation(root)[0])
    assert "56x30" in msg and "56x40" in msg


def test_label_out_of_range(root):
    mask = np.zeros((40, 56), np.uint8)
    mask[5, 5:] = 30
    save_palette_mask(mask, mask_path(root))
    msg = error(mask_path(root), lambda: VOCSegmentation(root)[0])
    assert "30" in msg


def test_labels_checked_against_class_names(root):
    (root / "class_names.txt").write_text("background\nthing\n")
    ds = VOCSegmentation(root)
    error(mask_path(root), lambda: [ds[i] for i in range(len(ds))])


def test_rgb_mask(root):
    Image.new("RGB", (56, 40)).save(mask_path(root))
    msg = error(mask_path(root), lambda: VOCSegmentation(root)[0])
    assert "palette" in msg


def test_skip_bad(root):
    data = image_path(root).read_bytes()
    image_path(root).write_bytes(data[: len(data) // 2])
    Image.new("RGB", (56, 40)).save(mask_path(root, "000001"))
    ds = VOCSegmentation(root, skip_bad=True)
    assert ds.ids == ["000002"] and len(ds) == 1
    assert [p.name for p, _ in ds.skipped] == ["000000.jpg", "000001.png"]
    assert all(reason for _, reason in ds.skipped)
    ds[0]


def test_skip_bad_all_bad(root):
    for i in range(3):
        image_path(root, f"{i:06d}").write_text("junk")
    msg = error("train.txt", lambda: VOCSegmentation(root, skip_bad=True))
    assert "000000.jpg" in msg
