"""The seed study's real-coded genetic algorithm, as pure functions over explicit state.

Operators are separate jittable functions so each can be tested in isolation; ``init``/``ask``/
``tell`` mirror evosax's population-based calling convention (evaluated initial population,
``ask`` returns candidates plus state, ``tell`` takes their fitness), and ``BlxGA`` offers them
as a ``SearchStrategy`` so the inversion loop drives this GA exactly like any evosax strategy.
The state names its best so far ``best_solution``/``best_fitness``, as evosax states do.
Fitness is minimised.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from ga_gan.strategies.base import evaluate_rows


@dataclass(frozen=True)
class GAConfig:
    """Hyper-parameters of the seed study; frozen (hashable) so it can be a static jit argument.

    ``offspring_size`` is lambda; ``None`` means lambda = mu = the population size, as in the study.
    """

    tournament_size: int = 3
    alpha: float = 0.2
    crossover_prob: float = 0.75
    mutation_rate: float = 0.01
    mutation_sigma: float = 1.0
    offspring_size: int | None = None


@struct.dataclass
class GAState:
    """Everything the GA carries between generations; population is kept sorted best-first."""

    population: jax.Array  # (mu, D)
    fitness: jax.Array  # (mu,)
    best_solution: jax.Array  # (D,)
    best_fitness: jax.Array  # ()
    generation: jax.Array  # () int


def sample_prior(key: jax.Array, n: int, latent_dim: int) -> jax.Array:
    """Start from the generator's prior N(0, I) so the first population is made of typical latents."""
    return jax.random.normal(key, (n, latent_dim))


def tournament_select(key: jax.Array, fitness: jax.Array, n: int, size: int = 3) -> jax.Array:
    """Indices of ``n`` winners, each the lowest-fitness of ``size`` members drawn with replacement.

    Draws are ``jax.random.randint(key, (n, size), 0, len(fitness))``; tests rely on that.
    Tournaments give selection pressure that depends only on rank, not on the fitness scale.
    """
    draws = jax.random.randint(key, (n, size), 0, fitness.shape[0])
    winner = jnp.argmin(fitness[draws], axis=1)
    return jnp.take_along_axis(draws, winner[:, None], axis=1)[:, 0]


def blx_alpha(key: jax.Array, a: jax.Array, b: jax.Array, alpha: float = 0.2) -> jax.Array:
    """BLX-alpha child: each gene uniform on the parents' interval widened by ``alpha * |a - b|``.

    The widening lets children explore slightly outside the parents' hull, countering the
    shrinkage that pure interpolation would cause.
    """
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    d = hi - lo
    u = jax.random.uniform(key, a.shape, dtype=a.dtype)
    return lo - alpha * d + u * (d + 2.0 * alpha * d)


def crossover_pair(
    key: jax.Array, a: jax.Array, b: jax.Array, prob: float = 0.75, alpha: float = 0.2
) -> tuple[jax.Array, jax.Array]:
    """Two BLX children with probability ``prob``, otherwise the parents unchanged.

    Works on one pair (D,) or a batch of pairs (N, D), deciding per pair (last axis = genes).
    """
    k_do, k1, k2 = jax.random.split(key, 3)
    do = jax.random.uniform(k_do, a.shape[:-1] + (1,)) < prob
    c1, c2 = blx_alpha(k1, a, b, alpha), blx_alpha(k2, a, b, alpha)
    return jnp.where(do, c1, a), jnp.where(do, c2, b)


def gaussian_mutation(
    key: jax.Array, x: jax.Array, rate: float = 0.01, sigma: float = 1.0
) -> jax.Array:
    """Add N(0, sigma^2) to each gene independently with probability ``rate``."""
    k_mask, k_noise = jax.random.split(key)
    mask = jax.random.uniform(k_mask, x.shape) < rate
    return x + jnp.where(mask, sigma * jax.random.normal(k_noise, x.shape, dtype=x.dtype), 0.0)


def mu_plus_lambda(
    population: jax.Array, fitness: jax.Array, offspring: jax.Array, offspring_fitness: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Pool parents and offspring and keep the best mu (= len(population)), sorted best-first.

    NaN fitness counts as +inf so a failed evaluation can never displace a real one.
    """
    pool = jnp.concatenate([population, offspring])
    pool_fit = jnp.concatenate([fitness, offspring_fitness])
    pool_fit = jnp.where(jnp.isnan(pool_fit), jnp.inf, pool_fit)
    keep = jnp.argsort(pool_fit)[: population.shape[0]]
    return pool[keep], pool_fit[keep]


def init(key: jax.Array, population: jax.Array, fitness: jax.Array, config: GAConfig) -> GAState:
    """State from an already evaluated population (as evosax population-based strategies take it)."""
    del key, config  # kept for signature parity with evosax
    fitness = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
    order = jnp.argsort(fitness)
    population, fitness = population[order], fitness[order]
    return GAState(
        population=population,
        fitness=fitness,
        best_solution=population[0],
        best_fitness=fitness[0],
        generation=jnp.asarray(0, dtype=jnp.int32),
    )


def ask(key: jax.Array, state: GAState, config: GAConfig) -> tuple[jax.Array, GAState]:
    """Offspring: tournament-selected pairs, BLX crossover, then Gaussian mutation."""
    mu = state.population.shape[0]
    lam = config.offspring_size or mu
    n_pairs = (lam + 1) // 2
    k_sel, k_cross, k_mut = jax.random.split(key, 3)
    parents = tournament_select(k_sel, state.fitness, 2 * n_pairs, config.tournament_size)
    a, b = state.population[parents[:n_pairs]], state.population[parents[n_pairs:]]
    c1, c2 = crossover_pair(k_cross, a, b, config.crossover_prob, config.alpha)
    children = jnp.concatenate([c1, c2])[:lam]
    children = gaussian_mutation(k_mut, children, config.mutation_rate, config.mutation_sigma)
    return children, state


def tell(
    key: jax.Array, offspring: jax.Array, fitness: jax.Array, state: GAState, config: GAConfig
) -> GAState:
    """Mu+lambda replacement; elitist, so the best-so-far is always the population's first row."""
    del key, config
    population, pop_fitness = mu_plus_lambda(state.population, state.fitness, offspring, fitness)
    return state.replace(
        population=population,
        fitness=pop_fitness,
        best_solution=population[0],
        best_fitness=pop_fitness[0],
        generation=state.generation + 1,
    )


@dataclass(frozen=True)
class BlxGA:
    """The GA as a `ga_gan.strategies.base.SearchStrategy` (mu = `pop`, lambda from `config`)."""

    pop: int
    config: GAConfig = GAConfig()
    name: str = "blx_ga"
    distribution: bool = False

    evaluate = staticmethod(evaluate_rows)

    @property
    def population_size(self) -> int:
        return self.config.offspring_size or self.pop

    def init(self, key: jax.Array, x0: jax.Array,
             evaluated: tuple[jax.Array, jax.Array] | None = None) -> GAState:
        """From an evaluated sample, or from `pop` unevaluated (+inf) copies of `x0`."""
        if evaluated is None:
            evaluated = jnp.broadcast_to(x0, (self.pop, x0.size)), jnp.full(self.pop, jnp.inf)
        return init(key, *evaluated, self.config)

    def ask(self, key: jax.Array, state: GAState) -> tuple[jax.Array, GAState]:
        return ask(key, state, self.config)

    def tell(self, key: jax.Array, offspring: jax.Array, fitness: jax.Array,
             state: GAState) -> GAState:
        return tell(key, offspring, fitness, state, self.config)

    def center(self, state: GAState) -> jax.Array:
        return state.best_solution
