"""evosax strategies behind one small, uniform ask/tell interface over flat vectors.

evosax has two families with different `init` signatures (distribution-based take a mean,
population-based want an evaluated population) and different ways to set the mutation scale
(a `std_schedule`, or `params.std_init`). `Strategy` hides that so the GAN loop can treat every
strategy alike; the sign convention (evosax minimises) is handled in `ga_gan.gan.losses`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import algorithms as EVOSAX_ALGORITHMS

from ga_gan.errors import UserError

# Strategies whose state holds an n x n matrix: fine for latents, impossible for networks.
QUADRATIC = {"cma_es", "xnes", "ma_es", "cr_fm_nes", "iamalgam_full", "sv_cma_es", "guided_es",
             "asebo", "rm_es", "lm_ma_es"}
QUADRATIC_MAX_DIMS = 20_000
# Strategies that need learned weights shipped as checkpoints or have no use here.
UNSUPPORTED = {"les", "lga", "evotf_es", "cmaanchoredles", "cma_anchored_les", "learned_ga",
               "diffusion_evolution", "noise_reuse_es", "persistent_es"}


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return s.lower().replace("__", "_")


def strategy_registry() -> dict[str, type]:
    """Lower-case snake names (open_es, simple_ga, sep_cma_es, ...) -> evosax classes."""
    reg = {}
    for key, cls in EVOSAX_ALGORITHMS.items():
        for alias in {_snake(key), key.lower(), _snake(cls.__name__)}:
            if alias not in UNSUPPORTED:
                reg[alias] = cls
    return reg


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

    @property
    def population_size(self) -> int:
        return self.es.population_size

    def init(self, key: jax.Array, x0: jax.Array) -> Any:
        if self.distribution:
            return self.es.init(key, x0, self.params)
        # Population-based strategies start from copies of x0 with equal (unknown) fitness: the
        # first ask then mutates them all, which is the usual GA start from one seed network.
        pop = jnp.broadcast_to(x0, (self.population_size, x0.size))
        return self.es.init(key, pop, jnp.zeros(self.population_size), self.params)

    def ask(self, key: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        return self.es.ask(key, state, self.params)

    def tell(self, key: jax.Array, population: jax.Array, fitness: jax.Array, state: Any) -> Any:
        state, _ = self.es.tell(key, population, fitness, state, self.params)
        return state

    def center(self, state: Any) -> jax.Array:
        """The network this population stands for: the mean, or the fittest member so far."""
        if self.distribution:
            return state.mean
        return state.population[jnp.argmin(state.fitness)]


def make_strategy(name: str, *, pop: int, num_dims: int, std: float, lr: float,
                  optimizer: str = "adam", weight_decay: float = 0.0) -> Strategy:
    reg = strategy_registry()
    key = name.lower().replace("-", "_")
    if key not in reg:
        common = ["open_es", "snes", "pgpe", "sep_cma_es", "simple_ga", "ars", "simple_es"]
        raise UserError(f"unknown strategy '{name}' (try one of: {', '.join(common)}; "
                        f"all: {', '.join(sorted(reg))})")
    if key in QUADRATIC and num_dims > QUADRATIC_MAX_DIMS:
        gib = num_dims**2 * 4 / 2**30
        raise UserError(f"strategy '{name}' keeps an n x n matrix (n={num_dims:,}, about "
                        f"{gib:,.0f} GiB): use open_es, snes, pgpe or sep_cma_es for networks")
    if pop < 2:
        raise UserError(f"population size must be at least 2, got {pop}")
    cls = reg[key]
    sig = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    if "optimizer" in sig:
        opts = {"adam": lambda: optax.adam(lr), "sgd": lambda: optax.sgd(lr),
                "adamw": lambda: optax.adamw(lr, weight_decay=weight_decay)}
        if optimizer not in opts:
            raise UserError(f"unknown optimizer '{optimizer}' (adam, adamw or sgd)")
        kwargs["optimizer"] = opts[optimizer]()
    if "std_schedule" in sig:
        kwargs["std_schedule"] = optax.constant_schedule(std)
    if "metrics_fn" in sig:
        kwargs["metrics_fn"] = _slim_metrics
    try:
        es = cls(population_size=pop, solution=jnp.zeros(num_dims), **kwargs)
    except AssertionError as e:  # evosax asserts e.g. "Population size must be even."
        raise UserError(f"strategy '{name}' with population {pop}: {e}") from None
    params = es.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=std)
    distribution = hasattr(es, "get_mean")
    return Strategy(name=key, es=es, params=params, distribution=distribution)
