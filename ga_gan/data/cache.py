"""On-disk cache of decoded arrays, because decoding tens of thousands of images takes minutes.

An entry is ``<stem>.npy`` (the array; plain .npy loads several times faster than .npz, which
checksums every byte) plus ``<stem>.json`` (small metadata). Both are written atomically, JSON
first, and an entry counts only when both read back, so a crash never leaves a usable half-entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ga_gan.images import write_atomically

CACHE_ENV_VAR = "GA_GAN_CACHE"


def default_cache_dir() -> Path:
    """$GA_GAN_CACHE if set, else ~/.cache/ga-gan/datasets."""
    override = os.environ.get(CACHE_ENV_VAR)
    return Path(override) if override else Path.home() / ".cache" / "ga-gan" / "datasets"


def cache_key(content: object) -> str:
    """Stable hash of JSON-serialisable content that determines the decoded result."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def load_entry(stem: Path) -> tuple[np.ndarray, dict] | None:
    """The cached array and metadata, or None when absent or unreadable (the caller then rebuilds)."""
    try:
        meta = json.loads(_sibling(stem, ".json").read_text())
        return np.load(_sibling(stem, ".npy")), meta
    except (OSError, ValueError):  # missing, partial or corrupt; JSONDecodeError is a ValueError
        return None


def save_entry(stem: Path, array: np.ndarray, meta: dict) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(_sibling(stem, ".json"), lambda f: f.write(json.dumps(meta).encode()))
    write_atomically(_sibling(stem, ".npy"), lambda f: np.save(f, array))


def _sibling(stem: Path, extension: str) -> Path:
    """stem + extension; not with_suffix, which would eat a dotted folder name like "faces.v2"."""
    return stem.parent / (stem.name + extension)
