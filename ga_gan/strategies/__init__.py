"""Search strategies over flat parameter vectors, and how a population's fitness is computed.

Every strategy a method evolves comes from `build_strategy` (an evosax algorithm behind
`ga_gan.strategies.evosax_strategy.Strategy`, or ga-gan's low-rank ES in
`ga_gan.strategies.lowrank`); both implement `SearchStrategy` (strategies/base.py), so
`population_generation` runs one ask -> fitness -> tell round of either, with the members laid
out as `resolve_layout` says.
"""

from __future__ import annotations

import jax

from ga_gan.config import StrategyConfig
from ga_gan.errors import UserError
from ga_gan.strategies.base import (SearchStrategy, evaluate_population,  # noqa: F401
                                    make_optimizer)
from ga_gan.strategies.evosax_strategy import (Strategy, make_strategy,  # noqa: F401
                                               normalise, strategy_registry)
from ga_gan.strategies.lowrank import NAME as LOWRANK, LowRankES, evaluate_lowrank, make_lowrank  # noqa: F401

LAYOUTS = ("vmap", "map")


def resolve_layout(layout: str, model_name: str, lowrank: bool = False,
                   auto: str | None = None) -> str:
    """`vmap` or `map` for a population's members; `auto` picks what was measured faster here,
    or the caller's own choice `auto` (a method that always prefers one layout). The only place
    a layout string is checked: everything downstream receives its answer."""
    if layout not in (*LAYOUTS, "auto"):
        raise UserError(f"unknown population layout '{layout}' (vmap, map or auto)")
    if layout != "auto":
        return layout
    if auto is not None:
        return resolve_layout(auto, model_name)
    if lowrank:
        # Low-rank members share the mean's kernels, so either layout turns every layer's base op
        # into one large op over a chunk's images. Measured on XLA:CPU (benchmarks/results/
        # throughput.md): for convolutions small lax.map chunks win (thin per-member convs are
        # cheap, big batched ones are not); for the MLP one vmap over the population wins.
        return "map" if jax.default_backend() == "cpu" and model_name != "mlp" else "vmap"
    # Measured on 2 CPU cores: lax.map beats vmap 2-3x even for the digits MLP (batched
    # matmuls are slow on XLA:CPU) and 3-5x for convolutions; accelerators prefer vmap.
    return "map" if jax.default_backend() == "cpu" else "vmap"


def is_lowrank(sc: StrategyConfig) -> bool:
    return normalise(sc.name) == normalise(LOWRANK)


def build_strategy(sc: StrategyConfig, num_dims: int, template=None) -> SearchStrategy:
    """The strategy `sc` names; `template()` gives the params pytree the low-rank ES needs to
    find its layers (called only then, as it costs a trace)."""
    if is_lowrank(sc):
        return make_lowrank(template(), pop=sc.pop, rank=sc.rank, std=sc.std, lr=sc.lr,
                            optimizer=sc.optimizer, weight_decay=sc.weight_decay,
                            kernels=sc.kernels)
    if sc.kernels != "factored":
        raise UserError(f"kernels = '{sc.kernels}' applies to strategy '{LOWRANK}' only, "
                        f"not '{sc.name}'")
    return make_strategy(sc.name, pop=sc.pop, num_dims=num_dims, std=sc.std, lr=sc.lr,
                         optimizer=sc.optimizer, weight_decay=sc.weight_decay)


def population_generation(strategy: SearchStrategy, sstate, unravel, member_fitness,
                          layout: str, chunk: int, k_ask: jax.Array, k_tell: jax.Array):
    """(fitness, new strategy state) of one population: ask, fitness of every member
    (member_fitness(params) -> scalar, sharded over devices when there are several), tell."""
    members, sstate = strategy.ask(k_ask, sstate)
    fit = strategy.evaluate(member_fitness, members, sstate, unravel, layout, chunk)
    return fit, strategy.tell(k_tell, members, fit, sstate)
