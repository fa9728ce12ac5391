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
import optax
from flax import struct

from ga_gan.config import TrainConfig
from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.gan import GAN


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
    name = "train"

    def __init__(self, gan: GAN, cfg: TrainConfig):
        self.gan, self.cfg = gan, cfg
        self.opt_g = optax.adam(cfg.lr_g, b1=cfg.beta1, b2=cfg.beta2)
        self.opt_d = optax.adam(cfg.lr_d, b1=cfg.beta1, b2=cfg.beta2)

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

    def _d_update(self, state: AdamState, key: jax.Array, data):
        gan = self.gan
        k_x, k_z = jax.random.split(key)
        real = sample_batch(k_x, data, self.cfg.batch)
        fake, g_stats = gan.generate(state.g_params, state.g_stats,
                                     gan.latents(k_z, self.cfg.batch), train=True)
        fake = jax.lax.stop_gradient(fake)

        def loss_fn(d_params):
            real_logits, stats = gan.discriminate(d_params, state.d_stats, real)
            fake_logits, stats = gan.discriminate(d_params, stats, fake)
            return F.loss_d(real_logits, fake_logits), (stats, real_logits, fake_logits)

        (loss, (d_stats, real_logits, fake_logits)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.d_params)
        updates, d_opt = self.opt_d.update(grads, state.d_opt, state.d_params)
        state = state.replace(d_params=optax.apply_updates(state.d_params, updates),
                              d_opt=d_opt, d_stats=d_stats, g_stats=g_stats)
        return state, {"real_score": F.real_score(real_logits),
                       "fake_score": F.fake_score(fake_logits), "loss_d": loss}

    def _g_update(self, state: AdamState, key: jax.Array):
        gan = self.gan
        z = gan.latents(key, self.cfg.batch)

        def loss_fn(g_params):
            fake, g_stats = gan.generate(g_params, state.g_stats, z, train=True)
            fake_logits, d_stats = gan.discriminate(state.d_params, state.d_stats, fake)
            return F.loss_g(fake_logits), (g_stats, d_stats)

        (loss, (g_stats, d_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.g_params)
        updates, g_opt = self.opt_g.update(grads, state.g_opt, state.g_params)
        state = state.replace(g_params=optax.apply_updates(state.g_params, updates),
                              g_opt=g_opt, g_stats=g_stats, d_stats=d_stats)
        return state, loss

    def step(self, state: AdamState, data: jax.Array) -> tuple[AdamState, dict]:
        key, k_d, k_g = jax.random.split(state.key, 3)
        for k in jax.random.split(k_d, self.cfg.d_steps):
            state, metrics = self._d_update(state, k, data)
        state, loss_g = self._g_update(state, k_g)
        state = state.replace(generation=state.generation + 1, key=key)
        return state, {**metrics, "loss_g": loss_g}
