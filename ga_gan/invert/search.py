"""Latent-space search: find generator inputs whose images match one or more target images.

The generator is an opaque pure function ``z (P, D) -> images (P, H, W, C)`` in [-1, 1], so this
module knows nothing about checkpoints or model classes. A whole generation (ask, render,
score, tell) is one compiled call; the Python loop around it exists only for progress callbacks
and periodic snapshots, which cost far less than a generation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan.errors import UserError
from ga_gan.invert import ga
from ga_gan.invert.strategies import make_latent_strategy
from ga_gan.strategies.base import SearchStrategy

DISTANCES = ("pixels", "features", "both")
REDUCTIONS = ("min", "mean")


@dataclass
class InversionResult:
    """What a search found; ``best_distance`` is the minimised objective (prior penalty included)."""

    best_latent: np.ndarray  # (latent_dim,)
    best_image: np.ndarray  # (H, W, C) float in [-1, 1]
    best_distance: float
    pixel_mse: float  # best image vs its nearest target, whatever the objective was
    history: list[float]  # best-so-far objective after each generation
    snapshots: list[tuple[int, np.ndarray]]  # (generation, best image then)
    generations: int
    seconds: float  # search loop only; compilation is reported separately
    seconds_per_generation: float
    compile_seconds: float = 0.0
    initial_distance: float = float("nan")  # best of the prior sample, the "random latent" baseline
    strategy: str = ""
    distance: str = "pixels"
    reduce: str = "min"


def pixel_distances(images: jax.Array, targets: jax.Array) -> jax.Array:
    """(P, T) mean squared error; broadcasting fuses under jit, so no (P, T, H, W, C) buffer."""
    diff = images[:, None].astype(jnp.float32) - targets[None].astype(jnp.float32)
    return jnp.mean(diff**2, axis=(2, 3, 4))


def feature_distances(feats: jax.Array, target_feats: jax.Array) -> jax.Array:
    """(P, T) squared L2 between flattened embeddings."""
    f = feats.reshape(feats.shape[0], -1)
    t = target_feats.reshape(target_feats.shape[0], -1)
    return jnp.sum((f[:, None] - t[None]) ** 2, axis=-1)


def make_fitness_fn(
    generate: Callable[[jax.Array], jax.Array],
    targets: jax.Array,
    *,
    distance: str = "pixels",
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    feature_weight: float = 1.0,
    reduce: str = "min",
    prior_weight: float = 0.0,
) -> Callable[[jax.Array], jax.Array]:
    """Population fitness ``z (P, D) -> (P,)`` to minimise.

    "min" scores each member against its nearest target (find any of them); "mean" against all
    (find a latent between them). The prior penalty keeps latents near the typical set, where
    the generator was trained, instead of exploiting off-manifold inputs.
    """
    if distance not in DISTANCES:
        raise UserError(f"unknown distance {distance!r}; use one of {', '.join(DISTANCES)}")
    if reduce not in REDUCTIONS:
        raise UserError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    if distance != "pixels" and feature_fn is None:
        raise UserError(f"distance {distance!r} needs a feature function (none was given)")
    targets = jnp.asarray(targets, jnp.float32)
    target_feats = jax.jit(feature_fn)(targets) if distance != "pixels" else None
    reducer = jnp.min if reduce == "min" else jnp.mean

    def fitness(z: jax.Array) -> jax.Array:
        images = generate(z)
        d = 0.0
        if distance in ("pixels", "both"):
            d = d + pixel_distances(images, targets)
        if distance in ("features", "both"):
            w = feature_weight if distance == "both" else 1.0
            d = d + w * feature_distances(feature_fn(images), target_feats)
        return reducer(d, axis=1) + prior_weight * jnp.mean(z**2, axis=-1)

    return fitness


def _check_shapes(generate, targets: np.ndarray, latent_dim: int) -> np.ndarray:
    if targets.ndim == 3:
        targets = targets[None]
    out = jax.eval_shape(generate, jax.ShapeDtypeStruct((1, latent_dim), jnp.float32))
    if targets.ndim != 4 or tuple(targets.shape[1:]) != tuple(out.shape[1:]):
        raise UserError(
            f"target shape {tuple(targets.shape[1:])} does not match generator output "
            f"{tuple(out.shape[1:])} (H, W, C)"
        )
    if targets.shape[0] == 0:
        raise UserError("no target images given")
    return targets


def invert(
    generate: Callable[[jax.Array], jax.Array],
    targets,
    *,
    latent_dim: int,
    strategy: str = "blx_ga",
    pop: int = 200,
    generations: int = 100,
    distance: str = "pixels",
    feature_fn: Callable[[jax.Array], jax.Array] | None = None,
    feature_weight: float = 1.0,
    reduce: str = "min",
    prior_weight: float = 0.0,
    seed: int = 0,
    log_every: int = 10,
    on_generation: Callable[[int, float], None] | None = None,
    ga_config: ga.GAConfig | None = None,
) -> InversionResult:
    """Search ``generate``'s latent space for inputs matching ``targets`` (T, H, W, C) in [-1, 1].

    ``on_generation(generation, best_so_far)`` is called after every generation (1-based).
    Snapshots of the best image are taken at generation 0 (best prior draw), every
    ``log_every`` generations (0: none) and at the end, for a progress strip. ``best_distance``
    is the objective actually minimised; ``pixel_mse`` is always plain MSE to the nearest target.
    """
    if pop < 2 or generations < 1 or latent_dim < 1:
        raise UserError(f"need pop >= 2, generations >= 1, latent_dim >= 1 (got {pop}, {generations}, {latent_dim})")
    targets = _check_shapes(generate, np.asarray(targets, np.float32), latent_dim)
    fitness_fn = make_fitness_fn(
        generate, targets, distance=distance, feature_fn=feature_fn,
        feature_weight=feature_weight, reduce=reduce, prior_weight=prior_weight,
    )
    search = make_latent_strategy(strategy, pop, latent_dim, ga_config, generations)
    start, step = _generation_fns(search, fitness_fn, pop, latent_dim)
    key_start, key_loop = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.perf_counter()
    state = start(key_start)
    step_c = step.lower(state, key_loop).compile()
    compile_seconds = time.perf_counter() - t0
    render = jax.jit(lambda z: generate(z[None])[0])
    trace = _search(step_c, state, key_loop, generations, render, log_every, on_generation)
    if not np.isfinite(trace.history[-1]):
        raise UserError("every candidate scored a non-finite distance; check the generator output")
    best_image = trace.snapshots[-1][1]
    nearest_mse = float(np.min(np.mean((best_image[None] - targets) ** 2, axis=(1, 2, 3))))
    return InversionResult(
        best_latent=np.asarray(trace.best_latent), best_image=best_image,
        best_distance=trace.history[-1], pixel_mse=nearest_mse, history=trace.history,
        snapshots=trace.snapshots, generations=generations, seconds=trace.seconds,
        seconds_per_generation=trace.seconds / generations, compile_seconds=compile_seconds,
        initial_distance=trace.initial, strategy=search.name, distance=distance, reduce=reduce,
    )


def best_so_far(state: Any) -> tuple[jax.Array, jax.Array]:
    """(latent, fitness): every invert strategy's state keeps evosax's best_solution/best_fitness."""
    return state.best_solution, state.best_fitness


def _generation_fns(strategy: SearchStrategy, fitness_fn: Callable, pop: int, latent_dim: int):
    """Jitted (start, step): the state of an evaluated prior sample, and one whole generation
    (ask, render, score, tell) returning the best so far."""

    def start(key):
        k_prior, k_init = jax.random.split(key)
        z0 = ga.sample_prior(k_prior, pop, latent_dim)
        return strategy.init(k_init, jnp.zeros(latent_dim), (z0, fitness_fn(z0)))

    def step(state, key):
        k_ask, k_tell = jax.random.split(key)
        population, state = strategy.ask(k_ask, state)
        state = strategy.tell(k_tell, population, fitness_fn(population), state)
        return state, best_so_far(state)

    return jax.jit(start), jax.jit(step)


@dataclass
class _Trace:
    best_latent: jax.Array
    history: list[float]
    snapshots: list[tuple[int, np.ndarray]]
    initial: float
    seconds: float


def _search(step_c, state, key_loop, generations: int, render, log_every: int,
            on_generation) -> _Trace:
    """The generations, timed apart from compilation, with progress calls and snapshots."""
    best_z, best_f = best_so_far(state)
    initial = float(best_f)
    snapshots = [(0, np.asarray(render(best_z)))]
    history: list[float] = []
    keys = np.asarray(jax.random.split(key_loop, generations))  # host-side: no per-step slicing op
    t0 = time.perf_counter()
    for g, key in enumerate(keys, start=1):
        state, (best_z, best_f) = step_c(state, key)
        history.append(float(best_f))
        if on_generation is not None:
            on_generation(g, history[-1])
        if (log_every > 0 and g % log_every == 0) or g == generations:
            snapshots.append((g, np.asarray(render(best_z))))
    return _Trace(best_z, history, snapshots, initial, time.perf_counter() - t0)
