"""Safe file output: check a destination before the work, write it atomically after.

    check_output_file(path, IMAGE_SUFFIXES, "--out")   # before a generation: one sentence if it cannot work
    with atomic_path(path) as tmp:                      # after it: write tmp; renamed onto path when done
        image.save(tmp)

A failed or interrupted write leaves the previous file (or nothing) at ``path``, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def check_output_file(path: str | Path, suffixes: tuple[str, ...], option: str) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a missing or wrong
    extension, a parent that is a file, or a place this process may not create files in."""
    raw, path = os.fspath(path), Path(path)
    if raw.endswith(("/", os.sep)) or path.is_dir():
        example = path / ("image" + suffixes[0])
        raise ConfigError(f"{option} {path} is a folder; give a file name in it, e.g. {example}.")
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path} needs one of the extensions {', '.join(suffixes)} (it picks the format).")
    parent = path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"{option} {path} cannot be created: {blocker} is a file, not a folder.")
    if not _can_create_in(blocker if blocker is not None else Path.cwd()):
        raise ConfigError(f"{option} {path} cannot be written: this process may not create files in "
                          f"{blocker}; choose another place.")
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (permission bits say little to root, on
    read-only mounts or in /sys): try it."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tcpade-trt-write-check-"):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to; renamed onto ``path`` when the block ends
    without an exception, removed otherwise. Creates the parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
