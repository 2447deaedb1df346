"""Memory budgets (runtime/memory.py): --max-memory parsed, the available memory read from
/proc, cgroups and RLIMIT_AS, estimates from activation_bytes_per_pixel, the tile that fits;
auto-tiling's plan, and tiled prediction holding one band of scores, not classes x H x W."""
import resource
import tracemalloc

import numpy as np
import pytest
from helpers import export_tiny, tiny_meta

from fcn_deploy.contract.metadata import ArtifactMeta
from fcn_deploy.errors import OptionError
from fcn_deploy.runtime import memory
from fcn_deploy.runtime.factory import open_segmenter
from fcn_deploy.runtime.tiling import AutoTiler, predictor, tiled_logits, tiled_predict

GIB, MIB = 2**30, 2**20


@pytest.mark.parametrize("text, value", [("3G", 3 * GIB), ("500M", 500 * MIB),
                                         ("1.5GiB", int(1.5 * GIB)), ("2048", 2048),
                                         ("64k", 64 * 1024), (" 2 gb ", 2 * GIB), ("1T", 2**40)])
def test_budgets_parse_in_powers_of_1024(text, value):
    assert memory.parse_budget(text) == value


@pytest.mark.parametrize("text", ["", "G", "abc", "-1G", "0", "3X", "1.2.3M"])
def test_malformed_budgets_are_usage_errors(text):
    with pytest.raises(OptionError, match="malformed memory size"):
        memory.parse_budget(text)


def test_sizes_print_in_binary_units():
    assert memory.fmt_bytes(1.5 * GIB) == "1.5 GiB" and memory.fmt_bytes(500 * MIB) == "500 MiB"
    assert memory.fmt_bytes(2048) == "2.0 KiB" and memory.fmt_bytes(12) == "12 B"


