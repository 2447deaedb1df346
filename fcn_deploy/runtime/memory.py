"""Memory budgets for inference: ``--max-memory`` parsed, the memory this process may still
take (the least of /proc/meminfo's MemAvailable, the cgroup's limit and RLIMIT_AS), the peak an
H x W image needs from the artifact's ``activation_bytes_per_pixel`` metadata (measured at
export), and the tile size that fits when a whole image does not. Numpy-free, torch-free.

Sizes are in powers of 1024 (``3G`` = 3 GiB), as prlimit, docker and cgroups count them.
"""
from __future__ import annotations

import math
import re
import resource
from pathlib import Path

from fcn_deploy.errors import FcnDeployError, OptionError, message_line

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_BUDGET = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.I)
# Host bytes per image pixel of a tiled run beside its tiles and band: the uint8 RGB image and
# the uint8 labels (tiling.tiled_predict).
IMAGE_BYTES = 3 + 1
# Smallest tile side auto-tiling chooses (beyond the overlap), and the step it searches in.
MIN_TILE, TILE_STEP = 64, 32
# A whole image runs when its estimate is at most this share of the budget: the estimate is one
# process's measured peak, and the allocator's rounding and fragmentation come on top.
HEADROOM = 0.8
# Estimates are this many times activation_bytes_per_pixel x pixels. That figure is the slope
# between small inputs; onnxruntime's arena grows in doubling regions, so a big image's peak
# (RSS, and more so address space) lies above it: the full-width FCN-8s grows 709 B/px from
# 256^2 to 512^2, but takes 952 B/px at 1024^2 and 1132 B/px at 1500 x 2000 (width 1/8: 359,
# 343, 323). Arena off it stays linear, but small images run up to 3x slower.
ARENA_FACTOR = 2
# Messages that onnxruntime, torch and std::bad_alloc give when an allocation fails.
_OOM = re.compile(r"failed to allocate memory|bad_alloc|can't allocate memory|out of memory|"
                  r"not enough memory|MemoryError", re.I)
_ORT_SIZE = re.compile(r"Failed to allocate memory for requested buffer of size (\d+)")


class OutOfMemoryError(FcnDeployError):
    """An inference needed more memory than this process could get; the message names the size
    and the options that avoid it (--max-memory, --tile)."""


