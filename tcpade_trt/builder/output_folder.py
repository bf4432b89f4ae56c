"""Where a build may write, and how it replaces an engine folder without ever losing a user's files.

    check_destination(out, model_path, force)   before any work: one sentence if ``out`` is not ours to replace
    with building_folder(out) as tmp:           a hidden sibling with a marker; renamed onto ``out`` at the end

A build writes into ``.NAME.building-XXXX`` next to ``out`` and renames it onto ``out`` only when
complete. It may replace only an engine folder this toolkit wrote (a tcpade-trt manifest that lists
every file in it), an empty folder, or - with ``force`` - another folder that is neither the source
model's folder nor one above or inside it. Every temporary folder carries a marker naming the process
that made it; a later build to the same ``out`` removes those whose process is gone (a build killed
by SIGKILL or a power cut), identified by the marker, never by name alone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

MARKER = ".tcpade-trt-build.json"  # inside every temporary build folder, and nowhere else
LEFTOVER = re.compile(r"^\..+\.partial-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")  # paths.atomic_path's temporary names
# what may sit in an engine folder besides the files its manifest lists (made by running it)
RUNTIME_ADDITIONS = ("ort-tensorrt-cache",)


def check_destination(out: Path, model_path: Path | None = None, force: bool = False) -> None:
    """Refuse, before any work, an ``out`` that a finished build could not or must not replace."""
    try:
        _check_destination(Path(out), model_path, force)
    except OSError as exc:  # e.g. a symlink loop on the way (ELOOP)
        raise ConfigError(f"--out {out} cannot be used: {exc.strerror or exc}.") from None


def _check_destination(out: Path, model_path: Path | None, force: bool) -> None:
    from ..paths import check_name_length

    check_name_length(out, "--out")  # the temporary folder's name is longer: a legal name that could never be written
    where = out.resolve()
    if where == Path(where.anchor) or Path.cwd().resolve().is_relative_to(where):
        raise ConfigError(f"--out {out} is the current folder or one above it; a build replaces its output "
                          "folder, so name a new folder, e.g. --out engines/NAME.")
    if out.is_symlink():
        raise ConfigError(f"--out {out} is a symbolic link; give the folder itself (a build replaces it).")
    for model in _model_folders(model_path):
        if where == model or model.is_relative_to(where) or (force and where.is_relative_to(model) and out.exists()):
            raise ConfigError(f"--out {out} would replace the source model's files ({model}); write the engines "
                              "somewhere else.")
    blocker = next((p for p in (out.parent, *out.parent.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {out} cannot be created: {blocker} is a file, not a folder.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; a build writes a folder: choose another --out.")
    if out.is_dir() and os.path.ismount(out):  # a finished build renames its folder onto out: not onto a mount
        raise ConfigError(f"--out {out} is a mount point; a build replaces its output folder by renaming, so give a "
                          f"folder inside it, e.g. --out {out}/engines.")
    if out.is_dir() and not force:
        foreign = foreign_files(out)
        if foreign is not None:
            raise ConfigError(f"--out {out} exists and is not an engine folder this tool wrote ({foreign}); choose "
                              "another --out, or pass --force to replace that folder and everything in it.")
    _require_writable(blocker if blocker is not None else Path.cwd(), out)


def foreign_files(folder: Path) -> str | None:
    """None when ``folder`` may be replaced by a build (empty, or an engine folder holding only what
    its manifest lists), else a few words on what is there that a build did not write."""
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return None
    from ..engines.manifest import FORMAT, MANIFEST

    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"it has no readable {MANIFEST}"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"its {MANIFEST} is not a tcpade-trt manifest"
    listed = {MANIFEST, *RUNTIME_ADDITIONS, *_listed_files(data)}
    # a write this toolkit was killed in (paths.atomic_path: e.g. `calibrate` rewriting the manifest) is ours too
    extra = [name for name in entries if name not in listed and not LEFTOVER.match(name)]
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        return f"it holds files its manifest does not list: {shown}"
    return None


def _listed_files(manifest: dict) -> set[str]:
    """Every file name a manifest of any format version mentions."""
    names = set()
    for part in (manifest.get("parts") or {}).values():
        if isinstance(part, dict):
            names.add(part.get("file"))
            names.update(part.get("extra_files") or [])
    names.update((manifest.get("extras") or {}).values())
    return {n for n in names if isinstance(n, str)}


def _model_folders(model_path: Path | None) -> list[Path]:
    if model_path is None or not Path(model_path).exists():
        return []  # a built-in model: no folder of the user's to protect
    path = Path(model_path).resolve()
    inner = path / "transformer"
    return [path, inner] if inner.is_dir() else [path]


def _require_writable(folder: Path, out: Path) -> None:
    import tempfile

    try:
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tcpade-trt-write-check-"):
            pass
    except OSError:
        raise ConfigError(f"--out {out} cannot be written: this process may not create folders in {folder}.") \
            from None


# -- the temporary folder and the final rename --------------------------------------------------
@contextlib.contextmanager
def building_folder(out: Path) -> Iterator[Path]:
    """A marked temporary sibling of ``out`` to build into; on a clean exit it replaces ``out``
    (the previous engine folder is removed only after the new one is in place), on any exception
    (Ctrl-C and SIGTERM included) it is removed. Stale temporary folders of earlier builds to the
    same ``out`` are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(out)
    tmp = out.parent / f".{out.name}.building-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    _write_marker(tmp, out, "building")
    try:
        yield tmp
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_marker(folder: Path, out: Path, state: str) -> None:
    marker = {"pid": os.getpid(), "host": socket.gethostname(), "out": str(out.resolve()), "state": state,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (folder / MARKER).write_text(json.dumps(marker))


def _replace(new: Path, out: Path) -> None:
    (new / MARKER).unlink()
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        _write_marker(old, out, "replaced")  # if we die before the removal, the next build finds it
        new.rename(out)
        shutil.rmtree(old)
    else:
        new.rename(out)


def remove_stale_builds(out: Path) -> list[Path]:
    """Remove the temporary folders that builds to ``out`` left behind when they were killed: hidden
    siblings whose marker names ``out`` and a process of this machine that no longer runs."""
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for candidate in out.parent.glob(f".{glob.escape(out.name)}.*-*"):  # eng[1] is a name, not a pattern
        marker = _read_marker(candidate)
        if marker is None or marker.get("out") != str(out.resolve()):
            continue
        if marker.get("host") != socket.gethostname() or _process_alive(marker.get("pid")):
            continue  # another machine's build, or one still running: not ours to judge
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
        log.warning("removed %s, left by a build to %s that was killed (process %s)", candidate.name, out,
                    marker.get("pid"))
    return removed


def _read_marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text()) if folder.is_dir() and not folder.is_symlink() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _process_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
