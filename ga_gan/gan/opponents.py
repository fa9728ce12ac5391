"""Whom the generator population plays against: the D mean alone, or with a hall of fame.

Scoring G against the current D mean alone lets the pair cycle: G exploits whatever the latest D
misses, D then patches that hole and reopens an old one. A hall of fame (Rosin & Belew 1997,
the coevolution remedy for such cycling) keeps `size` past D means, one stored every `every`
generations in a ring; a G member's fitness is then its mean objective against the current D
mean and every stored D, or (`hall_play = "one"`) against one of them drawn per generation:
the same average in expectation, at the cost of one D instead of size + 1. Stored entries are
flat D parameter vectors in the run state (so they are checkpointed); members always run in
train mode, so no running statistics are needed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class HallOfFame:
    members: jax.Array  # (size, d_size) flat D means, oldest overwritten first
    count: jax.Array  # how many slots hold a stored D (<= size)


def init_hall(d0: jax.Array, size: int) -> HallOfFame:
    return HallOfFame(members=jnp.broadcast_to(d0, (size, d0.size)).astype(d0.dtype),
                      count=jnp.zeros((), jnp.int32))


def update_hall(hall: HallOfFame, d_mean: jax.Array, generation: jax.Array,
                every: int) -> HallOfFame:
    """Store `d_mean` after every `every`-th generation (`generation` counts from 1)."""
    size = hall.members.shape[0]
    store = generation % every == 0
    slot = (generation // every - 1) % size
    members = jnp.where(store, hall.members.at[slot].set(d_mean), hall.members)
    count = jnp.where(store, jnp.minimum(hall.count + 1, size), hall.count)
    return HallOfFame(members=members, count=count)


def opponents(current: jax.Array, hall: HallOfFame | None) -> tuple[jax.Array, jax.Array]:
    """(flat Ds (k, d_size), weights (k,)) that a G member plays: the current D mean alone, or
    it and every hall slot, the empty slots weighing nothing (weights sum to 1)."""
    if hall is None:
        return current[None], jnp.ones((1,), current.dtype)
    stack = jnp.concatenate([current[None], hall.members])
    filled = jnp.concatenate([jnp.ones((1,), bool),
                              jnp.arange(hall.members.shape[0]) < hall.count])
    return stack, filled / jnp.sum(filled)


def sample_opponent(key: jax.Array, current: jax.Array,
                    hall: HallOfFame) -> tuple[jax.Array, jax.Array]:
    """One opponent for this generation, drawn with `opponents`' weights (uniform over the
    current mean and the filled slots), in `opponents`' (ds, weights) form."""
    stack, weights = opponents(current, hall)
    i = jax.random.choice(key, stack.shape[0], p=weights)
    return stack[i][None], jnp.ones((1,), current.dtype)


def weighted_score(score: Callable, ds: jax.Array, aux, weights: jax.Array) -> jax.Array:
    """sum_k w_k score(D_k, aux_k), one D at a time (ordinary ops per D, no batched kernels)."""
    if ds.shape[0] == 1:
        return score(ds[0], jax.tree.map(lambda a: a[0], aux)) * weights[0]
    return jnp.sum(weights * jax.lax.map(lambda da: score(*da), (ds, aux)))
