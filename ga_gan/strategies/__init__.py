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
from ga_gan.strategies.base import (SearchStrategy, decay_schedule,  # noqa: F401
                                    evaluate_population, make_optimizer)
from ga_gan.strategies.elite import keep_better_center, step_taken  # noqa: F401
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
    find its layers (called only then, as it costs a trace). The lr and std schedules are
    optax schedules whose counts live in the strategy state (`decay_schedule`)."""
    lr = decay_schedule(sc.lr, sc.lr_decay, sc.lr_min, sc.lr_decay_begin)
    std_schedule = (None if sc.std_decay == 1.0 else
                    decay_schedule(sc.std, sc.std_decay, sc.std_min, sc.std_decay_begin))
    options = dict(pop=sc.pop, std=sc.std, lr=lr, optimizer=sc.optimizer,
                   weight_decay=sc.weight_decay, std_schedule=std_schedule,
                   mirrored=sc.mirrored, shaping=sc.shaping)
    if is_lowrank(sc):
        strategy = make_lowrank(template(), rank=sc.rank, kernels=sc.kernels, **options)
    else:  # `kernels`, like `rank`, means nothing to full-rank rows: a config switching
        # strategy (`--strategy open_es` on mnist-evolve) keeps working
        strategy = make_strategy(sc.name, num_dims=num_dims, **options)
    if sc.elite and not strategy.distribution:
        raise UserError(f"elite applies to strategies with a mean (lowrank_es, open_es, snes, "
                        f"...); '{sc.name}' keeps its fittest members by selection already")
    return strategy


def population_generation(strategy: SearchStrategy, sstate, unravel, member_fitness,
                          layout: str, chunk: int, k_ask: jax.Array, k_tell: jax.Array,
                          elite: bool = False):
    """(fitness, new strategy state) of one population: ask, fitness of every member
    (member_fitness(params) -> scalar, sharded over devices when there are several), tell;
    with `elite`, the update is kept only if the new centre scores no worse than the old one on
    the same batch (`elite.keep_better_center`)."""
    members, asked = strategy.ask(k_ask, sstate)
    fit = strategy.evaluate(member_fitness, members, asked, unravel, layout, chunk)
    told = strategy.tell(k_tell, members, fit, asked)
    if elite:
        told = keep_better_center(strategy, asked, told, lambda flat: member_fitness(unravel(flat)))
    return fit, told
