"""Latent inversion: GA operators, fitness reductions, search on a toy generator, file outputs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ga_gan.errors import UserError
from ga_gan.invert import ga
from ga_gan.invert.output import load_target_images, write_outputs
from ga_gan.invert.search import invert, make_fitness_fn
from ga_gan.invert.strategies import make_latent_strategy, resolve_strategy

KEY = jax.random.PRNGKey(0)
LATENT = 8


# ---------------------------------------------------------------- operators


def test_tournament_reproduces_its_draws():
    fitness = jax.random.permutation(jax.random.PRNGKey(1), 10).astype(jnp.float32)
    picked = np.asarray(ga.tournament_select(KEY, fitness, 500, size=3))
    draws = np.asarray(jax.random.randint(KEY, (500, 3), 0, 10))
    f = np.asarray(fitness)
    expected = draws[np.arange(500), np.argmin(f[draws], axis=1)]
    np.testing.assert_array_equal(picked, expected)


def test_tournament_rank_distribution_is_best_of_three():
    p, n = 20, 200_000
    picked = np.asarray(ga.tournament_select(KEY, jnp.arange(p, dtype=jnp.float32), n, size=3))
    k = np.arange(p)
    empirical = (picked[:, None] >= k[None]).mean(axis=0)
    expected = ((p - k) / p) ** 3  # all three draws land on rank >= k
    assert np.max(np.abs(empirical - expected)) < 0.01
    uniform = np.asarray(ga.tournament_select(KEY, jnp.arange(p, dtype=jnp.float32), n, size=1))
    assert picked.mean() < 0.6 * uniform.mean()  # selection pressure exists


def test_blx_alpha_bounds_and_reach():
    ka, kb, kc = jax.random.split(KEY, 3)
    a = jax.random.normal(ka, (5000, LATENT))
    b = jax.random.normal(kb, (5000, LATENT))
    blx = jax.jit(jax.vmap(ga.blx_alpha, in_axes=(0, 0, 0, None)))
    child = np.asarray(blx(jax.random.split(kc, 5000), a, b, 0.2))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    d = hi - lo
    assert np.all(child >= lo - 0.2 * d - 1e-5) and np.all(child <= hi + 0.2 * d + 1e-5)
    outside = np.mean((child < lo) | (child > hi))
    assert abs(outside - 0.4 / 1.4) < 0.02  # widened share of the interval: 2*alpha / (1 + 2*alpha)
    inner = np.asarray(ga.blx_alpha(kc, a, b, 0.0))
    assert np.all((inner >= lo - 1e-6) & (inner <= hi + 1e-6))


def test_crossover_probability():
    ka, kb, kc = jax.random.split(KEY, 3)
    a = jax.random.normal(ka, (20_000, 4))
    b = jax.random.normal(kb, (20_000, 4))
    c1, c2 = jax.jit(ga.crossover_pair, static_argnums=(3, 4))(kc, a, b, 0.75, 0.2)
    passed = np.all(np.asarray(c1) == np.asarray(a), axis=1) & np.all(np.asarray(c2) == np.asarray(b), axis=1)
    assert abs((1 - passed.mean()) - 0.75) < 0.015


def test_gaussian_mutation_rate_and_scale():
    x = jnp.zeros((1000, 100))
    y = np.asarray(ga.gaussian_mutation(KEY, x, rate=0.01, sigma=2.0))
    changed = y != 0
    sd = np.sqrt(0.01 * 0.99 / y.size)
    assert abs(changed.mean() - 0.01) < 4 * sd
    assert abs(y[changed].std() - 2.0) < 0.15


def test_mu_plus_lambda_keeps_best_of_pool():
    pop = jnp.arange(8.0).reshape(4, 2)
    fit = jnp.array([5.0, 1.0, 7.0, 3.0])
    off = -jnp.arange(8.0).reshape(4, 2)
    off_fit = jnp.array([2.0, jnp.nan, 0.5, 9.0])
    new_pop, new_fit = ga.mu_plus_lambda(pop, fit, off, off_fit)
    np.testing.assert_array_equal(np.asarray(new_fit), [0.5, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(new_pop), [[-4, -5], [2, 3], [0, -1], [6, 7]])


def test_ga_step_is_elitist_and_sized():
    cfg = ga.GAConfig(offspring_size=7)

    @jax.jit
    def one_generation(key):
        z = ga.sample_prior(key, 10, LATENT)
        f = jnp.sum(z**2, axis=1)
        state = ga.init(key, z, f, cfg)
        kids, _ = ga.ask(jax.random.fold_in(key, 1), state, cfg)
        new = ga.tell(key, kids, jnp.full(7, 1e9), state, cfg)  # all worse: parents must survive
        return f, state, kids, new

    f, state, kids, new = one_generation(KEY)
    assert float(state.best_fitness) == float(f.min())
    assert np.all(np.diff(np.asarray(state.fitness)) >= 0)  # kept sorted best-first
    assert kids.shape == (7, LATENT)
    np.testing.assert_array_equal(np.asarray(new.population), np.asarray(state.population))
    assert int(new.generation) == 1


# ---------------------------------------------------------------- fitness


def _scalar_gen(z):
    """Each latent becomes a 1x1 grey image with its first coordinate as the pixel value."""
    return z[:, :1].reshape(-1, 1, 1, 1)


def test_min_and_mean_reduce_hand_computed():
    targets = jnp.array([0.0, 2.0]).reshape(2, 1, 1, 1)
    z = jnp.array([[0.5], [1.0], [3.0]])
    fmin = make_fitness_fn(_scalar_gen, targets, reduce="min")(z)
    fmean = make_fitness_fn(_scalar_gen, targets, reduce="mean")(z)
    np.testing.assert_allclose(fmin, [0.25, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(fmean, [(0.25 + 2.25) / 2, 1.0, (9 + 1) / 2], rtol=1e-6)
    prior = make_fitness_fn(_scalar_gen, targets, reduce="min", prior_weight=0.5)(z)
    np.testing.assert_allclose(prior - fmin, 0.5 * np.asarray(z)[:, 0] ** 2, rtol=1e-6)


def test_feature_and_both_distances():
    targets = jnp.array([0.0, 2.0]).reshape(2, 1, 1, 1)
    z = jnp.array([[0.5]])
    feat = lambda x: 3.0 * x.reshape(x.shape[0], -1)  # noqa: E731
    f = make_fitness_fn(_scalar_gen, targets, distance="features", feature_fn=feat, reduce="min")(z)
    np.testing.assert_allclose(f, [9 * 0.25], rtol=1e-6)
    both = make_fitness_fn(_scalar_gen, targets, distance="both", feature_fn=feat,
                           feature_weight=0.1, reduce="mean")(z)
    np.testing.assert_allclose(both, [(0.25 + 2.25) / 2 * (1 + 0.1 * 9)], rtol=1e-6)
    with pytest.raises(UserError, match="feature"):
        make_fitness_fn(_scalar_gen, targets, distance="features")


# ---------------------------------------------------------------- search on a toy generator

W = jax.random.normal(jax.random.PRNGKey(11), (LATENT, 16)) / np.sqrt(LATENT)


def toy_generate(z):
    return jnp.tanh(z @ W).reshape(z.shape[0], 4, 4, 1)


@pytest.fixture(scope="module")
def toy():
    target = np.asarray(toy_generate(jax.random.normal(jax.random.PRNGKey(12), (1, LATENT))))
    random = np.asarray(toy_generate(jax.random.normal(jax.random.PRNGKey(13), (1000, LATENT))))
    median = float(np.median(np.mean((random - target) ** 2, axis=(1, 2, 3))))
    return target, median


_RUNS = {}


def toy_run(toy, strategy):
    """Each strategy's 100-generation toy search runs once per session; compiling dominates."""
    if strategy not in _RUNS:
        seen = []
        r = invert(toy_generate, toy[0], latent_dim=LATENT, strategy=strategy, pop=64,
                   generations=100, seed=0, log_every=25, on_generation=lambda g, b: seen.append(g))
        _RUNS[strategy] = r, seen
    return _RUNS[strategy]


