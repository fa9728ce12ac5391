"""The spatial grid and the mixture of generators of Lipizzaner / Mustangs, as pure functions.

  neighbours      each cell's von Neumann neighbourhood on the torus (itself, up, down, left,
                  right), from `jnp.roll` of the grid of cell indices
  tournament      Lipizzaner's selection inside one neighbourhood: tournaments of size 2, then
                  the worst selected replaced by the neighbourhood's best (one replacement)
  exact_counts    how many of n images each generator of a mixture draws: Lipizzaner's
                  `exact_proportion` (counts follow the weights, rounded to sum to n)
  mixture_es      (1+1)-ES on the mixture weights, minimising a Fréchet distance
  neighbourhood_es  that ES for every neighbourhood of the torus at once

The Fréchet distance here is a training signal, not the reported metric: pixels projected on a
fixed random basis of `dims` directions (default 64), so that its matrix square root is a small
eigendecomposition inside the jitted step (no host round trip, the same numbers on every device)
at every ES event. The reported fd_pixels / fd_classifier still come from ga_gan.metrics.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan.data import sample_batch
from ga_gan.metrics.frechet import psd_sqrt, trace_sqrt_product

NEIGHBOURS = 5  # the cell itself and its four von Neumann neighbours
TOURNAMENT = 2


def neighbours(rows: int, cols: int) -> np.ndarray:
    """(rows * cols, 5) cell indices: [self, up, down, left, right], wrapping around the torus.
    Cells are numbered row by row."""
    idx = jnp.arange(rows * cols).reshape(rows, cols)
    # roll by +1 along rows brings row r-1 to row r: each cell sees the cell above it
    table = [idx, jnp.roll(idx, 1, 0), jnp.roll(idx, -1, 0), jnp.roll(idx, 1, 1),
             jnp.roll(idx, -1, 1)]
    return np.asarray(jnp.stack(table, -1).reshape(rows * cols, NEIGHBOURS))


def _finite(fitness: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(fitness), jnp.inf, fitness)


def tournaments(key: jax.Array, fitness: jax.Array) -> jax.Array:
    """As many tournaments as members (fitness: lower is better, NaN the worst), each between
    two distinct members drawn at random; the fitter wins, the first drawn on a tie."""
    n = fitness.shape[0]
    f = _finite(fitness)
    pairs = jax.vmap(lambda k: jax.random.permutation(k, n)[:TOURNAMENT])(
        jax.random.split(key, n))
    return jnp.where(f[pairs[:, 1]] < f[pairs[:, 0]], pairs[:, 1], pairs[:, 0])


def tournament(key: jax.Array, fitness: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Selection in one neighbourhood: `tournaments`, then the worst of the selected replaced
    by the neighbourhood's best (one replacement), so the best always survives. Returns
    (selected member indices, the slot the replacement went to)."""
    f = _finite(fitness)
    winners = tournaments(key, fitness)
    worst = jnp.argmax(f[winners])
    return winners.at[worst].set(jnp.argmin(f)), worst


def exact_counts(weights: jax.Array, n: int) -> jax.Array:
    """Images per generator for n draws from a mixture: floor(w n), plus one for the largest
    remainders until they sum to n (weights are normalised first)."""
    w = jnp.maximum(jnp.asarray(weights, jnp.float32), 0.0)
    w = w / jnp.sum(w)
    share = w * n
    counts = jnp.floor(share).astype(jnp.int32)
    short = n - jnp.sum(counts)
    rank = jnp.argsort(jnp.argsort(-(share - counts), stable=True), stable=True)
    return counts + (rank < short).astype(jnp.int32)


def mixture_source(weights: jax.Array, n: int) -> jax.Array:
    """For each of n draws, the generator it comes from (exact proportions, in order)."""
    ends = jnp.cumsum(exact_counts(weights, n))
    return jnp.searchsorted(ends, jnp.arange(n), side="right")


