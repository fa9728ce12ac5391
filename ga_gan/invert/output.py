"""Files an inversion leaves behind, and loading of the user's target images.

Images are written at the generator's native resolution (no upscaling, no border) so ``best.png``
can be compared pixel-for-pixel with what the generator produces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ga_gan.data import pixels
from ga_gan.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[-1, 1] float (H, W, C) -> uint8; a single channel is squeezed so PIL writes greyscale."""
    x = pixels.to_uint8(image)
    return x[..., 0] if x.shape[-1] == 1 else x


def image_strip(images: list[np.ndarray], gap: int = 1) -> np.ndarray:
    """Equal-sized (H, W, C) images side by side with ``gap`` white columns between them."""
    h, _, c = images[0].shape
    sep = np.ones((h, gap, c), np.float32)  # +1 is white in [-1, 1]
    parts: list[np.ndarray] = []
    for i, im in enumerate(images):
        if i:
            parts.append(sep)
        parts.append(np.asarray(im, np.float32))
    return np.concatenate(parts, axis=1)


def _plot_history(history: list[float], path: Path) -> None:
    # Figure + Agg canvas directly: no global backend switch that could surprise other modules.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    h = np.asarray(history, np.float64)
    floor = h[h > 0].min() if np.any(h > 0) else 1e-12
    ax.plot(np.arange(1, len(h) + 1), np.maximum(h, floor * 0.5))  # log axis cannot show 0
    ax.set_yscale("log")
    ax.set_xlabel("generation")
    ax.set_ylabel("best distance so far")
    fig.tight_layout()
    fig.savefig(path)


def write_outputs(result, out_dir, targets) -> Path:
    """Write best_latent.npy, best.png, strip.png, fitness.png and summary.json into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = np.asarray(targets, np.float32)
    if targets.ndim == 3:
        targets = targets[None]

    np.save(out / "best_latent.npy", np.asarray(result.best_latent, np.float32))
    Image.fromarray(to_uint8(result.best_image)).save(out / "best.png")
    frames = [img for _, img in result.snapshots] + list(targets)
    Image.fromarray(to_uint8(image_strip(frames))).save(out / "strip.png")
    _plot_history(result.history, out / "fitness.png")

    summary = {
        "best_distance": float(result.best_distance),
        "pixel_mse": float(result.pixel_mse),
        "initial_distance": float(result.initial_distance),
        "generations": int(result.generations),
        "seconds": float(result.seconds),
        "seconds_per_generation": float(result.seconds_per_generation),
        "compile_seconds": float(result.compile_seconds),
        "strategy": result.strategy,
        "distance": result.distance,
        "reduce": result.reduce,
        "num_targets": int(targets.shape[0]),
        "latent_dim": int(np.asarray(result.best_latent).shape[-1]),
        "snapshot_generations": [int(g) for g, _ in result.snapshots],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def _load_one(path: Path, resolution: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            w, h = im.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
            x = np.asarray(im, np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e.__class__.__name__}") from None
    if x.ndim == 2:
        x = x[..., None]
    return pixels.to_model_range(x)


def load_target_images(path_or_dir, resolution: int, channels: int) -> np.ndarray:
    """Targets as float32 (T, H, W, C) in [-1, 1], matched to the generator's size and channels.

    A folder is read in sorted filename order so target indices are reproducible.
    """
    if channels not in (1, 3):
        raise UserError(f"target channels must be 1 or 3, got {channels}")
    path = Path(path_or_dir)
    if not path.exists():
        raise UserError(f"target path not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"no PNG/JPEG images in folder: {path}")
    else:
        files = [path]
    mode = "L" if channels == 1 else "RGB"
    return np.stack([_load_one(f, int(resolution), mode) for f in files]).astype(np.float32)
