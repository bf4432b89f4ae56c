"""The engine folder's manifest: a self-describing JSON that loading checks before trusting a file.

    engines/NAME/
        manifest.json            this file's content (see Manifest)
        prepare.onnx head.onnx blocks.onnx tail.onnx modulated.onnx (the model's parts)
        pade-fit-VARIANT.onnx pade-eval.onnx tsi.onnx (the Padé engines)   or *.plan for TensorRT
        extras (the demo's class embeddings)

Loading validates: the format version, every listed file's presence and SHA-256, and - for
TensorRT - the TensorRT version and GPU the plans were built for. A mismatch is reported as one
sentence saying what differs and how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import ManifestError

FORMAT = "tcpade-trt-engines"
FORMAT_VERSION = 4  # 2: the Padé engine split into pade-fit-VARIANT / pade-eval / tsi; 3: the step
# arithmetic moved into engines (blocks also return the residual, pade-eval returns x_out, the fit its magnitude);
# 4: tsi in the paper's scale (||u1 + u2|| in [0, 2]) and calibrated schedules in the manifest
MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_state_dict(state: dict) -> str:
    """A hash of a model's weights, independent of file format: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class PartEntry:
    file: str
    inputs: list[dict]
    outputs: list[dict]
    precision: str = "fp32"
    sha256: str = ""
    check_error: float | None = None  # relative L2 against torch measured at build time
    extra_files: list[str] = field(default_factory=list)  # external data etc., hashed too
    extra_sha256: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    backend: str
    precision: str
    model: dict  # name, family, class, config, weights_sha256
    shape: dict  # BuildShape fields
    parts: dict[str, PartEntry]
    versions: dict
    quantization: dict | None = None
    extras: dict = field(default_factory=dict)  # name -> file (hashed in extra_sha256)
    extra_sha256: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # build options beyond backend / precision / shape
    build_log: list = field(default_factory=list)  # stage -> seconds
    # `tcpade-trt calibrate`: {"schedules": [[T, budget, [full steps]], ...], "seeds", "validation", "created"}
    calibration: dict = field(default_factory=dict)
    created: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    # -- files --------------------------------------------------------------------------------
    def files(self) -> dict[str, str]:
        """Every file the folder must hold, with its expected hash."""
        out = {p.file: p.sha256 for p in self.parts.values()}
        for p in self.parts.values():
            out.update(p.extra_sha256)
        out.update(self.extra_sha256)
        return out

    def calibrated_schedules(self) -> tuple:
        """The folder's calibrated schedules as ScheduleConfig.calibrated wants them (empty if never calibrated)."""
        return tuple((int(t), float(b), tuple(int(s) for s in steps))
                     for t, b, steps in self.calibration.get("schedules", []))

    def seal(self, folder: Path) -> None:
        """Hash every file (call when the folder is complete, before writing the manifest): each part's
        file, the external-data files its ONNX graphs name, and the extras."""
        from ..export.onnx_files import referenced_data_files

        for part in self.parts.values():
            part.sha256 = sha256_file(folder / part.file)
            graphs = [f for f in (part.file, *part.extra_files) if f.endswith(".onnx")]
            data = [d for g in graphs for d in referenced_data_files(folder / g)]
            part.extra_files = sorted(set(part.extra_files) | set(data))
            part.extra_sha256 = {f: sha256_file(folder / f) for f in part.extra_files}
        self.extra_sha256 = {f: sha256_file(folder / f) for f in self.extras.values()}

    def write(self, folder: Path) -> Path:
        from ..paths import write_text_atomic

        return write_text_atomic(folder / MANIFEST, json.dumps(asdict(self), indent=1))

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        parts = {k: PartEntry(**v) for k, v in data.pop("parts").items()}
        return cls(parts=parts, **data)


def read_manifest(folder: str | Path, verify_hashes: bool = True) -> Manifest:
    """Load and validate ``folder``'s manifest; raises ManifestError with a sentence on any problem."""
    folder = Path(folder)
    rebuild = f"rebuild it with `tcpade-trt build MODEL --out {folder}`"
    if not folder.is_dir():
        what = "it is a file" if folder.exists() else "it does not exist"
        raise ManifestError(f"{folder} is not an engine folder ({what}); build one with "
                            "`tcpade-trt build MODEL --out DIR`.")
    path = folder / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{folder} has no {MANIFEST}: it is not a complete engine folder; {rebuild}.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); {rebuild}.") \
            from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a tcpade-trt manifest; {rebuild}.")
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{folder} was written by a tcpade-trt with manifest format "
                            f"{data.get('format_version')}, this one reads {FORMAT_VERSION}; {rebuild}.")
    from .manifest_schema import manifest_problem

    problem = manifest_problem(data)  # every field checked against one schema before any is trusted
    if problem is not None:
        raise ManifestError(f"{path} is not a valid manifest ({problem}); {rebuild}.")
    try:
        manifest = Manifest.from_dict(dict(data))
    except (TypeError, KeyError, AttributeError) as exc:
        raise ManifestError(f"{path} is missing or has unknown fields ({exc}); {rebuild}.") from None
    for name, expected in manifest.files().items():
        file = folder / name
        if not file.is_file():
            raise ManifestError(f"{folder} lacks {name}, which its manifest lists; {rebuild}.")
        if verify_hashes and sha256_file(file) != expected:
            raise ManifestError(f"{file} does not match the hash in the manifest (corrupt or modified); {rebuild}.")
    return manifest


def source_fingerprint() -> str:
    """A hash of the code that decides what the engines compute (the split, the export, the Padé
    math, the backends' quantizers and graph rewrites), so that a folder built by other code is not mistaken for a
    current one."""
    root = Path(__file__).resolve().parent.parent
    files = sorted([root / "cache" / "pade.py", *(root / "export").rglob("*.py"), *(root / "models").rglob("*.py"),
                    *(root / "engines").rglob("*.py")])
    h = hashlib.sha256()
    for f in files:  # by content under its path in the package: a moved file changes the fingerprint
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_versions(backend) -> dict:
    """The versions an engine folder is built with (checked again when it is loaded)."""
    import onnx

    from .. import __version__

    versions = {"tcpade_trt": __version__, "source": source_fingerprint(), "torch": torch.__version__,
                "onnx": onnx.__version__, "python": platform.python_version()}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    versions.update(backend.versions())  # its runtime's (engines/<backend>/)
    return versions


def version_differences(manifest: Manifest) -> list[str]:
    """What differs between the versions a folder was built with and this machine's, as phrases
    ("onnxruntime 1.31.0 here, 1.32.0 at build"); empty when everything matches."""
    built = manifest.versions
    here = {"tcpade_trt": None, "source": source_fingerprint(), "onnxruntime": None}
    from .. import __version__

    here["tcpade_trt"] = __version__
    try:
        import onnxruntime

        here["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    names = {"tcpade_trt": "tcpade-trt", "source": "tcpade-trt source", "onnxruntime": "onnxruntime"}
    return [f"{names[k]} {here[k]} here, {built[k]} at build" for k in names
            if k in built and here[k] is not None and built[k] != here[k]]

