"""Train the demo model: rectified flow on 32x32 crops of scikit-image's sample photographs.

    python -m research.train_demo [--steps 3000] [--batch 32] [--lr 5e-4] [--heads 16] [--out DIR]

Seeded and reproducible on one machine (same torch build and thread count). Writes
``demo.safetensors`` (transformer.* and conditioner.* weights, stored as fp16) and ``training.json``
(config, loss curve, time) into --out, by default the package's demo_weights folder. Needs the
``demo`` extra (scikit-image). The defaults train the shipped model: about 90 minutes on a 2-core
CPU, minutes on a GPU. --heads sets the width (32 per head): onnxruntime's INT8 linears gain more
the wider the model (`scripts/int8_by_width.py` measures it on the machine at hand). A long run goes
in pieces: `--stop-after N` trains N steps and leaves a checkpoint in --out, `--resume` continues it
with the same weights as one uninterrupted run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tcpade_trt.errors import ConfigError
from tcpade_trt.models.demo import (
    CLASSES,
    IMAGE_SIZE,
    TRANSFORMER_CONFIG,
    WEIGHTS_FILE,
    build_demo_model,
    demo_config,
    images_to_latents,
)


def load_sources(device="cpu") -> list[torch.Tensor]:
    """The eight photographs as [3, H, W] tensors in [-1, 1], in CLASSES order."""
    import skimage.data

    out = []
    for name in CLASSES:
        img = torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy()).permute(2, 0, 1)
        out.append((img.float() / 127.5 - 1).to(device))
    return out


def random_crops(sources, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random crop per label: side 1/8 to 1/2 of the photo's short side, resized to 32, random flip."""
    crops = []
    for label in labels.tolist():
        src = sources[label]
        _, h, w = src.shape
        short = min(h, w)
        side = int(short * (0.125 + 0.375 * torch.rand((), generator=gen).item()))
        y = int(torch.randint(0, h - side + 1, (), generator=gen))
        x = int(torch.randint(0, w - side + 1, (), generator=gen))
        crop = F.interpolate(src[None, :, y:y + side, x:x + side], size=IMAGE_SIZE, mode="bilinear",
                             antialias=True, align_corners=False)[0]
        if torch.rand((), generator=gen).item() < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    return torch.stack(crops).clamp(-1, 1)


CHECKPOINT = "checkpoint.pt"  # in --out while a run is unfinished; removed when the weights are written