@pytest.mark.parametrize("strategy", ["blx_ga", "open_es"])
def test_invert_beats_random_latents(toy, strategy):
    target, median = toy
    r, seen = toy_run(toy, strategy)
    assert r.pixel_mse < 0.1 * median, (r.pixel_mse, median)
    h = np.asarray(r.history)
    assert len(h) == 100 and np.all(np.diff(h) <= 0)
    assert h[-1] < r.initial_distance
    assert seen == list(range(1, 101))
    assert [g for g, _ in r.snapshots] == [0, 25, 50, 75, 100]
    assert r.best_latent.shape == (LATENT,) and r.best_image.shape == (4, 4, 1)
    regenerated = np.asarray(toy_generate(jnp.asarray(r.best_latent)[None]))[0]
    np.testing.assert_allclose(regenerated, r.best_image, atol=1e-6)
    assert r.best_distance == pytest.approx(r.pixel_mse, rel=1e-4)  # pixels, 1 target, no prior
    assert r.seconds_per_generation > 0


def test_invert_min_reports_nearest_target(toy):
    target, _ = toy
    far = -target  # a second target the search could only match by flipping every pixel
    r = invert(toy_generate, np.concatenate([far, target]), latent_dim=LATENT, strategy="snes",
               pop=16, generations=20, reduce="min")
    near = np.mean((r.best_image - target[0]) ** 2)
    assert r.pixel_mse == pytest.approx(min(near, np.mean((r.best_image - far[0]) ** 2)), rel=1e-5)
    assert r.strategy == "snes" and r.reduce == "min"


