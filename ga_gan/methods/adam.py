"""The Adam DCGAN baseline, on exactly the same networks, data and logging as evolution.

One step (Radford et al. 2016 recipe): `d_steps` discriminator updates on a real batch (label 1)
and a detached fake batch (label 0), then one generator update with the non-saturating loss
-log D(G(z)). D sees real and fake batches in separate train-mode calls, as in the reference
DCGAN code. Logged scores are those of the step's own forward passes (before the update).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ga_gan.config import TrainConfig
from ga_gan.gan import losses as F
from ga_gan.gan import GAN
from ga_gan.gan.steps import adam, d_adam_steps, g_adam_step, generated


@struct.dataclass
class AdamState:
    generation: jax.Array  # the step counter; named like evolution's so the loop is shared
    key: jax.Array
    g_params: Any
    d_params: Any
    g_stats: Any
    d_stats: Any
    g_opt: Any
    d_opt: Any


class Adam:
    ema_decay = 0.999  # one gradient-trained generator: sample from its weight average

    def __init__(self, gan: GAN, cfg: TrainConfig):
        self.gan, self.cfg = gan, cfg
        self.opt_g = adam(cfg.lr_g, cfg.beta1, cfg.beta2)
        self.opt_d = adam(cfg.lr_d, cfg.beta1, cfg.beta2)

    def init(self, key: jax.Array) -> AdamState:
        k_net, k_run = jax.random.split(key)
        g_vars, d_vars = self.gan.init(k_net)
        return AdamState(generation=jnp.zeros((), jnp.int32), key=k_run,
                         g_params=g_vars["params"], d_params=d_vars["params"],
                         g_stats=g_vars["batch_stats"], d_stats=d_vars["batch_stats"],
                         g_opt=self.opt_g.init(g_vars["params"]),
                         d_opt=self.opt_d.init(d_vars["params"]))

    def generator(self, state: AdamState):
        return state.g_params, state.g_stats

    def discriminator(self, state: AdamState):
        return state.d_params, state.d_stats

    def step(self, state: AdamState, data: jax.Array) -> tuple[AdamState, dict]:
        gan, batch = self.gan, self.cfg.batch
        key, k_d, k_g = jax.random.split(state.key, 3)
        g_stats, d_params, d_stats, d_opt, (real_logits, fake_logits, loss_d) = d_adam_steps(
            gan, self.opt_d, k_d, self.cfg.d_steps, data, batch,
            generated(gan, state.g_params, batch), state.g_stats, state.d_params,
            state.d_stats, state.d_opt)
        g_params, g_stats, g_opt, loss_g, d_stats = g_adam_step(
            gan, self.opt_g, state.g_params, g_stats, state.g_opt, gan.latents(k_g, batch),
            d_params, d_stats)
        state = AdamState(generation=state.generation + 1, key=key, g_params=g_params,
                          d_params=d_params, g_stats=g_stats, d_stats=d_stats, g_opt=g_opt,
                          d_opt=d_opt)
        return state, F.scores(real_logits, fake_logits, loss_d=loss_d, loss_g=loss_g)
