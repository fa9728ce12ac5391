"""An exponential moving average of the generator's weights, for every method.

The last iterate of a GAN oscillates; sampling from a running average of its weights is what
modern GAN recipes do (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN
Training"; BigGAN; StyleGAN). `EMA` wraps any method (evolution, Adam, hybrids) without touching
it: the wrapped state holds the method's own state plus the averaged generator, so checkpoints
carry it and a resumed run continues the average bit for bit. The method's training is
unchanged: the average only observes it, with its own fixed PRNG stream.

`generator(state)` returns the averaged generator, so grids, Fréchet evaluation, `ga-gan sample`
and `invert` use it; `raw_generator(state)` is the method's own (logged as `fd_*_raw`).

BatchNorm: the running statistics of the raw generator describe the raw weights' activations,
not the average's. The averaged generator keeps its own running statistics, updated every step
by one train-mode forward of the averaged weights on a fresh latent batch (BN momentum 0.9, so
they follow the slowly moving average closely; 50 such forwards fill them when the average
starts), which is what eval-mode sampling then uses.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ga_gan.errors import UserError
from ga_gan.gan import GAN

BN_BATCH = 64  # latents per refresh of the averaged generator's BatchNorm statistics
BN_PRIME = 50  # forwards that first fill them (BN momentum 0.9: 0.9**50 of the init is left)
_STREAM = 0xE3A  # the average's own PRNG stream: the method's key sequence is untouched


@struct.dataclass
class EmaState:
    inner: Any  # the wrapped method's state, exactly as without the average
    g_params: Any  # the averaged generator weights
    g_stats: Any  # its BatchNorm running statistics ({} without BatchNorm)

    @property
    def generation(self) -> jax.Array:  # the one field the Method protocol reads
        return self.inner.generation


def resolve_decay(method, decay: float | None) -> float:
    """`log.ema` as given, else the method's default `ema_decay`; 0 means no average. Methods
    whose generator is a single gradient-trained network default to an average; an evolution
    strategy's mean is already an average over its population (`log.ema` turns it on)."""
    decay = float(getattr(method, "ema_decay", 0.0) if decay is None else decay)
    if not 0.0 <= decay < 1.0:
        raise UserError(f"log.ema must be in [0, 1) (0 = off), got {decay}")
    return decay


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
    """The decay at update `step` (1-based), warmed up as tf.train.ExponentialMovingAverage with
    num_updates: min(decay, (1 + t) / (10 + t)), so the first steps' weights fade quickly
    instead of dominating a short run."""
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


class EMA:
    """`method` with an exponential moving average of its generator (decay in (0, 1))."""

    def __init__(self, method, gan: GAN, decay: float):
        if hasattr(method, "sample"):
            raise UserError(f"log.ema averages one generator, but {type(method).__name__} "
                            f"samples its own way (e.g. a mixture): set log.ema=0")
        self.inner, self.gan, self.decay = method, gan, float(decay)

    def __getattr__(self, name):  # the wrapped method's other attributes (strategies, cfg...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def wrap(self, inner_state) -> EmaState:
        """Start the average at the method's current generator (a fresh run, or an old
        checkpoint written without an average), with running statistics of its own."""
        params, stats = self.inner.generator(inner_state)
        if jax.tree.leaves(stats):
            stats = jax.lax.fori_loop(0, BN_PRIME, lambda i, s: self._refresh(
                params, s, jax.random.fold_in(jax.random.key(_STREAM + 1), i)), stats)
        return EmaState(inner=inner_state, g_params=params, g_stats=stats)

    def _refresh(self, params, stats, key: jax.Array):
        """One train-mode forward of the averaged weights: their running BN statistics move."""
        return self.gan.generate(params, stats, self.gan.latents(key, BN_BATCH), train=True)[1]

    def init(self, key: jax.Array) -> EmaState:
        return self.wrap(self.inner.init(key))

    def generator(self, state: EmaState):
        return state.g_params, state.g_stats

    def raw_generator(self, state: EmaState):
        return self.inner.generator(state.inner)

    def discriminator(self, state: EmaState):
        return self.inner.discriminator(state.inner)

    def step(self, state: EmaState, data: jax.Array) -> tuple[EmaState, dict]:
        inner, metrics = self.inner.step(state.inner, data)
        raw, _ = self.inner.generator(inner)
        beta = ema_decay(self.decay, inner.generation)
        params = jax.tree.map(lambda a, x: beta * a + (1.0 - beta) * x.astype(a.dtype),
                              state.g_params, raw)
        stats = state.g_stats
        if jax.tree.leaves(stats):  # BatchNorm: statistics of the averaged weights themselves
            stats = self._refresh(params, stats,
                                  jax.random.fold_in(jax.random.key(_STREAM), inner.generation))
        return EmaState(inner=inner, g_params=params, g_stats=stats), metrics


def with_ema(method, gan: GAN, decay: float | None):
    """`method` wrapped in an `EMA` when its (resolved) decay is positive, else itself."""
    decay = resolve_decay(method, decay)
    return EMA(method, gan, decay) if decay > 0 else method


def unwrapped(method):
    return method.inner if isinstance(method, EMA) else method


def restore_layout(method, gan: GAN, saved_ema: bool):
    """The method whose `init` has the structure of a checkpoint saved with (saved_ema) or
    without an average, whatever `log.ema` says now."""
    if not saved_ema:
        return unwrapped(method)
    return method if isinstance(method, EMA) else EMA(method, gan, 0.5)


def adapt(method, state):
    """A restored state in `method`'s structure: an average is started for a checkpoint written
    without one (older versions, or log.ema=0 then), or dropped when log.ema=0 now."""
    if isinstance(method, EMA):
        return state if isinstance(state, EmaState) else method.wrap(state)
    return state.inner if isinstance(state, EmaState) else state
