"""The project's GPU check: one prepared run of about 5 minutes on one H100 / H200 that needs no network.

    python scripts/gpu_check.py --out gpu-check-out          (scripts/device_gpu_bench.sh wraps it)

Each step runs as its own process with a time limit and becomes one row of a verdict table (OUT/verdict.md,
OUT/verdict.json; every step's output in OUT/logs/), most telling first:

1. the machine: GPU, driver, torch and CUDA, TensorRT, onnxruntime's providers, ModelOpt, transformers, Ray;
2. where TensorRT is installed: `build --backend tensorrt` on the GPU (--device cuda: the model in the blocks'
   dtype, ModelOpt's recipes there, every plan checked against torch) of tiny-dit at fp8, bf16 and int8, of a tiny
   FLUX pipeline folder at fp8 (calibrated on prompts through its text encoders; by name where transformers is
   missing) and tiny-flux at fp32; `generate` on each, with and without --cuda-graphs, and from a prompt through
   the pipeline's text encoders and VAE on the GPU; the server's generation path (serve/worker.Generator) on the
   DiT fp8 folder, and `tcpade-trt serve` with one request where Ray is installed;
3. without TensorRT (this project's lent GPU machines have none, and its wheels are too large to carry): the same
   builds up to TensorRT's builder call on the real GPU - load in bf16 on CUDA, calibration, ModelOpt's
   quantization and the TorchScript export there, the cheap parts from their fp32 copy - with the ONNX handed to
   TensorRT checked against onnx-tensorrt's operator table instead;
4. `gpu-bench` on the device: a FLUX.1-dev-size transformer (random weights) at 512x512, 20 steps, bf16 eager
   and FP8 linears, uncached and tcpade-fast, host syncs counted; plus the TensorRT folders of step 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tcpade_trt.cli"]
# (name, model, precision): most telling first; "pipeline" is a tiny FLUX pipeline folder (tests/prompt_pipelines)
TRT_BUILDS = [("dit-fp8", "tiny-dit", "fp8"), ("flux-pipeline-fp8", "pipeline", "fp8"),
              ("dit-bf16", "tiny-dit", "bf16"), ("dit-int8", "tiny-dit", "int8"), ("flux-fp32", "tiny-flux", "fp32")]
GENERATE = {"tiny-dit": ["--class", "3"], "tiny-flux": [], "pipeline": ["--prompt", "a red fox"]}
SERVE_ONE = """
import sys
from tcpade_trt.serve.request import GenerateRequest
from tcpade_trt.serve.worker import Generator
result = Generator(sys.argv[1]).generate([GenerateRequest(3, 1, 6, "tcpade-fast", None, "png")])[0]
print("served a", result.media_type, len(result.image), "bytes,", result.full_steps, "full steps")
"""
MAKE_PIPELINE = """
import sys
sys.path.insert(0, ".")
from tests.prompt_pipelines import flux_pipeline_folder
from pathlib import Path
print(flux_pipeline_folder(Path(sys.argv[1])))
"""


def step(rows: list, logs: Path, name: str, cmd: list[str], timeout: int, expect: str | None = None) -> bool:
    """Run ``cmd``; a row: passed (exit 0 and ``expect`` in the output), seconds, the last line said."""
    log = logs / (name.replace(" ", "_").replace("/", "-") + ".log")
    started = time.perf_counter()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout} s", -1
    log.write_text(" ".join(cmd) + "\n\n" + (output if isinstance(output, str) else output.decode(errors="replace")))
    lines = [line for line in str(output).splitlines() if line.strip()]
    ok = code == 0 and (expect is None or expect in str(output))
    rows.append({"step": name, "ok": ok, "seconds": round(time.perf_counter() - started, 1),
                 "said": (lines[-1] if lines else "")[:160], "log": str(log.relative_to(logs.parent))})
    print(f"{'PASS' if ok else 'FAIL'}  {name}  ({rows[-1]['seconds']} s)  {rows[-1]['said']}", flush=True)
    return ok


def machine() -> dict:
    info = {}
    try:
        info["nvidia-smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                             "--format=csv,noheader"], capture_output=True, text=True,
                                            timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia-smi"] = "missing"
    probe = ("import json, torch\n"
             "out = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpu': torch.cuda.is_available() and "
             "torch.cuda.get_device_name(0), 'capability': torch.cuda.is_available() and "
             "'.'.join(map(str, torch.cuda.get_device_capability(0)))}\n"
             "for name in ('tensorrt', 'onnxruntime', 'modelopt', 'diffusers', 'onnx', 'transformers', 'ray'):\n"
             "    try:\n"
             "        module = __import__(name)\n"
             "        out[name] = getattr(module, '__version__', '?')\n"
             "    except Exception as exc:\n"
             "        out[name] = None\n"
             "try:\n"
             "    import onnxruntime\n"
             "    out['onnxruntime providers'] = onnxruntime.get_available_providers()\n"
             "except Exception:\n"
             "    pass\n"
             "print(json.dumps(out))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    info.update(json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else
                {"probe": result.stderr[-500:]})
    return info


RECORD_PLANS = """
import collections, json, sys
import onnx
from tcpade_trt.engines.tensorrt import build as trt_backend
from tcpade_trt.builder import BuildOptions, build_engines
from tcpade_trt.export.parts import BuildShape
sys.path.insert(0, ".")
from tests.fake_tensorrt import parser_errors  # onnx-tensorrt's operator table (tests/fixtures)