def train(steps: int, batch: int, lr: float, seed: int, out: Path, ema_decay: float = 0.998,
          device: str = "cpu", heads: int = TRANSFORMER_CONFIG["num_attention_heads"], checkpoint_every: int = 0,
          stop_after: int | None = None, resume: bool = False) -> dict | None:
    """Train and write the weights, training.json and the model card into ``out``; returns the record.

    Long runs (a wide model on a CPU) go in pieces: ``stop_after`` steps of this call, then a
    checkpoint in ``out`` and None; ``resume`` continues from it exactly (model, optimizer, schedule,
    EMA and data-generator state), so pieces give the same weights as one run on the same machine.
    ``checkpoint_every`` also saves one every that many steps (0: only when stopping).
    """
    settings = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "ema_decay": ema_decay, "heads": heads}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sources = load_sources(device)
    model = build_demo_model(heads).to(device)
    model.transformer.train()
    params = list(model.transformer.parameters()) + list(model.conditioner.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    ema = {"transformer": copy.deepcopy(model.transformer.state_dict()),
           "conditioner": copy.deepcopy(model.conditioner.state_dict())}
    first, losses, minutes_before = 0, [], 0.0
    if resume:
        first, losses, minutes_before = _load_checkpoint(out, settings, model, opt, sched, ema, gen)
    start = time.perf_counter()
    last = steps if stop_after is None else min(steps, first + stop_after)
    bar = tqdm(range(first, last), desc="training demo model", initial=first, total=steps)
    for step in bar:
        labels = torch.randint(0, len(CLASSES), (batch,), generator=gen)
        x0 = images_to_latents(random_crops(sources, labels, gen)).to(device)  # [B, 64, 48]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.sigmoid(torch.randn(batch, generator=gen)).to(device)  # logit-normal, as SD3 / FLUX
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        cond = model.class_cond(labels)
        pred = model.transformer(hidden_states=xt, timestep=t, return_dict=False, **cond)[0]
        loss = F.mse_loss(pred, noise - x0)  # rectified-flow velocity, FlowMatchEuler's convention
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for part, module in (("transformer", model.transformer), ("conditioner", model.conditioner)):
                for k, v in module.state_dict().items():
                    ema[part][k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        done = step + 1
        if done < steps and (done == last or (checkpoint_every and done % checkpoint_every == 0)):
            minutes = minutes_before + (time.perf_counter() - start) / 60
            _save_checkpoint(out, settings, done, model, opt, sched, ema, gen, losses, minutes)
    minutes = minutes_before + (time.perf_counter() - start) / 60
    if last < steps:
        return None  # stopped early: the checkpoint holds the run

    state = {f"{part}.{k}": v.detach().cpu() for part in ema for k, v in ema[part].items()}
    save_weights(state, out)
    window = 50
    curve = [sum(losses[i:i + window]) / len(losses[i:i + window]) for i in range(0, len(losses), window)]
    record = {
        "classes": list(CLASSES), "transformer_config": demo_config(heads), "steps": steps, "batch": batch,
        "lr": lr, "seed": seed, "ema_decay": ema_decay, "loss_window": window, "loss_curve": curve,
        "final_loss": curve[-1], "train_minutes": round(minutes, 1), "device": device,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "parameters": sum(v.numel() for v in state.values()),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1))
    write_model_card(out)
    (out / CHECKPOINT).unlink(missing_ok=True)  # finished: nothing left to resume
    return record


def save_weights(state: dict[str, torch.Tensor], out: Path) -> Path:
    """Write the EMA weights as fp16 safetensors (load_demo_model runs them in fp32).

    fp16 halves the checkout (36M parameters: 72 MB instead of 144); its 11-bit mantissa moves the
    model's outputs far less than any cache or INT8 does, and every quality figure compares images of
    the same loaded model. A weight beyond fp16's range is refused rather than stored as inf.
    """
    from safetensors.torch import save_file

    too_large = [k for k, v in state.items() if v.abs().max() > torch.finfo(torch.float16).max]
    if too_large:
        raise ConfigError(f"weights {too_large[:3]} exceed fp16's range; train with a lower --lr.")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(out / WEIGHTS_FILE)  # atomic: an interrupted run never leaves a half-written file
    return out / WEIGHTS_FILE


def _save_checkpoint(out: Path, settings: dict, next_step: int, model, opt, sched, ema, gen, losses, minutes):
    out.mkdir(parents=True, exist_ok=True)
    state = {"settings": settings, "next_step": next_step, "transformer": model.transformer.state_dict(),
             "conditioner": model.conditioner.state_dict(), "optimizer": opt.state_dict(),
             "schedule": sched.state_dict(), "ema": ema, "generator": gen.get_state(), "losses": losses,
             "minutes": minutes}
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / CHECKPOINT)  # atomic: an interrupted save keeps the previous checkpoint


