"""evosax strategies behind `SearchStrategy`, over flat vectors.

evosax has two families with different `init` signatures (distribution-based take a mean,
population-based want an evaluated population) and different ways to set the mutation scale
(a `std_schedule`, or `params.std_init`). `Strategy` hides that so the GAN loop and invert's
latent search treat every strategy alike; the sign convention (evosax minimises) is handled in
`ga_gan.gan.losses`. `make_strategy` is the one place an evosax strategy is built and a
strategy name is looked up.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as EVOSAX_ALGORITHMS

from ga_gan.errors import UserError
from ga_gan.strategies.base import evaluate_rows, make_optimizer, shaping_fn

# Strategies whose state holds an n x n matrix: fine for latents, impossible for networks.
QUADRATIC = {"cma_es", "xnes", "ma_es", "cr_fm_nes", "iamalgam_full", "sv_cma_es", "guided_es",
             "asebo", "rm_es", "lm_ma_es"}
QUADRATIC_MAX_DIMS = 20_000
# Strategies that need learned weights shipped as checkpoints or have no use here.
UNSUPPORTED = {"les", "lga", "evotf_es", "cmaanchoredles", "cma_anchored_les", "learned_ga",
               "diffusion_evolution", "noise_reuse_es", "persistent_es"}
COMMON = ["open_es", "snes", "pgpe", "sep_cma_es", "simple_ga", "ars", "simple_es"]


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return s.lower().replace("__", "_")


def normalise(name: str) -> str:
    """The one spelling rule for strategy names: case, '-' and '_' do not matter."""
    return name.lower().replace("_", "").replace("-", "")


def strategy_registry() -> dict[str, type]:
    """Lower-case names (open_es, simple_ga, sep_cma_es, ...) -> evosax classes."""
    unsupported = {normalise(n) for n in UNSUPPORTED}
    return {alias: cls for key, cls in EVOSAX_ALGORITHMS.items()
            if normalise(key) not in unsupported
            for alias in {_snake(key), key.lower(), _snake(cls.__name__)}}


def find_strategy(name: str, also: tuple[str, ...] = ()) -> type:
    """The evosax class a user's spelling names; `also` are the caller's own names, offered
    in the error."""
    reg = strategy_registry()
    found = {normalise(alias): cls for alias, cls in reg.items()}.get(normalise(name))
    if found is None:
        raise UserError(f"unknown strategy '{name}' (try one of: {', '.join([*also, *COMMON])}; "
                        f"all: {', '.join(sorted(reg))})")
    return found


def _slim_metrics(key, population, fitness, state, params):
    # evosax's default metrics carry n-length vectors; a GAN only needs what we compute ourselves.
    return {}


@dataclass(frozen=True, eq=False)
class Strategy:
    """An evosax strategy plus its params; hashable by identity so it can be a jit static."""

    name: str
    es: Any
    params: Any
    distribution: bool

    evaluate = staticmethod(evaluate_rows)

    @property
    def population_size(self) -> int:
        return self.es.population_size

    def init(self, key: jax.Array, x0: jax.Array,
             evaluated: tuple[jax.Array, jax.Array] | None = None) -> Any:
        if self.distribution:
            state = self.es.init(key, x0, self.params)
            return state if evaluated is None else _seed_best(state, *evaluated)
        if evaluated is None:
            # Population-based strategies start from copies of x0 with equal (unknown) fitness:
            # the first ask then mutates them all, the usual GA start from one seed network.
            n = self.population_size
            evaluated = jnp.broadcast_to(x0, (n, x0.size)), jnp.zeros(n)
        return self.es.init(key, *evaluated, self.params)

    def ask(self, key: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        return self.es.ask(key, state, self.params)

    def tell(self, key: jax.Array, population: jax.Array, fitness: jax.Array, state: Any) -> Any:
        state, _ = self.es.tell(key, population, fitness, state, self.params)
        return state

    def center(self, state: Any) -> jax.Array:
        """The network this population stands for: the mean, or the fittest member so far (a
        member whose fitness is NaN never counts as the fittest)."""
        if self.distribution:
            return state.mean
        return state.population[jnp.argmin(_worst_if_nan(state.fitness))]


def _seed_best(state: Any, population: jax.Array, fitness: jax.Array) -> Any:
    """A distribution's state whose best so far is the best of an evaluated sample, so that
    every strategy reports progress from the same baseline (NaN counts as worst)."""
    fitness = _worst_if_nan(fitness)
    i = jnp.argmin(fitness)
    return state.replace(best_solution=population[i], best_fitness=fitness[i])


def _worst_if_nan(fitness: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(fitness), jnp.inf, fitness)


def make_strategy(name: str, *, pop: int, num_dims: int, std: float, lr,
                  optimizer: str | None = "adam", weight_decay: float = 0.0,
                  std_schedule: Callable | None = None, mirrored: bool = True,
                  shaping: str = "centered_rank") -> Strategy:
    """The evosax strategy `name` with mutation scale `std` (or `std_schedule` over
    generations) and, where it moves a mean by gradient, the optimiser `optimizer` at `lr` (a
    number or an optax schedule; optimizer None: evosax's own choice for that strategy)."""
    cls = find_strategy(name)
    if normalise(name) in {normalise(q) for q in QUADRATIC} and num_dims > QUADRATIC_MAX_DIMS:
        gib = num_dims**2 * 4 / 2**30
        raise UserError(f"strategy '{name}' keeps an n x n matrix (n={num_dims:,}, about "
                        f"{gib:,.0f} GiB): use open_es, snes, pgpe or sep_cma_es for networks")
    if pop < 2:
        raise UserError(f"population size must be at least 2, got {pop}")
    kwargs = _lever_kwargs(name, inspect.signature(cls.__init__).parameters, std, lr,
                           optimizer, weight_decay, std_schedule, mirrored, shaping)
    try:
        es = cls(population_size=pop, solution=jnp.zeros(num_dims), **kwargs)
    except AssertionError as e:  # evosax asserts e.g. "Population size must be even."
        raise UserError(f"strategy '{name}' with population {pop}: {e}") from None
    except TypeError as e:
        raise UserError(f"strategy '{name}' needs options not exposed here: {e}") from None
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=std)
    return Strategy(name=name.lower().replace("-", "_"), es=es, params=params,
                    distribution=hasattr(es, "get_mean"))