def test_available_memory_is_the_least_of_meminfo_cgroup_and_rlimit(monkeypatch):
    files = {"/proc/meminfo": "MemTotal: 9999999 kB\nMemAvailable:  4194304 kB\n",
             "/proc/self/status": "VmSize:\t  1048576 kB\n",
             "/proc/self/cgroup": "0::/job\n",
             "/sys/fs/cgroup/job/memory.max": f"{6 * GIB}\n",
             "/sys/fs/cgroup/job/memory.current": f"{1 * GIB}\n"}
    monkeypatch.setattr(memory, "_read", lambda path: files.get(str(path)))
    limits = {"as": resource.RLIM_INFINITY}
    monkeypatch.setattr(memory.resource, "getrlimit", lambda what: (limits["as"], limits["as"]))
    assert memory.available_memory() == (4 * GIB, "available memory")
    files["/sys/fs/cgroup/job/memory.max"] = f"{3 * GIB}\n"  # 2 GiB left in the cgroup
    assert memory.available_memory() == (2 * GIB, "the cgroup's memory limit")
    files.update({"/proc/self/cgroup": "4:memory:/v1job\n0::/\n",  # cgroup v1
                  "/sys/fs/cgroup/memory/v1job/memory.limit_in_bytes": f"{4 * GIB}",
                  "/sys/fs/cgroup/memory/v1job/memory.usage_in_bytes": f"{GIB + GIB // 2}"})
    assert memory.available_memory() == (5 * GIB // 2, "the cgroup's memory limit")
    limits["as"] = 2 * GIB  # 1 GiB of address space left
    assert memory.available_memory() == (GIB, "the address-space limit")
    assert memory.budget(512 * MIB) == (512 * MIB, "--max-memory")
    assert memory.budget(8 * GIB) == (GIB, "the address-space limit")
    files.clear()
    limits["as"] = resource.RLIM_INFINITY
    assert memory.available_memory() == (None, "unknown")


def test_the_real_available_memory_is_positive():
    avail, what = memory.available_memory()
    assert avail is None or avail > 0 and what


def test_old_artifacts_without_the_field_load_and_estimate_nothing():
    meta = tiny_meta()
    values = meta.to_dict()
    values.pop("activation_bytes_per_pixel")
    old = ArtifactMeta.from_dict(values, "old.onnx")
    assert old.activation_bytes_per_pixel is None and memory.estimate_peak(old, 1, 10, 10) is None
    new = ArtifactMeta.from_dict({**values, "activation_bytes_per_pixel": 300}, "new.onnx")
    assert new.to_dict()["activation_bytes_per_pixel"] == 300 and not new.extra
    assert memory.estimate_peak(new, 2, 100, 50) == memory.ARENA_FACTOR * 300 * 2 * 100 * 50


def test_the_tile_is_the_largest_that_fits():
    meta = tiny_meta(num_classes=21, activation_bytes_per_pixel=400)
    h, w, limit = 4000, 6000, 600 * MIB
    tile = memory.fit_tile(meta, limit, h, w, 64)
    assert tile[0] == tile[1] and tile[0] % 32 == 0 and tile[0] > 64
    assert memory.tiled_peak(meta, h, w, tile) <= limit
    assert memory.tiled_peak(meta, h, w, (tile[0] + 32,) * 2) > limit
    assert memory.fit_tile(meta, 10 * MIB, h, w, 64) is None  # not even 128 px tiles fit


@pytest.mark.parametrize("error", [MemoryError("Unable to allocate 9.1 GiB for an array"),
                                   RuntimeError("std::bad_alloc"),
                                   RuntimeError("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:360 "
                                                "Failed to allocate memory for requested buffer "
                                                "of size 161280000")])
def test_allocation_failures_become_one_line_naming_size_and_fix(error):
    assert memory.is_allocation_failure(error)
    message = str(memory.out_of_memory(error, (1, 4000, 6000),
                                       tiny_meta(activation_bytes_per_pixel=300)))
    assert "\n" not in message and "4000x6000" in message and "needs ~13.4 GiB" in message
    assert "--max-memory" in message and "--tile" in message
    if "bfc_arena" in str(error):
        assert "onnxruntime could not allocate 154 MiB" in message


def test_other_errors_are_not_allocation_failures():
    assert not memory.is_allocation_failure(ValueError("bad shape"))


class _Fake:
    """A Segmenter stand-in: metadata, device and output mode, and a whole-image predict."""

    def __init__(self, meta, output="logits", device="cpu"):
        self.meta, self.output, self.device, self.path = meta, output, device, "fake.onnx"

    def predict(self, images):
        return np.zeros(np.shape(images)[:3], np.uint8)


def test_auto_tiling_plans_tiles_only_past_the_budget_and_says_so_once():
    lines = []
    tiler = AutoTiler(_Fake(tiny_meta(activation_bytes_per_pixel=300)), 64, 100 * MIB,
                      lines.append)
    assert tiler.plan(1, 200, 300) is None and not lines  # 34 MiB fits
    tile = tiler.plan(1, 1000, 2000)  # 1.1 GiB does not
    assert tile and lines == [f"note: 1000x2000 needs ~1.1 GiB (--max-memory 100 MiB): "
                              f"segmenting in {tile[0]}x{tile[1]} tiles"]
    assert tiler.plan(1, 1000, 2000) == tile and len(lines) == 1
    with pytest.raises(memory.OutOfMemoryError, match="even 128x128 tiles"):
        AutoTiler(_Fake(tiny_meta(activation_bytes_per_pixel=300)), 64, MIB).plan(1, 1000, 2000)


def test_auto_tiling_without_an_estimate_or_blendable_scores_runs_whole_and_says_why():
    lines = []
    assert AutoTiler(_Fake(tiny_meta()), 64, 100 * MIB, lines.append).plan(1, 4000, 6000) is None
    assert len(lines) == 1 and "records no activation_bytes_per_pixel" in lines[0]
    assert AutoTiler(_Fake(tiny_meta()), 64, None, lines.append).plan(1, 4000, 6000) is None
    assert len(lines) == 1  # no --max-memory: nothing to say
    labels = _Fake(tiny_meta(activation_bytes_per_pixel=300), output="labels")
    assert AutoTiler(labels, 64, 100 * MIB, lines.append).plan(1, 4000, 6000) is None
    assert "tiles cannot blend" in lines[-1]
    gpu = _Fake(tiny_meta(activation_bytes_per_pixel=300), device="cuda")
    assert AutoTiler(gpu, 64, 100 * MIB, lines.append).plan(1, 4000, 6000) is None


def test_a_failed_allocation_in_prediction_is_one_error():
    class Failing(_Fake):
        def predict(self, images):
            raise RuntimeError("Failed to allocate memory for requested buffer of size 8000")

    run = predictor(Failing(tiny_meta()), None, 64)
    with pytest.raises(memory.OutOfMemoryError, match="a 30x40 image"):
        run(np.zeros((1, 30, 40, 3), np.uint8))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("mem") / "m.onnx")


def test_export_records_activation_bytes_per_pixel(onnx_model):
    with open_segmenter(onnx_model) as seg:
        assert 50 < seg.meta.activation_bytes_per_pixel < 2000


def test_band_blending_gives_the_labels_of_blending_whole_logits(onnx_model):
    rng = np.random.default_rng(0)
    with open_segmenter(onnx_model) as seg:
        for hw, tile, overlap in (((300, 500), (128, 160), 32), ((97, 33), (64, 64), 16),
                                  ((257, 257), (128, 128), 100)):
            images = rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8)
            whole = tiled_logits(seg, seg.preprocess(images), tile, overlap).argmax(1)
            assert np.array_equal(tiled_predict(seg, images, tile, overlap), whole)


def test_tiled_prediction_holds_one_band_of_scores_not_the_image(onnx_model):
    """7 classes x 1600 x 800 float32 are 34 MiB; one band of 96 px rows is 2 MiB (and a few
    band-sized temporaries: the roll, the weighted mean, the argmax)."""
    image = np.random.default_rng(1).integers(0, 256, (1, 1600, 800, 3), dtype=np.uint8)
    with open_segmenter(onnx_model) as seg:
        tiled_predict(seg, image[:, :100, :100], (96, 96), 16)  # session warm
        tracemalloc.start()
        labels = tiled_predict(seg, image, (96, 96), 16)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert labels.shape == (1, 1600, 800)
    assert peak < 7 * 1600 * 800 * 4 / 3, f"{peak / MIB:.1f} MiB"
