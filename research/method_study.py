"""The method table: TC-Padé against its baselines and independent peers at several step counts and budgets.

    python -m research.method_study --out docs/method --markdown docs/method.md
    python -m research.method_study --model demo-dit --out docs/method-dit --markdown docs/method-dit.md

On a shipped trained model (demo: FLUX, rectified flow, Euler; demo-dit: DiT, epsilon prediction, DDIM with
classifier-free guidance 4.0), eager torch, 16 seeds (every class twice), for each step count T and budget b
(the share of full steps: 0.35 = tcpade-fast, 0.45 = tcpade-slow):

- TC-Padé (the default: rational fit in the sampler's time) on the model's calibrated schedule and on the
  formula schedule of the same budget (``calibration=false``);
- on the calibrated full steps, the same steps for every interval method: TaylorSeer order 1 and 2 (this
  project's, on the full-block residual), reuse, and TC-Padé with the step index as its time axis (what the
  sampler's time adds);
- the paper's equations and the released reference code as variants on the same steps;
- independent peers on the same model, each charged its measured compute and each swept over its own knobs, so
  it is compared at its best: diffusers' TaylorSeer hook (what it predicts: attention, attention and feed-forward,
  or the model output; interval, warm-up, order), FirstBlockCache and MagCache (thresholds, MagCache's longest
  skip), and cache-dit where it is installed (research/cachedit_peer.py: thresholds, and its static schedules on
  TC-Padé's full steps).

Quality: PSNR and SSIM of each final image against the uncached image of the same seed (mean over seeds);
compute: the multiply-accumulates of the block linears each run really executed (research/compute.py), in
units of one uncached step, so a peer that skips only part of a step (diffusers' TaylorSeer hook predicts
attention outputs and still runs every feed-forward; FirstBlockCache and cache-dit run their first block
on every step) is charged for what it computes. No timing: this is about what each method's compute buys;
the speed of a full step against a predicted one is in the demo and bench tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tcpade_trt.bench.machine import machine_info
from tcpade_trt.cache import compared_presets
from tcpade_trt.cache.schedule import full_step_count
from tcpade_trt.metrics import psnr, ssim
from tcpade_trt.paths import write_text_atomic

from .compute import BlockMacs, measured

BUDGETS = {0.35: "tcpade-fast", 0.45: "tcpade-slow"}
# the released code's configuration at 20 steps (TCPADE.md): full steps 0-4, 8, 12, 16, 19, phases on
REFERENCE_20 = "0/1/2/3/4/8/12/16/19"


def cache_specs(steps: int, budget: float) -> dict[str, str]:
    """Row name -> cache spec, every interval method on the budget's calibrated full steps unless named."""
    preset = BUDGETS[budget]
    specs = {
        "TC-Padé (default), calibrated steps": preset,
        "TC-Padé (default), formula steps": f"{preset}:calibration=false",
        "TaylorSeer order 1, calibrated steps": f"taylorseer:budget={budget}",
        "TaylorSeer order 1, formula steps": f"taylorseer:budget={budget},calibration=false",
        "TaylorSeer order 2, calibrated steps": f"taylorseer-o2:budget={budget}",
        "reuse, calibrated steps": f"reuse:budget={budget}",
        "TC-Padé in step-index time, calibrated steps": f"{preset}:time=step",
        "paper equations, calibrated steps": f"{preset}:variant=paper",
        "released code (reference variant, phases on), calibrated steps":
            f"{preset}:variant=reference,phase_aware=true",
    }
    # every other method at its own preset (cache/methods/: a new method enters the study by its file alone)
    for name in compared_presets(peers_only=True):
        if not any(spec.split(":")[0] == name for spec in specs.values()):
            specs[f"{name} (its own preset)"] = name
    if steps == 20 and budget == 0.45:  # the released configuration itself, and the default on its steps
        specs["released configuration: reference variant, phases, steps 0-4,8,12,16,19"] = \
            f"tcpade-slow:variant=reference,phase_aware=true,full_steps={REFERENCE_20}"
        specs["TC-Padé (default) on the released configuration's steps"] = f"tcpade-slow:full_steps={REFERENCE_20}"
        specs["TaylorSeer order 1 on the released configuration's steps"] = f"taylorseer:full_steps={REFERENCE_20}"
    return specs


# Each independent peer swept over its own knobs, so it is compared at its best, not at its defaults: the
# summary takes the best configuration of any peer at no more compute than TC-Padé's.
TAYLORSEER_SWEEP = [dict(mode="attention", interval=i, warmup=3, order=1) for i in (2, 3, 4, 5, 6)] + \
    [dict(mode=mode, interval=i, warmup=w, order=o) for mode in ("attention+ff", "output")
     for i in (2, 3, 4, 5, 6) for w in (1, 3) for o in (1, 2)]
