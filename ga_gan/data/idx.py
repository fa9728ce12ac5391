"""MNIST-format IDX files (MNIST, Fashion-MNIST), parsed with numpy so no extra package is needed."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError
from .dataset import Dataset, Request

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_PREFIXES = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}


def candidate_names(prefix: str, kind: str) -> list[str]:
    """File names the IDX distributions use: dash or dot before 'idxN', gzipped or not."""
    suffix = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    stems = [f"{prefix}-{kind}-{suffix}", f"{prefix}-{kind}.{suffix}"]
    return [name for stem in stems for name in (stem, stem + ".gz")]


def find_file(directory: Path, prefix: str, kind: str) -> Path:
    names = candidate_names(prefix, kind)
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise UserError(f"no {prefix} {kind} file in {directory} (looked for {', '.join(names)})")


def read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise UserError(f"cannot read IDX file {path}: {e}") from None


def parse_idx(data: bytes, expected_magic: int, path: Path) -> np.ndarray:
    """Decode an IDX payload: big-endian magic, big-endian uint32 dims, then uint8 values."""
    if len(data) < 4:
        raise UserError(f"IDX file {path} is truncated ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise UserError(f"IDX file {path} has magic number {magic:#010x}, expected {expected_magic:#010x}")
    ndim = expected_magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise UserError(f"IDX file {path} is truncated (header needs {header_size} bytes, got {len(data)})")
    # Python ints: np.prod of dims such as 2**31 x 2**31 x 4 would overflow int64 and pass.
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims:
        raise UserError(f"IDX file {path} holds no data (dims {dims})")
    expected_size = header_size + math.prod(dims)
    if len(data) != expected_size:
        problem = "truncated" if len(data) < expected_size else "longer than its header says"
        raise UserError(f"IDX file {path} is {problem}: dims {dims} need {expected_size} bytes, got {len(data)}")
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def load_part(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = find_file(directory, prefix, "images")
    labels_path = find_file(directory, prefix, "labels")
    images = parse_idx(read_bytes(images_path), IMAGES_MAGIC, images_path)
    labels = parse_idx(read_bytes(labels_path), LABELS_MAGIC, labels_path)
    if len(images) != len(labels):
        raise UserError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return images[..., None], labels.astype(np.int64)


def load(path: Path, request: Request) -> Dataset:
    """Load the split's IDX pair(s); "all" is train followed by t10k."""
    if not path.is_dir():
        raise UserError(f"MNIST directory not found: {path}")
    parts = [load_part(path, prefix) for prefix in _PREFIXES[request.split]]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return Dataset(images=images, labels=labels, name="mnist")
