"""One ask/tell interface over our BLX GA and every evosax strategy.

The search loop only sees a ``Driver`` of pure functions, so adding a strategy never touches
the loop. Every driver is initialised from the same evaluated prior sample: population-based
strategies start from it, distribution-based ones start at the prior mean and merely seed their
best-so-far with it, so all strategies report best-so-far from the same baseline.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as EVOSAX_ALGORITHMS
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

from ga_gan.errors import UserError
from ga_gan.invert import ga

GA_NAMES = ("blx_ga", "ga")
OPEN_ES_LR = 0.05  # adam step on the mean; latents live on a unit scale, so ~1/20 of it
PRIOR_STD = 1.0  # the prior's scale: the natural initial search width for latents
OPEN_ES_FINAL_STD = 0.05  # Open_ES cannot adapt its width; at a fixed 1.0 its samples never get close


class Driver(NamedTuple):
    """Pure functions the search loop calls; ``state`` is whatever the strategy keeps."""

    name: str
    init: Callable[[jax.Array, jax.Array, jax.Array], Any]  # (key, population, fitness)
    ask: Callable[[jax.Array, Any], tuple[jax.Array, Any]]  # (key, state)
    tell: Callable[[jax.Array, jax.Array, jax.Array, Any], Any]  # (key, pop, fitness, state)
    best: Callable[[Any], tuple[jax.Array, jax.Array]]  # state -> (latent, fitness)


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def strategy_names() -> list[str]:
    """Accepted names (lower-case); evosax names keep their own underscores."""
    return list(GA_NAMES) + sorted(n.lower() for n in EVOSAX_ALGORITHMS)


def resolve_strategy(name: str) -> str:
    """Canonical name for a case/underscore-insensitive user spelling, or a UserError."""
    if _norm(name) in {_norm(n) for n in GA_NAMES}:
        return "blx_ga"
    for canonical in EVOSAX_ALGORITHMS:
        if _norm(canonical) == _norm(name):
            return canonical
    examples = ", ".join(["blx_ga", "open_es", "cma_es", "sep_cma_es", "snes", "simple_ga", "pgpe"])
    raise UserError(f"unknown strategy {name!r}; try one of: {examples} (any evosax algorithm)")


def make_driver(
    name: str,
    pop: int,
    latent_dim: int,
    ga_config: ga.GAConfig | None = None,
    generations: int | None = None,
) -> Driver:
    """Build the driver for ``name`` with latent-space defaults (std = prior scale, mean = 0).

    ``generations`` lets Open_ES decay its fixed-width noise from the prior scale to
    ``OPEN_ES_FINAL_STD`` over the run; without it the width stays at the prior scale.
    """
    canonical = resolve_strategy(name)
    if canonical == "blx_ga":
        cfg = ga_config or ga.GAConfig()
        return Driver(
            name="blx_ga",
            init=partial(ga.init, config=cfg),
            ask=partial(ga.ask, config=cfg),
            tell=partial(ga.tell, config=cfg),
            best=lambda s: (s.best_latent, s.best_fitness),
        )
    return _evosax_driver(canonical, pop, latent_dim, generations)


def _evosax_driver(canonical: str, pop: int, latent_dim: int, generations: int | None) -> Driver:
    cls = EVOSAX_ALGORITHMS[canonical]
    kwargs: dict[str, Any] = {}
    if canonical == "Open_ES":
        schedule = optax.constant_schedule(PRIOR_STD)
        if generations:
            schedule = optax.exponential_decay(
                PRIOR_STD, generations, OPEN_ES_FINAL_STD / PRIOR_STD, end_value=OPEN_ES_FINAL_STD
            )
        kwargs = dict(std_schedule=schedule, optimizer=optax.adam(OPEN_ES_LR))
    try:
        es = cls(population_size=pop, solution=jnp.zeros(latent_dim), **kwargs)
    except AssertionError as e:  # evosax asserts e.g. an even population for antithetic sampling
        raise UserError(f"strategy {canonical.lower()} rejects --pop {pop}: {e}") from None
    except TypeError as e:
        raise UserError(f"strategy {canonical.lower()} needs options not exposed here: {e}") from None
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=jnp.asarray(PRIOR_STD))

    if isinstance(es, PopulationBasedAlgorithm):

        def init(key, population, fitness):
            return es.init(key, population, fitness, params)

    else:

        def init(key, population, fitness):
            state = es.init(key, jnp.zeros(latent_dim), params)
            fitness = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
            i = jnp.argmin(fitness)
            return state.replace(best_solution=population[i], best_fitness=fitness[i])

    def tell(key, population, fitness, state):
        return es.tell(key, population, fitness, state, params)[0]

    return Driver(
        name=canonical.lower(),
        init=init,
        ask=lambda key, state: es.ask(key, state, params),
        tell=tell,
        best=lambda s: (s.best_solution, s.best_fitness),
    )