FBCACHE_THRESHOLDS = (0.05, 0.1, 0.15, 0.25, 0.4)
MAGCACHE_SWEEP = [dict(threshold=t, max_skip=k) for t in (0.06, 0.12, 0.25, 0.5, 1.0) for k in (2, 4)]
CACHEDIT_THRESHOLDS = (0.15, 0.3, 0.5)


def peer_runs(model, cond, noise, steps: int, full_steps_by_budget: dict[float, list[int]], guidance=None) -> dict:
    """(row name, budget or None) -> a run (SampleResult): every peer over its knobs' sweep, once per step count
    (budget None); cache-dit's static schedules on each budget's TC-Padé full steps."""
    from tcpade_trt.bench.peers import calibrate_magcache, run_peer

    ratios = calibrate_magcache(model, cond, noise, steps, guidance)
    run = lambda name, **knobs: lambda: run_peer(model, name, cond, noise, steps, guidance, **knobs)
    runs = {}
    for k in TAYLORSEER_SWEEP:
        name = (f"diffusers TaylorSeer hook ({k['mode']}, interval {k['interval']}, warm-up {k['warmup']}, "
                f"order {k['order']})")
        runs[name, None] = run("diffusers-taylorseer", **k)
    for threshold in FBCACHE_THRESHOLDS:
        runs[f"diffusers FirstBlockCache (threshold {threshold})", None] = run("diffusers-fbcache", threshold=threshold)
    for k in MAGCACHE_SWEEP:
        runs[f"diffusers MagCache (threshold {k['threshold']}, max skip {k['max_skip']})", None] = \
            run("diffusers-magcache", mag_ratios=ratios, **k)
    from .cachedit_peer import CACHEDIT_PEERS, cachedit_available, run_cachedit

    if not cachedit_available():
        return runs
    for name in CACHEDIT_PEERS:
        short = name.removeprefix("cache-dit-")
        if name.endswith("-static"):  # on TC-Padé's full steps of each budget: the same compute
            for budget, full_steps in full_steps_by_budget.items():
                runs[f"cache-dit {short} (TC-Padé's full steps)", budget] = \
                    lambda name=name, full=full_steps: run_cachedit(model, name, cond, noise, steps, guidance,
                                                                    full_steps=full)
            continue
        for threshold in CACHEDIT_THRESHOLDS:
            runs[f"cache-dit {short} (threshold {threshold})", None] = \
                lambda name=name, t=threshold: run_cachedit(model, name, cond, noise, steps, guidance, threshold=t)
    return runs


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row beats (no more compute, at least the PSNR, one of them strictly), by compute."""
    ordered = sorted(rows, key=lambda r: (r["compute"], -r["psnr_db"]))
    front: list[dict] = []
    for r in ordered:
        if not front or r["psnr_db"] > front[-1]["psnr_db"]:
            front.append(r)
    return front


def block_count(transformer) -> int:
    """Transformer blocks of a FLUX (double + single stream) or DiT model."""
    return sum(len(getattr(transformer, name, ())) for name in ("transformer_blocks", "single_transformer_blocks"))


def study(steps_list=(20, 28, 50), budgets=(0.35, 0.45), seeds: int = 16, peers: bool = True,
          model_name: str = "demo") -> dict:
    from tcpade_trt.bench.subjects import trained_subject
    from tcpade_trt.cache import make_policy
    from tcpade_trt.runtime.sampler import sample

    subject = trained_subject(model_name)
    model, guidance = subject.torch_model, subject.guidance_scale
    cond, noise = subject.inputs(seeds)  # seeds 0.., class = seed % 8
    images = lambda latents: subject.quality_space(latents, latents)  # decoded images in [0, 1]
    blocks = block_count(model.transformer)
    counter = BlockMacs(model.transformer)
    rows = []
    for steps in steps_list:
        uncached, macs = measured(counter, lambda: sample(model, cond, noise, num_steps=steps,
                                                          guidance_scale=guidance))
        reference, step_macs = images(uncached.latents), macs / steps

        def score(name, run, budget, spec=None):
            result, macs = measured(counter, run)
            image = images(result.latents)
            rows.append({"steps": steps, "budget": budget, "method": name, "spec": spec,
                         "full_steps": result.full_steps, "compute": round(macs / step_macs, 2),
                         "psnr_db": round(float(psnr(image, reference).mean()), 2),
                         "ssim": round(float(ssim(image, reference).mean()), 4),
                         "decisions": "".join("F" if d else "." for d in result.decisions)})
            print(f"T={steps} b={budget or '-'} {name}: {rows[-1]['full_steps']} full, compute {rows[-1]['compute']}, "
                  f"{rows[-1]['psnr_db']} dB", flush=True)

        full_steps_by_budget = {}
        for budget in budgets:
            for name, spec in cache_specs(steps, budget).items():
                policy = make_policy(spec, calibrated=model.calibrated)
                score(name, lambda policy=policy: sample(model, cond, noise, num_steps=steps, guidance_scale=guidance,
                                                         policy=policy), budget, spec)
            policy = make_policy(BUDGETS[budget], calibrated=model.calibrated)
            policy.reset(steps)
            full_steps_by_budget[budget] = sorted(policy.anchors)
        if peers:
            for (name, budget), run in peer_runs(model, cond, noise, steps, full_steps_by_budget, guidance).items():
                score(name, run, budget)
    return {"model": model_name, "family": model.family.title, "guidance": guidance, "blocks": blocks,
            "compute_accounting": ACCOUNTING,
            "seeds": seeds, "calibration": [list(c[:2]) + [list(c[2])] for c in model.calibrated],
            "machine": machine_info(), "rows": rows}


PEER_PREFIXES = ("diffusers", "cache-dit")
ACCOUNTING = "block linear products computed"
SUMMARY_COLUMNS = ("TC-Padé (default), calibrated steps", "TaylorSeer order 1, calibrated steps", None,
                   "TC-Padé (default), formula steps", "TaylorSeer order 1, formula steps",
                   "TC-Padé in step-index time, calibrated steps", "paper equations, calibrated steps",
                   "released code (reference variant, phases on), calibrated steps")


def cell_peers(results: dict, steps: int, budget: float) -> list[dict]:
    """The peer rows comparable with a (steps, budget) cell: the step count's sweep and the budget's own runs."""
    return [r for r in results["rows"] if r["steps"] == steps and r["budget"] in (budget, None)
            and r["method"].startswith(PEER_PREFIXES)]


def peer_family(method: str) -> str:
    """"diffusers MagCache (threshold 0.5, max skip 3)" -> "diffusers MagCache"."""
    return method.split(" (")[0]


def summary_table(results: dict) -> list[str]:
    """The summary table (docs/method.md, docs/measurements.md): PSNR per (steps, budget) of the default and what
    it is measured against, the default's lead over TaylorSeer order 1 on the same steps, the best configuration
    of any peer at no more compute, and the default's lead over it."""
    lines = ["| steps / budget (full) | TC-Padé, default | TaylorSeer-1, same steps | TC-Padé - TaylorSeer | "
             "TC-Padé, formula steps | TaylorSeer-1, formula steps | TC-Padé, step-index time | paper's equations | "
             "released code | best peer at <= TC-Padé's compute | TC-Padé - best peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    cells = sorted({(r["steps"], r["budget"]) for r in results["rows"] if r["budget"] is not None})
    for steps, budget in cells:
        rows = {r["method"]: r for r in results["rows"] if (r["steps"], r["budget"]) == (steps, budget)}
        default = rows[SUMMARY_COLUMNS[0]]
        values = []
        for name in SUMMARY_COLUMNS:
            if name is None:
                values.append(f"**{default['psnr_db'] - rows[SUMMARY_COLUMNS[1]]['psnr_db']:+.2f}**")
            else:
                values.append(f"{rows[name]['psnr_db']:.2f}" if name in rows else "-")
        peers = [r for r in cell_peers(results, steps, budget) if r["compute"] <= default["compute"]]
        best = max(peers, key=lambda r: r["psnr_db"], default=None)
        if best:
            values += [f"{best['psnr_db']:.2f} ({best['method']}, {best['compute']:g})",
                       f"**{default['psnr_db'] - best['psnr_db']:+.2f}**"]
        else:
            values += ["none at that compute", "-"]
        lines.append(f"| {steps} / {budget} ({default['full_steps']}) | " + " | ".join(values) + " |")
    return lines


def peer_fronts(results: dict, steps: int) -> list[str]:
    """Each peer at its best at this step count: the Pareto front (compute, PSNR) of its sweep."""
    rows = [r for r in results["rows"] if r["steps"] == steps and r["budget"] is None]
    lines = [f"## {steps} steps: the independent peers at their best", "",
             f"Each peer's knobs swept ({len(rows)} runs in all, every one in results.json); listed: the "
             "configurations that no other configuration of the same peer beats at no more compute (its Pareto "
             "front).", "",
             "| peer (configuration) | full | compute | PSNR dB | SSIM |", "|---|---|---|---|---|"]
    for family in sorted({peer_family(r["method"]) for r in rows}):
        for r in pareto_front([r for r in rows if peer_family(r["method"]) == family]):
            lines.append(f"| {r['method']} | {r['full_steps']} | {r['compute']:.2f} | {r['psnr_db']:.2f} | "
                         f"{r['ssim']:.4f} |")
    return lines + [""]


def compute_text(results: dict) -> str:
    """What the compute column means in these results (runs before the measured accounting counted probes)."""
    if results.get("compute_accounting") == ACCOUNTING:
        return ("compute = the multiply-accumulates of the block linears' products the run really computed, in units "
                "of one uncached step (research/compute.py: a peer that predicts only some modules pays for the rest, "
                "e.g. diffusers' TaylorSeer predicting attention alone still runs every feed-forward; FirstBlockCache "
                "and cache-dit run their first block on every step).")
    if results.get("compute_accounting") == "block linear MACs":
        return ("compute = the multiply-accumulates of the block linears that ran, counted by forward hooks on the "
                "linears (before research/compute.py counted the products themselves: it charged a linear whose "
                "output a hook predicted as computed).")
    blocks = results.get("blocks", 6)
    return ("compute = full plus the first-block probes FirstBlockCache and cache-dit run on every other step "
            f"(1 of the model's {blocks} blocks each), in full-step units (the accounting before research/compute.py: "
            "it undercharges diffusers' TaylorSeer hook, whose predicted steps still run every feed-forward).")


def markdown(results: dict) -> str:
    m, name = results["machine"], results.get("model", "demo")
    command = ("python -m research.method_study --out docs/method --markdown docs/method.md" if name == "demo"
               else f"python -m research.method_study --model {name} --out docs/method-{name.split('-')[-1]} "
                    f"--markdown docs/method-{name.split('-')[-1]}.md")
    about = {"demo": "the shipped demo model (FLUX, rectified flow, Euler)",
             "demo-dit": "the shipped demo-dit model (DiT, epsilon prediction, DDIM, classifier-free guidance "
                         f"{results.get('guidance')})"}.get(name, name)
    weights = "demo_weights" if name == "demo" else "demo_dit_weights"
    lines = ["# TC-Padé against its baselines and peers, by step count and budget", "",
             f"Made by `{command}` on "
             f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}: {about}, eager torch, "
             f"{results['seeds']} seeds (every class twice). PSNR / SSIM of each final image against the uncached "
             "image of the same seed (mean over seeds); full = steps on which the whole block stack ran "
             "(peers: counted on a leaf of the last block); " + compute_text(results) + " Calibrated steps: "
             f"`tcpade-trt calibrate {name}` (chosen on seeds 100-103, validated on 200-203; "
             f"tcpade_trt/models/{weights}/calibration.json); the seeds here are 0-15.", "",
             "## Summary (PSNR dB against the uncached image of the same seed)", "", *summary_table(results), ""]
    for steps in sorted({r["steps"] for r in results["rows"]}):
        for budget in sorted({r["budget"] for r in results["rows"] if r["steps"] == steps} - {None}):
            lines += [f"## {steps} steps, budget {budget} ({full_step_count(steps, budget)} full steps)", "",
                      "| method | full | compute | PSNR dB | SSIM | steps (F = full) |", "|---|---|---|---|---|---|"]
            for r in (r for r in results["rows"] if r["steps"] == steps and r["budget"] == budget):
                lines.append(f"| {r['method']} | {r['full_steps']} | {r['compute']:.2f} | {r['psnr_db']:.2f} | "
                             f"{r['ssim']:.4f} | "
                             f"`{r['decisions'] or '-'}` |")
            lines.append("")
        if any(r["steps"] == steps and r["budget"] is None for r in results["rows"]):
            lines += peer_fronts(results, steps)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("method-out"))
    p.add_argument("--markdown", type=Path)
    p.add_argument("--steps", type=int, nargs="+", default=[20, 28, 50])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.35, 0.45])
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--model", choices=("demo", "demo-dit"), default="demo", help="which shipped model (demo)")
    p.add_argument("--markdown-only", action="store_true",
                   help="rewrite --markdown from --out's results.json without running anything")
    args = p.parse_args(argv)
    if args.markdown_only:
        if args.markdown is None:
            p.error("--markdown-only needs --markdown FILE.")
        write_text_atomic(args.markdown, markdown(json.loads((args.out / "results.json").read_text())))
        return 0
    torch.set_grad_enabled(False)
    results = study(tuple(args.steps), tuple(args.budgets), args.seeds, peers=not args.no_peers,
                    model_name=args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=1))
    if args.markdown:
        write_text_atomic(args.markdown, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
