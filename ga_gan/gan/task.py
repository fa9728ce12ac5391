"""The task (in EvoJAX's words): the fitness of one population member, as a pure function of
its parameters that every population method and benchmark vectorises over members.

  d_member   a D member scored on a shared real batch (label 1) and shared fakes (label 0)
  g_member   a G member's images on shared latents, scored by `play(images)`:
             `against_d` (one D: Adam-D's trained D, a benchmark's fixed D) or
             `against_opponents` (the D mean and a hall of fame, `ga_gan.gan.opponents`)
Every value is turned into "lower is better" here (`losses.to_minimise`), for evosax.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ga_gan.gan import losses as F
from ga_gan.gan import GAN
from ga_gan.gan.opponents import weighted_score


def d_member(gan: GAN, objective: Callable, higher: bool, d_stats, real, fake) -> Callable:
    """fitness(D params): objective(real_logits, fake_logits) on the shared batches."""
    def member(p):
        real_logits, _ = gan.discriminate(p, d_stats, real)
        fake_logits, _ = gan.discriminate(p, d_stats, fake)
        return F.to_minimise(objective(real_logits, fake_logits), higher)
    return member


def g_member(gan: GAN, higher: bool, g_stats, z, play: Callable) -> Callable:
    """fitness(G params): `play` scores the member's images of the shared latents z."""
    def member(p):
        images, _ = gan.generate(p, g_stats, z)
        return F.to_minimise(play(images), higher)
    return member


def against_d(gan: GAN, objective: Callable, d_params, d_stats, real_features) -> Callable:
    """play(images) against one D: objective(fake_logits, fake_features, real_features), the
    objective as `losses.g_objective` returns it."""
    def play(images):
        fake_logits, fake_f, _ = gan.discriminate_features(d_params, d_stats, images)
        return objective(fake_logits, fake_f, real_features)
    return play


def against_opponents(gan: GAN, objective: Callable, features: bool, ds: jax.Array,
                      weights: jax.Array, d_stats, real) -> Callable:
    """play(images) against flat Ds `ds` weighted by `weights` (`opponents.opponents`); with
    `features`, each opponent's mean features of the real batch are computed once here."""
    if features:
        real_f = jax.lax.map(lambda d: jnp.mean(gan.discriminate_features(
            gan.unravel_d(d), d_stats, real)[1], 0, keepdims=True), ds)
    else:
        real_f = jnp.zeros((ds.shape[0],))

    def play(images):
        def score(d, rf):
            logits, feats, _ = gan.discriminate_features(gan.unravel_d(d), d_stats, images)
            return objective(logits, feats, rf)
        return weighted_score(score, ds, real_f, weights)
    return play
