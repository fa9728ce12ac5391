"""One strategy interface: every strategy (evosax, low-rank ES, invert's GA) runs through
`population_generation` alike, layouts are checked in one place, names follow one rule."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ga_gan.config import StrategyConfig
from ga_gan.errors import UserError
from ga_gan.invert.ga import BlxGA
from ga_gan.invert.strategies import make_latent_strategy
from ga_gan.strategies import (build_strategy, decay_schedule, make_lowrank, make_strategy,
                               population_generation, resolve_layout)
from ga_gan.strategies.evosax_strategy import find_strategy



class Net(nn.Module):
    """A tiny network: one dense kernel (low-rank for rank 1) and a bias."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(4, kernel_init=nn.initializers.constant(0.5),
                        bias_init=nn.initializers.constant(0.5))(x)


PARAMS = Net().init(jax.random.key(0), jnp.eye(3))["params"]
FLAT, UNRAVEL = ravel_pytree(PARAMS)


def sphere(params) -> jax.Array:
    """Minimised at zero; low-rank members reach their kernel only through the flax layer."""
    return jnp.sum(Net().apply({"params": params}, jnp.eye(3)) ** 2)


STRATEGIES = {
    "open_es": lambda: make_strategy("open_es", pop=8, num_dims=FLAT.size, std=0.1, lr=0.05),
    "simple_ga": lambda: make_strategy("simple_ga", pop=8, num_dims=FLAT.size, std=0.1, lr=0.05),
    "lowrank_es": lambda: make_lowrank(PARAMS, pop=8, rank=1, std=0.1, lr=0.05),
    "blx_ga": lambda: BlxGA(8),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("layout", ["vmap", "map"])
def test_every_strategy_runs_generations_through_one_interface(name, layout):
    strategy = STRATEGIES[name]()

    @jax.jit
    def run(key):
        def generation(state, k):
            k_ask, k_tell = jax.random.split(k)
            fit, state = population_generation(strategy, state, UNRAVEL, sphere, layout, 3,
                                               k_ask, k_tell)
            return state, fit
        state = strategy.init(key, FLAT)
        state, fits = jax.lax.scan(generation, state, jax.random.split(key, 30))
        return fits, strategy.center(state)

    fits, center = run(jax.random.key(0))
    assert fits.shape == (30, strategy.population_size)
    assert center.shape == FLAT.shape and np.all(np.isfinite(fits))
    assert float(sphere(UNRAVEL(center))) < float(sphere(PARAMS))


def test_init_from_an_evaluated_sample():
    """Population-based strategies start from the sample; distribution-based ones keep their
    mean at x0 and take the sample's best (NaN counting as worst) as best so far."""
    pop = jax.random.normal(jax.random.key(0), (8, 6))
    fit = jnp.array([3.0, jnp.nan, 1.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    x0 = jnp.zeros(6)
    for name in ("cma_es", "open_es"):
        s = make_latent_strategy(name, 8, 6).init(jax.random.key(1), x0, (pop, fit))
        np.testing.assert_array_equal(s.mean, x0)
        np.testing.assert_array_equal(s.best_solution, pop[2])
        assert float(s.best_fitness) == 1.0
    for name in ("simple_ga", "blx_ga"):
        strategy = make_latent_strategy(name, 8, 6)
        s = strategy.init(jax.random.key(1), x0, (pop, fit))
        assert float(s.best_fitness) == 1.0
        np.testing.assert_array_equal(strategy.center(s), pop[2])


def test_layout_is_checked_in_one_place():
    assert resolve_layout("map", "mlp") == "map" and resolve_layout("vmap", "dcgan") == "vmap"
    assert resolve_layout("auto", "mlp", auto="vmap") == "vmap"
    assert resolve_layout("map", "mlp", auto="vmap") == "map"  # an explicit choice wins
    assert resolve_layout("auto", "dcgan") in ("vmap", "map")
    for bad in ("vamp", "", "AUTO"):
        with pytest.raises(UserError, match="unknown population layout"):
            resolve_layout(bad, "mlp")


def test_one_name_rule_for_evolution_and_invert():
    assert find_strategy("Sep-CMA-ES") is find_strategy("sep_cma_es") is find_strategy("sepcmaes")
    assert make_strategy("Open-ES", pop=4, num_dims=3, std=0.1, lr=0.1).name == "open_es"
    assert type(make_latent_strategy("OPEN_ES", 4, 3).es) is find_strategy("open_es")
    with pytest.raises(UserError, match="blx_ga"):  # invert offers its own GA in the error
        make_latent_strategy("hill_descent", 4, 3)
    with pytest.raises(UserError, match="unknown strategy"):
        make_strategy("les", pop=4, num_dims=3, std=0.1, lr=0.1)  # needs learned weights
    with pytest.raises(UserError, match="optimizer"):
        make_strategy("open_es", pop=4, num_dims=3, std=0.1, lr=0.1, optimizer="rmsprop")
    with pytest.raises(UserError, match="optimizer"):
        make_lowrank(PARAMS, pop=4, rank=1, std=0.1, lr=0.1, optimizer="rmsprop")


ELITE = {"open_es": lambda lr: make_strategy("open_es", pop=8, num_dims=FLAT.size, std=0.1, lr=lr),
         "lowrank_es": lambda lr: make_lowrank(PARAMS, pop=8, rank=1, std=0.1, lr=lr)}


@pytest.mark.parametrize("name", sorted(ELITE))
def test_elite_keeps_the_mean_when_the_update_scores_worse(name):
    """Over several draws and step sizes, elite takes exactly the plain update when it scores no
    worse (on the same fitness) and otherwise keeps the whole old state (mean, optimiser),
    advancing only the generation count; both cases occur. Adam at lr 100 always overshoots."""
    def generations(lr):
        strategy = ELITE[name](lr)

        @functools.partial(jax.jit, static_argnums=1)
        def run(seed, elite):
            keys = jax.random.split(jax.random.key(seed), 3)
            state = strategy.init(keys[0], FLAT)
            return state, population_generation(strategy, state, UNRAVEL, sphere, "vmap", 0,
                                                keys[1], keys[2], elite=elite)[1]
        return strategy, lambda seed, elite: run(seed, elite)

    outcomes = set()
    for lr in (0.05, 1.0):
        strategy, run = generations(lr)
        for seed in range(4):
            state, free = run(seed, False)
            elite = run(seed, True)[1]
            better = float(sphere(UNRAVEL(strategy.center(free)))) <= float(sphere(PARAMS))
            outcomes.add(better)
            kept = free if better else state
            for a, b in zip(jax.tree.leaves(elite.opt_state), jax.tree.leaves(kept.opt_state)):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(strategy.center(elite), strategy.center(kept))
            assert int(elite.generation_counter) == 1
    assert outcomes == {True, False}
    strategy, run = generations(100.0)
    assert float(sphere(UNRAVEL(strategy.center(run(0, False)[1])))) > 10 * float(sphere(PARAMS))
    np.testing.assert_array_equal(strategy.center(run(0, True)[1]), FLAT)


def test_evosax_levers_pass_through_or_are_refused():
    """open_es takes the std schedule, unmirrored sampling and z-score shaping; a strategy
    without the switch refuses the option instead of ignoring it."""
    sched = decay_schedule(0.1, 0.5, 0.02)
    oe = make_strategy("open_es", pop=8, num_dims=FLAT.size, std=0.1, lr=0.05,
                       std_schedule=sched, mirrored=False, shaping="z_score")
    state = oe.init(jax.random.key(0), FLAT)
    stds = []
    for k in jax.random.split(jax.random.key(1), 4):
        population, state = oe.ask(k, state)
        state = oe.tell(k, population, jax.vmap(lambda f: sphere(UNRAVEL(f)))(population), state)
        stds.append(float(state.std))
    np.testing.assert_allclose(stds, [0.1, 0.05, 0.025, 0.02], rtol=1e-6)  # evosax: t - 1
    z = population - state.mean
    assert not np.allclose(z[:4], -z[4:])
    f = jnp.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(oe.es.fitness_shaping_fn(None, f, None, None),
                               (f - f.mean()) / f.std(), rtol=1e-5)
    refused = {"std_decay": dict(name="snes", std_decay=0.9),
               "lr_decay": dict(name="sep_cma_es", lr_decay=0.9),
               "mirrored": dict(name="pgpe", mirrored=False),
               "elite": dict(name="simple_ga", elite=True)}
    for needle, over in refused.items():
        with pytest.raises(UserError, match=needle):
            build_strategy(StrategyConfig(pop=8, **over), FLAT.size)
    # per-parameter step sizes: SNES and PGPE run with a schedule-free std and an lr decay
    for name in ("snes", "pgpe"):
        s = build_strategy(StrategyConfig(name=name, pop=8, lr_decay=0.9), FLAT.size)
        assert s.distribution and s.init(jax.random.key(0), FLAT).std.shape == FLAT.shape
