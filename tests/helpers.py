"""The small configurations and loops the tests of methods share: tiny MLPs on the embedded
digits, so a test's time is a few small compilations and not the network."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from ga_gan.config import RunConfig, apply_overrides
from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.gan import strong_types

# Tiny G and D, small populations; G scored by BCE (the fitness most tests reason about).
SMALL = {"model.g_hidden": "16,32", "model.d_hidden": "32,16", "model.latent_dim": 8,
         "evolve.batch": 32, "evolve.g.pop": 8, "evolve.d.pop": 8,
         "evolve.g.fitness": "bce"}
# Both populations evolved by low-rank ES of rank 2.
LOWRANK = {"evolve.g.name": "lowrank_es", "evolve.d.name": "lowrank_es",
           "evolve.g.rank": 2, "evolve.d.rank": 2}


def small_cfg(*layers: dict, **over) -> RunConfig:
    """RunConfig from SMALL, then each dict of overrides in `layers`, then `over`."""
    merged = dict(SMALL)
    for layer in layers:
        merged.update(layer)
    return apply_overrides(RunConfig(), {**merged, **over})


def run_generations(method, data, n: int, state=None):
    """`n` jitted steps of `method` from `state` (its init at key 0 if None): the final state
    and each generation's metrics, fetched to the host."""
    state = strong_types(method.init(jax.random.key(0))) if state is None else state
    step = jax.jit(method.step)
    history = []
    for _ in range(n):
        state, metrics = step(state, data)
        history.append(jax.device_get(metrics))
    return state, history


def records(run: Path, timing: bool = True) -> list[dict]:
    """A run folder's metrics.jsonl, read by ga_gan.runlog.read_metrics; timing=False drops the
    wall-clock keys (TIMING_KEYS): what must match bit for bit between two runs."""
    from ga_gan.run import TIMING_KEYS
    from ga_gan.runlog import read_metrics
    rows = read_metrics(Path(run) / "metrics.jsonl")
    return rows if timing else [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def leaves(tree) -> list[np.ndarray]:
    """A pytree's leaves as numpy arrays, PRNG keys as their key data: what bit-exact
    comparisons compare."""
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def trained_discriminator(gan, digits, g_vars, d_vars, steps: int = 30):
    """A D trained by a few Adam steps to separate 128 real digits from a fixed generator's
    fakes: its params, the real and the fake batch."""
    real = sample_batch(jax.random.key(1), digits, 128)
    fake, _ = gan.generate(g_vars["params"], g_vars["batch_stats"],
                           gan.latents(jax.random.key(2), 128))

    def bce(p):
        r, _ = gan.discriminate(p, d_vars["batch_stats"], real)
        f, _ = gan.discriminate(p, d_vars["batch_stats"], fake)
        return F.loss_d(r, f)

    opt = optax.adam(1e-2)
    params, state = d_vars["params"], opt.init(d_vars["params"])
    for _ in range(steps):
        updates, state = opt.update(jax.grad(bce)(params), state)
        params = optax.apply_updates(params, updates)
    return params, real, fake


def against_trained_discriminator(method, digits, n: int) -> list[dict]:
    """`n` generations of an Evolve `method` whose D mean starts as a D trained against its
    initial generator (with evolve.d.lr 0 it stays there): each generation's metrics."""
    g_vars, d_vars = method.gan.init(jax.random.key(0))
    params, _, _ = trained_discriminator(method.gan, digits, g_vars, d_vars)
    state = strong_types(method.init(jax.random.key(0)))
    state = state.replace(d=state.d.replace(mean=ravel_pytree(params)[0]))
    return run_generations(method, digits, n, state)[1]


def assert_generator_fools_more(history: list[dict]) -> None:
    """The G population's fitness (lower is better) fell by a fifth from the first five
    generations to the last five, and D's score on the fakes rose."""
    first = np.mean([h["fitness_g_mean"] for h in history[:5]])
    last = np.mean([h["fitness_g_mean"] for h in history[-5:]])
    assert last < 0.8 * first, (first, last)
    assert (np.mean([h["fake_score"] for h in history[-5:]])
            > np.mean([h["fake_score"] for h in history[:5]]))