def _load_checkpoint(out: Path, settings: dict, model, opt, sched, ema, gen) -> tuple[int, list, float]:
    """Restore a run's state from ``out``; returns (next step, losses so far, minutes so far)."""
    path = out / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"there is no checkpoint to resume in {out}; start without --resume.")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["settings"] != settings:
        raise ConfigError(f"the checkpoint in {out} was made with {state['settings']}, not {settings}; resume "
                          "with the same options.")
    model.transformer.load_state_dict(state["transformer"])
    model.conditioner.load_state_dict(state["conditioner"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["schedule"])
    for part in ema:
        ema[part].update(state["ema"][part])
    gen.set_state(state["generator"])
    return state["next_step"], state["losses"], state["minutes"]


def plot_loss_curve(folder: Path, record: dict, loss_name: str) -> None:
    """loss_curve.png in ``folder`` from a training record's windowed losses (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3))
    window = record["loss_window"]
    ax.plot([i * window for i in range(len(record["loss_curve"]))], record["loss_curve"])
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{loss_name} (mean of {window})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "loss_curve.png", dpi=100)
    plt.close(fig)


def write_model_card(folder: Path) -> None:
    """MODEL_CARD.md and loss_curve.png from the folder's training.json."""
    record = json.loads((folder / "training.json").read_text())
    plot_loss_curve(folder, record, "rectified-flow loss")
    cfg = record["transformer_config"]
    card = f"""# Demo model card

A small FLUX-architecture transformer (diffusers `FluxTransformer2DModel`), trained by this project
so that step caching can be judged on a model with a real denoising trajectory.

- **Data**: 32x32 RGB crops of eight scikit-image sample photographs, one class each:
  {", ".join(record["classes"])}. Random crops of 1/8 to 1/2 of the photo's short side, resized
  (antialiased) to 32x32, random horizontal flips.
- **Latents**: pixels; an image [3, 32, 32] is space-to-depth'd to [12, 16, 16] and FLUX-packed to
  64 tokens of 48 channels. Decoding is the inverse (no VAE).
- **Conditioning**: the class, through the text stream: 4 learned tokens of 64 dims plus a learned
  pooled vector of 64 dims. No guidance embedding.
- **Architecture**: {cfg["num_layers"]} double-stream + {cfg["num_single_layers"]} single-stream blocks,
  {cfg["num_attention_heads"]} heads x {cfg["attention_head_dim"]} dims (hidden {cfg["num_attention_heads"] *
  cfg["attention_head_dim"]}), RoPE axes {cfg["axes_dims_rope"]}; {record["parameters"]:,} parameters
  (stored as fp16, {record["parameters"] * 2 / 1e6:.1f} MB; run in fp32).
- **Objective**: rectified flow, velocity target noise - data (FlowMatchEulerDiscreteScheduler's
  convention), logit-normal timesteps; AdamW lr {record["lr"]} with warm-up and cosine decay, batch
  {record["batch"]}, gradient clipping 1.0, EMA {record["ema_decay"]} (the shipped weights are the EMA).
- **Training**: {record["steps"]} steps, seed {record["seed"]}, final loss {record["final_loss"]:.4f}
  (mean of the last {record["loss_window"]} steps), {record["train_minutes"]} minutes on {record["device"]}
  ({record["machine"]}, {record["threads"]} torch thread(s), torch {record["torch"]}). Loss curve: loss_curve.png.
- **Retrain**: `python -m research.train_demo --heads {cfg["num_attention_heads"]} --steps {record["steps"]}
  --batch {record["batch"]} --lr {record["lr"]} --seed {record["seed"]}` (needs the `demo` extra; seeded and
  reproducible for the same torch build and thread count; `--device cuda` for minutes on a GPU;
  `--stop-after N` / `--resume` split a long run).
- **Check that it learned**: tests/demo/test_demo_model.py samples every class at 20 steps and
  requires 80% of samples to be nearest, in colour histogram, to their own class's crops.
"""
    (folder / "MODEL_CARD.md").write_text(card)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--heads", type=int, default=TRANSFORMER_CONFIG["num_attention_heads"],
                   help="attention heads of 32 (width = 32 x heads)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="train this many steps, save a checkpoint in --out and stop (continue with --resume)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also save a checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent.parent / "tcpade_trt" / "models" / "demo_weights")
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from --out's training.json")
    args = p.parse_args(argv)
    if args.card_only:
        write_model_card(args.out)
        return
    if args.heads < 1:
        p.error(f"--heads must be at least 1 (got {args.heads}).")
    if args.stop_after is not None and args.stop_after < 1:
        p.error(f"--stop-after must be at least 1 (got {args.stop_after}).")
    try:
        rec = train(args.steps, args.batch, args.lr, args.seed, args.out, device=args.device, heads=args.heads,
                    checkpoint_every=args.checkpoint_every, stop_after=args.stop_after, resume=args.resume)
    except ConfigError as exc:
        p.exit(2, f"error: {exc}\n")
    if rec is None:
        print(f"stopped; checkpoint in {args.out / CHECKPOINT}: continue with the same options and --resume")
        return
    print(f"final loss {rec['final_loss']:.4f} after {rec['steps']} steps in {rec['train_minutes']} min -> {args.out}")


if __name__ == "__main__":
    main()
