"""GAN scores, losses and population fitness.

Scores follow the GAN papers (real_score = mean sigmoid D(x), fake_score = mean sigmoid D(G(z)),
the generator's fooling score is its fake_score). evosax minimises, so every fitness is turned
into "lower is better" in exactly one place: `to_minimise`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ga_gan.errors import UserError


def real_score(real_logits):
    return jnp.mean(jax.nn.sigmoid(real_logits))


def fake_score(fake_logits):
    return jnp.mean(jax.nn.sigmoid(fake_logits))


def loss_d(real_logits, fake_logits):
    """BCE of D on a real batch (label 1) and a fake batch (label 0), as in DCGAN."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def loss_g(fake_logits):
    """Non-saturating generator BCE: -log D(G(z))."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def accuracy_d(real_logits, fake_logits):
    return 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))


# name -> (objective(real_logits, fake_logits), higher_is_better)
D_OBJECTIVES: dict[str, tuple[Callable, bool]] = {
    "bce": (loss_d, False),
    "accuracy": (accuracy_d, True),
}
G_OBJECTIVES: dict[str, tuple[Callable, bool]] = {
    "bce": (lambda fake_logits: loss_g(fake_logits), False),
    "fooling": (lambda fake_logits: fake_score(fake_logits), True),
}


def feature_matching(fake_features, real_features):
    """Feature matching (Salimans et al. 2016): squared distance between the mean penultimate D
    features of the fakes and of the reals. A denser signal than D's verdict: it keeps
    pointing G towards the data while D separates the two sets perfectly."""
    return jnp.sum((jnp.mean(fake_features, 0) - jnp.mean(real_features, 0)) ** 2)


# G objectives on D's features: name -> (objective(fake_features, real_features), higher)
G_FEATURE_OBJECTIVES: dict[str, tuple[Callable, bool]] = {
    "feature_matching": (feature_matching, False),
}


def g_objective(name: str) -> tuple[Callable, bool, bool]:
    """(objective(fake_logits, fake_features, real_features), higher_is_better, needs_features)
    for every G fitness, logit-based (`G_OBJECTIVES`) or feature-based."""
    if name in G_FEATURE_OBJECTIVES:
        fn, higher = G_FEATURE_OBJECTIVES[name]
        return (lambda logits, fake_f, real_f: fn(fake_f, real_f)), higher, True
    fn, higher = objective("g", name, features=True)
    return (lambda logits, fake_f, real_f: fn(logits)), higher, False


def to_minimise(value, higher_is_better: bool):
    """The single sign flip between GAN scores (often higher-is-better) and evosax (minimises)."""
    return -value if higher_is_better else value


def objective(role: str, name: str, features: bool = False) -> tuple[Callable, bool]:
    """A logit-based objective; `features` says whether the caller also accepts the G objectives
    on D's features (`g_objective`), for the error message."""
    table = D_OBJECTIVES if role == "d" else G_OBJECTIVES
    if name not in table:
        known = list(table) + (list(G_FEATURE_OBJECTIVES) if features else [])
        raise UserError(f"unknown {role.upper()} fitness '{name}' (choose from {', '.join(known)})")
    return table[name]
