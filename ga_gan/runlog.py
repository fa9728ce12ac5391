"""The run folder's human-facing record: metrics.jsonl, config.json, sample grids, curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CURVES = ("real_score", "fake_score", "loss_d", "loss_g")


class RunLog:
    """Appends one JSON object per logged generation; on resume, drops lines past the checkpoint
    so a continued run's metrics are seamless rather than duplicated."""

    def __init__(self, out: Path, *, resume_generation: int | None = None, primary: bool = True):
        self.out, self.primary = Path(out), primary
        self.metrics_path = self.out / "metrics.jsonl"
        self.sinks: list = []  # more writers of every appended record (TensorBoard)
        if not primary:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if resume_generation is None:
            self.metrics_path.write_text("")
        elif self.metrics_path.exists():
            # A line torn by a kill (or a second Ctrl-C) mid-write is dropped with the rest
            # of what came after the checkpoint.
            text = self.metrics_path.read_text()
            keep = "".join(line + "\n" for line in text.splitlines()
                           if (r := _parse(line)) is not None
                           and r["generation"] <= resume_generation)
            if keep != text:  # a finished run resumed with nothing to do stays untouched
                tmp = self.metrics_path.with_suffix(".tmp")
                tmp.write_text(keep)
                tmp.replace(self.metrics_path)

    def write_json(self, name: str, obj: dict) -> None:
        if self.primary:
            (self.out / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def append(self, record: dict) -> None:
        if not self.primary:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
        for sink in self.sinks:
            sink(record)

    def records(self) -> list[dict]:
        return read_metrics(self.metrics_path)

    def plot(self, path: Path | None = None) -> Path | None:
        if not self.primary:
            return None
        return plot_curves(self.records(), path or self.out / "curves.png")


def read_metrics(path: Path) -> list[dict]:
    """The records in a metrics.jsonl; a line torn by a killed writer is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    return [r for line in path.read_text().splitlines() if (r := _parse(line)) is not None]


def _parse(line: str) -> dict | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "generation" in record else None


def plot_curves(records: list[dict], path: Path) -> Path | None:
    """The four GAN curves over generations, plus the Fréchet distance(s) when logged."""
    if not records:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = np.array([r["generation"] for r in records])
    fd_keys = sorted({k for r in records for k in r if k.startswith(("fd_", "fid"))})
    fig, axes = plt.subplots(1, 2 + bool(fd_keys), figsize=(5 * (2 + bool(fd_keys)), 3.6))
    for k in ("real_score", "fake_score"):
        axes[0].plot(gen, [r.get(k, math.nan) for r in records], label=k)
    axes[0].set_ylim(-0.02, 1.02)
    for k in ("loss_d", "loss_g"):
        axes[1].plot(gen, [r.get(k, math.nan) for r in records], label=k)
    for k in fd_keys:
        pts = [(r["generation"], r[k]) for r in records if k in r]
        axes[2].plot(*zip(*pts), marker="o", label=k)
        axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("generation / step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
