"""Every PIL pixel mode becomes 8-bit RGB by its real range, or is refused in one line: real
files of each mode (PNG or TIFF, as PIL writes them), their decoded values checked against
known colours, then predict on a 16-bit PNG against the same image in 8 bits."""
import io
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import assert_one_line_error, export_tiny, run
from PIL import Image

from fcn_deploy.data.pixels import ImageRefused, image_conversion, to_rgb8
from fcn_deploy.data.voc import VOCSegmentation, write_voc_fixture
from fcn_deploy.errors import DataError
from fcn_deploy.media.images import decode_image, probe_image, read_labels
from fcn_deploy.tasks.predict_images import scan_inputs

GRAY16 = np.array([[0, 257, 1000, 32768, 65535]], np.uint16)
GRAY16_AS_8 = np.array([[0, 1, 4, 128, 255]], np.uint8)  # round(v * 255 / 65535)


def rgb(gray):
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=2)


def saved(tmp_path, im, name):
    path = tmp_path / name
    im.save(path)
    return path


def gray16(mode):
    """GRAY16 in one of PIL's 16-bit modes (built from bytes: PIL's convert between them
    clips at 255)."""
    dtype = {"I;16B": ">u2", "I;16L": "<u2", "I;16N": "=u2", "I;16": "<u2"}[mode]
    return Image.frombytes(mode, (5, 1), GRAY16.astype(dtype).tobytes())


@pytest.mark.parametrize("mode, name, opens_as", [
    ("I;16", "a.png", "I;16"), ("I;16", "a.tif", "I;16"), ("I;16B", "a.tif", "I;16B"),
    ("I;16B", "a.png", "I;16"), ("I;16L", "a.tif", "I;16"),
    ("I", "a.tif", "I"),  # PIL saves mode I as a 32-bit signed TIFF
])
def test_16_bit_gray_files_scale_by_the_full_range(tmp_path, mode, name, opens_as):
    im = gray16(mode) if mode != "I" else Image.fromarray(GRAY16.astype(np.int32))
    path = saved(tmp_path, im, name)
    assert Image.open(path).mode == opens_as
    image, alpha = decode_image(path)
    np.testing.assert_array_equal(image, rgb(GRAY16_AS_8))
    assert not alpha
    info = probe_image(path)
    assert info.size == (1, 5) and info.conversion.what == "16-bit"
    assert "0-65535" in info.conversion.how


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_every_16_bit_mode_in_memory(mode):
    image, conversion = to_rgb8(gray16(mode))
    np.testing.assert_array_equal(image, rgb(GRAY16_AS_8))
    assert conversion.what == "16-bit"


def test_a_16_bit_pgm_opens_as_mode_i_and_scales(tmp_path):
    path = tmp_path / "a.pgm"
    path.write_bytes(b"P5\n5 1\n65535\n" + GRAY16.astype(">u2").tobytes())
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(decode_image(path)[0], rgb(GRAY16_AS_8))


def tiff_12_bit(values):
    """A one-row 12-bit gray TIFF (PIL cannot write one): samples packed MSB first."""
    bits = "".join(f"{v:012b}" for v in values)
    bits += "0" * (-len(bits) % 8)
    data = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    tags = [(256, 3, len(values)), (257, 3, 1), (258, 3, 12), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 3, 1), (279, 4, len(data))]
    data_at = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, 1) + struct.pack("<HH" if kind == 3 else "<I",
                                                               *((value, 0) if kind == 3
                                                                 else (value,)))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data


def test_a_12_bit_tiff_scales_by_its_own_range(tmp_path):
    # It opens as I;16 with values up to 4095: scaled by 65535 it would be nearly black.
    path = tmp_path / "a.tif"
    path.write_bytes(tiff_12_bit([0, 4095, 2048, 100]))
    assert Image.open(path).mode == "I;16"
    np.testing.assert_array_equal(decode_image(path)[0], rgb([[0, 255, 128, 6]]))
    assert probe_image(path).conversion.how.endswith("0-4095")


