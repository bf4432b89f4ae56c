"""Real sizes on a CPU: random weights at the released architectures, built and run through the public commands.

    python scripts/realsize.py --out realsize-out --markdown docs/realsize.md [--models dit wan flux]

For each model a diffusers folder with random weights is saved (the released config; FLUX.1 at its full
width with 2 of its 19 double-stream and 4 of its 38 single-stream blocks, so that it fits this
machine), then, each as its own `tcpade-trt` process under GNU time (wall time, peak resident memory):
`build` fp32, `build` int8 (dynamic, reusing the fp32 export), `inspect` of both, and `generate` of 20
steps uncached and with tcpade-fast on each folder. Recorded per model: parameters and weight bytes,
build stages and their times (the manifest's build log), peak memory of every command and its ratio
to the weights, folder sizes, and whether every folder holds exactly the files its manifest lists.
Results go to OUT/realsize.json and, with --markdown, a page of tables. Weights are random, so image
quality means nothing here; what is measured is that every released size builds, checks and runs.

    python scripts/realsize.py --tensorrt --out realsize-out --markdown docs/realsize.md [--models dit flux]

builds the TensorRT recipes instead (ModelOpt INT8 SmoothQuant and FP8) of DiT-XL/2 and FLUX.1 at full width
through the TensorRT stand-in on its emulated GPU (scripts/with_tensorrt_standin.py): the model loaded in bf16
"on the GPU" (host memory here), calibrated, quantized, exported to ONNX, parsed and built into plans, each plan
checked against torch, and a 4-step generation on the plans; peak memory and times under GNU time, into the
page's TensorRT section (the rest of the page is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the released architectures (diffusers configs), the latent size each runs at here, and how it is conditioned
MODELS = {
    "dit": {
        "title": "DiT-XL/2 (ImageNet 256x256, 675M)", "class": "DiTTransformer2DModel",
        "config": dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                       sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
                       norm_elementwise_affine=False),
        "latent": (32, 32, 1), "text_tokens": 8, "batch_max": 2,
        "generate": ["--class", "207", "--guidance-scale", "4"],
        "image": "256x256",
    },
    "wan": {
        "title": "Wan2.1-T2V-1.3B (5 latent frames of 16x16)", "class": "WanTransformer3DModel",
        "config": dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                       out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                       qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
        "latent": (16, 16, 5), "text_tokens": 32, "batch_max": 2, "generate": ["--guidance-scale", "5"],
        "image": "128x128, 17 frames",
    },
    "flux": {
        "title": "FLUX.1-dev width (3072, 24 heads), 2 double + 4 single blocks", "class": "FluxTransformer2DModel",
        "config": dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       guidance_embeds=True, axes_dims_rope=(16, 56, 56)),
        "latent": (32, 32, 1), "text_tokens": 32, "batch_max": 1, "generate": [],
        "image": "256x256",
    },
}


def run(cmd: list[str], log: Path, may_fail: bool = False) -> dict:
    """One command under GNU time: exit status, wall seconds, peak RSS (bytes) and its output. A failure stops the
    run, unless ``may_fail`` (then the result carries ``failed``: the exit status or the signal, and the last line)."""
    stats = log.with_suffix(".time")
    started = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(["/usr/bin/time", "-f", "%M %e", "-o", str(stats), *cmd], stdout=out,
                             stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rss_kb, _ = stats.read_text().split()[-2:]
    text = log.read_text()
    result = {"seconds": round(time.perf_counter() - started, 1), "peak_rss_bytes": int(rss_kb) * 1024, "output": text}
    if rc != 0:
        if not may_fail:
            sys.exit(f"{' '.join(cmd)} failed (exit {rc}); its output is in {log}:\n{text[-2000:]}")
        # GNU time says "Command terminated by signal 9" for a process the kernel's OOM killer ended
        signal = next((line for line in stats.read_text().splitlines() if "signal" in line), None)
        result["failed"] = signal or (text.strip().splitlines() or [f"exit {rc}"])[-1]
    return result


def save_random_model(name: str, spec: dict, folder: Path) -> dict:
    import diffusers
    import torch

    torch.manual_seed(0)
    started = time.perf_counter()
    model = getattr(diffusers, spec["class"])(**spec["config"]).eval()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)  # safetensors, fp32
    weight_bytes = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    del model
    return {"parameters": params, "weight_bytes": weight_bytes, "seconds": round(time.perf_counter() - started, 1)}


def folder_report(folder: Path) -> dict:
    from tcpade_trt.engines.manifest import MANIFEST, read_manifest

    manifest = read_manifest(folder)
    files = sorted(p.name for p in folder.iterdir())
    listed = sorted([MANIFEST, *manifest.files()])
    return {"bytes": sum(p.stat().st_size for p in folder.iterdir()), "files": len(files), "exact": files == listed,
            "extra": sorted(set(files) - set(listed)), "stages": manifest.build_log,
            "blocks_check_error": manifest.parts["blocks"].check_error, "blocks_file": manifest.parts["blocks"].file,
            "blocks_extra_files": manifest.parts["blocks"].extra_files}


def measure(name: str, out: Path) -> dict:
    spec = MODELS[name]
    cli = [sys.executable, "-m", "tcpade_trt.cli"]
    models, engines, logs = out / "models" / name, out / "engines", out / "logs"
    for d in (engines, logs):
        d.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] saving a random {spec['title']}", flush=True)
    shutil.rmtree(models, ignore_errors=True)
    result = {"title": spec["title"], "image": spec["image"], "model": save_random_model(name, spec, models)}
    h, w, f = spec["latent"]
    shape = ["--height", str(h), "--width", str(w), "--frames", str(f), "--text-tokens", str(spec["text_tokens"]),
             "--batch-max", str(spec["batch_max"]), "--batch-opt", str(spec["batch_max"])]
    fp32, int8 = engines / f"{name}-fp32", engines / f"{name}-int8"
    builds = {"fp32": [str(models), "--out", str(fp32), *shape, "--force"],
              "int8": [str(models), "--out", str(int8), *shape, "--precision", "int8", "--reuse-onnx", str(fp32),
                       "--force"]}
    result["builds"] = {}
    for precision, args in builds.items():
        print(f"[{name}] build {precision}", flush=True)
        command = run([*cli, "build", *args], logs / f"{name}-build-{precision}.log")
        folder = fp32 if precision == "fp32" else int8
        inspect = run([*cli, "inspect", str(folder)], logs / f"{name}-inspect-{precision}.log")
        result["builds"][precision] = {**{k: v for k, v in command.items() if k != "output"},
                                       "folder": folder_report(folder), "inspect_ok": "valid" in inspect["output"]}
    result["generate"] = {}
    for precision, folder in (("fp32", fp32), ("int8", int8)):
        for cache in ("none", "tcpade-fast"):
            print(f"[{name}] generate {precision} {cache}", flush=True)
            suffix = "gif" if name == "wan" else "png"
            command = run([*cli, "generate", "--engines", str(folder), "--steps", "20", "--cache", cache, "--seed", "0",
                           "--out", str(out / "images" / f"{name}-{precision}-{cache}.{suffix}"), *spec["generate"]],
                          logs / f"{name}-generate-{precision}-{cache}.log")
            full = re.search(r"full steps (\d+)/20, ([\d.]+) s", command["output"])
            result["generate"][f"{precision} {cache}"] = {
                "seconds": command["seconds"], "peak_rss_bytes": command["peak_rss_bytes"],
                "full_steps": int(full.group(1)), "generation_seconds": float(full.group(2))}
    weights = result["model"]["weight_bytes"]
    for entry in [*result["builds"].values(), *result["generate"].values()]:
        entry["peak_over_weights"] = round(entry["peak_rss_bytes"] / weights, 2)
    shutil.rmtree(models)  # gigabytes; the engines folders stay for a look
    return result


TENSORRT_MODELS = ("dit", "flux")
TENSORRT_RECIPES = ("int8", "fp8")
STANDIN = ROOT / "scripts" / "with_tensorrt_standin.py"
SECTION = ("<!-- tensorrt recipes: scripts/realsize.py --tensorrt -->", "<!-- /tensorrt recipes -->")


def measure_tensorrt(name: str, out: Path) -> dict:
    """The TensorRT recipes of one model, each a build and a 4-step generation through the stand-in."""
    from tcpade_trt.engines.manifest import read_manifest

    spec = MODELS[name]
    models, engines, logs = out / "models" / name, out / "engines", out / "logs"
    for d in (engines, logs):
        d.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] saving a random {spec['title']}", flush=True)
    shutil.rmtree(models, ignore_errors=True)
    result = {"title": spec["title"], "image": spec["image"], "model": save_random_model(name, spec, models),
              "recipes": {}}
    h, w, f = spec["latent"]
    shape = ["--height", str(h), "--width", str(w), "--frames", str(f), "--text-tokens", str(spec["text_tokens"]),
             "--batch-max", str(spec["batch_max"]), "--batch-opt", str(spec["batch_max"])]
    for precision in TENSORRT_RECIPES:
        folder = engines / f"{name}-trt-{precision}"
        print(f"[{name}] TensorRT {precision} build (stand-in)", flush=True)
        build = run([sys.executable, str(STANDIN), "build", str(models), "--out", str(folder), "--backend", "tensorrt",
                     "--precision", precision, "--calibration-samples", "2", "--calibration-steps", "4", *shape,
                     "--force"], logs / f"{name}-trt-build-{precision}.log", may_fail=True)
        if "failed" in build:  # recorded, and the next recipe goes on
            result["recipes"][precision] = {"failed": build["failed"], "build_seconds": build["seconds"],
                                            "build_peak_rss_bytes": build["peak_rss_bytes"]}
            continue
        print(f"[{name}] generate on the {precision} plans (stand-in)", flush=True)
        generate = run([sys.executable, str(STANDIN), "generate", "--engines", str(folder), "--steps", "4",
                        "--out", str(out / "images" / f"{name}-trt-{precision}.png"), *spec["generate"]],
                       logs / f"{name}-trt-generate-{precision}.log")
        manifest = read_manifest(folder)
        result["recipes"][precision] = {
            "build_seconds": build["seconds"], "build_peak_rss_bytes": build["peak_rss_bytes"],
            "generate_seconds": generate["seconds"], "generate_peak_rss_bytes": generate["peak_rss_bytes"],
            "folder": folder_report(folder), "plan_errors": {n: p.check_error for n, p in manifest.parts.items()},
            "method": manifest.quantization["method"], "graph_dtype": manifest.quantization.get("graph_dtype"),
            "device": manifest.options.get("device"),
            "blocks_plan_bytes": (folder / manifest.parts["blocks"].file).stat().st_size}
    shutil.rmtree(models)
    return result


def tensorrt_markdown(results: dict) -> str:
    lines = [SECTION[0], "## TensorRT recipes at full width (through the TensorRT stand-in)", "",
             "Made by `python scripts/realsize.py --tensorrt --out realsize-out --markdown docs/realsize.md` on "
             f"{results['machine']}, {results['date']}; {results['total_minutes']:.0f} minutes in all. Each build ran "
             "the TensorRT path as on a GPU, through the test suite's TensorRT stand-in on its emulated GPU "
             "(`scripts/with_tensorrt_standin.py`), whose \"GPU memory\" is host memory: the model loaded in bf16, "
             "ModelOpt's recipe calibrated on 2 trajectories of 4 steps, the quantized blocks exported by the "
             "TorchScript exporter and checked by path, parsed against onnx-tensorrt's operator table, built into "
             "plans (a plan here is its ONNX graph run by onnxruntime: no TensorRT timing), every plan checked "
             "against torch, then 4 steps generated on the plans. Peak memory is the process's peak resident set "
             "(the host side of a GPU build and the emulated GPU's memory together).", "",
             "| model | recipe (graph dtype) | build | peak memory, build (x fp32 weights) | blocks plan "
             "| blocks plan vs torch | worst other plan | generate, 4 steps | files = manifest |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["models"].values():
        weights = r["model"]["weight_bytes"]
        for precision, x in r["recipes"].items():
            if "failed" in x:
                lines.append(f"| {r['title']} | {precision} | **failed** after {x['build_seconds']:.0f} s: "
                             f"{x['failed']} | {gib(x['build_peak_rss_bytes'])} "
                             f"({x['build_peak_rss_bytes'] / weights:.2f}x) | - | - | - | - | - |")
                continue
            others = max(e for n, e in x["plan_errors"].items() if n != "blocks" and e is not None)
            lines.append(f"| {r['title']} | {precision} ({x['graph_dtype']}) | {x['build_seconds']:.0f} s | "
                         f"{gib(x['build_peak_rss_bytes'])} ({x['build_peak_rss_bytes'] / weights:.2f}x) | "
                         f"{gib(x['blocks_plan_bytes'])} | {x['plan_errors']['blocks']:.1e} | {others:.1e} | "
                         f"{x['generate_seconds']:.0f} s | {'yes' if x['folder']['exact'] else 'NO'} |")
    lines += ["", "Build stages (seconds):", ""]
    for name, r in results["models"].items():
        for precision, x in r["recipes"].items():
            if "failed" in x:
                continue
            stages = ", ".join(f"{s['stage']} {s['seconds']:.0f}" for s in x["folder"]["stages"])
            lines.append(f"- {name} {precision}: {stages}")
    return "\n".join([*lines, SECTION[1]]) + "\n"


def with_section(page: str, section: str) -> str:
    """``page`` with its TensorRT section replaced by (or, without one, followed by) ``section``."""
    if SECTION[0] in page and SECTION[1] in page:
        before, rest = page.split(SECTION[0], 1)
        return before + section.rstrip("\n") + rest.split(SECTION[1], 1)[1]
    return page.rstrip("\n") + "\n\n" + section


def machine() -> str:
    import onnxruntime
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))) / (1 << 20)
    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, Python {platform.python_version()}")


def gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def markdown(results: dict) -> str:
    lines = ["# Real sizes on a CPU", "",
             "Made by `python scripts/realsize.py --out realsize-out --markdown docs/realsize.md` on "
             f"{results['machine']}, {results['date']}; {results['total_minutes']:.0f} minutes in all. Random weights "
             "at the released architectures, so image quality means nothing here: what is measured is that each "
             "size builds (every part checked against torch), loads, and generates through the public commands, "
             "what that costs, and that each engine folder holds exactly the files its manifest lists.", ""]
    lines += ["| model | parameters | weights (fp32) | latents | build fp32 | build int8 | peak memory, fp32 build "
              "(x weights) | peak, int8 build | fp32 folder | int8 folder | files = manifest |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        b = r["builds"]
        h, w, f = MODELS[name]["latent"]
        lines.append(
            f"| {r['title']} | {r['model']['parameters'] / 1e6:.0f}M | {gib(r['model']['weight_bytes'])} | "
            f"{h}x{w}x{f} ({r['image']}) | {b['fp32']['seconds']:.0f} s | {b['int8']['seconds']:.0f} s | "
            f"{gib(b['fp32']['peak_rss_bytes'])} ({b['fp32']['peak_over_weights']}x) | "
            f"{gib(b['int8']['peak_rss_bytes'])} ({b['int8']['peak_over_weights']}x) | "
            f"{gib(b['fp32']['folder']['bytes'])} | {gib(b['int8']['folder']['bytes'])} | "
            f"{'yes' if b['fp32']['folder']['exact'] and b['int8']['folder']['exact'] else 'NO'} |")
    lines += ["", "Generation, 20 steps (one process each: loading the folder included in the wall time; the "
              "generation's own time as `generate` prints it):", "",
              "| model | precision | cache | full steps | generation | command wall time | peak memory (x weights) |",
              "|---|---|---|---|---|---|---|"]
    for name, r in results["models"].items():
        for key, g in r["generate"].items():
            precision, cache = key.split()
            lines.append(f"| {name} | {precision} | {cache} | {g['full_steps']}/20 | {g['generation_seconds']:.1f} s | "
                         f"{g['seconds']:.0f} s | {gib(g['peak_rss_bytes'])} ({g['peak_over_weights']}x) |")
    lines += ["", "Build stages (seconds, from each folder's manifest):", ""]
    for name, r in results["models"].items():
        for precision, b in r["builds"].items():
            stages = ", ".join(f"{s['stage']} {s['seconds']:.0f}" for s in b["folder"]["stages"])
            lines.append(f"- {name} {precision}: {stages}; blocks check error {b['folder']['blocks_check_error']:.1e}; "
                         f"blocks data file {', '.join(b['folder']['blocks_extra_files']) or 'none (under 2 GB)'}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("realsize-out"))
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--markdown", type=Path, help="write the tables to this file (e.g. docs/realsize.md)")
    p.add_argument("--tensorrt", action="store_true",
                   help="the TensorRT recipes (INT8, FP8) through the TensorRT stand-in instead (dit, flux)")
    args = p.parse_args()
    if not Path("/usr/bin/time").is_file():
        sys.exit("GNU time (/usr/bin/time) measures peak memory here: apt-get install time")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tensorrt:
        return main_tensorrt(args)
    json_path = args.out / "realsize.json"
    # models measured by an earlier run into the same OUT stay (a failure late in a long run loses nothing)
    earlier = json.loads(json_path.read_text())["models"] if json_path.is_file() else {}
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "models": {k: v for k, v in earlier.items() if k not in args.models}}
    for name in args.models:
        model_started = time.perf_counter()
        results["models"][name] = measure(name, args.out)
        results["models"][name]["minutes"] = round((time.perf_counter() - model_started) / 60, 1)
        results["total_minutes"] = sum(m.get("minutes", 0) for m in results["models"].values())
        json_path.write_text(json.dumps(results, indent=1))  # what is measured so far survives a later failure
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        page = args.markdown.read_text() if args.markdown.is_file() else ""
        kept = page[page.index(SECTION[0]):page.index(SECTION[1]) + len(SECTION[1])] if SECTION[0] in page else ""
        args.markdown.write_text(with_section(markdown(results), kept) if kept else markdown(results))
    print(markdown(results))
    return 0


def main_tensorrt(args) -> int:
    json_path = args.out / "realsize-tensorrt.json"
    models = [m for m in args.models if m in TENSORRT_MODELS]
    earlier = json.loads(json_path.read_text())["models"] if json_path.is_file() else {}
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "models": {k: v for k, v in earlier.items() if k not in models}}
    for name in models:
        started = time.perf_counter()
        results["models"][name] = measure_tensorrt(name, args.out)
        results["models"][name]["minutes"] = round((time.perf_counter() - started) / 60, 1)
        results["total_minutes"] = sum(m.get("minutes", 0) for m in results["models"].values())
        json_path.write_text(json.dumps(results, indent=1))  # what is measured so far survives a later failure
    section = tensorrt_markdown(results)
    if args.markdown:
        page = args.markdown.read_text() if args.markdown.is_file() else ""
        args.markdown.write_text(with_section(page, section))
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
