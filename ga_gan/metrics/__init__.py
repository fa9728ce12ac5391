"""Fréchet distances between generated and real images: ``fd_pixels``, ``fd_classifier`` and ``fid``.

Only ``fid`` (pytorch-fid's Inception-v3 features) is comparable with published FIDs; the other
two are cheap in-project yardsticks and are named so that nobody mistakes them for the FID.

Real statistics are computed once per (dataset, resolution, channels, extractor, number of real
images) and cached as ``.npz`` under ``<cache>/stats`` (cache base: ``cache_dir`` argument, else
``$GA_GAN_CACHE``, else ``~/.cache/ga-gan``).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ga_gan.errors import UserError
from ga_gan.data.pixels import to_model_range
from ga_gan.metrics.extractor import FeatureExtractor, cache_root, extract_features, slug
from ga_gan.metrics.features import EXTRACTORS, METRIC_NAMES, build_extractor
from ga_gan.metrics.frechet import frechet_distance, gaussian_stats, psd_sqrt

__all__ = [
    "EXTRACTORS",
    "METRIC_NAMES",
    "FeatureExtractor",
    "FrechetEvaluator",
    "build_extractor",
    "extract_features",
    "frechet_distance",
    "gaussian_stats",
    "make_evaluators",
]

STATS_VERSION = "v1"
MAX_REAL = 10_000  # more real images barely move the statistics but cost extraction time
REAL_SUBSET_SEED = 0


def real_subset(n: int, max_real: int = MAX_REAL) -> np.ndarray:
    """Indices of the real images used for the statistics: all of them, or a fixed seeded sample of ``max_real``.

    Sampled rather than the first ``max_real`` because datasets may be stored sorted by class.
    """
    if n <= max_real:
        return np.arange(n)
    return np.sort(np.random.default_rng(REAL_SUBSET_SEED).choice(n, size=max_real, replace=False))


class FrechetEvaluator:
    """Scores batches of generated images against fixed real statistics in one feature space.

    ``n_samples`` is how many generated images the caller should score per evaluation (FD is
    biased upwards for small samples, so keep it fixed across a comparison); the evaluator itself
    scores whatever it is given.
    """

    def __init__(
        self,
        extractor_name: str,
        real_images: np.ndarray,
        dataset_name: str,
        *,
        n_samples: int = 2048,
        batch_size: int = 256,
        cache_dir: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        labelled_dataset: Any = None,
        max_real: int = MAX_REAL,
        log: Callable[[str], None] = print,
    ):
        real = np.asarray(real_images)
        if real.ndim != 4 or real.shape[-1] not in (1, 3) or real.dtype != np.uint8:
            raise UserError(f"real images must be uint8 (N, H, W, 1|3), got {real.dtype} {real.shape}")
        if real.shape[0] < 2:
            raise UserError("need at least 2 real images for Fréchet statistics")
        self.image_shape = tuple(int(s) for s in real.shape[1:])
        self._root: np.ndarray | None = None
        self.n_samples = int(n_samples)
        self.batch_size = int(batch_size)
        self.extractor: FeatureExtractor = build_extractor(
            extractor_name, self.image_shape, dataset_name=dataset_name, cache_dir=cache_dir,
            weights=weights, labelled_dataset=labelled_dataset, log=log,
        )
        keep = real_subset(real.shape[0], max_real)
        h, w, c = self.image_shape
        self.stats_path = (
            cache_root(cache_dir) / "stats"
            / f"{slug(dataset_name)}-{h}x{w}x{c}-{self.extractor.identity}-n{len(keep)}-{STATS_VERSION}.npz"
        )
        if self.stats_path.exists():
            with np.load(self.stats_path) as cached:
                self.mu, self.sigma = cached["mu"], cached["sigma"]
        else:
            feats = extract_features(self.extractor, to_model_range(real[keep]), self.batch_size)
            self.mu, self.sigma = gaussian_stats(feats)
            self.stats_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.stats_path.with_name(f"{self.stats_path.stem}.tmp{os.getpid()}.npz")
            np.savez(tmp, mu=self.mu, sigma=self.sigma)
            os.replace(tmp, self.stats_path)
            log(f"{self.metric_name}: real statistics from {len(keep)} images cached at {self.stats_path}")

    @property
    def metric_name(self) -> str:
        return self.extractor.metric_name

    def __call__(self, fake_images: Any) -> float:
        """Fréchet distance of float images in [-1, 1], shape ``(M, H, W, C)`` like the real data."""
        fake = np.asarray(fake_images, dtype=np.float32)
        if fake.ndim != 4 or tuple(fake.shape[1:]) != self.image_shape:
            raise UserError(f"generated images have shape {fake.shape}, expected (M, {', '.join(map(str, self.image_shape))})")
        if fake.shape[0] < 2:
            raise UserError("need at least 2 generated images for a Fréchet distance")
        if not np.isfinite(fake).all():
            raise UserError(f"generated images contain NaN or inf; cannot compute {self.metric_name}")
        mu, sigma = gaussian_stats(extract_features(self.extractor, fake, self.batch_size))
        if self._root is None:  # the real statistics' square root, once per evaluator
            self._root = psd_sqrt(self.sigma)
        return frechet_distance(mu, sigma, self.mu, self.sigma, root2=self._root)


def make_evaluators(names: list[str], real_images: np.ndarray, dataset_name: str, **kwargs: Any) -> dict[str, FrechetEvaluator]:
    """One evaluator per extractor name, keyed by metric name (``{"fd_pixels": ..., "fid": ...}``)."""
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise UserError(f"unknown feature extractor(s) {', '.join(unknown)}; choose from {', '.join(sorted(EXTRACTORS))}")
    evaluators = [FrechetEvaluator(n, real_images, dataset_name, **kwargs) for n in names]
    return {e.metric_name: e for e in evaluators}
