"""Shape and colour conversions applied after loading, so every source honours the same options."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Same integer weights and rounding as PIL's convert("L") (ITU-R 601-2 luma), so folder
# images converted by PIL and array sources converted here agree bit for bit.
_LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.uint32)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Convert (N, H, W, C) uint8 to `channels` (1 or 3); grey to RGB repeats, RGB to grey is luma."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = (images.astype(np.uint32) @ _LUMA_WEIGHTS + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """Resize square (N, H, W, C) uint8 images to resolution x resolution.

    Bicubic in both directions: PIL widens the filter support when shrinking, so downscaling is
    antialiased without needing a separate filter.
    """
    if images.shape[1:3] == (resolution, resolution):
        return images
    out = np.empty((len(images), resolution, resolution, images.shape[-1]), np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        resized = np.asarray(pil.resize((resolution, resolution), Image.Resampling.BICUBIC))
        out[i] = resized.reshape(out.shape[1:])
    return out