@pytest.mark.parametrize("values, shown", [([-1, 5], "-1..5"), ([0, 70000], "0..70000")])
def test_mode_i_outside_16_bits_is_refused(tmp_path, values, shown):
    path = saved(tmp_path, Image.fromarray(np.int32([values])), "deep.tif")
    for read in (decode_image, probe_image):
        with pytest.raises(DataError, match="range is unknown") as e:
            read(path)
        assert str(path) in str(e.value) and shown in str(e.value)
        assert "\n" not in str(e.value)


def test_float_in_0_1_scales_by_255(tmp_path):
    path = saved(tmp_path, Image.fromarray(np.float32([[0, 0.25, 0.5, 1]])), "f.tif")
    assert Image.open(path).mode == "F"
    np.testing.assert_array_equal(decode_image(path)[0], rgb([[0, 64, 128, 255]]))
    assert probe_image(path).conversion.what == "32-bit float"


@pytest.mark.parametrize("values, needle", [
    ([0, 200], "values 0..200; float images must lie in [0, 1]"),
    ([-0.5, 1], "values -0.5..1"),
    ([0, np.nan], "NaN or infinite"),
    ([0, np.inf], "NaN or infinite"),
])
def test_float_outside_0_1_is_refused(tmp_path, values, needle):
    path = saved(tmp_path, Image.fromarray(np.float32([values])), "f.tif")
    for read in (decode_image, probe_image):
        with pytest.raises(DataError, match="float image") as e:
            read(path)
        assert str(e.value).startswith(f"{path}: ") and needle in str(e.value)


def premultiplied_tiff(mode, pixels):
    """A TIFF with associated (premultiplied) alpha: PIL writes unassociated, so flip the
    ExtraSamples tag."""
    out = io.BytesIO()
    Image.fromarray(np.uint8(pixels), mode).save(out, "TIFF")
    unassociated = struct.pack("<HHII", 338, 3, 1, 2)
    assert out.getvalue().count(unassociated) == 1
    return out.getvalue().replace(unassociated, struct.pack("<HHII", 338, 3, 1, 1))


def palette_image(mode):
    im = Image.frombytes(mode, (2, 1), bytes([0, 255, 1, 128]) if mode == "PA" else b"\0\1")
    im.putpalette([10, 20, 30, 200, 100, 0])
    return im


EIGHT_BIT = {  # name: (image or file bytes, suffix, expected RGB, alpha dropped)
    "1": (Image.fromarray(np.array([[False, True]])), ".png", [[[0] * 3, [255] * 3]], False),
    "L": (Image.fromarray(np.uint8([[3, 250]])), ".png", [[[3] * 3, [250] * 3]], False),
    "P": (palette_image("P"), ".png", [[[10, 20, 30], [200, 100, 0]]], False),
    "RGB": (Image.fromarray(np.uint8([[[1, 2, 3]]])), ".png", [[[1, 2, 3]]], False),
    "RGBA": (Image.fromarray(np.uint8([[[1, 2, 3, 0]]])), ".png", [[[1, 2, 3]]], True),
    "LA": (Image.fromarray(np.uint8([[[9, 0]]]), "LA"), ".png", [[[9] * 3]], True),
    "PA": (palette_image("PA"), ".tif", [[[10, 20, 30], [200, 100, 0]]], True),
    # Premultiplied alpha: colours come back straight (100 / (128 / 255) = 199.2).
    "La": (premultiplied_tiff("LA", [[[100, 128], [0, 0]]]), ".tif",
           [[[199] * 3, [0] * 3]], True),
    "RGBa file": (premultiplied_tiff("RGBA", [[[100, 50, 25, 128]]]), ".tif",
                  [[[199, 99, 49]]], True),  # PIL opens it as RGBA, un-premultiplied
}


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_8_bit_modes_keep_their_values(tmp_path, name):
    source, suffix, expected, alpha = EIGHT_BIT[name]
    path = tmp_path / f"a{suffix}"
    if isinstance(source, bytes):
        path.write_bytes(source)
    else:
        source.save(path)
        assert Image.open(path).mode == source.mode
    image, dropped = decode_image(path)
    np.testing.assert_array_equal(image, np.uint8(expected))
    assert dropped == alpha and probe_image(path).conversion is None