def test_strategy_names_and_errors():
    assert resolve_strategy("GA") == "blx_ga"
    assert resolve_strategy("CMA-ES") == "cma_es"
    assert resolve_strategy("simple_ga") == "simple_ga"
    with pytest.raises(UserError, match="open_es"):
        resolve_strategy("hill_descent_9000")
    with pytest.raises(UserError, match="pop"):
        make_latent_strategy("open_es", 7, LATENT)
    # evolution's builder and name rule: any spelling of a name finds the same evosax class
    assert type(make_latent_strategy("SepCMA-ES", 8, LATENT).es).__name__ == "Sep_CMA_ES"


def test_wrong_target_shape_names_both_shapes():
    with pytest.raises(UserError, match=r"\(8, 8, 1\).*\(4, 4, 1\)"):
        invert(toy_generate, np.zeros((1, 8, 8, 1)), latent_dim=LATENT, pop=4, generations=1)


# ---------------------------------------------------------------- files


def test_load_target_images(tmp_path):
    rgb = np.zeros((10, 30, 3), np.uint8)
    rgb[:, 10:20] = 255  # white centre square, black sides: only a centre crop is all white
    Image.fromarray(rgb).save(tmp_path / "b.png")
    Image.fromarray(np.full((12, 12), 0, np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("ignored")
    x = load_target_images(tmp_path, 4, 1)
    assert x.shape == (2, 4, 4, 1) and x.dtype == np.float32
    assert np.all(x[0] < -0.9)  # a.jpg first (sorted), black
    assert np.all(x[1] > 0.95)  # b.png centre crop is white
    one = load_target_images(tmp_path / "b.png", 6, 3)
    assert one.shape == (1, 6, 6, 3) and one.min() >= -1 and one.max() <= 1


def test_load_target_errors(tmp_path):
    with pytest.raises(UserError, match="missing.png"):
        load_target_images(tmp_path / "missing.png", 4, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        load_target_images(tmp_path / "empty", 4, 1)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_target_images(tmp_path / "broken.png", 4, 1)


def test_write_outputs(tmp_path, toy):
    target, _ = toy
    r, _ = toy_run(toy, "blx_ga")
    write_outputs(r, tmp_path / "out", target)
    out = tmp_path / "out"
    for name in ("best_latent.npy", "best.png", "strip.png", "fitness.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    best = Image.open(out / "best.png")
    assert best.size == (4, 4) and best.mode == "L"
    strip = Image.open(out / "strip.png")
    frames = len(r.snapshots) + 1  # snapshots at 0, 25, 50, 75, 100, then the target
    assert frames == 6 and strip.size == (frames * 4 + frames - 1, 4)
    np.testing.assert_allclose(np.load(out / "best_latent.npy"), r.best_latent)
    summary = json.loads((out / "summary.json").read_text())
    for k in ("best_distance", "pixel_mse", "generations", "seconds", "seconds_per_generation",
              "strategy", "distance"):
        assert k in summary, k
    assert summary["strategy"] == "blx_ga" and summary["generations"] == 100
