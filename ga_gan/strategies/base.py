"""The one interface every search strategy offers, and what all of them share.

A method (or invert's search) drives any strategy through `SearchStrategy` alone: the evosax
adapter, the low-rank ES and invert's GA differ in what a population's members are (rows of a
matrix, or low-rank factors around a shared mean), so each says itself how its members are
evaluated (`evaluate`), and no caller needs to know which one it holds.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from evosax.core import fitness_shaping as fs

from ga_gan import distributed
from ga_gan.errors import UserError


class SearchStrategy(Protocol):
    """Ask/tell over flat parameter vectors; states are pytrees a checkpoint can hold.

    `distribution` is true when the state keeps a mean (what Lamarck refines); `center` is the
    network the population stands for (the mean, or the fittest member).
    """

    name: str
    distribution: bool

    @property
    def population_size(self) -> int: ...

    def init(self, key: jax.Array, x0: jax.Array,
             evaluated: tuple[jax.Array, jax.Array] | None = None) -> Any:
        """State around `x0`; `evaluated` = (population, fitness) of a sample already scored,
        which population-based strategies start from and the others take as best so far."""

    def ask(self, key: jax.Array, state: Any) -> tuple[Any, Any]: ...

    def evaluate(self, member_fitness: Callable, members: Any, state: Any, unravel: Callable,
                 layout: str, chunk: int) -> jax.Array:
        """Fitness of every member; member_fitness(params pytree) -> scalar."""

    def tell(self, key: jax.Array, members: Any, fitness: jax.Array, state: Any) -> Any: ...

    def center(self, state: Any) -> jax.Array: ...


def make_optimizer(name: str, lr, weight_decay: float = 0.0):
    """The optax optimiser a strategy moves its mean with (`StrategyConfig.optimizer`); `lr` is
    a number or an optax schedule (`decay_schedule`), whose step count then lives in the
    optimiser's state, so a checkpoint holds it and resume stays bit-exact."""
    table = {"adam": lambda: optax.adam(lr), "sgd": lambda: optax.sgd(lr),
             "adamw": lambda: optax.adamw(lr, weight_decay=weight_decay)}
    if name not in table:
        raise UserError(f"unknown optimizer '{name}' (adam, adamw or sgd)")
    return table[name]()


def decay_schedule(start: float, decay: float, floor: float, begin: int = 0):
    """`start` until step `begin`, then x `decay` per step down to `floor` (optax's exponential
    decay, steps counted by its caller), or the plain number `start` when decay is 1: then the
    optimiser's state and every number are exactly those of a run without schedules (old
    checkpoints restore)."""
    if decay == 1.0:
        return start
    return optax.exponential_decay(start, transition_steps=1, decay_rate=decay,
                                   transition_begin=int(begin),
                                   end_value=floor if floor > 0 else None)


# `StrategyConfig.shaping` -> evosax's fitness shaping (fn(population, fitness, state, params)).
SHAPING_FNS = {"centered_rank": fs.centered_rank_fitness_shaping_fn,
               "z_score": fs.standardize_fitness_shaping_fn,
               "raw": fs.identity_fitness_shaping_fn}


def shaping_fn(name: str) -> Callable:
    """evosax's shaping `name`; for z_score and raw a NaN fitness first becomes the worst finite
    one (centred ranks already rank NaN last), so one failed member cannot poison the mean."""
    if name not in SHAPING_FNS:
        raise UserError(f"unknown fitness shaping '{name}' ({', '.join(SHAPING_FNS)})")
    fn = SHAPING_FNS[name]
    if name == "centered_rank":
        return fn

    def nan_worst(population, fitness, state, params):
        return fn(population, jnp.where(jnp.isnan(fitness), jnp.nanmax(fitness), fitness),
                  state, params)

    return nan_worst


def over_members(fn: Callable, layout: str, chunk: int = 0) -> Callable:
    """fn mapped over the leading (member) axis of its argument, in a layout `resolve_layout`
    has already checked: one vmap, or lax.map over chunks of `chunk` members (0: one at a time,
    unbatched). A chunk larger than the population is the whole population."""
    if layout == "vmap":
        return jax.vmap(fn)

    def mapped(members):
        n = jax.tree.leaves(members)[0].shape[0]
        return jax.lax.map(fn, members, batch_size=min(chunk, n) if chunk else None)

    return mapped


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
    return distributed.shard_population(over_members(member_fitness, layout, chunk), population)


def evaluate_rows(member_fitness: Callable, members: jax.Array, state: Any, unravel: Callable,
                  layout: str, chunk: int) -> jax.Array:
    """`SearchStrategy.evaluate` of strategies whose members are flat rows (evosax, the GA)."""
    del state
    return evaluate_population(lambda flat: member_fitness(unravel(flat)), members, layout, chunk)
