"""Fréchet distance between two Gaussians fitted to feature sets (the arithmetic behind FID).

The formula of the reference FID implementations (TTUR / pytorch-fid), so numbers computed with
Inception features compare with published FIDs. Tr sqrt(sigma1 sigma2) comes from eigenvalues
instead of scipy's general `sqrtm`: sigma1 sigma2 has the eigenvalues of the symmetric
R sigma1 R with R = sigma2^(1/2), so two symmetric eigendecompositions give the trace exactly,
for singular covariances too (fewer samples than dimensions, as in a pixel FD), with no eps
regularisation and no imaginary round-off. At 3,072 dimensions (32x32x3 pixels, 1,024 samples)
that is seconds where `sqrtm` took about a minute, and R of the fixed real statistics is
computed once per evaluator.
"""

from __future__ import annotations

import numpy as np

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


def psd_sqrt(sigma, xp=np):
    """The symmetric square root of a covariance (round-off's negative eigenvalues read as 0).
    `xp` is the array module: NumPy here in float64, jax.numpy inside the jitted mixture ES
    (methods/mixture.py), one formula for both."""
    w, v = xp.linalg.eigh(sigma)
    return (v * xp.sqrt(xp.maximum(w, 0.0))) @ v.T


def trace_sqrt_product(sigma1, root2, xp=np):
    """Tr sqrt(sigma1 sigma2), given root2 = psd_sqrt(sigma2) (symmetrised against round-off
    before the eigenvalues)."""
    m = root2 @ sigma1 @ root2
    return xp.sum(xp.sqrt(xp.maximum(xp.linalg.eigvalsh((m + m.T) / 2), 0.0)))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     root2: np.ndarray | None = None) -> float:
    """``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``.

    ``root2`` (``psd_sqrt(sigma2)``) may be passed when sigma2 is reused, as the real statistics
    are. Round-off can leave a slightly negative total: clamped to 0, the true distance never is.
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
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise ValueError("covariance is not finite")
    root2 = psd_sqrt(sigma2) if root2 is None else root2
    diff = mu1 - mu2
    distance = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
                - 2.0 * float(trace_sqrt_product(sigma1, root2)))
    return max(float(distance), 0.0)
