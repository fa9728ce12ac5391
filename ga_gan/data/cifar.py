"""CIFAR-10 / CIFAR-100 "python version" pickle batches, exactly as the archives unpack.

These are pickles, and unpickling runs code: only point this at archives you trust.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError
from .dataset import Dataset, Request

_SIDE = 32
_BATCH_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
_ARCHIVE_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def detect(path: Path) -> tuple[str, Path]:
    """Which CIFAR variant lives at `path` (or in its archive subfolder), and the folder holding it."""
    for variant, folder in _ARCHIVE_FOLDERS.items():
        for candidate in (path, path / folder):
            if (candidate / _BATCH_FILES[variant]["test"][0]).is_file():
                return variant, candidate
    raise UserError(
        f"no CIFAR batches in {path} (looked for test_batch or test, "
        f"here or in {' or '.join(_ARCHIVE_FOLDERS.values())}/)"
    )


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch -> (N, 32, 32, 3) uint8 images and int64 labels."""
    if not path.is_file():
        raise UserError(f"CIFAR batch file missing: {path}")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # a corrupt pickle can fail in almost any way
        raise UserError(f"CIFAR batch {path} is not a readable pickle: {type(e).__name__}: {e}") from None
    if not isinstance(batch, dict) or b"data" not in batch:
        raise UserError(f"CIFAR batch {path} has no b'data' entry")
    raw_labels = batch.get(b"labels", batch.get(b"fine_labels"))
    if raw_labels is None:
        raise UserError(f"CIFAR batch {path} has no b'labels' or b'fine_labels' entry")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(raw_labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE or len(data) != len(labels):
        raise UserError(
            f"CIFAR batch {path} has data of shape {data.shape} and {len(labels)} labels; "
            f"expected (N, {3 * _SIDE * _SIDE}) and N labels"
        )
    # Each row is the R plane, then G, then B, each 32x32 row-major.
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load(path: Path, request: Request) -> Dataset:
    """Load the split's batches in archive order; "all" is train followed by test."""
    if not path.is_dir():
        raise UserError(f"CIFAR directory not found: {path}")
    variant, folder = detect(path)
    splits = ["train", "test"] if request.split == "all" else [request.split]
    names = [name for split in splits for name in _BATCH_FILES[variant][split]]
    batches = [read_batch(folder / name) for name in names]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return Dataset(images=images, labels=labels, name=variant)
