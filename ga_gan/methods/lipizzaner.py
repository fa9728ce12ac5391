"""Spatial coevolution of GANs: Lipizzaner (Schmiedlechner et al. 2018) and Mustangs (Toutouh
et al., GECCO 2019), as one jitted step over a grid axis.

A `rows x cols` torus of cells, each holding a generator and a discriminator (params, BatchNorm
statistics, Adam state and its own learning rate, all stacked on a leading cell axis). The
neighbourhood of a cell is itself plus its four von Neumann neighbours (ga_gan.methods.mixture).
One generation, a pure function of (state, data):
  1. training: each cell's G and D take Adam steps (`k` rounds of `k_d` D steps then one G
     step), every step against an opponent drawn uniformly from the cell's neighbourhood (the
     cell's own opponent is its live network). D's loss is BCE; G's is the non-saturating
     heuristic -log D(G(z)) (lipizzaner) or, per step and cell, one of E-GAN's three losses
     drawn at random (mustangs);
  2. evaluation on one common batch: every D against every G of the grid (fitness "average"
     mode: a G's fitness in a neighbourhood is its mean -log D(G(z)) over the neighbourhood's
     Ds, a D's fitness its mean BCE over the neighbourhood's Gs; lower is better);
  3. selection: in each neighbourhood, tournaments of size 2 and the worst selected replaced
     by the best; the cell's next G (D) is the first selected, with its Adam state, statistics
     and learning rate;
  4. learning-rate mutation: with probability `lr_prob`, lr += N(0, lr_sigma^2), clipped
     positive (per network);
  5. every `mix_every` generations, each neighbourhood's mixture weights take `mix_steps`
     (1+1)-ES steps (sigma `mix_sigma`) on a Fréchet distance of the mixture's samples.
Steps 1 and 2 (all of the network work) run sharded over the `pop` device mesh, cells split
over devices; selection and the ES are cheap and replicated. The best cell is the one whose
mixture has the lowest Fréchet distance (before the first ES event: the fittest generator); the
run's samples come from its mixture (`sample`), `generator` is its single generator.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ga_gan import distributed
from ga_gan.config import EvolveConfig
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.gan import GAN
from ga_gan.methods import mixture as M
from ga_gan.gan.steps import G_LOSSES, adam, d_adam_step

MUSTANGS_LOSSES = ("minimax", "heuristic", "least_squares")
LR_MIN = 1e-6  # learning rates are clipped here by the mutation ("clipped positive")


@struct.dataclass
class GridState:
    generation: jax.Array
    key: jax.Array
    g_params: Any  # every leaf leads with the cell axis (rows * cols, row by row)
    g_stats: Any
    g_opt: Any
    g_lr: jax.Array  # (cells,)
    d_params: Any
    d_stats: Any
    d_opt: Any
    d_lr: jax.Array
    fitness_g: jax.Array  # (cells,) fitness of each cell's G in its neighbourhood (last eval)
    fitness_d: jax.Array
    weights: jax.Array  # (cells, 5) mixture weights over each neighbourhood's generators
    mix_fd: jax.Array  # (cells,) the mixture's Fréchet distance at the last ES event (inf: none)


def _take(tree, idx):
    return jax.tree.map(lambda x: x[idx], tree)


def _pick(j, own, stack):
    """Opponent j of a neighbourhood stack, slot 0 (the cell itself) being its live network."""
    return jax.tree.map(lambda o, s: jnp.where(j == 0, o, s[j]), own, stack)


class Lipizzaner:
    name = "hybrid-lipizzaner"

    def __init__(self, gan: GAN, cfg: EvolveConfig, mustangs: bool = False):
        h = cfg.hybrid
        self.gan, self.cfg, self.h = gan, cfg, h
        self.mustangs = mustangs
        if mustangs:
            self.name = "hybrid-mustangs"
        if len(h.grid) != 2 or min(h.grid) < 1:
            raise UserError(f"evolve.hybrid.grid must be [rows, cols] of positive sizes, "
                            f"got {list(h.grid)}")
        if h.k < 1 or h.k_d < 0:
            raise UserError(f"evolve.hybrid.k must be >= 1 and k_d >= 0, got {h.k} and {h.k_d}")
        if not (h.lr_g > 0 and h.lr_d > 0 and h.lr_sigma >= 0 and 0 <= h.lr_prob <= 1):
            raise UserError("lipizzaner needs lr_g, lr_d > 0, lr_sigma >= 0, 0 <= lr_prob <= 1")
        if h.mix_every < 0 or h.mix_steps < 1 or h.mix_samples < 2 or h.mix_dims < 1:
            raise UserError("lipizzaner needs mix_every >= 0, mix_steps >= 1, mix_samples >= 2 "
                            "and mix_dims >= 1")
        self.rows, self.cols = h.grid
        self.cells = self.rows * self.cols
        mesh = distributed.population_mesh()
        if mesh is not None and self.cells % mesh.size:
            raise UserError(f"a {self.rows}x{self.cols} grid ({self.cells} cells) does not "
                            f"split over {mesh.size} devices")
        self.nbr = M.neighbours(self.rows, self.cols)
        self.losses = MUSTANGS_LOSSES if mustangs else ("heuristic",)
        self.loss_fns = tuple(G_LOSSES[name] for name in self.losses)
        m = gan.cfg
        self.proj = M.projection(m.resolution * m.resolution * m.channels, h.mix_dims)

    # --- state --------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> GridState:
        # Cell 0 starts from the Adam baseline's networks (same split), the others from
        # independent draws.
        k_net, k_run = jax.random.split(key)
        nets = [self.gan.init(k_net)] + [self.gan.init(jax.random.fold_in(k_net, c))
                                         for c in range(1, self.cells)]
        stack = lambda *xs: jnp.stack(xs)
        grid = lambda i, part: jax.tree.map(stack, *[n[i][part] for n in nets])
        g_params, d_params = grid(0, "params"), grid(1, "params")
        opt = adam(1.0, self.h.beta1)  # the state's structure does not depend on lr
        ones = jnp.ones((self.cells,), jnp.float32)
        return GridState(
            generation=jnp.zeros((), jnp.int32), key=k_run,
            g_params=g_params, g_stats=grid(0, "batch_stats"), g_opt=jax.vmap(opt.init)(g_params),
            g_lr=ones * self.h.lr_g,
            d_params=d_params, d_stats=grid(1, "batch_stats"), d_opt=jax.vmap(opt.init)(d_params),
            d_lr=ones * self.h.lr_d,
            fitness_g=ones * jnp.inf, fitness_d=ones * jnp.inf,
            weights=jnp.full((self.cells, M.NEIGHBOURS), 1.0 / M.NEIGHBOURS, jnp.float32),
            mix_fd=ones * jnp.inf)

    def best_cell(self, state: GridState) -> jax.Array:
        """The cell whose mixture scored lowest; before any ES event, the fittest G's cell."""
        scored = jnp.any(jnp.isfinite(state.mix_fd))
        return jnp.where(scored, jnp.argmin(state.mix_fd), jnp.argmin(state.fitness_g))

    def generator(self, state: GridState):
        """The single generator of the best cell."""
        c = self.best_cell(state)
        return _take(state.g_params, c), _take(state.g_stats, c)

    def discriminator(self, state: GridState):
        c = self.best_cell(state)
        return _take(state.d_params, c), _take(state.d_stats, c)

    def sample(self, state: GridState, key: jax.Array, n: int) -> np.ndarray:
        """n uint8 images from the best cell's mixture (eval mode): generator j of its
        neighbourhood draws exact_counts(w)[j] of them, in a random order."""
        from ga_gan.sample import sample_images
        state = distributed.local(state)
        c = int(self.best_cell(state))
        counts = np.asarray(M.exact_counts(state.weights[c], n))
        k_order, *keys = jax.random.split(key, M.NEIGHBOURS + 1)
        parts = [sample_images(self.gan, *_take((state.g_params, state.g_stats),
                                                int(self.nbr[c, j])), keys[j], n)[:counts[j]]
                 for j in range(M.NEIGHBOURS) if counts[j]]
        images = np.concatenate(parts)
        return images[np.asarray(jax.random.permutation(k_order, n))]

    # --- 1. training ----------------------------------------------------------------------
    def _g_step(self, key, g, d_opp, lr):
        """One Adam step of G = (params, stats, opt) against a frozen D = (params, stats)."""
        gan, batch = self.gan, self.cfg.batch
        k_z, k_loss = jax.random.split(key)
        idx = jax.random.randint(k_loss, (), 0, len(self.losses))
        z = gan.latents(k_z, batch)

        def loss_fn(p, s):
            fake, s = gan.generate(p, s, z, train=True)
            logits, _ = gan.discriminate(*d_opp, fake)
            return jax.lax.switch(idx, self.loss_fns, logits), s

        params, stats, opt = g
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        updates, opt = adam(lr, self.h.beta1).update(grads, opt, params)
        return (jax.tree.map(jnp.add, params, updates), stats, opt), idx

    def _train_cell(self, data, key, g, g_lr, d, d_lr, g_nbr, d_nbr):
        """Adam rounds of one cell against its neighbourhood (g, d: (params, stats, opt);
        g_nbr, d_nbr: the neighbourhood's (params, stats) stacked, slot 0 being this cell).
        Returns (g, d, count of each G loss drawn)."""
        gan, h, batch = self.gan, self.h, self.cfg.batch

        def one_round(carry, k_round):  # scanned: one compiled round whatever k is
            g, d = carry
            k_ds, k_g, k_j = jax.random.split(k_round, 3)
            for k in jax.random.split(k_ds, h.k_d):
                k_real, k_z, k_opp = jax.random.split(k, 3)
                j = jax.random.randint(k_opp, (), 0, M.NEIGHBOURS)
                opp_p, opp_s = _pick(j, g[:2], g_nbr)
                fake, opp_s = gan.generate(opp_p, opp_s, gan.latents(k_z, batch), train=True)
                # the cell's own G moves its BatchNorm statistics only when it made the fakes
                g = (g[0], jax.tree.map(lambda new, old: jnp.where(j == 0, new, old),
                                        opp_s, g[1]), g[2])
                real = sample_batch(k_real, data, batch)
                dp, ds, do, _ = d_adam_step(gan, adam(d_lr, h.beta1), *d, real, fake)
                d = (dp, ds, do)
            i = jax.random.randint(k_j, (), 0, M.NEIGHBOURS)
            g, idx = self._g_step(k_g, g, _pick(i, d[:2], d_nbr), g_lr)
            return (g, d), idx

        (g, d), drawn = jax.lax.scan(one_round, (g, d), jax.random.split(key, h.k))
        return g, d, jnp.sum(drawn[:, None] == jnp.arange(len(self.losses)), 0)

    def _train(self, state: GridState, key: jax.Array, data):
        nb = lambda tree: _take(tree, self.nbr)  # (cells, 5, ...)
        cells = (jax.random.key_data(jax.random.split(key, self.cells)),
                 (state.g_params, state.g_stats, state.g_opt), state.g_lr,
                 (state.d_params, state.d_stats, state.d_opt), state.d_lr,
                 nb((state.g_params, state.g_stats)), nb((state.d_params, state.d_stats)))

        def one(k, *rest):
            return self._train_cell(data, jax.random.wrap_key_data(k), *rest)

        return distributed.shard_population(lambda rows: jax.vmap(one)(*rows), cells)

    # --- 2. evaluation ------------------------------------------------------------------------
    def _pairs(self, key, g_vars, d_vars, data) -> dict:
        """Every D of the grid against the real batch and every G's fakes (one common batch):
        matrices indexed [D cell, G cell]; sharded over the D cells."""
        gan, batch = self.gan, self.cfg.batch
        k_x, k_z = jax.random.split(key)
        real = sample_batch(k_x, data, batch)
        z = gan.latents(k_z, batch)
        fakes = jax.vmap(lambda p, s: gan.generate(p, s, z, train=True)[0])(*g_vars)

        def row(p, s):
            r, s_r = gan.discriminate(p, s, real)
            f = jax.vmap(lambda x: gan.discriminate(p, s_r, x)[0])(fakes)
            return {"real_score": F.real_score(r), "fake_score": jax.vmap(F.fake_score)(f),
                    "loss_d": jax.vmap(lambda ff: F.loss_d(r, ff))(f),
                    "loss_g": jax.vmap(F.loss_g)(f)}

        return distributed.shard_population(lambda rows: jax.vmap(row)(*rows), d_vars)

    # --- 3-5. selection, mutation, mixture ----------------------------------------------------
    def _select(self, key, pairs):
        """Per cell: the neighbourhood slots its next G and D come from, their fitness, and
        the selection events."""
        nbr = jnp.asarray(self.nbr)
        sub = lambda m: m[nbr[:, :, None], nbr[:, None, :]]  # (cells, 5 Ds, 5 Gs)
        fit_g = jnp.mean(sub(pairs["loss_g"]), axis=1)
        fit_d = jnp.mean(sub(pairs["loss_d"]), axis=2)
        k_g, k_d = jax.random.split(key)
        sel_g, worst_g = jax.vmap(M.tournament)(jax.random.split(k_g, self.cells), fit_g)
        sel_d, worst_d = jax.vmap(M.tournament)(jax.random.split(k_d, self.cells), fit_d)
        src_g, src_d = sel_g[:, 0], sel_d[:, 0]
        at = lambda f, s: jnp.take_along_axis(f, s[:, None], 1)[:, 0]
        events = {"sel_moved_g": jnp.sum(src_g != 0), "sel_moved_d": jnp.sum(src_d != 0),
                  "sel_elite_g": jnp.sum(worst_g == 0), "sel_elite_d": jnp.sum(worst_d == 0)}
        return src_g, src_d, at(fit_g, src_g), at(fit_d, src_d), events

    def _mutate_lr(self, key, lr):
        k_on, k_step = jax.random.split(key)
        on = jax.random.bernoulli(k_on, self.h.lr_prob, lr.shape)
        step = self.h.lr_sigma * jax.random.normal(k_step, lr.shape)
        return jnp.maximum(jnp.where(on, lr + step, lr), LR_MIN)

    def mixture_step(self, key, g_params, g_stats, weights, data):
        """The (1+1)-ES on every neighbourhood's mixture weights; (weights, FD, accepted)."""
        gan, h = self.gan, self.h
        proj = jnp.asarray(self.proj)
        feats = lambda x: x.reshape(x.shape[0], -1) @ proj
        # a fixed real subset: the same reference at every event
        ref = M.reference(feats(sample_batch(jax.random.key(0x5EED), data, h.mix_samples)))
        k_z, k_es = jax.random.split(key)
        z = gan.latents(k_z, h.mix_samples)
        out = jax.vmap(lambda p, s: feats(gan.generate(p, s, z, train=False)[0]))(
            g_params, g_stats)  # (cells, n, dims), every G on the same latents

        def cell(k, w, members):
            return M.mixture_es(k, w, lambda ww: M.mixture_fd(ref, out[members], ww),
                                h.mix_sigma, h.mix_steps)

        return jax.vmap(cell)(jax.random.split(k_es, self.cells), weights,
                              jnp.asarray(self.nbr))

    # --- one generation -----------------------------------------------------------------------
    def step(self, state: GridState, data: jax.Array) -> tuple[GridState, dict]:
        key, k_train, k_eval, k_sel, k_lr_g, k_lr_d, k_mix = jax.random.split(state.key, 7)
        g, d, drawn = self._train(state, k_train, data)
        pairs = self._pairs(k_eval, g[:2], d[:2], data)
        src_g, src_d, fit_g, fit_d, events = self._select(k_sel, pairs)
        from_g = jnp.asarray(self.nbr)[jnp.arange(self.cells), src_g]  # grid cell indices
        from_d = jnp.asarray(self.nbr)[jnp.arange(self.cells), src_d]
        g_params, g_stats, g_opt = _take(g, from_g)
        d_params, d_stats, d_opt = _take(d, from_d)
        state = state.replace(
            generation=state.generation + 1, key=key, g_params=g_params, g_stats=g_stats,
            g_opt=g_opt, g_lr=self._mutate_lr(k_lr_g, state.g_lr[from_g]),
            d_params=d_params, d_stats=d_stats, d_opt=d_opt,
            d_lr=self._mutate_lr(k_lr_d, state.d_lr[from_d]), fitness_g=fit_g, fitness_d=fit_d)
        accepted = jnp.zeros((self.cells,), jnp.int32)
        if self.h.mix_every:
            weights, mix_fd, accepted = jax.lax.cond(
                state.generation % self.h.mix_every == 0,
                lambda: self.mixture_step(k_mix, g_params, g_stats, state.weights, data),
                lambda: (state.weights, state.mix_fd, accepted))
            state = state.replace(weights=weights, mix_fd=mix_fd)
        return state, self._metrics(state, pairs, from_g, from_d, events, drawn, accepted)

    def _metrics(self, state, pairs, from_g, from_d, events, drawn, accepted) -> dict:
        # the four GAN numbers of each cell's new (D, G) pair, from the common-batch matrices
        cell = {"real_score": pairs["real_score"][from_d],
                **{k: pairs[k][from_d, from_g] for k in ("fake_score", "loss_d", "loss_g")}}
        best = self.best_cell(state)
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
                    "mix_fd": jnp.where(jnp.isfinite(state.mix_fd[best]),
                                        state.mix_fd[best], -1.0),
                    "mix_accepted": f32(jnp.sum(accepted))})
        out.update({f"mix_w{j}": state.weights[best, j] for j in range(M.NEIGHBOURS)})
        if self.mustangs:
            out.update({f"mustangs_{n}": f32(jnp.sum(drawn[:, i]))
                        for i, n in enumerate(self.losses)})
        return out