def projection(in_dim: int, dims: int, seed: int = 0x11F) -> np.ndarray:
    """A fixed (in_dim, dims) Gaussian basis, scaled to keep distances comparable."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, dims)) / np.sqrt(dims)).astype(np.float32)


def _moments(x: jax.Array):
    mu = jnp.mean(x, 0)
    d = x - mu
    return mu, d.T @ d / (x.shape[0] - 1)


def reference(x: jax.Array) -> dict:
    """The real side of the Fréchet distance, computed once per ES event: mean, trace and the
    square root of the covariance of (N, F) features."""
    mu, cov = _moments(x)
    return {"mu": mu, "trace": jnp.trace(cov), "root": psd_sqrt(cov, jnp)}


def frechet(ref: dict, x: jax.Array) -> jax.Array:
    """|mu_r - mu|^2 + Tr(C_r) + Tr(C) - 2 Tr sqrt(C_r^1/2 C C_r^1/2): the Fréchet distance of
    Gaussians fitted to the features, jit-friendly through one symmetric eigendecomposition."""
    mu, cov = _moments(x)
    cross = trace_sqrt_product(cov, ref["root"], jnp)
    return jnp.sum((mu - ref["mu"]) ** 2) + ref["trace"] + jnp.trace(cov) - 2.0 * cross


def mixture_fd(ref: dict, features: jax.Array, weights: jax.Array) -> jax.Array:
    """FD of the mixture whose generator j made features[j] (k, n, F): n draws in exact
    proportions, draw i taken from sample i of its generator (common random numbers across
    weightings)."""
    n = features.shape[1]
    return frechet(ref, features[mixture_source(weights, n), jnp.arange(n)])


def mutate_weights(key: jax.Array, weights: jax.Array, sigma: float) -> jax.Array:
    """w + sigma N(0, I), clipped at 0 and normalised (uniform again if everything hit 0)."""
    w = jnp.maximum(weights + sigma * jax.random.normal(key, weights.shape), 0.0)
    total = jnp.sum(w)
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 1.0 / weights.shape[0])


def mixture_es(key: jax.Array, weights: jax.Array, score: Callable, sigma: float,
               steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(1+1)-ES: `steps` times, a Gaussian child of the weights replaces them when its score
    (lower is better) is strictly lower. Returns (weights, their score, accepted children)."""
    def body(i, carry):
        w, s, acc = carry
        child = mutate_weights(jax.random.fold_in(key, i), w, sigma)
        s_child = score(child)
        better = s_child < s
        return (jnp.where(better, child, w), jnp.where(better, s_child, s),
                acc + better.astype(jnp.int32))

    return jax.lax.fori_loop(0, steps, body, (weights, score(weights), jnp.int32(0)))


def neighbourhood_es(gan, key: jax.Array, g_params, g_stats, weights: jax.Array, data,
                     proj: np.ndarray, nbr: np.ndarray, h) -> tuple:
    """The (1+1)-ES on every neighbourhood's mixture weights (`h`: the HybridConfig's mix_*
    settings), every generator on the same latents, against a fixed real subset (the same
    reference at every event); (weights, FD, accepted) per cell."""
    proj = jnp.asarray(proj)
    feats = lambda x: x.reshape(x.shape[0], -1) @ proj
    ref = reference(feats(sample_batch(jax.random.key(0x5EED), data, h.mix_samples)))
    k_z, k_es = jax.random.split(key)
    z = gan.latents(k_z, h.mix_samples)
    out = jax.vmap(lambda p, s: feats(gan.generate(p, s, z, train=False)[0]))(
        g_params, g_stats)  # (cells, n, dims)

    def cell(k, w, members):
        return mixture_es(k, w, lambda ww: mixture_fd(ref, out[members], ww), h.mix_sigma,
                          h.mix_steps)

    return jax.vmap(cell)(jax.random.split(k_es, nbr.shape[0]), weights, jnp.asarray(nbr))
