"""Lipizzaner's torus of (G, D) cells between training rounds, as pure functions over the
stacked cells (every leaf leads with the cell axis, cells numbered row by row; the von Neumann
neighbourhood table `nbr` (cells, 5) comes from `mixture.neighbours`):

  pick          an opponent from a neighbourhood, slot 0 being the cell's live network
  train_cell    one cell's Adam rounds against opponents drawn from its neighbourhood
  pair_scores   every D of the grid against one real batch and every G's fakes
  select        per neighbourhood, tournament selection on those scores
  mutate_lr     the learning-rate mutation
  cell_metrics  what a Lipizzaner generation logs
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ga_gan import distributed
from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.config import HybridConfig
from ga_gan.gan import GAN
from ga_gan.gan.steps import adam, d_adam_step, g_adam_step
from ga_gan.methods import mixture as M

LR_MIN = 1e-6  # learning rates are clipped here by the mutation ("clipped positive")


def pick(j, own, stack):
    """Opponent j of a neighbourhood stack, slot 0 (the cell itself) being its live network."""
    return jax.tree.map(lambda o, s: jnp.where(j == 0, o, s[j]), own, stack)


def g_step(gan: GAN, h: HybridConfig, batch: int, loss_fns, key, g, d_opp, lr):
    """One Adam step of G = (params, stats, opt) against a frozen D = (params, stats), on a
    G loss drawn at random from `loss_fns`. Returns (g, the loss's index)."""
    k_z, k_loss = jax.random.split(key)
    idx = jax.random.randint(k_loss, (), 0, len(loss_fns))
    loss = lambda logits: jax.lax.switch(idx, loss_fns, logits)
    params, stats, opt, _, _ = g_adam_step(gan, adam(lr, h.beta1, h.beta2), *g,
                                           gan.latents(k_z, batch), *d_opp, loss)
    return (params, stats, opt), idx


def train_cell(gan: GAN, h: HybridConfig, batch: int, loss_fns, data, key, g, g_lr, d, d_lr,
               g_nbr, d_nbr):
    """`h.k` Adam rounds (`h.k_d` D steps, then one G step) of one cell against its
    neighbourhood (g, d: (params, stats, opt); g_nbr, d_nbr: the neighbourhood's (params,
    stats) stacked, slot 0 being this cell). Returns (g, d, count of each G loss drawn)."""
    def one_round(carry, k_round):  # scanned: one compiled round whatever k is
        g, d = carry
        k_ds, k_g, k_j = jax.random.split(k_round, 3)
        for k in jax.random.split(k_ds, h.k_d):
            k_real, k_z, k_opp = jax.random.split(k, 3)
            j = jax.random.randint(k_opp, (), 0, M.NEIGHBOURS)
            opp_p, opp_s = pick(j, g[:2], g_nbr)
            fake, opp_s = gan.generate(opp_p, opp_s, gan.latents(k_z, batch), train=True)
            # the cell's own G moves its BatchNorm statistics only when it made the fakes
            g = (g[0], jax.tree.map(lambda new, old: jnp.where(j == 0, new, old), opp_s, g[1]),
                 g[2])
            real = sample_batch(k_real, data, batch)
            d = d_adam_step(gan, adam(d_lr, h.beta1, h.beta2), *d, real, fake)[:3]
        i = jax.random.randint(k_j, (), 0, M.NEIGHBOURS)
        g, idx = g_step(gan, h, batch, loss_fns, k_g, g, pick(i, d[:2], d_nbr), g_lr)
        return (g, d), idx

    (g, d), drawn = jax.lax.scan(one_round, (g, d), jax.random.split(key, h.k))
    return g, d, jnp.sum(drawn[:, None] == jnp.arange(len(loss_fns)), 0)


def pair_scores(gan: GAN, key: jax.Array, g_vars, d_vars, data, batch: int) -> dict:
    """Every D of the grid against the real batch and every G's fakes (one common batch):
    `losses.scores` as matrices indexed [D cell, G cell] (real_score: [D cell]); sharded over
    the D cells."""
    k_x, k_z = jax.random.split(key)
    real = sample_batch(k_x, data, batch)
    z = gan.latents(k_z, batch)
    fakes = jax.vmap(lambda p, s: gan.generate(p, s, z, train=True)[0])(*g_vars)

    def row(p, s):
        r, s_r = gan.discriminate(p, s, real)
        f = jax.vmap(lambda x: gan.discriminate(p, s_r, x)[0])(fakes)
        return {**jax.vmap(lambda ff: F.scores(r, ff))(f), "real_score": F.real_score(r)}

    return distributed.shard_population(lambda rows: jax.vmap(row)(*rows), d_vars)


def select(key: jax.Array, pairs: dict, nbr) -> tuple:
    """Per cell: the neighbourhood slots its next G and D come from, their fitness (a G's mean
    loss_g over the neighbourhood's Ds, a D's mean loss_d over its Gs), and the selection
    events."""
    nbr = jnp.asarray(nbr)
    cells = nbr.shape[0]
    sub = lambda m: m[nbr[:, :, None], nbr[:, None, :]]  # (cells, 5 Ds, 5 Gs)
    fit_g = jnp.mean(sub(pairs["loss_g"]), axis=1)
    fit_d = jnp.mean(sub(pairs["loss_d"]), axis=2)
    k_g, k_d = jax.random.split(key)
    sel_g, worst_g = jax.vmap(M.tournament)(jax.random.split(k_g, cells), fit_g)
    sel_d, worst_d = jax.vmap(M.tournament)(jax.random.split(k_d, cells), fit_d)
    src_g, src_d = sel_g[:, 0], sel_d[:, 0]
    at = lambda f, s: jnp.take_along_axis(f, s[:, None], 1)[:, 0]
    events = {"sel_moved_g": jnp.sum(src_g != 0), "sel_moved_d": jnp.sum(src_d != 0),
              "sel_elite_g": jnp.sum(worst_g == 0), "sel_elite_d": jnp.sum(worst_d == 0)}
    return src_g, src_d, at(fit_g, src_g), at(fit_d, src_d), events


def mutate_lr(key: jax.Array, lr: jax.Array, prob: float, sigma: float) -> jax.Array:
    """With probability `prob` per network, lr += N(0, sigma^2), clipped positive."""
    k_on, k_step = jax.random.split(key)
    on = jax.random.bernoulli(k_on, prob, lr.shape)
    step = sigma * jax.random.normal(k_step, lr.shape)
    return jnp.maximum(jnp.where(on, lr + step, lr), LR_MIN)


def cell_metrics(state, best, pairs, from_g, from_d, events, accepted) -> dict:
    """The best cell's four GAN numbers (from the common-batch matrices) and their grid means,
    selection events, learning rates, fitness and mixture of a Lipizzaner `GridState`."""
    cell = {"real_score": pairs["real_score"][from_d],
            **{k: pairs[k][from_d, from_g] for k in ("fake_score", "loss_d", "loss_g")}}
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    out = {k: v[best] for k, v in cell.items()}
    out.update({f"grid_{k}": jnp.mean(v) for k, v in cell.items()})
    out.update({k: f32(v) for k, v in events.items()})
    for name, lr in (("lr_g", state.g_lr), ("lr_d", state.d_lr)):
        out.update({f"{name}_min": jnp.min(lr), f"{name}_mean": jnp.mean(lr),
                    f"{name}_max": jnp.max(lr)})
    out.update({"fitness_g_best": state.fitness_g[best],
                "fitness_g_mean": jnp.mean(state.fitness_g),
                "fitness_d_mean": jnp.mean(state.fitness_d), "best_cell": f32(best),
                # inf until the first ES event; logged as -1 then (metrics must be finite)
                "mix_fd": jnp.where(jnp.isfinite(state.mix_fd[best]), state.mix_fd[best], -1.0),
                "mix_accepted": f32(jnp.sum(accepted))})
    out.update({f"mix_w{j}": state.weights[best, j] for j in range(M.NEIGHBOURS)})
    return out
