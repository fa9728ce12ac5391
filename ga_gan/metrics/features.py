"""Feature extractors for Fréchet distances, looked up by name in ``EXTRACTORS``.

Every extractor maps float32 NHWC images in [-1, 1] (the generator's output range) to ``(B, F)``
features with one jitted function. Heavy extractors live in their own modules and are imported
only when asked for, so ``fd_pixels`` costs nothing to set up.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan.errors import UserError
from ga_gan.metrics.extractor import FeatureExtractor


def build_pixels(image_shape: tuple[int, int, int], **_: Any) -> FeatureExtractor:
    """Raw pixels: cheap and weights-free, but high-dimensional (H*W*C) and perceptually crude."""
    fn = jax.jit(lambda x: x.reshape(x.shape[0], -1))
    return FeatureExtractor("pixels", "fd_pixels", fn, "pixels-v1")


PROJ_DIMS = 256  # fd_pixels_proj: dimensions of the fixed random projection
PROJ_SEED = 0


def projection(dims: int, k: int = PROJ_DIMS, seed: int = PROJ_SEED) -> np.ndarray:
    """A fixed (dims, min(k, dims)) matrix with orthonormal columns (QR of a seeded Gaussian)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dims, min(k, dims))))
    return q.astype(np.float32)


def build_pixels_proj(image_shape: tuple[int, int, int], **_: Any) -> FeatureExtractor:
    """Pixels through a fixed seeded random projection to 256 dimensions (orthonormal columns,
    so distances keep the pixels' scale, Johnson-Lindenstrauss style). A pixel FD's cost is
    cubic in the dimension (symmetric eigendecompositions, frechet.py): at 32x32x3 = 3,072 about
    2 s on 2 CPU cores, at 64x64x3 = 12,288 minutes, at 256 milliseconds. Not equal to
    fd_pixels; a monitor of the same kind."""
    h, w, c = image_shape
    proj = jnp.asarray(projection(h * w * c))
    fn = jax.jit(lambda x: x.reshape(x.shape[0], -1) @ proj)
    return FeatureExtractor("pixels_proj", "fd_pixels_proj", fn,
                            f"pixels-proj{proj.shape[1]}-seed{PROJ_SEED}-v1")


def build_classifier(
    image_shape: tuple[int, int, int],
    *,
    dataset_name: str,
    cache_dir: str | os.PathLike | None = None,
    labelled_dataset: Any = None,
    log: Callable[[str], None] = print,
    **_: Any,
) -> FeatureExtractor:
    from ga_gan.metrics.classifier import classifier_extractor

    return classifier_extractor(
        image_shape, dataset_name=dataset_name, cache_dir=cache_dir, labelled_dataset=labelled_dataset, log=log
    )


def build_inception(image_shape: tuple[int, int, int], *, weights: str | os.PathLike | None = None, **_: Any):
    from ga_gan.metrics.inception import inception_extractor

    return inception_extractor(weights)


EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "pixels": build_pixels,
    "pixels_proj": build_pixels_proj,
    "classifier": build_classifier,
    "inception": build_inception,
}

METRIC_NAMES = {"pixels": "fd_pixels", "pixels_proj": "fd_pixels_proj", "classifier": "fd_classifier", "inception": "fid"}


def build_extractor(name: str, image_shape: tuple[int, int, int], **kwargs: Any) -> FeatureExtractor:
    """Look up ``name`` in ``EXTRACTORS`` and build it; unknown names are a ``UserError``."""
    if name not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {name!r}; choose from {', '.join(sorted(EXTRACTORS))}")
    return EXTRACTORS[name](tuple(image_shape), **kwargs)