def test_8_bit_modes_pil_cannot_write():
    rgbx = Image.frombytes("RGBX", (1, 1), bytes([1, 2, 3, 77]))
    np.testing.assert_array_equal(to_rgb8(rgbx)[0], [[[1, 2, 3]]])
    straight = Image.fromarray(np.uint8([[[200, 100, 50, 128], [10, 20, 30, 0]]]))
    image, conversion = to_rgb8(straight.convert("RGBa"))
    np.testing.assert_allclose(image, [[[200, 100, 50], [0, 0, 0]]], atol=1)
    assert conversion is None


def pixels(mode, values):
    return Image.frombytes(mode, (len(values), 1), np.int16(values).astype(np.uint8).tobytes())


# sRGB primaries, white and mid grey in CIELAB D50 (Bradford; Lindbloom's calculator).
LAB_D50 = {(255, 0, 0): (54.29, 80.80, 69.89), (0, 255, 0): (87.82, -79.28, 80.99),
           (0, 0, 255): (29.57, 68.29, -112.03), (255, 255, 255): (100, 0, 0),
           (119, 119, 119): (50, 0, 0)}
# PIL's LAB stores L * 2.55 and a, b as signed bytes.
LAB_BYTES = [[round(lab[0] * 2.55), round(lab[1]), round(lab[2])] for lab in LAB_D50.values()]


def lab_to_srgb(lab):
    """Textbook CIELAB (D50) -> XYZ -> Bradford to D65 -> sRGB, rounded (Lindbloom's
    matrices): a reference independent of LittleCMS."""
    L, a, b = np.asarray(lab, float).T
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], -1)
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * [0.9642, 1, 0.8249]
    bradford = [[0.9555766, -0.0230393, 0.0631636], [-0.0282895, 1.0099416, 0.0210077],
                [0.0122982, -0.0204830, 1.3299098]]
    to_rgb = [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
              [0.0556434, -0.2040259, 1.0572252]]
    linear = np.clip(xyz @ np.transpose(bradford) @ np.transpose(to_rgb), 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.rint(srgb * 255)


def test_the_lab_reference_gives_the_known_colours():
    np.testing.assert_array_equal(lab_to_srgb(list(LAB_D50.values())), list(LAB_D50))


COLOUR_SPACES = {  # mode: (pixels, expected sRGB, tolerance, how the file is written)
    "CMYK": ([[255, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 128]],
             [[0, 255, 255], [255, 0, 0], [255, 255, 255], [0, 0, 0], [127, 127, 127]], 0),
    # JFIF: R = Y + 1.402 (Cr - 128), G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128), ...
    "YCbCr": ([[76, 85, 255], [150, 44, 21], [29, 255, 107], [128, 128, 128]],
              [[254, 0, 0], [0, 255, 1], [0, 0, 255], [128, 128, 128]], 1),
    # The stored bytes' own colours: 8-bit Lab is coarse where sRGB's curve is steep (green's
    # stored Lab is sRGB 10, 255, 0), so the known colours are checked through the reference.
    "LAB": (LAB_BYTES, lab_to_srgb([(L / 2.55, a, b) for L, a, b in LAB_BYTES]), 1),
}


@pytest.mark.parametrize("mode", COLOUR_SPACES)
def test_colour_spaces_convert_to_known_colours(tmp_path, mode):
    values, expected, tolerance = COLOUR_SPACES[mode]
    path = saved(tmp_path, pixels(mode, values), "a.tif")
    assert Image.open(path).mode == mode
    image, alpha = decode_image(path)
    np.testing.assert_allclose(image.astype(int), [expected], atol=tolerance)
    assert probe_image(path).conversion.how.startswith("converted to")


def test_hsv_converts_to_known_colours():  # no format PIL writes holds HSV
    image, conversion = to_rgb8(pixels("HSV", [[0, 255, 255], [85, 255, 255], [170, 255, 255],
                                               [0, 0, 128]]))
    np.testing.assert_array_equal(image, [[[255, 0, 0], [0, 255, 0], [0, 0, 255],
                                           [128, 128, 128]]])
    assert conversion.what == "HSV"


def test_every_pil_mode_converts_or_is_refused_in_one_line():
    for mode in Image.MODES:  # a mode PIL adds later must not slip through convert("RGB")
        try:
            image, _ = to_rgb8(Image.new(mode, (3, 2)))
        except ImageRefused as e:
            assert "\n" not in str(e)
        else:
            assert image.shape == (2, 3, 3) and image.dtype == np.uint8
    with pytest.raises(ImageRefused, match="pixel mode I;32 is not supported"):
        image_conversion(SimpleNamespace(mode="I;32"))


def test_scan_sorts_conversions_and_refusals(tmp_path):
    gray16("I;16").save(tmp_path / "a.png")
    gray16("I;16").save(tmp_path / "b.tif")
    Image.fromarray(np.float32([[0, 0.5]])).save(tmp_path / "c.tif")
    Image.fromarray(np.float32([[0, 2]])).save(tmp_path / "d.tif")
    Image.fromarray(np.uint8([[1, 2]])).save(tmp_path / "e.png")
    scan = scan_inputs(sorted(tmp_path.iterdir()))
    assert [f.name for f, _ in scan.good] == ["a.png", "b.tif", "c.tif", "e.png"]
    assert [(f.name, "0..2" in why) for f, why in scan.bad] == [("d.tif", True)]
    assert {c.what: [f.name for f in fs] for c, fs in scan.converted.items()} == {
        "16-bit": ["a.png", "b.tif"], "32-bit float": ["c.tif"]}


def test_voc_images_use_the_same_conversion(tmp_path):
    root = write_voc_fixture(tmp_path / "voc", n_train=3, n_val=0)
    first = VOCSegmentation(root)[0][0]
    jpegs = root / "JPEGImages"  # PIL opens by content: a 16-bit PNG under a .jpg name
    with open(jpegs / "000000.jpg", "wb") as f:
        Image.fromarray(first[..., 0].astype(np.uint16) * 257).save(f, "PNG")
    with open(jpegs / "000001.jpg", "wb") as f:
        Image.fromarray(np.full(first.shape[:2], 3.0, np.float32)).save(f, "TIFF")
    ds = VOCSegmentation(root, skip_bad=True)
    assert [(p.name, "[0, 1]" in why) for p, why in ds.skipped] == [("000001.jpg", True)]
    np.testing.assert_array_equal(ds[0][0], rgb(first[..., 0]))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("model") / "m.onnx")


