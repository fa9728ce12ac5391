"""Fréchet arithmetic, the pixel and classifier extractors, and the evaluator's caching."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

from ga_gan.errors import UserError
from ga_gan.data import to_model_range
from ga_gan.metrics import FrechetEvaluator, frechet_distance, gaussian_stats, make_evaluators
from ga_gan.metrics import classifier as clf

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
quiet = lambda *_: None  # noqa: E731


def digits(split):
    try:
        from ga_gan.data import load_dataset
    except ImportError:  # data module not there yet: same 80/20 idea straight from scikit-learn
        from types import SimpleNamespace

        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
        order = np.random.default_rng(0).permutation(len(images))
        keep = np.sort(order[:360] if split == "test" else order[360:])
        return SimpleNamespace(images=images[keep], labels=bunch.target[keep].astype(np.int64), name="digits")
    return load_dataset("digits", split=split, log=quiet)


def noise_like(images_uint8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, images_uint8.shape).astype(np.float32)


# --- Fréchet distance ---------------------------------------------------------------------------


def reference_fd(mu1, s1, mu2, s2):
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_frechet_matches_direct_scipy_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False))
    assert mu1.dtype == np.float64 and s1.shape == (6, 6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference_fd(mu1, s1, mu2, s2), rel=1e-9)


def test_identical_sets_give_zero_and_shift_gives_squared_norm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = gaussian_stats(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)
    d = rng.normal(size=8)
    mu_d, sigma_d = gaussian_stats(x + d)
    assert frechet_distance(mu, sigma, mu_d, sigma_d) == pytest.approx(d @ d, rel=1e-6)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_singular_covariance_stays_finite():
    rng = np.random.default_rng(3)
    mu1, s1 = gaussian_stats(rng.normal(size=(5, 40)))  # rank 4 in 40 dimensions
    mu2, s2 = gaussian_stats(rng.normal(size=(6, 40)) + 1)
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(fd) and fd > 40 * 0.5  # the mean shift alone contributes ~40


def test_singular_covariances_give_the_exact_trace_of_the_root():
    """Fewer samples than dimensions (a pixel FD at 32x32x3 from 1,024 images): with centred
    features X1, X2, Tr sqrt(S1 S2) is the nuclear norm of X1 X2^T / (n - 1), an independent
    exact value that scipy's sqrtm (singular here) does not give."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 80)), rng.normal(size=(30, 80)) @ rng.normal(size=(80, 80)) * 0.3
    (mu1, s1), (mu2, s2) = gaussian_stats(a), gaussian_stats(b)
    x1, x2 = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(x1 @ x2.T / 29, compute_uv=False).sum()
    expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    # (the zero eigenvalues come back as +-1e-15 round-off, whose square roots add ~1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_shape_mismatch_is_user_error():
    with pytest.raises(UserError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(UserError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(UserError):
        gaussian_stats(np.zeros(10))


# --- pixels and the evaluator -------------------------------------------------------------------


def test_pixel_fd_orders_real_halves_below_noise(tmp_path, monkeypatch):
    images = digits("all").images
    order = np.random.default_rng(0).permutation(len(images))
    half_a, half_b = images[order[: len(order) // 2]], images[order[len(order) // 2 :]]
    ev = FrechetEvaluator("pixels", half_a, "digits", cache_dir=tmp_path, log=quiet)
    assert ev.metric_name == "fd_pixels"
    real_vs_real = ev(to_model_range(half_b))
    real_vs_noise = ev(noise_like(half_b))
    assert 0 < real_vs_real < 0.1 * real_vs_noise

    # real statistics come from the cache the second time
    import ga_gan.metrics as metrics

    monkeypatch.setattr(metrics, "extract_features", lambda *a, **k: pytest.fail("recomputed real stats"))
    again = FrechetEvaluator("pixels", half_a, "digits", cache_dir=tmp_path, log=quiet)
    np.testing.assert_array_equal(again.mu, ev.mu)

    with pytest.raises(UserError, match="shape"):
        ev(np.zeros((4, 16, 16, 1), np.float32))


def test_unknown_extractor_and_missing_inception_weights_are_user_errors(tmp_path):
    images = digits("test").images
    with pytest.raises(UserError, match="unknown"):
        make_evaluators(["pixels", "nope"], images, "digits", cache_dir=tmp_path)
    with pytest.raises(UserError, match="pytorch-fid"):
        FrechetEvaluator("inception", images, "digits", cache_dir=tmp_path, log=quiet)
    with pytest.raises(UserError, match="not found"):
        FrechetEvaluator("inception", images, "digits", cache_dir=tmp_path, weights=tmp_path / "x.pth", log=quiet)


# --- classifier ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    train, test = digits("train"), digits("test")
    t0 = time.perf_counter()
    params, acc = clf.load_or_train_classifier(
        "digits", train.images.shape[1:], cache_dir=cache, labelled_dataset=(train, test), log=print
    )
    print(f"digits classifier: accuracy {acc:.4f} in {time.perf_counter() - t0:.1f}s")
    return cache, train, test, acc


def test_classifier_is_accurate_on_held_out_digits(digits_classifier):
    cache, *_, acc = digits_classifier
    assert acc > 0.95
    assert len(list((cache / "classifiers").glob("digits-*-8x8x1-*.msgpack"))) == 1


def test_classifier_cache_is_reused_and_fd_orders_real_below_noise(digits_classifier, monkeypatch):
    cache, train, test, _ = digits_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: pytest.fail("retrained despite cache"))
    ev = FrechetEvaluator("classifier", train.images, "digits", cache_dir=cache, log=quiet)
    assert ev.metric_name == "fd_classifier"
    real_vs_real = ev(to_model_range(test.images))
    real_vs_noise = ev(noise_like(test.images))
    assert real_vs_real < 0.2 * real_vs_noise


def test_classifier_rejects_unlabelled_data(tmp_path):
    from types import SimpleNamespace

    unlabelled = SimpleNamespace(images=np.zeros((10, 8, 8, 1), np.uint8), labels=None)
    with pytest.raises(UserError, match="labelled"):
        clf.load_or_train_classifier("x", (8, 8, 1), cache_dir=tmp_path, labelled_dataset=unlabelled, log=quiet)


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST not found at {MNIST_DIR}")
def test_classifier_is_accurate_on_held_out_mnist(tmp_path):
    from ga_gan.data import load_dataset

    spec = f"mnist:{MNIST_DIR}"
    train = load_dataset(spec, split="train", cache_dir=tmp_path, log=quiet)
    test = load_dataset(spec, split="test", cache_dir=tmp_path, log=quiet)
    t0 = time.perf_counter()
    _, acc = clf.train_classifier(train, test, seed=0, log=print)
    print(f"mnist classifier: accuracy {acc:.4f} in {time.perf_counter() - t0:.1f}s")
    assert acc > 0.95


# --- classifier_score ---------------------------------------------------------------------------


def test_scores_from_probs_extremes():
    from ga_gan.metrics.score import scores_from_probs

    confident_balanced = np.eye(10)[np.arange(1000) % 10]
    s = scores_from_probs(confident_balanced)
    assert s["classifier_score"] == pytest.approx(10, rel=1e-6)
    assert s["classes_covered"] == 10 and s["confident"] == 1.0
    one_class = np.eye(10)[np.zeros(1000, int)]  # confident but all the same digit
    s = scores_from_probs(one_class)
    assert s["classifier_score"] == pytest.approx(1, rel=1e-6) and s["classes_covered"] == 1
    ambiguous = np.full((1000, 10), 0.1)
    s = scores_from_probs(ambiguous)
    assert s["classifier_score"] == pytest.approx(1, rel=1e-6) and s["confident"] == 0.0


def test_classifier_score_real_digits_near_ceiling_noise_near_one(digits_classifier, monkeypatch):
    from ga_gan.metrics.score import ClassifierScorer, make_scorers

    cache, train, test, acc = digits_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: pytest.fail("retrained despite cache"))
    scorer = ClassifierScorer(train.images.shape[1:], dataset_name="digits", cache_dir=cache, log=quiet)
    real = scorer(to_model_range(test.images))
    print(f"classifier_score on {len(test.images)} held-out digits: {real}")
    assert real["classifier_score"] > 8.5  # ceiling 10: balanced classes, confident
    assert real["classes_covered"] == 10 and real["confident"] > 0.85
    # iid noise is out of distribution: an uncalibrated CNN still spreads it over a few classes
    # (measured 2.67 on digits), rarely confidently; a collapsed generator scores exactly 1.
    noise = scorer(noise_like(test.images))
    assert noise["classifier_score"] < 3.0 and noise["confident"] < 0.3
    collapsed = scorer(np.broadcast_to(to_model_range(test.images[:1]), test.images.shape))
    assert collapsed["classifier_score"] == pytest.approx(1.0) and collapsed["classes_covered"] == 1
    with pytest.raises(UserError, match="log.scores"):
        make_scorers(("inception",), (8, 8, 1), dataset_name="digits", cache_dir=cache)
