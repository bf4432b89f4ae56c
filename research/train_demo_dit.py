"""Train demo-dit: a class-conditional DiT (DDPM epsilon prediction) on the demo's photographs.

    python -m research.train_demo_dit [--steps 3500] [--batch 32] [--lr 5e-4] [--out DIR]

Same data as the FLUX demo model (train_demo: 32x32 crops of eight scikit-image photographs, one class
each), another family and objective: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with DDPM's linear
betas, t uniform over 1000 steps, MSE on eps. The class embedding drops 10% of labels to the null class
while training (diffusers' LabelEmbedding), which is what classifier-free guidance samples against.
About 35 minutes on a 2-core CPU (fp32). Writes a diffusers folder (config.json, fp16 safetensors),
training.json, loss_curve.png and MODEL_CARD.md into --out (default: the package's demo_dit_weights);
files are written under temporary names and renamed, so an interrupted run leaves the old model intact.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tcpade_trt.errors import ConfigError
from tcpade_trt.models.demo import CLASSES
from tcpade_trt.models.demo_dit import (
    BETA_END,
    BETA_START,
    TRAIN_TIMESTEPS,
    build_demo_dit,
    images_to_latents,
    weights_folder,
)

from .train_demo import load_sources, plot_loss_curve, random_crops


def alphas_cumprod() -> torch.Tensor:
    """abar_t for t = 0 .. 999: DDPM's linear betas, as diffusers' DDIMScheduler(beta_schedule="linear")."""
    betas = torch.linspace(BETA_START, BETA_END, TRAIN_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


def train(steps: int, batch: int, lr: float, seed: int, out: Path, ema_decay: float = 0.998,
          device: str = "cpu") -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sources = load_sources(device)
    model = build_demo_dit(seed).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    ema = copy.deepcopy(model.state_dict())
    abar = alphas_cumprod().to(device)
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="training demo-dit")
    for step in bar:
        labels = torch.randint(0, len(CLASSES), (batch,), generator=gen)
        x0 = images_to_latents(random_crops(sources, labels, gen)).to(device)  # [B, 12, 16, 16]
        eps = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, TRAIN_TIMESTEPS, (batch,), generator=gen).to(device)
        a = abar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = model(xt, timestep=t, class_labels=labels.to(device), return_dict=False)[0]
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for k, v in model.state_dict().items():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    minutes = (time.perf_counter() - start) / 60
    model.load_state_dict(ema)
    save_folder(model, out)
    window = 50
    curve = [sum(losses[i:i + window]) / len(losses[i:i + window]) for i in range(0, len(losses), window)]
    record = {
        "classes": list(CLASSES), "transformer_config": dict(model.config), "steps": steps, "batch": batch,
        "lr": lr, "seed": seed, "ema_decay": ema_decay, "loss_window": window, "loss_curve": curve,
        "final_loss": curve[-1], "train_minutes": round(minutes, 1), "device": device,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),  # as train_demo (models/ imports nothing above it)
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1, default=str))
    write_model_card(out)
    return record


def save_folder(model, out: Path) -> None:
    """The EMA weights as a diffusers folder in fp16 (the loader runs them in fp32), written beside ``out``'s
    files under temporary names and renamed into place: an interrupted save keeps the previous model."""
    too_large = [k for k, v in model.state_dict().items() if v.abs().max() > torch.finfo(torch.float16).max]
    if too_large:
        raise ConfigError(f"weights {too_large[:3]} exceed fp16's range; train with a lower --lr.")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".saving-") as tmp:
        copy.deepcopy(model).to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        for name in ("diffusion_pytorch_model.safetensors", "config.json"):  # the config last: it marks the folder
            path = Path(tmp) / name
            path.chmod(0o644)
            shutil.move(str(path), out / name)


def write_model_card(folder: Path) -> None:
    """MODEL_CARD.md and loss_curve.png from the folder's training.json."""
    record = json.loads((folder / "training.json").read_text())
    plot_loss_curve(folder, record, "epsilon MSE")
    cfg = record["transformer_config"]
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    note = "; " + record["note"] if "note" in record else ""
    card = f"""# demo-dit model card

A small class-conditional DiT (diffusers `DiTTransformer2DModel`), trained by this project so that step
caching is judged on a second family next to the FLUX demo model: AdaLN-zero blocks conditioned on
(timestep, class), epsilon prediction, DDPM's linear betas, sampled with DDIM and classifier-free guidance.

- **Data**: the FLUX demo's (32x32 RGB crops of eight scikit-image photographs, one class each:
  {", ".join(record["classes"])}; random crops of 1/8 to 1/2 of the short side, random flips).
- **Latents**: pixels; an image [3, 32, 32] is space-to-depth'd to [12, 16, 16]; patches of
  {cfg["patch_size"]} give 64 tokens. No VAE.
- **Conditioning**: the class label (0-7); label 8 is the null class (10% label dropout in training),
  the unconditional half of classifier-free guidance (the DiT family's default scale 4.0).
- **Architecture**: {cfg["num_layers"]} DiT blocks, {cfg["num_attention_heads"]} heads x
  {cfg["attention_head_dim"]} dims (hidden {hidden}); {record["parameters"]:,} parameters (stored as fp16,
  {record["parameters"] * 2 / 1e6:.1f} MB; run in fp32).
- **Objective**: epsilon MSE, t uniform over {TRAIN_TIMESTEPS} DDPM steps (betas {BETA_START} to {BETA_END},
  linear); AdamW lr {record["lr"]} with warm-up and cosine decay, batch {record["batch"]}, gradient clipping
  1.0, EMA {record["ema_decay"]} (the shipped weights are the EMA).
- **Training**: {record["steps"]} steps, seed {record["seed"]}, final loss {record["final_loss"]:.4f}
  (mean of the last {record["loss_window"]} steps), {record["train_minutes"]} minutes on {record["device"]}
  ({record["machine"]}, {record["threads"]} torch thread(s), torch {record["torch"]}{note}).
  Loss curve: loss_curve.png.
- **Retrain**: `python -m research.train_demo_dit --steps {record["steps"]} --batch {record["batch"]}
  --lr {record["lr"]} --seed {record["seed"]}` (needs the `demo` extra; seeded).
- **Check that it learned**: tests/demo/test_demo_dit.py samples every class and requires most samples to
  be nearest, in colour histogram, to their own class's crops.
"""
    (folder / "MODEL_CARD.md").write_text(card)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=weights_folder())
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from --out's training.json")
    args = p.parse_args(argv)
    if args.card_only:
        write_model_card(args.out)
        return
    for flag in ("steps", "batch"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1 (got {getattr(args, flag)}).")
    try:
        rec = train(args.steps, args.batch, args.lr, args.seed, args.out, device=args.device)
    except ConfigError as exc:
        p.exit(2, f"error: {exc}\n")
    print(f"final loss {rec['final_loss']:.4f} after {rec['steps']} steps in {rec['train_minutes']} min -> {args.out}")


if __name__ == "__main__":
    main()
