"""Lamarckian hybrid: evolution explores, gradients refine, and the refinement is inherited.

One generation, a pure function of (state, data):
  1. exactly one `Evolve` generation (both evosax populations, see ga_gan.methods.evolve);
  2. `k_d` Adam steps (lr_d, BCE) on the D strategy's mean against the G mean's fakes, then
     `k` Adam steps (lr_g, non-saturating -log D(G(z))) on the G strategy's mean against the
     refined D; both refined means are written back into the strategy states (`state.mean`),
     so the next generation samples around them.
With k = k_d = 0 step 2 is skipped in Python and the evolve part of the state (and every metric
Evolve logs) is bit for bit Evolve's. Refinement randomness is folded out of the generation's
key, so it never changes the keys evolution consumes. Only distribution strategies (a mean to
refine) are supported when k or k_d is positive.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from ga_gan.config import EvolveConfig
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.methods.evolve import Evolve, EvolveState
from ga_gan.gan import GAN, strong_types
from ga_gan.gan.steps import adam, d_adam_steps, g_adam_step, generated

REFINE_STREAM = 0x1A3A  # fold_in constant of the refinement's PRNG stream


@struct.dataclass
class LamarckState:
    evolve: EvolveState  # exactly Evolve's state (strategy means hold the refined networks)
    g_opt: Any  # Adam state of the G mean (unused while k = 0)
    d_opt: Any  # Adam state of the D mean (unused while k_d = 0)

    @property
    def generation(self) -> jax.Array:  # the one field the Method protocol reads
        return self.evolve.generation


class Lamarck:
    ema_decay = 0.999  # gradient steps on the mean: average its weights as Adam's

    def __init__(self, gan: GAN, cfg: EvolveConfig):
        h = cfg.hybrid
        if h.k < 0 or h.k_d < 0:
            raise UserError(f"evolve.hybrid.k and k_d must be >= 0, got {h.k} and {h.k_d}")
        self.gan, self.cfg, self.h = gan, cfg, h
        self.evolve = Evolve(gan, cfg)
        for role, strategy, steps in (("g", self.evolve.sg, h.k), ("d", self.evolve.sd, h.k_d)):
            if steps > 0 and not strategy.distribution:
                raise UserError(
                    f"hybrid lamarck refines a strategy's mean, but evolve.{role}.name = "
                    f"'{strategy.name}' is population-based (no mean): use a distribution "
                    f"strategy (open_es, snes, pgpe, sep_cma_es, ...) or set "
                    f"evolve.hybrid.{'k' if role == 'g' else 'k_d'}=0")
        self.opt_g = adam(h.lr_g, h.beta1, h.beta2)
        self.opt_d = adam(h.lr_d, h.beta1, h.beta2)

    def init(self, key: jax.Array) -> LamarckState:
        ev = self.evolve.init(key)
        g_params, _ = self.evolve.generator(ev)
        d_params, _ = self.evolve.discriminator(ev)
        return LamarckState(evolve=ev, g_opt=self.opt_g.init(g_params),
                            d_opt=self.opt_d.init(d_params))

    def generator(self, state: LamarckState):
        return self.evolve.generator(state.evolve)

    def discriminator(self, state: LamarckState):
        return self.evolve.discriminator(state.evolve)

    def step(self, state: LamarckState, data: jax.Array) -> tuple[LamarckState, dict]:
        ev, metrics = self.evolve.step(state.evolve, data)
        h = self.h
        if h.k == 0 and h.k_d == 0:
            zero = jnp.zeros((), jnp.float32)
            # strong: the same values without the weak types evosax leaves (gan.strong_types)
            return strong_types(state.replace(evolve=ev)), {**metrics, "lamarck_gain_g": zero,
                                                            "lamarck_gain_d": zero}
        gan, batch = self.gan, self.cfg.batch
        k_d, k_g, k_x, k_z = jax.random.split(jax.random.fold_in(state.evolve.key,
                                                                 REFINE_STREAM), 4)
        g_evolved, g_stats = self.evolve.generator(ev)
        d_evolved, d_stats = self.evolve.discriminator(ev)
        g_params, d_params, g_opt, d_opt = g_evolved, d_evolved, state.g_opt, state.d_opt

        g_stats, d_params, d_stats, d_opt, _ = d_adam_steps(
            gan, self.opt_d, k_d, h.k_d, data, batch, generated(gan, g_params, batch), g_stats,
            d_params, d_stats, d_opt)
        for kk in jax.random.split(k_g, h.k):
            g_params, g_stats, g_opt, _, _ = g_adam_step(
                gan, self.opt_g, g_params, g_stats, g_opt, gan.latents(kk, batch), d_params,
                d_stats)

        # Scores of the refined pair on a fresh batch, and what the gradient steps gained over
        # evolution's means: G's loss against the refined D, D's loss on the refined G's fakes.
        real = sample_batch(k_x, data, batch)
        z = gan.latents(k_z, batch)
        fake, _ = gan.generate(g_params, g_stats, z, train=True)
        fake_evolved, _ = gan.generate(g_evolved, ev.g_stats, z, train=True)
        real_logits, _ = gan.discriminate(d_params, d_stats, real)
        fake_logits, _ = gan.discriminate(d_params, d_stats, fake)
        evolved_g_logits, _ = gan.discriminate(d_params, d_stats, fake_evolved)
        evolved_real, _ = gan.discriminate(d_evolved, ev.d_stats, real)
        evolved_fake, _ = gan.discriminate(d_evolved, ev.d_stats, fake)
        refined = F.scores(real_logits, fake_logits)
        metrics = {
            **metrics,  # fitness_{d,g}_{best,mean,std} of the populations, as Evolve
            **refined,
            "lamarck_gain_g": F.loss_g(evolved_g_logits) - refined["loss_g"],
            "lamarck_gain_d": F.loss_d(evolved_real, evolved_fake) - refined["loss_d"],
        }
        ev = ev.replace(g=ev.g.replace(mean=ravel_pytree(g_params)[0]),
                        d=ev.d.replace(mean=ravel_pytree(d_params)[0]),
                        g_stats=g_stats, d_stats=d_stats)
        return strong_types(LamarckState(evolve=ev, g_opt=g_opt, d_opt=d_opt)), metrics
