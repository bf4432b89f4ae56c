"""Print an engine folder's manifest readably and validate it: every file present and matching its
hash, the manifest format readable. Exit status 2 with one sentence when anything is off."""

from __future__ import annotations

from pathlib import Path

from .args import positive_int


def add_arguments(p) -> None:
    p.add_argument("folder", type=Path)
    p.add_argument("--json", action="store_true", help="print the raw manifest JSON")
    p.add_argument("--profile", metavar="PART", nargs="?", const="blocks",
                   help="onnxruntime folders: time PART (default blocks) per operator type on random inputs")
    p.add_argument("--batch", type=positive_int, help="rows for --profile (default: the folder's opt batch)")


def shape_str(spec: dict) -> str:
    return f"{spec['name']}[{','.join(str(d) for d in spec['shape'])}]"


def run(args) -> int:
    from ..engines.manifest import MANIFEST, read_manifest

    manifest = read_manifest(args.folder)
    if args.json:
        print((args.folder / MANIFEST).read_text())
        return 0
    m = manifest
    s = m.shape
    print(f"engine folder {args.folder}: valid ({len(m.files())} files, hashes match)")
    print(f"  model      {m.model['name']} ({m.model['family']}, {m.model['class']}), weights sha256 "
          f"{m.model['weights_sha256'][:16]}...")
    print(f"  backend    {m.backend}, precision {m.precision}")
    print(f"  shape      latents {s['height']}x{s['width']}, {s['frames']} frame(s), {s['text_tokens']} text tokens, "
          f"batch {s['batch_min']}/{s['batch_opt']}/{s['batch_max']} (min/opt/max)")
    if m.quantization:
        print(f"  quantized  {m.quantization['method']} ({m.quantization['scope']})")
        if m.quantization.get("quantization_error") is not None:
            print(f"  its cost   {m.quantization['quantization_error']:.1e} relative L2 of the quantized blocks "
                  "against the unquantized ones (torch, on the check's inputs)")
    if m.options.get("ort_fusions"):
        print("  kernels    onnxruntime's fused GELU and RMSNorm (FastGelu, SimplifiedLayerNormalization; built "
              "without --no-ort-fusions)")
    print("  parts:")
    for name, part in m.parts.items():
        err = "" if part.check_error is None else f"  check {part.check_error:.1e}"
        ins = ", ".join(shape_str(i) for i in part.inputs)
        outs = ", ".join(shape_str(o) for o in part.outputs)
        print(f"    {name:<15} {part.file:<22} {part.precision:<5}{err}")
        print(f"      {ins} -> {outs}")
    if args.profile:
        _print_profile(args.folder, args.profile, args.batch)
    print("  versions   " + ", ".join(f"{k} {v}" for k, v in m.versions.items()))
    if m.build_log:
        total = sum(x["seconds"] for x in m.build_log)
        print(f"  built      {m.created}, {total:.0f} s: " + ", ".join(f"{x['stage']} {x['seconds']:.1f}s"
                                                                    for x in m.build_log))
    return 0


def _print_profile(folder: Path, part: str, batch: int | None) -> None:
    from ..engines.onnxruntime.profile import profile_part

    shares = profile_part(folder, part, batch)
    total_ms = sum(ms for _, _, ms in shares)
    print(f"  profile    {part}: {total_ms:.1f} ms of operator time per run "
          f"(onnxruntime CPU, {batch or 'opt'} rows), by operator type:")
    for op, share, ms in shares[:12]:
        print(f"    {op:<28} {100 * share:5.1f}%  {ms:7.2f} ms")
