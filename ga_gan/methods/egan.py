"""E-GAN style hybrid (Wang et al. 2019): a population of generators evolved by gradient
mutations, one discriminator trained by Adam.

One generation, a pure function of (state, data):
  1. D takes `k_d` Adam steps (BCE) on real batches and the current parents' fakes (each parent
     makes an equal share of every fake batch);
  2. variation: every parent makes one child per mutation loss in `losses` by `k` Adam steps on
     that loss against the updated, frozen D (the child inherits the parent's Adam state and
     BatchNorm statistics). All mu * len(losses) children run together, vmapped over
     (parent, loss), on shared latents;
  3. evaluation on one common batch (real x, latents z): quality Fq = mean D(G(z)), diversity
     Fd = -log ||grad_D BCE(D; x, G(z))||, fitness F = Fq + gamma * Fd (higher is better);
  4. selection: the mu fittest children survive, fittest first, with their optimiser states.
The generator a user samples from is the fittest survivor (parent 0).

Notes. Children inherit their parent's Adam moments, and Adam's update is invariant to the
scale of the gradient, so the three losses (whose gradients differ only by a per-sample weight
on D's logit) give nearly the same child while D(G(z)) is near 1/2 or on a first Adam step;
they pull apart once D is confident. Children are vmapped even on CPU (three small MLP children
measured faster vmapped than under lax.map: digits 269 vs 231 generations/s, MNIST width 0.25:
60 vs 49); `evolve.g.layout = "map"` switches.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ga_gan.config import EvolveConfig
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.gan import GAN, stack, take
from ga_gan.gan.steps import adam, d_adam_steps, g_adam_step
from ga_gan.strategies import resolve_layout


@struct.dataclass
class EganState:
    generation: jax.Array
    key: jax.Array
    g_params: Any  # the mu parents, stacked on a leading axis, fittest first
    g_stats: Any  # their BatchNorm running statistics (stacked)
    g_opt: Any  # their Adam states (stacked)
    d_params: Any
    d_stats: Any
    d_opt: Any


def select(fitness: jax.Array, mu: int) -> jax.Array:
    """Indices of the mu fittest (highest fitness) children, fittest first; ties go to the
    lower index (the earlier parent, the earlier loss) and NaN never survives while a number
    can."""
    fit = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    return jnp.argsort(-fit, stable=True)[:mu]


def _grad_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class Egan:
    ema_decay = 0.999  # the fittest child of gradient steps: average its weights as Adam's

    def __init__(self, gan: GAN, cfg: EvolveConfig):
        self.gan, self.cfg, self.h = gan, cfg, (h := cfg.hybrid)
        if h.mu < 1:
            raise UserError(f"evolve.hybrid.mu must be at least 1, got {h.mu}")
        if h.k < 0 or h.k_d < 0:
            raise UserError(f"evolve.hybrid.k and k_d must be >= 0, got {h.k} and {h.k_d}")
        # children vmapped unless evolve.g.layout asks for lax.map (see the notes above)
        self.layout = resolve_layout(cfg.g.layout, gan.cfg.name, auto="vmap")
        self.losses = tuple(h.losses)
        self.loss_fns = F.g_losses(self.losses)
        self.opt_g = adam(h.lr_g, h.beta1, h.beta2)
        self.opt_d = adam(h.lr_d, h.beta1, h.beta2)

    def init(self, key: jax.Array) -> EganState:
        # Same split as the Adam baseline, so with mu = 1 both start from the same networks.
        k_net, k_run = jax.random.split(key)
        g_vars, d_vars = self.gan.init(k_net)
        parents = [g_vars] + [self.gan.init(jax.random.fold_in(k_net, i))[0]
                              for i in range(1, self.h.mu)]
        g_params = stack([p["params"] for p in parents])
        g_stats = stack([p["batch_stats"] for p in parents])
        g_opt = jax.vmap(self.opt_g.init)(g_params)
        return EganState(generation=jnp.zeros((), jnp.int32), key=k_run,
                         g_params=g_params, g_stats=g_stats, g_opt=g_opt,
                         d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
                         d_opt=self.opt_d.init(d_vars["params"]))

    def generator(self, state: EganState):
        """The fittest survivor of the last selection."""
        return take(state.g_params, 0), take(state.g_stats, 0)

    def discriminator(self, state: EganState):
        return state.d_params, state.d_stats

    def _parents_fakes(self, g_params, g_stats, key):
        """A batch of fakes with an equal share from every parent (train mode); returns the
        fakes and the parents' refreshed running statistics."""
        mu, batch = self.h.mu, self.cfg.batch
        per = math.ceil(batch / mu)
        z = self.gan.latents(key, mu * per).reshape(mu, per, -1)
        fakes, stats = jax.vmap(lambda p, s, zz: self.gan.generate(p, s, zz, train=True))(
            g_params, g_stats, z)
        return fakes.reshape(mu * per, *fakes.shape[2:])[:batch], stats

    def _over_children(self, fn, *args):
        if self.layout == "vmap":
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args)

    def _mutate(self, params, stats, opt, loss_idx, zs, d_params, d_stats):
        """One child: k Adam steps of its parent on mutation loss `loss_idx` against D."""
        loss = lambda logits: jax.lax.switch(loss_idx, self.loss_fns, logits)
        for z in zs:
            params, stats, opt, _, _ = g_adam_step(self.gan, self.opt_g, params, stats, opt, z,
                                                   d_params, d_stats, loss)
        return params, stats, opt

    def _evaluate(self, params, stats, real, z, d_params, d_stats):
        """(Fq, Fd, fake logits) of one child on the common batch, D frozen."""
        gan = self.gan
        fake, _ = gan.generate(params, stats, z, train=True)
        fake = jax.lax.stop_gradient(fake)
        fake_logits, _ = gan.discriminate(d_params, d_stats, fake)
        fq = F.fake_score(fake_logits)
        if self.h.gamma == 0:  # no diversity term: skip its D passes (Fd = 0, F = Fq)
            return fq, jnp.zeros(()), fake_logits

        def d_loss(dp):
            r, s = gan.discriminate(dp, d_stats, real)
            f, _ = gan.discriminate(dp, s, fake)
            return F.loss_d(r, f)

        fd = -jnp.log(_grad_norm(jax.grad(d_loss)(d_params)) + 1e-12)
        return fq, fd, fake_logits

    def offspring(self, state: EganState, data: jax.Array) -> dict:
        """Steps 1-3 of a generation: the updated D, every child (stacked, child c comes from
        parent c // L by loss c % L) and its fitness terms on the common batch."""
        gan, h, batch = self.gan, self.h, self.cfg.batch
        key, k_d, k_var, k_x, k_z = jax.random.split(state.key, 5)

        # 1. the discriminator, on the parents' samples
        g_stats, d_params, d_stats, d_opt, _ = d_adam_steps(
            gan, self.opt_d, k_d, h.k_d, data, batch,
            lambda k, s: self._parents_fakes(state.g_params, s, k), state.g_stats,
            state.d_params, state.d_stats, state.d_opt)

        # 2. variation: all children together, on shared latents
        n_loss = len(self.losses)
        parent_of = jnp.repeat(jnp.arange(h.mu), n_loss)
        loss_of = jnp.tile(jnp.arange(n_loss), h.mu)
        zs = [gan.latents(kk, batch) for kk in jax.random.split(k_var, h.k)]
        children = take((state.g_params, g_stats, state.g_opt), parent_of)
        children = self._over_children(
            lambda p, s, o, li: self._mutate(p, s, o, li, zs, d_params, d_stats),
            *children, loss_of)

        # 3. evaluation on one common batch
        real = sample_batch(k_x, data, batch)
        z = gan.latents(k_z, batch)
        fq, fd, fake_logits = self._over_children(
            lambda p, s: self._evaluate(p, s, real, z, d_params, d_stats),
            children[0], children[1])
        real_logits, _ = gan.discriminate(d_params, d_stats, real)
        return {"key": key, "d_params": d_params, "d_stats": d_stats, "d_opt": d_opt,
                "children": children, "loss_of": loss_of, "fq": fq, "fd": fd,
                "fitness": fq + h.gamma * fd, "real_logits": real_logits,
                "fake_logits": fake_logits}

    def survive(self, state: EganState, o: dict) -> tuple[EganState, dict]:
        """Step 4 of a generation: the mu fittest children of `offspring` become the parents,
        fittest first, with their Adam states and statistics; and the generation's metrics."""
        keep = select(o["fitness"], self.h.mu)
        best, loss_of = keep[0], o["loss_of"]
        won = loss_of[keep]
        metrics = {
            **F.scores(o["real_logits"], o["fake_logits"][best]),
            "egan_winner": loss_of[best].astype(jnp.float32),
            **{f"egan_wins_{name}": jnp.sum(won == i).astype(jnp.float32)
               for i, name in enumerate(self.losses)},
            "egan_fq": o["fq"][best],
            "egan_fitness": o["fitness"][best],
            "egan_fitness_mean": jnp.mean(o["fitness"]),
        }
        if self.h.gamma != 0:  # Fd is not computed without its weight
            metrics["egan_fd"] = o["fd"][best]
        c_params, c_stats, c_opt = take(o["children"], keep)
        new = EganState(generation=state.generation + 1, key=o["key"], g_params=c_params,
                        g_stats=c_stats, g_opt=c_opt, d_params=o["d_params"],
                        d_stats=o["d_stats"], d_opt=o["d_opt"])
        return new, metrics

    def step(self, state: EganState, data: jax.Array) -> tuple[EganState, dict]:
        return self.survive(state, self.offspring(state, data))
