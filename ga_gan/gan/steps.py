"""Pieces every hybrid variant shares: the Adam optimiser, one discriminator Adam step, and
the E-GAN generator losses. All pure functions of arrays, traced inside each variant's step."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.gan import GAN

BETA2 = 0.999  # the DCGAN/Adam baseline's beta2 (HybridConfig exposes only beta1)


def adam(lr: float, beta1: float) -> optax.GradientTransformation:
    return optax.adam(lr, b1=beta1, b2=BETA2)


# --- generator losses on D's logits f (D(G(z)) = sigmoid(f)), all to be minimised -------------

def minimax(fake_logits):
    """log(1 - D(G(z))): the saturating loss of the original GAN game."""
    return jnp.mean(-jax.nn.softplus(fake_logits))


def heuristic(fake_logits):
    """-log D(G(z)): the non-saturating loss (the Adam baseline's G loss)."""
    return F.loss_g(fake_logits)


def least_squares(fake_logits):
    """(D(G(z)) - 1)^2 on sigmoid outputs, as E-GAN's least-squares mutation."""
    return jnp.mean((jax.nn.sigmoid(fake_logits) - 1.0) ** 2)


G_LOSSES: dict[str, Callable] = {
    "minimax": minimax,
    "heuristic": heuristic,
    "non_saturating": heuristic,
    "least_squares": least_squares,
}


def d_adam_step(gan: GAN, opt: optax.GradientTransformation, d_params, d_stats, d_opt,
                real, fake):
    """One Adam step of D's BCE on a real batch (label 1) and a fake batch (label 0, treated
    as constants), real and fake in separate train-mode calls as in the Adam baseline.

    Returns (d_params, d_stats, d_opt, (real_logits, fake_logits)) with the logits of the
    forward pass before the update."""
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(p):
        real_logits, stats = gan.discriminate(p, d_stats, real)
        fake_logits, stats = gan.discriminate(p, stats, fake)
        return F.loss_d(real_logits, fake_logits), (stats, real_logits, fake_logits)

    (_, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(d_params)
    updates, d_opt = opt.update(grads, d_opt, d_params)
    return optax.apply_updates(d_params, updates), stats, d_opt, (real_logits, fake_logits)


def d_adam_steps(gan: GAN, opt: optax.GradientTransformation, key: jax.Array, n: int, data,
                 batch: int, g_params, g_stats, d_params, d_stats, d_opt):
    """n Adam steps of D, each on a fresh real batch and fresh fakes of the given generator
    (train mode, so its BatchNorm statistics move too). Returns
    (g_stats, d_params, d_stats, d_opt)."""
    for k in jax.random.split(key, n):
        k_real, k_fake = jax.random.split(k)
        real = sample_batch(k_real, data, batch)
        fake, g_stats = gan.generate(g_params, g_stats, gan.latents(k_fake, batch), train=True)
        d_params, d_stats, d_opt, _ = d_adam_step(gan, opt, d_params, d_stats, d_opt, real, fake)
    return g_stats, d_params, d_stats, d_opt


def scores(real_logits, fake_logits) -> dict[str, Any]:
    """The four scalars every method logs, with the meaning they have in Evolve and Adam."""
    return {"real_score": F.real_score(real_logits), "fake_score": F.fake_score(fake_logits),
            "loss_d": F.loss_d(real_logits, fake_logits), "loss_g": F.loss_g(fake_logits)}


def summary(prefix: str, fit: jax.Array) -> dict:
    return {f"{prefix}_best": jnp.min(fit), f"{prefix}_mean": jnp.mean(fit),
            f"{prefix}_std": jnp.std(fit)}
