"""scikit-learn's 8x8 handwritten digits: real data that ships with scikit-learn, so it needs no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .dataset import Dataset, Request

TEST_FRACTION = 0.2
_SPLIT_SEED = 0  # fixed so "train" and "test" are the same disjoint sets on every machine


def split_indices(count: int, split: str) -> np.ndarray:
    """Indices of a deterministic held-out 20% ("test"), the other 80% ("train"), or everything ("all")."""
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(_SPLIT_SEED).permutation(count)
    num_test = round(count * TEST_FRACTION)
    chosen = order[:num_test] if split == "test" else order[num_test:]
    return np.sort(chosen)  # keep the original order within a split


def load(path: Path | None, request: Request) -> Dataset:
    """Load the 1,797 digits, scaled from 0..16 to 0..255."""
    if path is not None:
        raise UserError(f"dataset 'digits' takes no path (got 'digits:{path}'); use just 'digits'")
    from sklearn.datasets import load_digits  # slow import; only pay for it when used

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    keep = split_indices(len(images), request.split)
    return Dataset(images=images[keep], labels=bunch.target.astype(np.int64)[keep], name="digits")
