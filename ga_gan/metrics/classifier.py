"""A small CNN digit/object classifier whose penultimate layer gives ``fd_classifier`` features.

Lipizzaner and similar GAN papers report "FID" on MNIST using such a home-trained classifier
instead of Inception-v3. Those numbers are only comparable with themselves, so ga-gan names the
metric ``fd_classifier`` and never calls it FID. The network is trained once per dataset,
resolution and channel count (seconds on CPU) and cached, so every run measures in the same
feature space.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from ga_gan.errors import UserError
from ga_gan.data.pixels import to_model_range
from ga_gan.metrics.extractor import FeatureExtractor, cache_root, slug

# Bump when the architecture or training recipe changes: old cached classifiers are then ignored.
CLASSIFIER_VERSION = "cnn-v1"
MAX_TRAIN = 20_000  # subsample: MNIST's 60k would cost minutes on CPU for a fraction of a percent
TARGET_EXAMPLES = 40_000  # default epochs ~ this many examples seen (2 on MNIST, ~28 on digits)
BATCH = 128


class SmallCNN(nn.Module):
    """conv32 -> conv64/s2 -> dense128 (features) -> dense(classes).

    The first conv is strided too at >= 16 px, which keeps MNIST training cheap on CPU; tiny
    images (8x8 digits) need the full resolution to stay above 95% accuracy.
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, features_only: bool = False):
        s = 2 if min(x.shape[1:3]) >= 16 else 1
        x = nn.relu(nn.Conv(32, (3, 3), strides=(s, s), name="conv1")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(2, 2), name="conv2")(x))
        x = x.reshape(x.shape[0], -1)
        feats = nn.relu(nn.Dense(128, name="fc1")(x))
        if features_only:
            return feats
        return nn.Dense(self.num_classes, name="fc2")(feats)