class Handed(Exception):
    pass

def record(folder, entries, options):
    graph = onnx.load(str(folder / entries["blocks"].file), load_external_data=False)
    errors = parser_errors(graph, "10.13.0")
    ops = collections.Counter(n.op_type for n in graph.node)
    print(json.dumps({"blocks_inputs": {i.name: i.type.tensor_type.elem_type for i in graph.input},
                      "qdq": ops["QuantizeLinear"], "parser_errors": errors[:3]}))
    raise Handed

trt_backend.check_build_machine = lambda precision: None  # no TensorRT here: stop where it would take over
trt_backend.build_plans = record
try:
    build_engines(sys.argv[1], sys.argv[2], BuildOptions(backend="tensorrt", precision=sys.argv[3], device="cuda",
                  shape=BuildShape(8, 8, batch_max=4), calibration_samples=2, calibration_steps=4), progress=False)
except Exception as exc:  # the build wraps what a stage raises in one sentence (BuildError from Handed)
    if not isinstance(exc, Handed) and not isinstance(exc.__cause__, Handed):
        raise
    print("handed to TensorRT's builder")
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu-check-out"))
    p.add_argument("--bench-resolution", type=int, default=512)
    args = p.parse_args()
    out = args.out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine()
    print(json.dumps(info), flush=True)
    rows: list[dict] = []
    folders = []
    pipeline = None
    if info.get("transformers"):
        made = subprocess.run([sys.executable, "-c", MAKE_PIPELINE, str(out / "pipeline-src")], capture_output=True,
                              text=True, cwd=ROOT)
        pipeline = made.stdout.strip().splitlines()[-1] if made.returncode == 0 else None
    if info.get("tensorrt"):
        for name, model, precision in TRT_BUILDS:
            source = pipeline if model == "pipeline" else model
            if source is None:
                source, model = "tiny-flux", "tiny-flux"  # no transformers here: the same build by name
            folder = out / "engines" / name
            built = step(rows, logs, f"build {name} (tensorrt, on the GPU)",
                         [*CLI, "build", source, "--out", str(folder), "--backend", "tensorrt", "--precision",
                          precision, "--device", "cuda", "--height", "8", "--width", "8", "--text-tokens", "8",
                          "--calibration-samples", "2", "--calibration-steps", "6", "--force"], 240, "done in")
            if not built:
                continue
            folders.append(folder)
            flags = [*GENERATE[model], *(["--pipeline", source] if model == "pipeline" else [])]
            for graphs in ([], ["--cuda-graphs"]):
                step(rows, logs, f"generate {name}{' cuda-graphs' if graphs else ''}",
                     [*CLI, "generate", "--engines", str(folder), "--steps", "6", *graphs, *flags,
                      "--out", str(out / f"{name}{'-graphs' if graphs else ''}.png")], 120, "full steps")
        dit = out / "engines" / "dit-fp8"
        if dit.is_dir():
            step(rows, logs, "serve path: Generator on dit-fp8", [sys.executable, "-c", SERVE_ONE, str(dit)], 120,
                 "served a image/png")
    else:
        # the pipeline folder too: prompt calibration through its text encoders on CUDA (the second review's crash)
        handed = [(model, model, precision) for model in ("tiny-dit", "tiny-flux") for precision in ("bf16", "fp8",
                                                                                                      "int8")]
        handed += [("flux-pipeline", pipeline, "fp8")] if pipeline else []
        for name, source, precision in handed:
            step(rows, logs, f"build {name} {precision} on CUDA up to TensorRT's builder (no TensorRT)",
                 [sys.executable, "-c", RECORD_PLANS, source, str(out / "handed" / f"{name}-{precision}"),
                  precision], 240, "handed to TensorRT's builder")
    step(rows, logs, "gpu-bench flux-dev size (eager, fp8 x none, tcpade-fast)",
         [*CLI, "gpu-bench", "--resolution", str(args.bench_resolution), "--modes", "eager", "fp8", "--repeats", "2",
          "--out", str(out / "gpu-bench.json"), *(["--engines", *map(str, folders)] if folders else [])], 420,
         "speedup")
    verdict = {"machine": info, "minutes": round((time.perf_counter() - started) / 60, 1), "rows": rows}
    (out / "verdict.json").write_text(json.dumps(verdict, indent=1))
    table = ["| step | verdict | seconds | last line |", "|---|---|---|---|"]
    table += [f"| {r['step']} | {'pass' if r['ok'] else '**FAIL**'} | {r['seconds']} | {r['said']} |" for r in rows]
    text = (f"GPU check on {info.get('gpu') or info.get('nvidia-smi')}, torch {info.get('torch')} (CUDA "
            f"{info.get('cuda')}), TensorRT {info.get('tensorrt') or 'not installed'}, {verdict['minutes']} min\n\n"
            + "\n".join(table) + "\n")
    (out / "verdict.md").write_text(text)
    print("\n" + text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
