import numpy as np
import pytest
from helpers import run

from fcn_deploy.data.synthetic import SyntheticShapes
from fcn_deploy.errors import FcnDeployError
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.tiling import parse_tile, ramp, tile_starts, tiled_predict


def test_tiles_cover_the_image_with_the_overlap_and_end_flush():
    for size, tile, overlap in ((2400, 512, 64), (1600, 512, 128), (1000, 1000, 64), (513, 512, 0)):
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] == max(size - tile, 0)
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert tile_starts(300, 512, 64) == [0]
    assert tile_starts(60, 60, 64) == tile_starts(1, 1, 32) == [0]  # fits: not tiled
    with pytest.raises(FcnDeployError, match="larger than the overlap"):
        tile_starts(1000, 64, 64)


def test_ramp_is_one_inside_and_positive_at_the_edges():
    w = ramp(100, 80, 16)
    assert w[50, 40] == 1 and w[0, 0] == pytest.approx(1 / 256) and (w > 0).all()
    assert np.allclose(w, w[::-1, ::-1])


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tile")
    ckpt, onnx_path = d / "m.safetensors", d / "m.onnx"
    assert run("train", "--arch", "fcn8s-vgg16", "--width", "0.125", "--image-size", "64",
               "--samples", "128", "--epochs", "2", "--out", ckpt).exit_code == 0
    assert run("export", ckpt, "-o", onnx_path).exit_code == 0
    return onnx_path


def test_tiled_matches_whole_image_on_1600x2400(onnx_model):
    scene = SyntheticShapes("val", 1, 800)[0][0]
    image = np.concatenate([np.concatenate([scene, scene[:, ::-1]], 1)] * 2, 0)  # 1600 x 1600
    image = np.concatenate([image, image[:, :800]], 1)[None]                      # 1600 x 2400
    with open_segmenter(onnx_model) as seg:
        whole = seg.predict(image)
        tiled = tiled_predict(seg, image, (512, 512), 64)
    assert tiled.shape == whole.shape == (1, 1600, 2400)
    assert (tiled == whole).mean() >= 0.995


@pytest.mark.parametrize("hw, tile, overlap", [((60, 1000), 512, 64), ((1, 1), 128, 32),
                                               ((97, 33), 64, 16)])
def test_a_side_that_fits_one_tile_is_not_tiled(onnx_model, hw, tile, overlap):
    """Sides shorter than the tile (and the overlap) run whole; only longer sides are tiled."""
    scene = SyntheticShapes("val", 1, max(*hw, 64))[0][0][:hw[0], :hw[1]][None]
    with open_segmenter(onnx_model) as seg:
        whole = seg.predict(scene)
        tiled = tiled_predict(seg, scene, (tile, tile), overlap)
    assert tiled.shape == whole.shape == (1, *hw)
    if max(hw) <= tile:  # one tile: the very same computation
        assert (tiled == whole).all()
    else:
        assert (tiled == whole).mean() >= 0.99


def test_tile_options(onnx_model, tmp_path):
    assert parse_tile("512x768") == (512, 768) and parse_tile("640") == (640, 640)
    assert parse_tile("auto") == (1024, 1024)
    for bad in ("512x", "x512", "0x5", "big"):
        with pytest.raises(FcnDeployError, match="malformed tile"):
            parse_tile(bad)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(SyntheticShapes("val", 1, 200)[0][0]).save(image)
    result = run("predict", onnx_model, image, "--out", tmp_path / "o", "--tile", "128",
                 "--overlap", "32")
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "o" / "in.png")).shape == (200, 200)
    bad = run("predict", onnx_model, image, "--out", tmp_path / "p", "--tile", "64x",
              "--overlap", "8")
    assert bad.exit_code == 2 and "malformed tile" in bad.output and not (tmp_path / "p").exists()
    bad = run("predict", onnx_model, image, "--out", tmp_path / "q", "--tile", "64",
              "--overlap", "64")
    assert (bad.exit_code == 2 and "larger than the overlap" in bad.output
            and not (tmp_path / "q").exists())