def test_predict_on_a_16_bit_png_sees_the_image_and_says_so_once(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    gray = np.random.default_rng(0).integers(0, 256, (40, 48), np.uint8)
    Image.fromarray(gray).save(src / "eight.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(src / "deep.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(src / "deep2.tif")
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(src / "white.png")
    result = run("predict", model, src, "--out", tmp_path / "out", "--no-overlay")
    assert result.exit_code == 0, result.output
    note = "note: 2 images are 16-bit (deep.png, ...): scaled to 8 bits by their full range "
    assert result.output.count("are 16-bit") == 1 and note + "0-65535" in result.output
    labels = {f: read_labels(tmp_path / "out" / f"{f}.png")
              for f in ("eight", "deep", "deep2", "white")}
    np.testing.assert_array_equal(labels["deep"], labels["eight"])
    np.testing.assert_array_equal(labels["deep2"], labels["eight"])
    assert not np.array_equal(labels["deep"], labels["white"])  # not the blank image of old


def test_predict_refuses_a_float_image_out_of_range_in_one_line(tmp_path, model):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((8, 8), 1000.0, np.float32)).save(src / "hdr.tif")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "ok.png")
    assert_one_line_error(run("predict", model, src, "--out", tmp_path / "out"),
                          "hdr.tif", "values 1000..1000; float images must lie in [0, 1]")
    assert not (tmp_path / "out").exists()
    result = run("predict", model, src, "--out", tmp_path / "out", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "skipped: " in result.output and "wrote 1 label maps" in result.output
