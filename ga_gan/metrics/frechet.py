"""Fréchet distance between two Gaussians fitted to feature sets (the arithmetic behind FID).

Same formula and numerical guards as the reference FID implementations (TTUR / pytorch-fid),
so that numbers computed with Inception features are comparable with published FIDs.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from ga_gan.errors import UserError


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (as ``np.cov(rowvar=False)``) of ``(N, F)`` features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise UserError(f"features must be a 2-D (N, F) array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise UserError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """Matrix square root plus whether it is trustworthy (finite, and scipy saw no singularity)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(a)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    return root, bool(np.isfinite(root).all()) and not singular


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.

    When ``sigma1 @ sigma2`` is singular (e.g. fewer samples than feature dimensions) the square
    root is recomputed with ``eps * I`` added to both covariances, as pytorch-fid does; the traces
    keep the unregularised covariances. Round-off can leave a tiny imaginary part (dropped; a large
    one raises ``ValueError`` because the result would be meaningless) and a slightly negative
    total (clamped to 0: the true distance is never negative).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise UserError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    f = mu1.shape[0]
    if sigma1.shape != (f, f) or sigma2.shape != (f, f):
        raise UserError(
            f"covariances must be ({f}, {f}) to match the means, got {sigma1.shape} and {sigma2.shape}"
        )

    covmean, ok = _sqrtm(sigma1 @ sigma2)
    if not ok:
        offset = np.eye(f) * eps
        covmean, _ = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("matrix square root is not finite even after adding eps to the covariances")
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm is too large")
        covmean = covmean.real

    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return max(float(distance), 0.0)
