"""Mosaic tiling: k x k samples in the given order, each where it belongs, the rest left out;
samples of different sizes are refused."""
import numpy as np
import pytest

from fcn_deploy.data.transforms import Mosaic
from fcn_deploy.errors import DataError


def _samples(shapes):
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (*s, 3), np.uint8), rng.integers(0, 7, s, np.uint8))
            for s in shapes]


def test_mosaic_places_each_sample_in_order_and_drops_the_rest():
    data = _samples([(4, 6)] * 9)
    mosaic = Mosaic(data, 2, [8, 1, 5, 0, 2, 7, 3, 4, 6])
    assert len(mosaic) == 2  # the ninth sample fills no mosaic
    image, mask = mosaic[1]
    assert image.shape == (8, 12, 3) and mask.shape == (8, 12)
    for (r, c), j in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [2, 7, 3, 4]):
        assert np.array_equal(image[4 * r:4 * r + 4, 6 * c:6 * c + 6], data[j][0])
        assert np.array_equal(mask[4 * r:4 * r + 4, 6 * c:6 * c + 6], data[j][1])


def test_mosaic_of_different_sizes_is_refused():
    with pytest.raises(DataError, match="crop them first"):
        Mosaic(_samples([(4, 6), (4, 6), (6, 4), (4, 6)]), 2, range(4))[0]
