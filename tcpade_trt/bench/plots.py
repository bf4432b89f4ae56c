"""Pictures people would rather look at than read: sample grids and speed-vs-quality plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def sample_grid(rows: dict[str, torch.Tensor], path: Path, column_titles: list[str],
                cell_notes: dict[str, list[str]] | None = None, max_columns: int = 8) -> Path:
    """Rows = methods, columns = seeds. Images [B, 3, H, W] in [0, 1]."""
    names = list(rows)
    cols = min(max_columns, rows[names[0]].shape[0])
    fig, axes = plt.subplots(len(names), cols, figsize=(1.3 * cols + 1.4, 1.45 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(rows[name][c].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(column_titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
            if cell_notes and name in cell_notes:
                ax.set_xlabel(cell_notes[name][c], fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def speed_vs_quality(points: list[dict], path: Path, title: str) -> Path:
    """Scatter of speedup (x) against PSNR (y), one labelled point per run; groups by backend/precision."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups = sorted({(p["backend"], p["precision"]) for p in points})
    markers = "osD^v<>"
    for i, group in enumerate(groups):
        pts = [p for p in points if (p["backend"], p["precision"]) == group and p["psnr_db"] is not None]
        ax.scatter([p["speedup"] for p in pts], [p["psnr_db"] for p in pts], marker=markers[i % len(markers)],
                   label=f"{group[0]} {group[1]}")
        for p in pts:
            ax.annotate(p["cache"], (p["speedup"], p["psnr_db"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
    ax.set_xlabel("wall-clock speedup vs uncached (same backend)")
    ax.set_ylabel("PSNR vs uncached image of the same seed [dB]")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_vs_batch(runs: list[dict], path: Path) -> Path:
    """Images per second against batch size, one line per backend x precision x cache."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    keys = sorted({(r["backend"], r["precision"], r["cache"]) for r in runs})
    for key in keys:
        pts = sorted((r["batch"], r["throughput_img_s"]) for r in runs
                     if (r["backend"], r["precision"], r["cache"]) == key)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=" ".join(key), linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput [images / s]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