def _prepare(images_uint8: np.ndarray, hw: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 NHWC -> float32 [-1, 1], resized bilinearly to ``hw`` when the evaluation size differs."""
    x = to_model_range(images_uint8)
    if hw is not None and tuple(x.shape[1:3]) != tuple(hw):
        x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], *hw, x.shape[3]), "linear"))
    return x


def _jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by up to 1 px (background-filled): cheap augmentation worth ~3 points on digits."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    rows = rng.integers(0, 3, (n, 1, 1)) + np.arange(h)[None, :, None]
    cols = rng.integers(0, 3, (n, 1, 1)) + np.arange(w)[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def _check_labelled(ds: Any, what: str) -> None:
    labels = getattr(ds, "labels", None)
    if labels is None or len(labels) == 0 or len(labels) != len(ds.images):
        raise UserError(f"the classifier extractor needs a labelled dataset; the {what} split has no labels")


def _accuracy(apply_fn, params, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        logits = apply_fn(params, jnp.asarray(x[i : i + batch]))
        correct += int((np.asarray(logits).argmax(-1) == y[i : i + batch]).sum())
    return correct / len(x)


def _splits(dataset_train: Any, dataset_test: Any, rng: np.random.Generator,
            image_hw: tuple[int, int] | None, max_train: int) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) in the model range, the train split subsampled to
    ``max_train`` (with ``rng``) and both at the train split's resolution."""
    _check_labelled(dataset_train, "train")
    _check_labelled(dataset_test, "test")
    n_all = len(dataset_train.images)
    keep = np.sort(rng.choice(n_all, size=max_train, replace=False)) if n_all > max_train else np.arange(n_all)
    x_train = _prepare(np.asarray(dataset_train.images)[keep], image_hw)
    y_train = np.asarray(dataset_train.labels, dtype=np.int64)[keep]
    x_test = _prepare(dataset_test.images, x_train.shape[1:3])
    y_test = np.asarray(dataset_test.labels, dtype=np.int64)
    if x_test.shape[3] != x_train.shape[3]:
        raise UserError(f"train and test splits have different channel counts: {x_train.shape[3]} vs {x_test.shape[3]}")
    return x_train, y_train, x_test, y_test


def train_classifier(
    dataset_train: Any,
    dataset_test: Any,
    *,
    seed: int = 0,
    epochs: int | None = None,
    image_hw: tuple[int, int] | None = None,
    max_train: int = MAX_TRAIN,
    log: Callable[[str], None] = print,
) -> tuple[dict, float]:
    """Train ``SmallCNN`` with Adam on a labelled ``Dataset``; returns ``(params, test_accuracy)``.

    ``epochs=None`` picks enough epochs to see ~40k examples, so tiny sets (digits) and large ones
    (MNIST, subsampled to ``max_train``) both train in seconds on CPU to >95% held-out accuracy.
    ``image_hw`` resizes both splits to the resolution the metric will be computed at.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = _splits(dataset_train, dataset_test, rng, image_hw, max_train)
    model = SmallCNN(num_classes=int(max(y_train.max(), y_test.max())) + 1)
    n = len(x_train)
    epochs = epochs if epochs is not None else max(1, min(30, math.ceil(TARGET_EXAMPLES / n)))
    steps_per_epoch = max(1, n // BATCH)
    tx = optax.adam(optax.cosine_decay_schedule(2e-3, epochs * steps_per_epoch, alpha=0.05))
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + x_train.shape[1:]))["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = order[s * BATCH : (s + 1) * BATCH]
            xb, yb = jnp.asarray(_jitter(x_train[idx], rng)), jnp.asarray(y_train[idx])
            params, opt_state, _ = step(params, opt_state, xb, yb)
    apply_fn = jax.jit(lambda p, x: model.apply({"params": p}, x))
    acc = _accuracy(apply_fn, params, x_test, y_test)
    log(
        f"classifier: trained {epochs} epoch(s) on {n} images {x_train.shape[1:]} in "
        f"{time.perf_counter() - t0:.1f}s, held-out accuracy {acc:.4f}"
    )
    return jax.device_get(params), acc


def classifier_cache_path(dataset_name: str, image_shape: tuple[int, int, int], cache_dir=None) -> Path:
    h, w, c = image_shape
    return cache_root(cache_dir) / "classifiers" / f"{slug(dataset_name)}-{h}x{w}x{c}-{CLASSIFIER_VERSION}.msgpack"


def _split_labelled(labelled_dataset: Any, dataset_name: str, image_shape, log) -> tuple[Any, Any]:
    """``(train, test)`` from a pair, from one ``Dataset`` (1/6 held out, seeded), or via ``load_dataset``."""
    if labelled_dataset is None:
        from ga_gan.data import load_dataset

        h, w, c = image_shape
        kwargs = dict(resolution=h if h == w else None, channels=c, log=log)
        train = load_dataset(dataset_name, split="train", **kwargs)
        _check_labelled(train, "train")
        return train, load_dataset(dataset_name, split="test", **kwargs)
    if isinstance(labelled_dataset, (tuple, list)) and len(labelled_dataset) == 2:
        return labelled_dataset[0], labelled_dataset[1]
    ds = labelled_dataset
    _check_labelled(ds, "given")
    order = np.random.default_rng(0).permutation(len(ds.images))
    cut = len(order) - max(1, len(order) // 6)
    images, labels = np.asarray(ds.images), np.asarray(ds.labels)
    train, test = np.sort(order[:cut]), np.sort(order[cut:])
    return (
        SimpleNamespace(images=images[train], labels=labels[train]),
        SimpleNamespace(images=images[test], labels=labels[test]),
    )


def load_or_train_classifier(
    dataset_name: str,
    image_shape: tuple[int, int, int],
    *,
    cache_dir: str | os.PathLike | None = None,
    labelled_dataset: Any = None,
    log: Callable[[str], None] = print,
) -> tuple[dict, float]:
    """Cached params for this dataset/resolution/channels, training (and saving) them on a miss."""
    path = classifier_cache_path(dataset_name, image_shape, cache_dir)
    if path.exists():
        state = serialization.msgpack_restore(path.read_bytes())
        return state["params"], float(state["test_accuracy"])
    train, test = _split_labelled(labelled_dataset, dataset_name, image_shape, log)
    channels = np.asarray(train.images).shape[-1]
    if channels != image_shape[2]:
        raise UserError(f"labelled dataset has {channels} channel(s) but the images to score have {image_shape[2]}")
    params, acc = train_classifier(train, test, image_hw=tuple(image_shape[:2]), log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(serialization.msgpack_serialize({"params": params, "test_accuracy": acc}))
    os.replace(tmp, path)  # atomic: concurrent runs never read a half-written file
    log(f"classifier: cached at {path}")
    return params, acc


def classifier_extractor(
    image_shape: tuple[int, int, int],
    *,
    dataset_name: str,
    cache_dir=None,
    labelled_dataset: Any = None,
    log: Callable[[str], None] = print,
) -> FeatureExtractor:
    params, acc = load_or_train_classifier(
        dataset_name, image_shape, cache_dir=cache_dir, labelled_dataset=labelled_dataset, log=log
    )
    model = SmallCNN(num_classes=int(np.shape(params["fc2"]["bias"])[0]))
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x, features_only=True))
    params = jax.tree_util.tree_map(jnp.asarray, params)
    h, w, c = image_shape
    identity = f"classifier-{CLASSIFIER_VERSION}-{slug(dataset_name)}-{h}x{w}x{c}"
    return FeatureExtractor("classifier", "fd_classifier", lambda x: apply(params, x), identity)