def _lever_kwargs(name, sig, std, lr, optimizer, weight_decay, std_schedule, mirrored,
                  shaping) -> dict[str, Any]:
    """The evosax constructor's keyword arguments for ga-gan's options. Only options that
    differ from the defaults are passed beyond what was passed before (the defaults give the
    same strategy, and state, as before the options existed); an option the strategy has no
    switch for is refused, not ignored (SNES, PGPE and sep-CMA-ES adapt their own std)."""
    def refuse(option: str, why: str, where: str):
        raise UserError(f"strategy '{name}' {why}, so {option} does not apply to it ({where})")

    kwargs: dict[str, Any] = {}
    if "optimizer" in sig and optimizer is not None:
        kwargs["optimizer"] = make_optimizer(optimizer, lr, weight_decay)
    elif callable(lr):
        refuse("lr_decay", "moves its mean without an optax optimiser",
               "lowrank_es, open_es, snes, pgpe, ...")
    if "std_schedule" in sig:
        kwargs["std_schedule"] = std_schedule or optax.constant_schedule(std)
    elif std_schedule is not None:
        refuse("std_decay", "has no std schedule (it adapts its own std or has none)",
               "lowrank_es, open_es, ars, ...")
    if "metrics_fn" in sig:
        kwargs["metrics_fn"] = _slim_metrics
    if not mirrored:
        if "use_antithetic_sampling" not in sig:
            refuse("mirrored = false", "has no switch for mirrored sampling",
                   "lowrank_es, open_es")
        kwargs["use_antithetic_sampling"] = False
    if shaping != "centered_rank":  # the default keeps the strategy's own shaping
        if "fitness_shaping_fn" not in sig:
            refuse(f"shaping = {shaping}", "takes no fitness shaping",
                   "lowrank_es and distribution strategies")
        kwargs["fitness_shaping_fn"] = shaping_fn(shaping)
    return kwargs