def parse_budget(text: str) -> int:
    """``3G``, ``500M``, ``1.5GiB``, ``2048K`` or plain bytes -> bytes; OptionError else."""
    m = _BUDGET.match(str(text).strip())
    if not m or float(m.group(1)) <= 0:
        raise OptionError(f"malformed memory size {text!r}; expected bytes or a number with K, "
                          "M, G or T (powers of 1024), e.g. 3G or 500M")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def fmt_bytes(n: float) -> str:
    """1.5 * 2**30 -> ``"1.5 GiB"``; 500 * 2**20 -> ``"500 MiB"``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _field(text: str | None, key: str) -> int | None:
    """A ``Key:   123 kB`` line of /proc/meminfo or /proc/self/status, in bytes."""
    m = re.search(rf"^{key}:\s+(\d+)\s*kB", text or "", re.M)
    return int(m.group(1)) * 1024 if m else None


def _cgroup_headroom() -> int | None:
    """The cgroup's memory limit less its usage (v2 memory.max, or v1 limit_in_bytes), read
    at this process's own cgroup, else at the mount's root (a container's own)."""
    paths = dict(line.split(":", 2)[1:] for line in
                 (_read("/proc/self/cgroup") or "").splitlines() if line.count(":") >= 2)
    root = Path("/sys/fs/cgroup")
    for folder in (root / paths.get("", "/").strip().lstrip("/"), root):
        limit, used = _read(folder / "memory.max"), _read(folder / "memory.current")
        if limit and used and limit.strip() != "max":
            return max(int(limit) - int(used), 0)
    for folder in (root / "memory" / paths.get("memory", "/").strip().lstrip("/"),
                   root / "memory"):
        limit = _read(folder / "memory.limit_in_bytes")
        used = _read(folder / "memory.usage_in_bytes")
        if limit and used and int(limit) < 2**60:  # v1 says "no limit" with a huge number
            return max(int(limit) - int(used), 0)
    return None


def _address_space_headroom() -> int | None:
    """RLIMIT_AS (``prlimit --as``, ``ulimit -v``) less this process's address space now."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    size = _field(_read("/proc/self/status"), "VmSize")
    if soft == resource.RLIM_INFINITY or size is None:
        return None
    return max(soft - size, 0)


def available_memory() -> tuple[int | None, str]:
    """(bytes this process may still allocate, what limits it): the least of MemAvailable, the
    cgroup's headroom and RLIMIT_AS's; (None, "unknown") where none can be read (not Linux)."""
    found = {"available memory": _field(_read("/proc/meminfo"), "MemAvailable"),
             "the cgroup's memory limit": _cgroup_headroom(),
             "the address-space limit": _address_space_headroom()}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return None, "unknown"
    what = min(found, key=found.get)
    return found[what], what


def budget(max_memory: int | None = None) -> tuple[int | None, str]:
    """(bytes one inference may take, what sets it): ``max_memory`` (--max-memory) or the
    available memory, whichever is less."""
    avail, what = available_memory()
    if max_memory is not None and (avail is None or max_memory <= avail):
        return max_memory, "--max-memory"
    return avail, what


def estimate_peak(meta, n: int, h: int, w: int) -> int | None:
    """Bytes an inference of N images of H x W may need beyond the loaded model: the artifact's
    measured ``activation_bytes_per_pixel`` times ``ARENA_FACTOR``; None when it has none."""
    per_pixel = getattr(meta, "activation_bytes_per_pixel", None)
    return None if not per_pixel else int(ARENA_FACTOR * per_pixel * n * h * w)


def tiled_peak(meta, h: int, w: int, tile: tuple[int, int], tiles_per_batch: int = 1) -> int:
    """Bytes a tiled run of one H x W image needs: one batch of tiles, the blend buffer of one
    band of tiles (float32 scores per class and a weight, tile height x W) with the
    temporaries of rolling and finishing it (a copy of the scores, their mean, the int64
    argmax), and the uint8 image and labels."""
    th, tw = min(tile[0], h), min(tile[1], w)
    band = ((3 * meta.num_classes + 1) * 4 + 8) * th * w
    return estimate_peak(meta, tiles_per_batch, th, tw) + band + IMAGE_BYTES * h * w


def fit_tile(meta, limit: int, h: int, w: int, overlap: int) -> tuple[int, int] | None:
    """The largest square tile (a multiple of 32 px, larger than ``overlap``) whose tiled run
    of an H x W image fits in ``limit`` bytes; None when even the smallest does not."""
    smallest = overlap + MIN_TILE
    side = max(h, w)
    side -= side % TILE_STEP
    while side >= smallest:
        if tiled_peak(meta, h, w, (side, side)) <= limit:
            return side, side
        side = max(side - TILE_STEP, math.floor(side * 0.9) // TILE_STEP * TILE_STEP)
    return None


def is_allocation_failure(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation: numpy's MemoryError, onnxruntime's "Failed to
    allocate memory", std::bad_alloc or torch's "can't allocate memory" surfacing as errors."""
    return isinstance(error, MemoryError) or bool(_OOM.search(str(error)))


def out_of_memory(error: BaseException, shape, meta=None) -> OutOfMemoryError:
    """The one-line OutOfMemoryError for ``error`` raised by an inference of an N x H x W
    ``shape``: the size, the estimate where the metadata has one, and the fix."""
    n, h, w = shape
    need = estimate_peak(meta, n, h, w) if meta is not None else None
    needs = f", needs ~{fmt_bytes(need)}" if need else ""
    images = f"{n} images of " if n > 1 else "a "
    ort = _ORT_SIZE.search(str(error))
    what = (f"onnxruntime could not allocate {fmt_bytes(int(ort.group(1)))}" if ort
            else message_line(error))
    fix = ("give --max-memory what this machine can spare (e.g. --max-memory 2G) to segment "
           "in tiles that fit, or --tile 1024" if need else "use --tile 1024 (the artifact "
           "records no activation_bytes_per_pixel for --max-memory: re-export it to add one)")
    return OutOfMemoryError(
        f"out of memory segmenting {images}{h}x{w} image ({what}{needs}): {fix}")

