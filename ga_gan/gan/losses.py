"""GAN scores, losses (D, G and E-GAN's mutation losses) and population fitness objectives.

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


def scores(real_logits, fake_logits, **measured) -> dict:
    """The four scalars every method logs (real_score, fake_score, loss_d, loss_g) from D's
    logits on a real and a fake batch; `measured` replaces any of them by the value a method's
    own gradient step computed (the Adam baseline logs the losses it descended)."""
    return {"real_score": real_score(real_logits), "fake_score": fake_score(fake_logits),
            "loss_d": loss_d(real_logits, fake_logits), "loss_g": loss_g(fake_logits),
            **measured}


def summary(prefix: str, fit) -> dict:
    """best (lowest), mean and std of a population's fitness, as `{prefix}_best` etc."""
    return {f"{prefix}_best": jnp.min(fit), f"{prefix}_mean": jnp.mean(fit),
            f"{prefix}_std": jnp.std(fit)}


# --- E-GAN's generator mutation losses on D's logits f (D(G(z)) = sigmoid(f)), minimised -----

def minimax(fake_logits):
    """log(1 - D(G(z))): the saturating loss of the original GAN game."""
    return jnp.mean(-jax.nn.softplus(fake_logits))


def heuristic(fake_logits):
    """-log D(G(z)): the non-saturating loss (the Adam baseline's G loss)."""
    return loss_g(fake_logits)


def least_squares(fake_logits):
    """(D(G(z)) - 1)^2 on sigmoid outputs, as E-GAN's least-squares mutation."""
    return jnp.mean((jax.nn.sigmoid(fake_logits) - 1.0) ** 2)


G_LOSSES: dict[str, Callable] = {
    "minimax": minimax,
    "heuristic": heuristic,
    "non_saturating": heuristic,
    "least_squares": least_squares,
}


def g_losses(names) -> tuple[Callable, ...]:
    """The G losses named (E-GAN's mutations), or a UserError that lists the known ones."""
    bad = [name for name in names if name not in G_LOSSES]
    if bad or not names:
        raise UserError(f"unknown or no egan mutation loss(es) '{', '.join(bad)}' (choose "
                        f"from {', '.join(sorted(G_LOSSES))})")
    return tuple(G_LOSSES[name] for name in names)


# --- population fitness objectives ------------------------------------------------------------

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


def feature_matching_bce(fake_logits, fake_features, real_features):
    """log(feature matching) + log(non-saturating loss): the batch statistic that keeps G
    moving while D separates, plus D's verdict on each image (what Adam's G descends). The
    logs make the sum scale-free: a member is ranked by the relative change of each term, so
    neither drowns the other as D's features and logits grow over a run."""
    fm = feature_matching(fake_features, real_features)
    return jnp.log(fm + 1e-12) + jnp.log(loss_g(fake_logits) + 1e-12)


# G objectives on D's features: name -> (objective(fake_logits, fake_features, real_features),
# higher_is_better)
G_FEATURE_OBJECTIVES: dict[str, tuple[Callable, bool]] = {
    "feature_matching": (lambda logits, fake_f, real_f: feature_matching(fake_f, real_f), False),
    "feature_matching_bce": (feature_matching_bce, False),
}


def g_objective(name: str) -> tuple[Callable, bool, bool]:
    """(objective(fake_logits, fake_features, real_features), higher_is_better, needs_features)
    for every G fitness, logit-based (`G_OBJECTIVES`) or feature-based."""
    if name in G_FEATURE_OBJECTIVES:
        fn, higher = G_FEATURE_OBJECTIVES[name]
        return fn, higher, True
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
