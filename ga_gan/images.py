"""Image grids a person can look at: tiled, 1-pixel borders, small images upscaled (nearest)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def grid(images: np.ndarray, *, cols: int | None = None, min_cell: int = 64,
         border: int = 1) -> np.ndarray:
    """Tile uint8 (N, H, W, C) images into one uint8 image, upscaling cells to >= min_cell px."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError("grid expects uint8 images")
    n, h, w, c = images.shape
    scale = max(1, math.ceil(min_cell / max(h, w)))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + border) + border, cols * (w + border) + border, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        y, x = border + r * (h + border), border + q * (w + border)
        out[y:y + h, x:x + w] = img
    return out


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Save uint8 (H, W, C) as PNG (greyscale when C == 1), atomically."""
    arr = image[..., 0] if image.shape[-1] == 1 else image
    return write_atomically(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))


def write_atomically(path: str | Path, write) -> Path:
    """`write(file)` into a temporary file beside `path`, then rename it over `path`; on any
    failure the temporary file is removed, so readers see the old file or the new, nothing else."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
