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
NAME_MAX_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems
# what the temporary names add to a name: ".NAME.partial-1234abcd" (atomic_path) and a build folder's
# ".NAME.building-<pid>-<8 hex>" (builder): a name this much under the limit can always be written
TEMPORARY_NAME_BYTES = 32


def check_output_file(path: str | Path, suffixes: tuple[str, ...], option: str, replace: bool | None = None) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a missing or wrong
    extension, a parent that is a file, a symlink loop, a name too long to write, or a place this process may
    not create files in. ``replace=False``: an existing file is refused too (the command's --force replaces)."""
    try:
        return _check_output_file(path, suffixes, option, replace)
    except OSError as exc:  # e.g. a symlink loop on the way (ELOOP), a name over the limit (ENAMETOOLONG)
        raise ConfigError(f"{option} {path} cannot be used: {exc.strerror or exc}.") from None


def check_output_folder(path: str | Path, option: str) -> Path:
    """Refuse, before any work, an output folder that cannot be created or written: an existing file, a parent
    that is a file, a symlink loop or dangling symlink, a name too long, an unwritable place."""
    path = Path(path)
    try:
        _check_links(path, option)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{option} {path} is a file; give a folder (it is created if missing).")
        check_name_length(path, option)
        blocker = next((p for p in (path, *path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise ConfigError(f"{option} {path} cannot be created: {blocker} is a file, not a folder.")
        if not _can_create_in(blocker if blocker is not None else Path.cwd()):
            raise ConfigError(f"{option} {path} cannot be written: this process may not create files in "
                              f"{blocker}; choose another place.")
    except OSError as exc:
        raise ConfigError(f"{option} {path} cannot be used: {exc.strerror or exc}.") from None
    return path


def _check_links(path: Path, option: str) -> None:
    """A symbolic link on the way that leads nowhere (a loop, a missing target) is refused by name: exists() only
    says False, and the mkdir after the work would fail with a traceback."""
    for p in (path, *path.parents):
        if p.is_symlink() and not p.exists():
            raise ConfigError(f"{option} {path} cannot be created: {p} is a symbolic link that leads nowhere (a loop "
                              "or a missing target).")


def check_name_length(path: Path, option: str) -> None:
    size = len(os.fsencode(path.name))
    if size + TEMPORARY_NAME_BYTES > NAME_MAX_BYTES:
        raise ConfigError(f"{option}: the name {path.name[:40]}... is {size} bytes; names may have at most "
                          f"{NAME_MAX_BYTES - TEMPORARY_NAME_BYTES} here ({NAME_MAX_BYTES} less the temporary name "
                          "written first): shorten it.")


def _check_output_file(path: str | Path, suffixes: tuple[str, ...], option: str, replace: bool | None) -> Path:
    raw, path = os.fspath(path), Path(path)
    if raw.endswith(("/", os.sep)) or path.is_dir():
        example = path / ("image" + suffixes[0])
        raise ConfigError(f"{option} {path} is a folder; give a file name in it, e.g. {example}.")
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path} needs one of the extensions {', '.join(suffixes)} (it picks the format).")
    check_name_length(path, option)
    _check_links(path, option)
    if replace is False and (path.exists() or path.is_symlink()):
        raise ConfigError(f"{option} {path} exists; add --force to replace it, or give another name.")
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
