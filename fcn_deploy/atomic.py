"""Atomic file writes: write to a temporary file beside the target, then rename over it."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import FcnDeployError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` only on success."""
    path = Path(path)
    if path.is_dir():
        raise FcnDeployError(f"output path {path} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise FcnDeployError(f"cannot write {path}: {e.strerror or e}") from e
    os.close(fd)
    try:
        yield Path(tmp)
        _default_mode(tmp, 0o666)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_texts(files: dict[Path, str]) -> list[Path]:
    """Write each text to its path atomically, in order; the paths."""
    for path, text in files.items():
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return list(files)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` only on success (an
    existing ``path`` is removed first when ``replace``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise FcnDeployError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        yield tmp
        _default_mode(tmp, 0o777)  # mkdtemp creates 0700
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def refuse_overwrite(inputs: Iterable[str | os.PathLike | None],
                     outputs: Iterable[str | os.PathLike | None]) -> None:
    """FcnDeployError when an output would be written over an input, or two outputs are one
    file (symlinks and ``..`` resolved); None entries are ignored."""
    sources = {Path(p).resolve(): Path(p) for p in inputs if p is not None}
    written: dict[Path, Path] = {}
    for out in (Path(p) for p in outputs if p is not None):
        target = out.resolve()
        if target in sources:
            raise FcnDeployError(f"{out} is also an input ({sources[target]}); writing it would "
                                 "destroy that input: give another output path")
        if target in written:
            raise FcnDeployError(f"{written[target]} and {out} would be written to the same file")
        written[target] = out


def check_outputs(inputs: Iterable[str | os.PathLike | None],
                  outputs: Iterable[str | os.PathLike | None]) -> None:
    """Before a command's work: no output over an input or another output, and each output's
    place writable (probed once per folder: segment-dataset lists one output per image)."""
    outputs = [Path(p).absolute() for p in outputs if p is not None]
    refuse_overwrite(inputs, outputs)
    probed = set()
    for out in outputs:
        folder = out if out.is_dir() else out.parent
        if folder not in probed:
            probed.add(folder)
            check_writable(out)


def check_folder_output(path: str | os.PathLike | None, option: str = "--out") -> None:
    """FcnDeployError when ``option`` names an existing file where a folder is written."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise FcnDeployError(f"{option} {path} is a file; give a folder")


def check_file_output(path: str | os.PathLike | None, option: str) -> None:
    """FcnDeployError when ``option`` names a folder where a file is written."""
    if path is not None and Path(path).is_dir():
        raise FcnDeployError(f"{option} {path} is a folder; give the file to write")


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output ``path`` (file or folder) that cannot be written:
    its nearest existing ancestor must be a folder that takes a new file (a probe, since
    permission bits say nothing to root, and a read-only mount says no only when tried)."""
    path = Path(path).absolute()
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FcnDeployError(f"cannot write {path}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise FcnDeployError(f"cannot write {path}: {e.strerror or e}") from e


def _default_mode(path, base: int) -> None:
    """Give ``path`` the mode a plain open()/mkdir() would: ``base`` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, base & ~umask)
