"""Choose the full steps of TC-Padé for one model, per step count and compute budget, from a few uncached
runs (seeds 100..), and check them closed-loop on other seeds (200..) against the formula schedule,
keeping the better one per step count and budget.

    tcpade-trt calibrate engines/demo-fp32                      # stored in the folder's manifest
    tcpade-trt calibrate demo --out demo-calibration.json       # a torch model: a file for apply_cache
    tcpade-trt calibrate demo-dit --out tcpade_trt/models/demo_dit_weights/calibration.json   # the shipped table
    tcpade-trt calibrate tiny-flux --steps 20 --budget 0.35 --out tiny.json

Budget presets (tcpade-fast 0.35, tcpade-slow 0.45) then use the calibrated schedule at every step count
the calibration covers, and the formula (cache/schedule.py) at the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .args import finite_float, positive_int

log = logging.getLogger(__name__)
DEFAULT_RUNS = 4


def add_arguments(p) -> None:
    p.add_argument("model", help="demo | demo-dit | tiny-flux | tiny-wan | tiny-dit | tiny-sd3 | a diffusers "
                                 "FOLDER | an ENGINE folder (onnxruntime)")
    p.add_argument("--steps", type=positive_int, nargs="+", default=[20, 28, 50], help="step counts (default 20 28 50)")
    p.add_argument("--budget", type=finite_float, nargs="+", default=[0.35, 0.45],
                   help="shares of full steps, in (0, 1] (default 0.35 0.45: tcpade-fast, tcpade-slow)")
    p.add_argument("--runs", type=positive_int, default=None,
                   help=f"uncached calibration runs per step count (default {DEFAULT_RUNS}, fewer where an engine "
                        "folder's batch range holds fewer: the runs are one batch)")
    p.add_argument("--validation-seeds", type=positive_int, default=None,
                   help=f"held-out seeds checked closed-loop (default {DEFAULT_RUNS}, likewise)")
    p.add_argument("--out", type=Path, help="write the calibration JSON here (required for a torch model; an "
                                            "engine folder keeps it in its manifest)")


def _subject(name: str):
    """(the model sampled at its size, its engine folder or None): an engine folder at its built shape, a shipped
    demo model at its own size, another model at build's default latent size."""
    from ..runtime.model_io import Sampling

    path = Path(name)
    if (path / "manifest.json").is_file():
        from ..engines.manifest import read_manifest
        from ..runtime.engine_parts import open_engines

        shape = read_manifest(path).shape
        return Sampling(open_engines(path), shape["height"], shape["width"], shape["frames"],
                        shape.get("text_tokens", 8)), path
    from ..models.registry import default_build_shape, load_model

    model = load_model(name)
    height, width, frames = default_build_shape(name, type(model.family))
    return Sampling(model, height, width, frames), None


def _runs_that_fit(folder, subject, given: int | None, option: str) -> int:
    """The runs of one batch: as given, or the default; within an engine folder's batch range (classifier-free
    guidance doubles each run's rows), refused in one sentence when given beyond it."""
    from ..engines.manifest import read_manifest
    from ..errors import ConfigError

    if folder is None:
        return given or DEFAULT_RUNS
    rows = 2 if subject.guidance_scale is not None else 1
    fits = read_manifest(folder, verify_hashes=False).shape["batch_max"] // rows
    if fits < 1:
        raise ConfigError(f"{folder} runs at most {fits * rows} rows per call, fewer than one guided run needs "
                          f"({rows}); rebuild it with a larger --batch-max.")
    if given is not None and given > fits:
        raise ConfigError(f"{option} {given} does not fit {folder}: its batch range holds {fits} run(s) "
                          f"({rows} row(s) each); give {option} {fits} or less, or rebuild with a larger --batch-max.")
    return given or min(DEFAULT_RUNS, fits)


def run(args) -> int:
    from ..engines.manifest import read_manifest
    from ..errors import ConfigError
    from ..paths import check_output_file, write_text_atomic
    from ..runtime.schedule_calibration import calibrate

    for b in args.budget:
        if not 0 < b <= 1:
            raise ConfigError(f"--budget takes shares of full steps in (0, 1] (got {b}).")
    if args.out is not None and (args.out.is_dir() or args.out.suffix != ".json"):
        raise ConfigError(f"--out names the calibration file to write, e.g. calibration.json (got {args.out}).")
    if min(args.steps) < 2:
        raise ConfigError(f"--steps takes step counts of 2 or more (got {min(args.steps)}).")
    subject, folder = _subject(args.model)
    if folder is None and args.out is None:
        raise ConfigError("a torch model has no folder of ours to keep the calibration in: pass --out FILE.json.")
    args.runs, args.validation_seeds = (_runs_that_fit(folder, subject, given, option) for given, option in
                                        ((args.runs, "--runs"), (args.validation_seeds, "--validation-seeds")))
    if args.out is not None:
        check_output_file(args.out, (".json",), "--out")
    if folder is not None:  # before the runs, not after them: the manifest is rewritten in place
        check_output_file(folder / "manifest.json", (".json",), f"the engine folder {folder}:")
        built = (folder / "manifest.json").read_bytes()
    logging.getLogger("tcpade_trt").setLevel(logging.INFO)
    result = calibrate(subject, steps=tuple(args.steps), budgets=tuple(args.budget), runs=args.runs,
                       validation_seeds=args.validation_seeds)
    print(f"calibrated {args.model} in {result.seconds:.0f} s (schedules chosen on seeds "
          f"{result.seeds['calibration']}, validated on seeds {result.seeds['validation']}); PSNR of TC-Padé vs the "
          "uncached run, validation seeds:")
    print("| steps | budget | full | calibrated full steps | PSNR calibrated | PSNR formula schedule | kept |")
    print("|---|---|---|---|---|---|---|")
    for row in result.validation:
        print(f"| {row['steps']} | {row['budget']} | {row['full']} | {','.join(map(str, row['calibrated_steps']))} | "
              f"{row['calibrated_psnr_db']:.2f} dB | {row['formula_psnr_db']:.2f} dB | {row['kept']} |")
    data = result.as_dict()
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(data, indent=1))
        print(f"wrote {args.out} (use: apply_cache(pipe, 'tcpade-fast', calibration='{args.out}'), or "
              "make_policy(spec, calibrated=load_calibration(FILE)))")
    if folder is not None:
        if (folder / "manifest.json").read_bytes() != built:  # e.g. `build --out` replaced it meanwhile
            raise ConfigError(f"{folder} changed while calibrating (rebuilt?); its engines are not the ones measured: "
                              f"calibrate it again.")
        manifest = read_manifest(folder)
        manifest.calibration = data
        manifest.write(folder)
        print(f"stored in {folder}/manifest.json: the runtime uses it for every budget preset at these step counts")
    return 0
