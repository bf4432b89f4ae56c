"""OpenVINO two ways on one graph: its own runtime against onnxruntime's OpenVINO execution provider, beside
onnxruntime's CPU provider, so that `engines/openvino/` keeps the faster path (issue 25).

onnxruntime-openvino replaces onnxruntime in an environment, so this runs in a venv of its own and imports
nothing of tcpade_trt (no torch):

    python3.11 -m venv /tmp/ovep && /tmp/ovep/bin/pip install onnxruntime-openvino==1.24.1 openvino==2026.4.1
    /tmp/ovep/bin/python scripts/openvino_paths.py ENGINES/demo-openvino-fp32/blocks.onnx \
        --batches 1 16 --markdown docs/openvino-paths.md

The graph must hold standard ONNX ops (an `openvino` folder's, or a build with --no-ort-fusions). Inputs are
random, every symbolic dimension the batch; each path's output is compared with onnxruntime's CPU provider.
Times: median of --repeats runs after two warm-up runs, the paths taking turns within each round.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_text() -> str:
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
            elif line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores ({', '.join(f for f in FEATURES if f in flags) or 'no AVX2'})"


def random_feeds(inputs, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for i in inputs:
        shape = [d if isinstance(d, int) else batch for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def paths(model: Path, threads: int) -> dict:
    """Path name -> run(feeds) -> first output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    runs = {}
    cpu = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    runs["onnxruntime CPU provider"] = lambda feeds: cpu.run(None, feeds)[0]
    if "OpenVINOExecutionProvider" in ort.get_available_providers():
        ep = ort.InferenceSession(str(model), options, providers=[
            ("OpenVINOExecutionProvider", {"device_type": "CPU", "precision": "FP32",
                                           "num_of_threads": str(threads)})])
        runs["onnxruntime OpenVINO provider (FP32)"] = lambda feeds: ep.run(None, feeds)[0]
    try:
        import openvino as ov
    except ImportError:
        return runs
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(model)), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    runs[f"OpenVINO {ov.get_version().split('-')[0]} runtime (f32)"] = \
        lambda feeds: next(iter(request.infer(feeds).values()))
    return runs


def measure(model: Path, batches, repeats: int, threads: int) -> list[dict]:
    import onnxruntime as ort

    runs = paths(model, threads)
    inputs = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()
    rows = []
    for batch in batches:
        feeds = random_feeds(inputs, batch)
        reference = runs["onnxruntime CPU provider"](feeds)
        errors = {name: float(np.linalg.norm(run(feeds) - reference) / np.linalg.norm(reference))
                  for name, run in runs.items()}
        for run in runs.values():  # second warm-up
            run(feeds)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run(feeds)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["onnxruntime CPU provider"])
        for name in runs:
            ms = statistics.median(times[name])
            rows.append({"batch": batch, "path": name, "ms": ms * 1000, "vs_cpu": base / ms,
                         "rel_err": errors[name]})
            print(f"batch {batch:>3}  {name:<40} {ms * 1000:8.1f} ms  {base / ms:5.2f}x  rel err {errors[name]:.1e}",
                  flush=True)
    return rows


def markdown(model: Path, rows: list[dict], command: str) -> str:
    import onnxruntime as ort

    lines = ["# OpenVINO: its own runtime or onnxruntime's OpenVINO execution provider", "",
             f"Made by `{command}` on {cpu_text()}, onnxruntime {ort.__version__} "
             f"({', '.join(ort.get_available_providers())}); graph `{model.name}` (standard ONNX ops), random "
             "inputs. Median of the timed runs after warm-up, the paths taking turns; relative error against "
             "onnxruntime's CPU provider.", "",
             "| batch | path | ms per call | vs onnxruntime CPU | relative error |", "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['path']} | {r['ms']:.1f} | {r['vs_cpu']:.2f}x | {r['rel_err']:.1e} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="an ONNX graph of standard ops (e.g. an openvino folder's blocks.onnx)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--markdown", type=Path, help="write the table here")
    args = p.parse_args(argv)
    if not args.model.is_file():
        p.error(f"{args.model} is not a file.")
    rows = measure(args.model, args.batches, args.repeats, args.threads)
    if args.markdown:
        command = "python scripts/openvino_paths.py " + " ".join(argv if argv is not None else os.sys.argv[1:])
        args.markdown.write_text(markdown(args.model, rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
