"""The gradient steps every gradient-trained method shares (the Adam baseline and every
hybrid): the Adam optimiser, one D Adam step, k D Adam steps against a generator, one G Adam
step. All pure functions of arrays, traced inside each method's step."""

from __future__ import annotations

from typing import Callable

import jax
import optax

from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.gan import GAN


def adam(lr: float, beta1: float, beta2: float = 0.999) -> optax.GradientTransformation:
    """Adam with the DCGAN defaults (beta2 0.999 unless the config says otherwise)."""
    return optax.adam(lr, b1=beta1, b2=beta2)


def d_adam_step(gan: GAN, opt: optax.GradientTransformation, d_params, d_stats, d_opt,
                real, fake):
    """One Adam step of D's BCE on a real batch (label 1) and a fake batch (label 0, treated
    as constants), real and fake in separate train-mode calls as in the DCGAN reference code.

    Returns (d_params, d_stats, d_opt, (real_logits, fake_logits, loss_d)) with the logits and
    loss of the forward pass before the update."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(p):
        real_logits, stats = gan.discriminate(p, d_stats, real)
        fake_logits, stats = gan.discriminate(p, stats, fake)
        return F.loss_d(real_logits, fake_logits), (stats, real_logits, fake_logits)

    (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(d_params)
    updates, d_opt = opt.update(grads, d_opt, d_params)
    return (optax.apply_updates(d_params, updates), stats, d_opt,
            (real_logits, fake_logits, loss))


def generated(gan: GAN, g_params, batch: int) -> Callable:
    """fakes(key, g_stats) -> (images, g_stats): `batch` train-mode samples of one generator
    (its BatchNorm statistics move)."""
    return lambda key, g_stats: gan.generate(g_params, g_stats, gan.latents(key, batch),
                                             train=True)


def d_adam_steps(gan: GAN, opt: optax.GradientTransformation, key: jax.Array, n: int, data,
                 batch: int, fakes: Callable, g_stats, d_params, d_stats, d_opt):
    """n Adam steps of D, each on a fresh real batch and fresh `fakes(key, g_stats)` (e.g.
    `generated(gan, g_params, batch)`). Returns (g_stats, d_params, d_stats, d_opt, last) with
    `last` the final step's (real_logits, fake_logits, loss_d), None when n = 0."""
    last = None
    for k in jax.random.split(key, n):
        k_real, k_fake = jax.random.split(k)
        real = sample_batch(k_real, data, batch)
        fake, g_stats = fakes(k_fake, g_stats)
        d_params, d_stats, d_opt, last = d_adam_step(gan, opt, d_params, d_stats, d_opt, real,
                                                     fake)
    return g_stats, d_params, d_stats, d_opt, last


def g_adam_step(gan: GAN, opt: optax.GradientTransformation, g_params, g_stats, g_opt, z,
                d_params, d_stats, loss: Callable = F.loss_g):
    """One Adam step of G on `loss(D(G(z)))` (default the non-saturating -log D(G(z))) against
    a frozen D, both in train mode. Returns (g_params, g_stats, g_opt, loss value, d_stats),
    d_stats being D's running statistics after the fakes (the Adam baseline keeps them)."""
    def loss_fn(p):
        fake, s = gan.generate(p, g_stats, z, train=True)
        logits, ds = gan.discriminate(d_params, d_stats, fake)
        return loss(logits), (s, ds)

    (value, (g_stats, d_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_params)
    updates, g_opt = opt.update(grads, g_opt, g_params)
    return optax.apply_updates(g_params, updates), g_stats, g_opt, value, d_stats
