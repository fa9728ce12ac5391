"""The value every loader returns, and the options every loader is handed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: arrays cannot be compared or hashed field-wise
class Dataset:
    """Decoded images kept as uint8 so a 60k-image set stays small on host and device."""

    images: np.ndarray  # uint8, (N, H, W, C), C in {1, 3}
    labels: np.ndarray | None  # int64 (N,), or None when the source has no labels
    name: str  # e.g. "digits", "mnist", "cifar10", "folder:anime-faces-64"
    skipped: int = 0  # unreadable files skipped (folder source)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the caller asked for; a loader may honour some early (folder does), the rest is applied after."""

    split: str
    resolution: int | None
    channels: int | None
    limit: int | None
    cache_dir: Path
    log: Callable[[str], object]
