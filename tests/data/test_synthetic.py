import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from fcn_deploy.data import SYNTHETIC_CACHE_BYTES, open_dataset
from fcn_deploy.data.synthetic import SYNTHETIC_CLASSES, ScenePatches, SyntheticShapes
from fcn_deploy.errors import DataError, OptionError


def test_deterministic_per_seed_and_split():
    a, b = SyntheticShapes("train", 4, 48, seed=1), SyntheticShapes("train", 4, 48, seed=1)
    for i in range(4):
        assert np.array_equal(a[i][0], b[i][0]) and np.array_equal(a[i][1], b[i][1])
    other_seed, val = SyntheticShapes("train", 4, 48, seed=2), SyntheticShapes("val", 4, 48, seed=1)
    assert not np.array_equal(a[0][0], other_seed[0][0])
    assert not np.array_equal(a[0][0], val[0][0])


@pytest.mark.parametrize("size", [(17, 23), (64, 64), (120, 200)])
def test_any_size_dtypes_and_label_range(size):
    image, mask = SyntheticShapes("val", 1, size)[0]
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert mask.shape == size and mask.dtype == np.uint8
    assert mask.max() < len(SYNTHETIC_CLASSES)


def test_every_class_appears_with_small_and_thin_objects():
    data = SyntheticShapes("train", 32, 64)
    masks = np.stack([data[i][1] for i in range(len(data))])
    counts = np.bincount(masks.ravel(), minlength=len(SYNTHETIC_CLASSES))
    assert (counts > 0).all()
    assert 0.4 < counts[0] / counts.sum() < 0.9  # background dominates, objects are not rare
    # Thin parts: an 11x11 erosion (bars are at most 9 px wide) removes almost every bar pixel.
    bars = np.pad(masks == SYNTHETIC_CLASSES.index("bar"), ((0, 0), (5, 5), (5, 5)))
    survived = sliding_window_view(bars, (11, 11), axis=(1, 2)).all(axis=(-1, -2))
    assert survived.sum() < 0.05 * counts[SYNTHETIC_CLASSES.index("bar")]


def test_objects_style_holds_a_few_large_objects():
    # The reproduction's scenes: objects span several stride-32 cells, as in PASCAL VOC.
    clutter, objects = (SyntheticShapes("val", 24, 192, style=s) for s in ("clutter", "objects"))
    for data in (clutter, objects):
        data.masks = np.stack([data[i][1] for i in range(len(data))])
    share = [(d.masks > 0).mean() for d in (clutter, objects)]
    assert 0.25 < share[1] < 0.5
    # objects: fewer label edges per foreground pixel (larger, simpler regions)
    edges = [np.mean(d.masks[:, 1:] != d.masks[:, :-1]) / s for d, s in zip((clutter, objects),
                                                                           share)]
    assert edges[1] < 0.5 * edges[0]


def test_patches_are_deterministic_and_cover_every_class():
    patches = ScenePatches("train", 64, 224, seed=0)
    image, label = patches[5]
    again = ScenePatches("train", 64, 224, seed=0)[5]
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again[0]) and label == again[1]
    labels = np.array([patches[i][1] for i in range(len(patches))])
    assert set(labels) == set(range(len(SYNTHETIC_CLASSES)))
    assert not np.array_equal(image, ScenePatches("val", 64, 224, seed=0)[5][0])


def test_bad_split_style_and_index():
    with pytest.raises(ValueError, match="unknown scene style"):
        SyntheticShapes("train", style="voc")
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticShapes("holdout")
    with pytest.raises(IndexError):
        SyntheticShapes("train", 2)[2]


def test_open_dataset(tmp_path):
    assert open_dataset("synthetic", "val", 32, 5).num_classes == len(SYNTHETIC_CLASSES)
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "missing"), "train")


def test_open_dataset_takes_a_scene_style():
    assert open_dataset("synthetic:objects", "val", 32, 2).style == "objects"
    assert open_dataset("synthetic", "val", 32, 2).style == "clutter"
    with pytest.raises(OptionError, match="unknown synthetic scene style 'voc'"):
        open_dataset("synthetic:voc", "val")


def test_a_cached_set_renders_once_and_its_scenes_cannot_be_edited():
    plain, cached = (SyntheticShapes("train", 3, 32, seed=2, cache=c) for c in (False, True))
    first = cached[1]
    assert cached[1] is first  # the second read is the stored scene
    for a, b in zip(first, plain[1]):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        first[0][0, 0, 0] = 1  # every later epoch reads it


def test_open_dataset_caches_small_synthetic_sets_only():
    assert open_dataset("synthetic", "train", 32, 4)._cache is not None
    big = SYNTHETIC_CACHE_BYTES // (4 * 64 ** 2) + 1
    assert open_dataset("synthetic", "train", 64, big)._cache is None
