"""Tests for ga_gan.data: every source, the shared options, the folder cache, and the pixel helpers."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ga_gan.data import Dataset, load_dataset, sample_batch, to_model_range, to_uint8
from ga_gan.data import digits, folder
from ga_gan.data.transforms import convert_channels
from ga_gan.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_MNIST = SHARED_DATA / "mnist"
REAL_ANIME = SHARED_DATA / "anime-faces-64"


def needs(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"real data not present at {path}")


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def load(messages, tmp_path):
    """load_dataset with a private cache folder and captured log lines."""

    def _load(spec, **options):
        options.setdefault("cache_dir", tmp_path / "cache")
        return load_dataset(spec, log=messages.append, **options)

    return _load


# ---------------------------------------------------------------- digits


def test_digits_all_shape_range_and_labels(load):
    data = load("digits", split="all")
    assert isinstance(data, Dataset) and data.name == "digits"
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.images.min() == 0 and data.images.max() == 255
    assert data.labels.dtype == np.int64 and set(np.unique(data.labels)) == set(range(10))


def test_digits_splits_are_a_fixed_disjoint_partition(load):
    train, test = digits.split_indices(1797, "train"), digits.split_indices(1797, "test")
    assert len(test) == 359 and len(train) == 1438
    assert not set(train) & set(test)
    assert sorted(set(train) | set(test)) == list(range(1797))
    everything = load("digits", split="all")
    test_data = load("digits", split="test")
    np.testing.assert_array_equal(test_data.images, everything.images[test])
    np.testing.assert_array_equal(test_data.labels, everything.labels[test])
    np.testing.assert_array_equal(load("digits", split="test").images, test_data.images)


def test_generic_options_resize_convert_and_limit(load, messages):
    data = load("digits", split="all", resolution=16, channels=3, limit=10)
    assert data.images.shape == (10, 16, 16, 3) and data.labels.shape == (10,)
    np.testing.assert_array_equal(data.images[..., 0], data.images[..., 2])
    assert any("resizing digits from 8x8 to 16" in m for m in messages)


def test_rgb_to_grey_matches_pil():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    expected = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in rgb])
    np.testing.assert_array_equal(convert_channels(rgb, 1)[..., 0], expected)


# ---------------------------------------------------------------- spec and option errors


@pytest.mark.parametrize(
    ("spec", "options", "fragment"),
    [
        ("imagenet:/x", {}, "known kinds: digits, mnist, cifar, folder"),
        ("mnist", {}, "mnist:/path/to/dir"),
        ("folder:", {}, "folder:/path/to/dir"),
        ("digits:/somewhere", {}, "takes no path"),
        ("digits", {"resolution": 2}, "resolution 2"),
        ("digits", {"resolution": 2048}, "resolution 2048"),
        ("digits", {"channels": 2}, "channels"),
        ("digits", {"split": "valid"}, "split 'valid'"),
        ("digits", {"limit": 0}, "limit"),
    ],
)
def test_bad_specs_and_options_raise_user_error(load, spec, options, fragment):
    with pytest.raises(UserError, match=fragment):
        load(spec, **options)


# ---------------------------------------------------------------- mnist (IDX)


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_mnist(directory: Path, count: int = 5, suffix: str = "") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", 0x803, images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", 0x801, labels)
    return images, labels


def test_real_mnist_train_and_test(load):
    needs(REAL_MNIST)
    train = load(f"mnist:{REAL_MNIST}", split="train")
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.min() == 0 and train.labels.max() == 9
    test = load(f"mnist:{REAL_MNIST}", split="test")
    assert test.images.shape == (10000, 28, 28, 1) and len(test.labels) == 10000


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_written_mnist_plain_and_gzip(load, tmp_path, suffix):
    images, labels = write_mnist(tmp_path, suffix=suffix)
    data = load(f"mnist:{tmp_path}", split="all")
    assert data.name == "mnist" and data.images.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(data.images[:5, ..., 0], images)
    np.testing.assert_array_equal(data.labels[5:], labels)


def test_mnist_wrong_magic(load, tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", 0x801, np.zeros((2, 28, 28)))
    with pytest.raises(UserError, match="magic"):
        load(f"mnist:{tmp_path}")


def test_mnist_truncated(load, tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated"):
        load(f"mnist:{tmp_path}")


def test_mnist_count_mismatch(load, tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", 0x801, np.zeros(4))
    with pytest.raises(UserError, match="5 images but .* 4 labels"):
        load(f"mnist:{tmp_path}")


def test_mnist_missing_dir_and_file(load, tmp_path):
    with pytest.raises(UserError, match="not found"):
        load(f"mnist:{tmp_path / 'nope'}")
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz"):
        load(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- cifar


def cifar_rows(count: int) -> np.ndarray:
    """Rows as distributed: R plane (0..255 repeating, row-major), then G plane = 100 + i, B plane = 200."""
    red = np.arange(1024) % 256
    rows = [np.concatenate([red, np.full(1024, 100 + i), np.full(1024, 200)]) for i in range(count)]
    return np.stack(rows).astype(np.uint8)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def write_cifar10(directory: Path, per_batch: int = 2) -> None:
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_pickle(directory / name, {b"data": cifar_rows(per_batch), b"labels": list(range(per_batch))})


def test_cifar10_pixel_layout_and_splits(load, tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")  # the parent folder is accepted too
    train = load(f"cifar:{tmp_path}", split="train")
    assert train.name == "cifar10" and train.images.shape == (10, 32, 32, 3)
    image = train.images[1]
    assert image[0, 1, 0] == 1 and image[1, 0, 0] == 32  # R plane is row-major
    assert (image[..., 1] == 101).all() and (image[..., 2] == 200).all()
    np.testing.assert_array_equal(train.labels, [0, 1] * 5)
    assert len(load(f"cifar:{tmp_path}", split="all").images) == 12


def test_cifar100_layout(load, tmp_path):
    for name in ("train", "test"):
        batch = {b"data": cifar_rows(3), b"fine_labels": [7, 8, 99], b"coarse_labels": [0, 1, 2]}
        write_pickle(tmp_path / name, batch)
    data = load(f"cifar:{tmp_path}", split="test")
    assert data.name == "cifar100" and data.images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(data.labels, [7, 8, 99])
    assert data.images[2, 31, 31, 0] == 1023 % 256 and data.images[2, 0, 0, 1] == 102


def test_cifar_missing_and_corrupt(load, tmp_path):
    with pytest.raises(UserError, match="no CIFAR batches"):
        load(f"cifar:{tmp_path}")
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        load(f"cifar:{tmp_path}")
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="not a readable pickle"):
        load(f"cifar:{tmp_path}")
    write_pickle(tmp_path / "data_batch_3", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(UserError, match="shape"):
        load(f"cifar:{tmp_path}")


# ---------------------------------------------------------------- folder


def save_image(path: Path, array: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, format=fmt)


def make_folder(root: Path) -> None:
    """Nested images, one corrupt file, one wide PNG, plus files that are not images."""
    rng = np.random.default_rng(2)
    save_image(root / "a.jpg", rng.integers(0, 256, (20, 20, 3)))
    save_image(root / "sub" / "b.PNG", rng.integers(0, 256, (12, 12, 3)), fmt="PNG")
    save_image(root / "sub" / "deeper" / "c.bmp", rng.integers(0, 256, (30, 30)))
    wide = np.zeros((40, 60, 3))
    wide[:, :10] = (255, 0, 0)  # red left margin
    wide[:, 10:50] = (0, 0, 255)  # blue centre square
    wide[:, 50:] = (0, 255, 0)  # green right margin
    save_image(root / "sub" / "wide.png", wide)
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (root / "notes.txt").write_text("ignored")


def test_real_anime_faces_rgb_and_grey(load):
    needs(REAL_ANIME)
    rgb = load(f"folder:{REAL_ANIME}", limit=200, resolution=32)
    assert rgb.name == "folder:anime-faces-64" and rgb.labels is None and rgb.skipped == 0
    assert rgb.images.shape == (200, 32, 32, 3) and rgb.images.dtype == np.uint8
    assert rgb.images.std() > 20  # real pictures, not a blank fill
    grey = load(f"folder:{REAL_ANIME}", limit=200, resolution=32, channels=1)
    assert grey.images.shape == (200, 32, 32, 1)
    diff = np.abs(grey.images.astype(int) - convert_channels(rgb.images, 1).astype(int))
    assert diff.max() <= 3  # grey = luma of the RGB result, up to resampling rounding


def test_folder_nested_corrupt_and_center_crop(load, tmp_path, messages):
    root = tmp_path / "pics"
    make_folder(root)
    data = load(f"folder:{root}", resolution=16)
    assert data.name == "folder:pics" and data.skipped == 1
    assert data.images.shape == (4, 16, 16, 3)
    assert any(m == f"skipped 1 unreadable images in {root}" for m in messages)
    wide = data.images[3]  # sorted: a.jpg, sub/b.PNG, sub/deeper/c.bmp, sub/wide.png
    assert (wide == (0, 0, 255)).all(), "the red and green margins should be cropped away"
    grey_c = data.images[2]
    np.testing.assert_array_equal(grey_c[..., 0], grey_c[..., 1])


def test_folder_limit_keeps_first_sorted_files(load, tmp_path):
    make_folder(tmp_path)
    data = load(f"folder:{tmp_path}", resolution=8, channels=1, limit=2)
    assert data.images.shape == (2, 8, 8, 1) and data.skipped == 0


def test_folder_empty_missing_and_unreadable(load, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files"):
        load(f"folder:{tmp_path / 'empty'}")
    with pytest.raises(UserError, match="not found"):
        load(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="could be read"):
        load(f"folder:{tmp_path / 'bad'}")
    with pytest.raises(UserError, match="no test split"):
        load(f"folder:{tmp_path / 'bad'}", split="test")


def test_folder_cache_hit_skips_decoding_and_changes_invalidate(load, tmp_path, monkeypatch):
    root = tmp_path / "pics"
    make_folder(root)
    calls = []
    real_decode_all = folder.decode_all
    monkeypatch.setattr(folder, "decode_all", lambda *a: calls.append(1) or real_decode_all(*a))

    first = load(f"folder:{root}", resolution=16)
    second = load(f"folder:{root}", resolution=16)
    assert len(calls) == 1, "second load should come from the cache"
    np.testing.assert_array_equal(first.images, second.images)
    assert second.skipped == 1

    load(f"folder:{root}", resolution=8)
    assert len(calls) == 2, "a different resolution is a different cache entry"

    save_image(root / "a.jpg", np.zeros((20, 20, 3)))
    os.utime(root / "a.jpg", ns=(1, 1))  # also guarantee an mtime change on coarse filesystems
    changed = load(f"folder:{root}", resolution=16)
    assert len(calls) == 3, "a changed file must invalidate the cache"
    assert changed.images[0].max() < 10

    names = [p.name for p in (tmp_path / "cache").iterdir()]
    assert len(names) == 6 and all(name.endswith((".npy", ".json")) for name in names), names  # no .tmp left


def test_folder_cache_dir_from_environment(tmp_path, monkeypatch):
    make_folder(tmp_path / "pics")
    monkeypatch.setenv("GA_GAN_CACHE", str(tmp_path / "env-cache"))
    load_dataset(f"folder:{tmp_path / 'pics'}", resolution=8, log=lambda m: None)
    assert len(list((tmp_path / "env-cache").glob("folder-pics-*.npy"))) == 1


# ---------------------------------------------------------------- pixel helpers


def test_model_range_round_trip():
    pixels = np.arange(256, dtype=np.uint8)
    model = jax.jit(to_model_range)(pixels)
    assert model.dtype == jnp.float32
    assert float(model[0]) == -1.0 and float(model[-1]) == 1.0
    np.testing.assert_array_equal(to_uint8(model), pixels)


def test_model_range_on_the_host_is_the_exact_division():
    """NumPy pixels (real-data statistics) stay on the host, exactly x / 127.5 - 1, and agree
    with the jitted map used for training batches."""
    pixels = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
    host = to_model_range(pixels)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    np.testing.assert_array_equal(host, pixels.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(np.asarray(jax.jit(to_model_range)(pixels)), host, atol=1e-6)


def test_to_uint8_clips_and_handles_nan():
    out = to_uint8(np.array([-3.0, 0.0, 5.0, np.nan]))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 128, 255, 0])


def test_sample_batch_jitted_shape_range_and_determinism():
    values = np.array([0, 50, 128, 200, 255], dtype=np.uint8)
    images = jnp.asarray(np.broadcast_to(values[:, None, None, None], (5, 4, 4, 3)))
    sample = jax.jit(sample_batch, static_argnums=2)
    batch = sample(jax.random.key(0), images, 64)
    assert batch.shape == (64, 4, 4, 3) and batch.dtype == jnp.float32
    assert float(batch.min()) >= -1.0 and float(batch.max()) <= 1.0
    drawn = set(np.unique(to_uint8(batch)).tolist())
    assert drawn <= set(values.tolist()) and len(drawn) > 1
    np.testing.assert_array_equal(batch, sample(jax.random.key(0), images, 64))
    assert not np.array_equal(batch, sample(jax.random.key(1), images, 64))
