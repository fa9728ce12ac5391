"""What every feature extractor is (a named, jitted image -> feature map), where extractors
cache what they build, and how features are computed in fixed-size chunks.

Kept apart from the extractor registry (features.py) so the heavy extractors (classifier.py,
inception.py) can build on it while the registry imports them only when asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan.errors import UserError


@dataclass(frozen=True)
class FeatureExtractor:
    """A named, jitted image -> feature map.

    ``identity`` describes the feature space exactly (network version, weights hash...); it is
    part of the key under which real-data statistics are cached, so changing the network never
    reuses stale statistics.
    """

    name: str
    metric_name: str
    fn: Callable[[jax.Array], jax.Array]
    identity: str


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Base cache folder: the explicit argument, else ``$GA_GAN_CACHE``, else ``~/.cache/ga-gan``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("GA_GAN_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/ga-gan").expanduser()


def slug(text: str) -> str:
    """A filesystem-safe, collision-resistant name for a dataset name such as ``mnist:/data/x``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:40] or "x"
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def extract_features(extractor: FeatureExtractor, images: Any, batch_size: int = 256) -> np.ndarray:
    """Features of ``images`` in chunks of ``batch_size``.

    The last chunk is zero-padded to the common chunk size so each extractor compiles once per
    chunk size instead of once per remainder.
    """
    x = np.asarray(images, dtype=np.float32)
    n = x.shape[0]
    if n == 0:
        raise UserError("no images to extract features from")
    bs = max(1, min(int(batch_size), n))
    out = []
    for start in range(0, n, bs):
        chunk = x[start : start + bs]
        real = chunk.shape[0]
        if real < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - real,) + chunk.shape[1:], np.float32)])
        out.append(np.asarray(extractor.fn(jnp.asarray(chunk)))[:real])
    return np.concatenate(out).astype(np.float64)
