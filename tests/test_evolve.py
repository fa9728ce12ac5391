"""Populations, fitness and learning without gradients, on the embedded digits."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ga_gan.config import RunConfig, apply_overrides
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.methods.evolve import Evolve
from ga_gan.strategies.evosax_strategy import make_strategy, strategy_registry
from ga_gan.gan import make_gan
from ga_gan.run import Runner, strong_types

from helpers import (against_trained_discriminator, assert_generator_fools_more, records,
                     run_generations, small_cfg, trained_discriminator)


def test_flatten_unflatten_round_trip():
    gan = make_gan(small_cfg().model)
    g_vars, d_vars = gan.init(jax.random.key(3))
    for params, unravel, size in ((g_vars["params"], gan.unravel_g, gan.g_size),
                                  (d_vars["params"], gan.unravel_d, gan.d_size)):
        flat, _ = ravel_pytree(params)
        assert flat.shape == (size,)
        back = unravel(flat)
        assert jax.tree.structure(back) == jax.tree.structure(params)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
            np.testing.assert_array_equal(a, b)


def test_sign_flip_is_in_one_place():
    assert F.to_minimise(0.9, higher_is_better=True) == -0.9
    assert F.to_minimise(0.9, higher_is_better=False) == 0.9
    assert F.objective("g", "fooling")[1] is True and F.objective("d", "bce")[1] is False


@pytest.mark.parametrize("kind", ["bce", "accuracy"])
def test_a_better_discriminator_gets_better_fitness(digits, kind):
    """The evosax fitness (lower is better) of a trained D must beat an untrained D's."""
    gan = make_gan(small_cfg().model)
    g_vars, d_vars = gan.init(jax.random.key(0))
    trained, real, fake = trained_discriminator(gan, digits, g_vars, d_vars)
    objective, higher = F.objective("d", kind)

    def fitness(p):
        r, _ = gan.discriminate(p, d_vars["batch_stats"], real)
        f, _ = gan.discriminate(p, d_vars["batch_stats"], fake)
        return F.to_minimise(objective(r, f), higher)

    assert float(fitness(trained)) < float(fitness(d_vars["params"]))


def test_unknown_and_unsuitable_strategies_are_clear_errors():
    with pytest.raises(UserError, match="unknown strategy 'nope'"):
        make_strategy("nope", pop=8, num_dims=10, std=0.1, lr=0.1)
    with pytest.raises(UserError, match="n x n"):
        make_strategy("cma_es", pop=8, num_dims=1_000_000, std=0.1, lr=0.1)
    with pytest.raises(UserError, match="even"):
        make_strategy("open_es", pop=7, num_dims=10, std=0.1, lr=0.1)
    assert {"open_es", "snes", "pgpe", "sep_cma_es", "simple_ga"} <= set(strategy_registry())


@pytest.mark.parametrize("name", ["open_es", "snes", "pgpe", "sep_cma_es", "simple_ga", "ars"])
def test_every_default_strategy_runs_a_generation(digits, name):
    cfg = small_cfg(**{"evolve.g.name": name, "evolve.d.name": name})
    method = Evolve(make_gan(cfg.model), cfg.evolve)
    state = strong_types(method.init(jax.random.key(0)))
    step = jax.jit(method.step)
    state, m1 = step(state, digits)
    state, m2 = step(state, digits)
    assert int(state.generation) == 2
    for k in ("real_score", "fake_score", "loss_d", "loss_g", "fitness_d_best", "fitness_g_best"):
        assert np.isfinite(m2[k]), k
    assert 0.0 <= float(m2["real_score"]) <= 1.0
    # the population really moved the network
    g0 = method.generator(strong_types(method.init(jax.random.key(0))))[0]
    g2 = method.generator(state)[0]
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g2)))


def test_discriminator_population_learns_against_a_frozen_generator(digits):
    """With the generator's mean frozen (lr 0), evolution alone must lower D's BCE."""
    cfg = small_cfg(**{"evolve.g.lr": 0.0, "evolve.d.pop": 16, "evolve.d.lr": 0.03})
    method = Evolve(make_gan(cfg.model), cfg.evolve)
    state = strong_types(method.init(jax.random.key(0)))
    _, hist = run_generations(method, digits, 60, state)
    first = np.mean([h["loss_d"] for h in hist[:5]])
    last = np.mean([h["loss_d"] for h in hist[-5:]])
    assert last < 0.6 * first, (first, last)


def test_generator_population_learns_against_a_frozen_discriminator(digits):
    """Against a fixed, trained D (its mean frozen with lr 0), evolution alone must raise the
    generator's fooling score."""
    cfg = small_cfg(**{"evolve.d.lr": 0.0, "evolve.g.pop": 16, "evolve.g.lr": 0.03})
    method = Evolve(make_gan(cfg.model), cfg.evolve)
    assert_generator_fools_more(against_trained_discriminator(method, digits, 60))


@pytest.mark.slow
def test_evolve_run_lowers_the_frechet_distance(tmp_path):
    """The real loop, end to end: pixel Fréchet distance falls well below generation 0's."""
    cfg = apply_overrides(RunConfig(), {"evolve.generations": 300, "out": str(tmp_path / "run"),
                                        "log.eval_every": 150, "log.fd_samples": 512,
                                        "log.image_every": 300, "log.progress": False,
                                        "log.checkpoint_every": 0})
    result = Runner(cfg, "evolve", log=lambda *_: None).run()
    rows = records(tmp_path / "run")
    fd = {r["generation"]: r["fd_pixels"] for r in rows if "fd_pixels" in r}
    assert set(fd) == {0, 150, 300}
    assert fd[300] < 0.7 * fd[0], fd
    assert result.generation == 300
    assert [r["generation"] for r in rows if "loss_d" in r] == list(range(1, 301))
    assert (tmp_path / "run" / "samples.png").exists() and (tmp_path / "run" / "curves.png").exists()
