"""A folder of image files (searched recursively), center-cropped to square and resized.

Decoded results are cached (see cache.py) keyed by the file list, sizes and mtimes, so a second
run on the same folder loads one array instead of decoding every file again.
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import UserError
from . import cache
from .dataset import Dataset, Request

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
DEFAULT_RESOLUTION = 64
_PROGRESS_MIN_FILES = 2000
_CACHE_FORMAT = 2  # bump when decoding changes, so stale caches are not reused
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def list_images(directory: Path) -> list[str]:
    """Relative POSIX paths of image files under `directory`, sorted.

    Hidden files and folders (e.g. macOS "._x.jpg") are ignored. Plain strings rather than Path
    objects: pathlib makes listing 60k files take about a second, which would dominate a cache hit.
    """
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        relative_root = os.path.relpath(root, directory)
        prefix = "" if relative_root == "." else relative_root.replace(os.sep, "/") + "/"
        found += [
            prefix + name
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        ]
    return sorted(found)


def regular_files(directory: Path, relative_paths: list[str]) -> tuple[list[str], int]:
    """The paths that are regular files (symlinks followed), and how many were not: symlink
    loops, dangling links, FIFOs, sockets, devices. Never opened: opening a FIFO blocks."""
    kept = []
    for relative in relative_paths:
        try:
            if stat.S_ISREG(os.stat(os.path.join(directory, relative)).st_mode):
                kept.append(relative)
        except OSError:  # ELOOP, ENOENT (dangling), EACCES
            pass
    return kept, len(relative_paths) - len(kept)


def to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float greyscale ("I;16*", "I", "F") scaled to 8 bits by the value
    range of its type (PIL's convert("L") clips them at 255: nearly white). Palette images with
    transparency go through RGBA; LA, CMYK and the rest are left to PIL's convert."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and a.max() <= 1.0 else (255 if a.max() <= 255 else 65535)
        return Image.fromarray(np.clip(np.rint(a * (255 / top)), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")  # what PIL asks for (it warns on a direct convert)
    return image


def decode(path: str, resolution: int, mode: str) -> np.ndarray | None:
    """One file -> (resolution, resolution, C) uint8, or None if it cannot be read.

    Bicubic for both up- and downscaling: PIL widens the filter when shrinking, so it antialiases.
    """
    try:
        with Image.open(path) as image:
            image.draft(None, (resolution, resolution))  # JPEG: decode at a reduced scale when much larger
            image = to_8bit(image).convert(mode)
    except _UNREADABLE:
        return None
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop before resizing (rather than resize(box=...)), so the filter cannot reach into the margins.
    square = image.crop((left, top, left + side, top + side))
    resized = square.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(resized).reshape(resolution, resolution, len(mode))


def decode_all(paths: list[str], resolution: int, mode: str) -> tuple[np.ndarray, int]:
    """Decode in a thread pool (PIL releases the GIL while decoding); returns images and the skipped count."""
    workers = min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: decode(p, resolution, mode), paths)
        progress = tqdm(results, total=len(paths), desc="decoding images", unit="img",
                        disable=len(paths) <= _PROGRESS_MIN_FILES)
        decoded = [image for image in progress if image is not None]
    shape = (len(decoded), resolution, resolution, len(mode))
    images = np.stack(decoded) if decoded else np.empty(shape, np.uint8)
    return images, len(paths) - len(decoded)


def cache_stem(
    directory: Path, relative_paths: list[str], request: Request, resolution: int, mode: str
) -> Path:
    """Where the decoded array for exactly these files (by name, size and mtime) and options lives."""
    files = []
    root = str(directory)
    for relative in relative_paths:
        stat = os.stat(os.path.join(root, relative))
        files.append([relative, stat.st_size, stat.st_mtime_ns])
    key = cache.cache_key([_CACHE_FORMAT, root, files, resolution, mode, request.limit])
    return request.cache_dir / f"folder-{directory.name}-{key[:24]}"


def decode_cached(
    directory: Path, relative_paths: list[str], request: Request, resolution: int, mode: str
) -> tuple[np.ndarray, int]:
    """Decoded images and skipped count, from the cache when these exact files were decoded before."""
    stem = cache_stem(directory, relative_paths, request, resolution, mode)
    cached = cache.load_entry(stem)
    if cached is not None:
        images, meta = cached
        request.log(f"loaded {len(images)} decoded images from cache {stem}.npy")
        return images, int(meta.get("skipped", 0))
    paths = [os.path.join(directory, relative) for relative in relative_paths]
    images, skipped = decode_all(paths, resolution, mode)
    if len(images):
        try:
            cache.save_entry(stem, images, {"skipped": skipped, "source": str(directory)})
        except OSError as e:  # the cache only saves time; never fail the run over it
            request.log(f"warning: could not write dataset cache {stem}.npy: {e}")
    return images, skipped


def load(path: Path, request: Request) -> Dataset:
    """Load every image under `path` (the first `limit` in sorted order when limited)."""
    if request.split == "test":
        raise UserError(f"folder dataset {path} has no test split; use split 'train' or 'all'")
    if not path.is_dir():
        raise UserError(f"image folder not found: {path}")
    directory = path.resolve()
    relative_paths, special = regular_files(directory, list_images(directory))
    relative_paths = relative_paths[: request.limit]
    if special:
        request.log(f"skipped {special} image names in {path} that are not regular files "
                    f"(symlink loops, dangling links, FIFOs, devices)")
    if not relative_paths:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"no image files ({suffixes}) found in {path}")
    resolution = request.resolution or DEFAULT_RESOLUTION
    mode = "L" if request.channels == 1 else "RGB"

    images, skipped = decode_cached(directory, relative_paths, request, resolution, mode)
    if skipped:
        request.log(f"skipped {skipped} unreadable images in {path}")
    if not len(images):
        raise UserError(f"none of the {len(relative_paths)} image files in {path} could be read")
    return Dataset(images=images, labels=None, name=f"folder:{directory.name}",
                   skipped=skipped + special)
