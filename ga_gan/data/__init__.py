"""Datasets as uint8 arrays, from a spec string ``KIND`` or ``KIND:PATH``.

Kinds: ``digits`` (scikit-learn 8x8 digits, no download), ``mnist:DIR`` (IDX files, also
Fashion-MNIST), ``cifar:DIR`` (CIFAR-10/100 python batches), ``folder:DIR`` (any image folder).
Splits: "train", "test", "all". For digits, "train"/"test" are a fixed 80/20 partition; for mnist
and cifar they are the official splits; folders have no test split.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import UserError
from . import cifar, digits, folder, idx
from .cache import default_cache_dir
from .dataset import Dataset, Request
from .pixels import sample_batch, to_model_range, to_uint8
from .transforms import convert_channels, resize_images

__all__ = ["Dataset", "load_dataset", "to_model_range", "to_uint8", "sample_batch"]

SPLITS = ("train", "test", "all")
MIN_RESOLUTION, MAX_RESOLUTION = 4, 1024


class _Source(NamedTuple):
    load: Callable[[Path | None, Request], Dataset]
    needs_path: bool


_SOURCES = {
    "digits": _Source(digits.load, needs_path=False),
    "mnist": _Source(idx.load, needs_path=True),
    "cifar": _Source(cifar.load, needs_path=True),
    "folder": _Source(folder.load, needs_path=True),
}


def load_dataset(
    spec: str,
    *,
    resolution: int | None = None,
    channels: int | None = None,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    log=print,
) -> Dataset:
    """Load `spec`, then make every source honour `limit`, `resolution` and `channels` the same way."""
    kind, path = _parse_spec(spec)
    request = Request(
        split=_check_split(split),
        resolution=_check_resolution(resolution),
        channels=_check_channels(channels),
        limit=_check_limit(limit),
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        log=log,
    )
    dataset = _conform(_SOURCES[kind].load(path, request), request)
    if not len(dataset.images):
        raise UserError(f"dataset {spec} holds no images")
    _, height, width, depth = dataset.images.shape
    log(f"dataset {dataset.name} ({split}): {len(dataset.images)} images, {height}x{width}x{depth}")
    return dataset


def _parse_spec(spec: str) -> tuple[str, Path | None]:
    kind, _, raw_path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in _SOURCES:
        raise UserError(f"unknown dataset kind {kind!r} in {spec!r}; known kinds: {', '.join(_SOURCES)}")
    if _SOURCES[kind].needs_path and not raw_path:
        raise UserError(f"dataset {kind!r} needs a directory, e.g. '{kind}:/path/to/dir'")
    return kind, Path(raw_path).expanduser() if raw_path else None


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def _check_resolution(resolution: int | None) -> int | None:
    if resolution is not None and not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise UserError(f"resolution {resolution} is out of range [{MIN_RESOLUTION}, {MAX_RESOLUTION}]")
    return resolution


def _check_channels(channels: int | None) -> int | None:
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    return channels


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of images, got {limit}")
    return limit


def _conform(dataset: Dataset, request: Request) -> Dataset:
    """Apply whatever of limit/resolution/channels the loader did not already apply itself."""
    images, labels = dataset.images[: request.limit], dataset.labels
    labels = labels[: request.limit] if labels is not None else None
    if request.resolution is not None and images.shape[1:3] != (request.resolution,) * 2:
        request.log(f"resizing {dataset.name} from {images.shape[1]}x{images.shape[2]} to {request.resolution}")
        images = resize_images(images, request.resolution)
    if request.channels is not None:
        images = convert_channels(images, request.channels)
    return dataclasses.replace(dataset, images=images, labels=labels)
