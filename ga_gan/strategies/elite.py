"""Elitism of a distribution's mean: an update that makes the mean worse is not taken.

An ES step follows a noisy gradient estimate, and in a GAN the fitness moves under it; a step
can leave the mean worse than before even on the very batch (and opponent) it was estimated on.
`keep_better_center` scores the mean before and after the update on that same batch and keeps
the old state when the new mean scores worse.

Why this design: it costs two forwards of one network per generation (the mean, unperturbed:
2/pop of the members' cost, under 1% at pop 256) and compares like with like (same images,
latents and D). Reusing the best member instead would need no forward, but the best member is
not the mean (moving to it is a (1, lambda) step, another algorithm), and the mean's fitness is
not among the members' (a mirrored pair only approximates it). The test is optimistic (the step
was estimated on this batch), so it refuses only steps that fail even there: overshoots of a
too-large lr or std, and steps that a moved opponent makes harmful.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

# Fields the rejected update still advances: the generation count (schedules and RNG streams go
# on) and the best member seen (it was evaluated).
ADVANCED = ("generation_counter", "best_fitness", "best_solution")


def keep_better_center(strategy: Any, before: Any, after: Any, fitness: Callable) -> Any:
    """`after` (the told state) if its centre's fitness(flat) -> scalar (lower is better) is no
    worse than `before`'s on the same batch, else `before` with the ADVANCED fields of `after`
    (mean, optimiser and std state all stay: the step is undone, not half-kept). A NaN old
    score accepts, a NaN new one refuses."""
    f_before = fitness(strategy.center(before))
    f_after = fitness(strategy.center(after))
    accept = (f_after <= f_before) | jnp.isnan(f_before)
    kept = jax.tree.map(lambda new, old: jnp.where(accept, new, old), after, before)
    return kept.replace(**{k: getattr(after, k) for k in ADVANCED if hasattr(after, k)})


def step_taken(strategy: Any, before: Any, after: Any) -> jax.Array:
    """1.0 when the mean moved from `before` to `after`, else 0.0: with elitism, whether the
    update was kept (logged as `elite_g` / `elite_d`, so a run shows how often the check refuses,
    and a check that never refuses is seen to cost without acting)."""
    return jnp.any(strategy.center(after) != strategy.center(before)).astype(jnp.float32)
