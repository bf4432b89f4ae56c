"""Train the demo model: rectified flow on 32x32 crops of scikit-image's sample photographs.

    python -m tcpade_trt.models.train_demo [--steps 3000] [--batch 64] [--out DIR]

Seeded and reproducible on one machine (same torch build and thread count). Writes
``demo.safetensors`` (transformer.* and conditioner.* weights) and ``training.json`` (config,
loss curve, time) into --out, by default the package's demo_weights folder. Needs the ``demo``
extra (scikit-image). About an hour on a 2-core CPU with the defaults; minutes on a GPU.
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

from .demo import CLASSES, IMAGE_SIZE, TRANSFORMER_CONFIG, WEIGHTS_FILE, build_demo_model, images_to_latents


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


def train(steps: int, batch: int, lr: float, seed: int, out: Path, ema_decay: float = 0.998,
          device: str = "cpu") -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sources = load_sources(device)
    model = build_demo_model()
    model.transformer.to(device).train()
    model.conditioner.to(device)
    params = list(model.transformer.parameters()) + list(model.conditioner.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    ema = {"transformer": copy.deepcopy(model.transformer.state_dict()),
           "conditioner": copy.deepcopy(model.conditioner.state_dict())}
    losses, start = [], time.perf_counter()
    bar = tqdm(range(steps), desc="training demo model")
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
    minutes = (time.perf_counter() - start) / 60

    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {f"{part}.{k}": v.detach().cpu().contiguous() for part in ema for k, v in ema[part].items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)  # atomic: an interrupted run never leaves a half-written file
    window = 50
    curve = [sum(losses[i:i + window]) / len(losses[i:i + window]) for i in range(0, len(losses), window)]
    record = {
        "classes": list(CLASSES), "transformer_config": TRANSFORMER_CONFIG, "steps": steps, "batch": batch,
        "lr": lr, "seed": seed, "ema_decay": ema_decay, "loss_window": window, "loss_curve": curve,
        "final_loss": curve[-1], "train_minutes": round(minutes, 1), "device": device,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "parameters": sum(v.numel() for v in state.values()),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "demo_weights")
    args = p.parse_args(argv)
    rec = train(args.steps, args.batch, args.lr, args.seed, args.out, device=args.device)
    print(f"final loss {rec['final_loss']:.4f} after {rec['steps']} steps in {rec['train_minutes']} min -> {args.out}")


if __name__ == "__main__":
    main()
