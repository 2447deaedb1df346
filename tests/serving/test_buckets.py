"""Mixed-size batching in numpy (no server): grouping by bucket, mean-colour padding,
cropping back, and the order of the outputs."""
import numpy as np
import pytest

from fcn_deploy.contract.conventions import CAFFE_MEAN
from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.serving.buckets import (
    BadImageError,
    Bucket,
    PaddingGuard,
    bucket_for,
    fill_colour,
    group,
    pad_batch,
    parse_buckets,
    run_bucketed,
)

BUCKETS = [Bucket(64, 64, 4), Bucket(48, 96, 4), Bucket(128, 128, 2)]


def test_parse_buckets():
    assert parse_buckets("64, 48x96", 4) == BUCKETS[:2]
    with pytest.raises(FcnDeployError, match="--buckets"):
        parse_buckets("64x", 4)


def test_the_smallest_bucket_that_holds_the_image():
    assert bucket_for(64, 64, BUCKETS, 8) == BUCKETS[0]
    assert bucket_for(40, 80, BUCKETS, 8) == BUCKETS[1]  # too wide for 64x64
    assert bucket_for(100, 10, BUCKETS, 8) == BUCKETS[2]
    assert bucket_for(30, 50, [], 8) == Bucket(30, 50, 8)  # no buckets: its own size


@pytest.mark.parametrize("h, w, needle", [(0, 5, "empty"), (5, 0, "empty"),
                                          (129, 10, "larger than every bucket")])
def test_bad_sizes(h, w, needle):
    with pytest.raises(BadImageError, match=needle):
        bucket_for(h, w, BUCKETS, 8)


def test_groups_keep_first_appearance_order_and_the_bucket_batch_limit():
    shapes = [(64, 64), (100, 100)] * 3 + [(10, 10)]
    assert group(shapes, BUCKETS, 8) == [(BUCKETS[0], [0, 2, 4, 6]), (BUCKETS[2], [1, 3]),
                                         (BUCKETS[2], [5])]


def test_fill_is_the_mean_colour_of_the_input_convention():
    imagenet = ArtifactMeta("a", 1, 2, ["x", "y"], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert fill_colour(imagenet).tolist() == [124, 116, 104]
    caffe = imagenet.replace(mean=list(CAFFE_MEAN), std=[1, 1, 1], convention="caffe")
    assert fill_colour(caffe).tolist() == [123, 117, 104]  # RGB of the BGR mean
    batch = pad_batch([np.ones((2, 3, 3), np.uint8)], Bucket(4, 5, 1), np.uint8([7, 8, 9]))
    assert batch.shape == (1, 4, 5, 3)
    assert (batch[0, :2, :3] == 1).all() and (batch[0, 2:] == [7, 8, 9]).all()
    assert (batch[0, :, 3:] == [7, 8, 9]).all()


def test_run_bucketed_crops_each_output_back_in_order():
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (10, 20), (100, 90), (48, 96), (1, 1)]
    images = [rng.integers(0, 256, (*s, 3), np.uint8) for s in sizes]
    calls = []

    def run(batch):  # a pointwise "model": exact per pixel, so padding must not leak in
        calls.append(batch.shape)
        return {"labels": batch[..., 0] // 37, "score": batch[..., 1].astype(np.float32)}

    out = run_bucketed(run, images, BUCKETS, np.uint8([1, 2, 3]), 8)
    for image, o in zip(images, out):
        assert np.array_equal(o["labels"], image[..., 0] // 37)
        assert np.array_equal(o["score"], image[..., 1].astype(np.float32))
    assert sorted(calls) == sorted([(3, 64, 64, 3), (1, 128, 128, 3), (1, 48, 96, 3)])


def test_unbucketed_sizes_run_unpadded():
    calls = []
    images = [np.zeros((5, 7, 3), np.uint8)] * 3 + [np.zeros((6, 6, 3), np.uint8)]
    run_bucketed(lambda b: calls.append(b.shape) or {"labels": b[..., 0]}, images, [],
                 np.uint8([0, 0, 0]), 2)
    assert calls == [(2, 5, 7, 3), (1, 5, 7, 3), (1, 6, 6, 3)]


def test_a_size_is_padded_only_once_its_first_images_agreed_padded_and_unpadded():
    def pointwise(batch):  # padding changes nothing
        return {"labels": batch[..., 0] // 37}

    def edgy(batch):  # the last 3 columns see the fill colour: 5% of a 50 x 60 image
        labels = pointwise(batch)["labels"]
        labels[:, :, -3:] = batch[:, :, -3:, 1] == 9
        return {"labels": labels}

    images = [np.random.default_rng(i).integers(0, 256, (50, 60, 3), np.uint8)
              for i in range(6)]
    fill = np.uint8([9, 9, 9])
    for run, padded_later in ((pointwise, True), (edgy, False)):
        calls = []
        guard = PaddingGuard(lambda b: calls.append(b.shape) or run(b), fill, probe_pixels=6000)
        assert guard(64, 64, BUCKETS[0])  # its bucket's size: nothing padded, nothing learnt
        for k in range(0, 6, 2):
            out = run_bucketed(guard.run, images[k:k + 2], BUCKETS, fill, 8, guard)
            assert all(np.array_equal(o["labels"], run(im[None])["labels"][0])
                       for o, im in zip(out, images[k:k + 2]))
        # two images (6,000 pixels) learnt: each run unpadded and once more padded
        assert calls[:2] == [(2, 50, 60, 3), (2, 64, 64, 3)]
        assert guard(50, 60, BUCKETS[0]) is padded_later
        assert calls[2:] == [(2, 64, 64, 3)] * 2 if padded_later else [(2, 50, 60, 3)] * 2
        assert bucket_for(50, 60, BUCKETS, 8, guard) == (
            BUCKETS[0] if padded_later else Bucket(50, 60, 4))


def test_served_labels_agree_with_one_by_one_on_999_per_mille_at_every_size(tiny_onnx):
    from fcn_deploy.runtime.factory import open_segmenter  # onnxruntime: this test only

    rng, bucket = np.random.default_rng(5), Bucket(64, 64, 8)
    with open_segmenter(tiny_onnx, threads=1) as seg:
        run = lambda b: {"labels": seg.predict(b)}  # noqa: E731
        fill = fill_colour(seg.meta)
        guard, worst_padded = PaddingGuard(run, fill, probe_pixels=8192), 1.0
        for side in range(24, 65, 8):
            images = [rng.integers(0, 256, (side, side - 3, 3), np.uint8) for _ in range(24)]
            alone = [seg.predict(image[None])[0] for image in images]
            agree = {}
            for name, g in (("guarded", guard), ("padded", None)):
                out = [o for k in range(0, 24, 8)
                       for o in run_bucketed(run, images[k:k + 8], [bucket], fill, 8, g)]
                agree[name] = np.mean([(o["labels"] == a).mean() for o, a in zip(out, alone)])
            assert agree["guarded"] >= 0.999, (side, agree)
            worst_padded = min(worst_padded, agree["padded"])
    assert worst_padded < 0.999  # padding alone does change this net's labels
    assert any(guard(side, side - 3, bucket) for side in range(24, 65, 8))  # and some it keeps
