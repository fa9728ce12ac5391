"""``classifier_score``: the Inception score's idea with ga-gan's own trained classifier.

For labelled datasets (digits, MNIST, Fashion-MNIST) the cached ``SmallCNN`` of ``fd_classifier``
gives p(y|x) for every generated image, and

    classifier_score = exp(E_x KL(p(y|x) || p(y))),   p(y) = E_x p(y|x)

(Salimans et al. 2016, with the dataset's classifier instead of Inception-v3): 1 for useless
samples (all alike or all ambiguous), the number of classes for confident, class-balanced
ones. Two plainer readings of the same probabilities come with it: ``classes_covered`` (classes
that hold at least 5% of the samples by argmax) and ``confident`` (share of samples with
max p >= 0.9). Such a score is lenient (scribbles that a person cannot read may still get most
classes confidently), so it is a second opinion beside ``fd_classifier``, not a bar by itself.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan.errors import UserError
from ga_gan.metrics.extractor import FeatureExtractor, extract_features

MIN_SHARE = 0.05  # a class counts as covered with at least this share of the samples
CONFIDENT_P = 0.9  # a sample counts as confident when its top class has at least this p
SCORES = ("classifier",)  # names accepted by `log.scores`
SCORE_KEYS = ("classifier_score", "classes_covered", "confident")


def scores_from_probs(probs: np.ndarray, min_share: float = MIN_SHARE,
                      confident_p: float = CONFIDENT_P) -> dict[str, float]:
    """The three scores of a (N, classes) matrix of class probabilities."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    p_y = p.mean(axis=0)
    kl = np.sum(p * (np.log(p) - np.log(p_y)), axis=1)
    shares = np.bincount(p.argmax(axis=1), minlength=p.shape[1]) / len(p)
    return {"classifier_score": float(np.exp(kl.mean())),
            "classes_covered": int(np.sum(shares >= min_share)),
            "confident": float(np.mean(p.max(axis=1) >= confident_p))}


class ClassifierScorer:
    """Scores batches of generated float images in [-1, 1] with the dataset's cached classifier
    (trained on the first use, exactly as for ``fd_classifier``)."""

    def __init__(self, image_shape: tuple[int, int, int], *, dataset_name: str,
                 cache_dir: str | os.PathLike | None = None, labelled_dataset: Any = None,
                 batch_size: int = 256, log: Callable[[str], None] = print):
        from ga_gan.metrics.classifier import SmallCNN, load_or_train_classifier

        params, self.test_accuracy = load_or_train_classifier(
            dataset_name, tuple(image_shape), cache_dir=cache_dir,
            labelled_dataset=labelled_dataset, log=log)
        model = SmallCNN(num_classes=int(np.shape(params["fc2"]["bias"])[0]))
        params = jax.tree_util.tree_map(jnp.asarray, params)
        probs = jax.jit(lambda x: jax.nn.softmax(model.apply({"params": params}, x), axis=-1))
        self.image_shape = tuple(int(s) for s in image_shape)
        self.batch_size = batch_size
        self._probs = FeatureExtractor("classifier_probs", "classifier_score", probs,
                                       "classifier-probs")

    def probs(self, images: Any) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise UserError(f"generated images have shape {x.shape}, expected "
                            f"(M, {', '.join(map(str, self.image_shape))})")
        if not np.isfinite(x).all():
            raise UserError("generated images contain NaN or inf; cannot compute classifier_score")
        return extract_features(self._probs, x, self.batch_size)

    def __call__(self, images: Any) -> dict[str, float]:
        return scores_from_probs(self.probs(images))


def make_scorers(names: tuple[str, ...], image_shape, **kwargs: Any) -> list[ClassifierScorer]:
    """One scorer per name of `log.scores` (only "classifier" today)."""
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise UserError(f"unknown log.scores {', '.join(unknown)} (choose from {', '.join(SCORES)})")
    return [ClassifierScorer(image_shape, **kwargs) for _ in names]
