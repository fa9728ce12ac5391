"""Search strategies over flat parameter vectors, and how a population's fitness is computed.

Every strategy a method evolves comes from `build_strategy` (an evosax algorithm behind
`ga_gan.strategies.evosax_strategy.Strategy`, or ga-gan's low-rank ES in
`ga_gan.strategies.lowrank`); `population_generation` runs one ask -> fitness -> tell round of
either, with the members laid out as `resolve_layout` says.
"""

from __future__ import annotations

from typing import Callable

import jax

from ga_gan.config import StrategyConfig
from ga_gan.errors import UserError
from ga_gan.strategies.evosax_strategy import Strategy, make_strategy, strategy_registry  # noqa: F401
from ga_gan.strategies.lowrank import NAME as LOWRANK, LowRankES, evaluate_lowrank, make_lowrank


def resolve_layout(layout: str, model_name: str, lowrank: bool = False,
                   auto: str | None = None) -> str:
    """`vmap` or `map` for a population's members; `auto` picks what was measured faster here,
    or the caller's own choice `auto` (a method that always prefers one layout)."""
    if layout == "auto" and auto is not None:
        return auto
    if layout == "auto" and lowrank:
        # Low-rank members share the mean's kernels, so either layout turns every layer's base op
        # into one large op over a chunk's images. Measured on XLA:CPU (benchmarks/results/
        # throughput.md): for convolutions small lax.map chunks win (thin per-member convs are
        # cheap, big batched ones are not); for the MLP one vmap over the population wins.
        return "map" if jax.default_backend() == "cpu" and model_name != "mlp" else "vmap"
    if layout == "auto":
        # Measured on 2 CPU cores: lax.map beats vmap 2-3x even for the digits MLP (batched
        # matmuls are slow on XLA:CPU) and 3-5x for convolutions; accelerators prefer vmap.
        return "map" if jax.default_backend() == "cpu" else "vmap"
    if layout not in ("vmap", "map"):
        raise UserError(f"unknown population layout '{layout}' (vmap, map or auto)")
    return layout


def is_lowrank(sc: StrategyConfig) -> bool:
    return sc.name.lower().replace("-", "_") == LOWRANK


def build_strategy(sc: StrategyConfig, num_dims: int, template=None) -> Strategy | LowRankES:
    if is_lowrank(sc):
        return make_lowrank(template(), pop=sc.pop, rank=sc.rank, std=sc.std, lr=sc.lr,
                            optimizer=sc.optimizer, weight_decay=sc.weight_decay)
    return make_strategy(sc.name, pop=sc.pop, num_dims=num_dims, std=sc.std, lr=sc.lr,
                         optimizer=sc.optimizer, weight_decay=sc.weight_decay)


def population_generation(strategy, sstate, unravel, member_fitness, layout: str, chunk: int,
                          k_ask: jax.Array, k_tell: jax.Array):
    """(fitness, new strategy state) of one population: ask, fitness of every member
    (member_fitness(params) -> scalar, sharded over devices when there are several), tell."""
    if isinstance(strategy, LowRankES):
        # Low-rank path: factors instead of a pop x n population, the mean never copied.
        noise = strategy.sample(k_ask)
        mean_tree = unravel(strategy.center(sstate))
        fit = evaluate_lowrank(strategy, mean_tree, noise, member_fitness, layout, chunk)
        return fit, strategy.tell(noise, fit, sstate)
    pop, sstate = strategy.ask(k_ask, sstate)
    fit = evaluate_population(lambda flat: member_fitness(unravel(flat)), pop, layout, chunk)
    return fit, strategy.tell(k_tell, pop, fit, sstate)


def evaluate_population(member_fitness: Callable, population: jax.Array, layout: str,
                        chunk: int = 0) -> jax.Array:
    """Fitness of every member (rows of `population`), vectorised in the requested layout.

    vmap turns per-member conv kernels into grouped convolutions, which XLA:CPU runs 3-5x slower
    than a loop of ordinary convolutions; `map` (lax.map, optionally `chunk` members vmapped at a
    time) keeps ordinary convolutions. Both give the same numbers up to float rounding.

    With several devices (`ga_gan.distributed.population_mesh`) the rows are split over them
    with shard_map; whatever `member_fitness` closes over is replicated, and only the fitness
    vector travels. The population size must then divide by the device count.
    """
    from ga_gan import distributed

    if layout == "vmap":
        fn = jax.vmap(member_fitness)
    elif layout == "map":
        fn = lambda rows: jax.lax.map(member_fitness, rows, batch_size=chunk or None)
    else:
        raise UserError(f"unknown population layout '{layout}' (vmap, map or auto)")
    return distributed.shard_population(fn, population)
