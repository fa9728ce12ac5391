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
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.gan import GAN, stack, take
from ga_gan.gan.steps import adam
from ga_gan.methods import mixture as M
from ga_gan.sampling import sample_images
from ga_gan.methods import torus as T

MUSTANGS_LOSSES = ("minimax", "heuristic", "least_squares")


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


class Lipizzaner:
    ema_decay = 0.0  # samples come from a mixture (`sample`), not one averaged generator

    def __init__(self, gan: GAN, cfg: EvolveConfig, mustangs: bool = False):
        self.gan, self.cfg, self.h = gan, cfg, (h := cfg.hybrid)
        self.mustangs = mustangs
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
        self.loss_fns = F.g_losses(self.losses)
        m = gan.cfg
        self.proj = M.projection(m.resolution * m.resolution * m.channels, h.mix_dims)

    # --- state --------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> GridState:
        # Cell 0 starts from the Adam baseline's networks (same split), the others from
        # independent draws.
        k_net, k_run = jax.random.split(key)
        nets = [self.gan.init(k_net)] + [self.gan.init(jax.random.fold_in(k_net, c))
                                         for c in range(1, self.cells)]
        grid = lambda i, part: stack([n[i][part] for n in nets])
        g_params, d_params = grid(0, "params"), grid(1, "params")
        opt = adam(1.0, self.h.beta1)  # the state's structure does not depend on lr or beta2
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
        return take(state.g_params, c), take(state.g_stats, c)

    def discriminator(self, state: GridState):
        c = self.best_cell(state)
        return take(state.d_params, c), take(state.d_stats, c)

    def sample(self, state: GridState, key: jax.Array, n: int) -> np.ndarray:
        """n uint8 images from the best cell's mixture (eval mode): generator j of its
        neighbourhood draws exact_counts(w)[j] of them, in a random order."""
        state = distributed.local(state)
        c = int(self.best_cell(state))
        counts = np.asarray(M.exact_counts(state.weights[c], n))
        k_order, *keys = jax.random.split(key, M.NEIGHBOURS + 1)
        parts = [sample_images(self.gan, *take((state.g_params, state.g_stats),
                                                int(self.nbr[c, j])), keys[j], n)[:counts[j]]
                 for j in range(M.NEIGHBOURS) if counts[j]]
        images = np.concatenate(parts)
        return images[np.asarray(jax.random.permutation(k_order, n))]

    def _train(self, state: GridState, key: jax.Array, data):
        nb = lambda tree: take(tree, self.nbr)  # (cells, 5, ...)
        cells = (jax.random.key_data(jax.random.split(key, self.cells)),
                 (state.g_params, state.g_stats, state.g_opt), state.g_lr,
                 (state.d_params, state.d_stats, state.d_opt), state.d_lr,
                 nb((state.g_params, state.g_stats)), nb((state.d_params, state.d_stats)))

        def one(k, *rest):
            return T.train_cell(self.gan, self.h, self.cfg.batch, self.loss_fns, data,
                                jax.random.wrap_key_data(k), *rest)

        return distributed.shard_population(lambda rows: jax.vmap(one)(*rows), cells)

    # --- one generation -----------------------------------------------------------------------
    def step(self, state: GridState, data: jax.Array) -> tuple[GridState, dict]:
        h = self.h
        key, k_train, k_eval, k_sel, k_lr_g, k_lr_d, k_mix = jax.random.split(state.key, 7)
        g, d, drawn = self._train(state, k_train, data)
        pairs = T.pair_scores(self.gan, k_eval, g[:2], d[:2], data, self.cfg.batch)
        src_g, src_d, fit_g, fit_d, events = T.select(k_sel, pairs, self.nbr)
        from_g = jnp.asarray(self.nbr)[jnp.arange(self.cells), src_g]  # grid cell indices
        from_d = jnp.asarray(self.nbr)[jnp.arange(self.cells), src_d]
        g_params, g_stats, g_opt = take(g, from_g)
        d_params, d_stats, d_opt = take(d, from_d)
        state = state.replace(
            generation=state.generation + 1, key=key, g_params=g_params, g_stats=g_stats,
            g_opt=g_opt, g_lr=T.mutate_lr(k_lr_g, state.g_lr[from_g], h.lr_prob, h.lr_sigma),
            d_params=d_params, d_stats=d_stats, d_opt=d_opt,
            d_lr=T.mutate_lr(k_lr_d, state.d_lr[from_d], h.lr_prob, h.lr_sigma),
            fitness_g=fit_g, fitness_d=fit_d)
        accepted = jnp.zeros((self.cells,), jnp.int32)
        if self.h.mix_every:
            weights, mix_fd, accepted = jax.lax.cond(
                state.generation % self.h.mix_every == 0,
                lambda: M.neighbourhood_es(self.gan, k_mix, g_params, g_stats, state.weights,
                                           data, self.proj, self.nbr, h),
                lambda: (state.weights, state.mix_fd, accepted))
            state = state.replace(weights=weights, mix_fd=mix_fd)
        return state, self._metrics(state, pairs, from_g, from_d, events, drawn, accepted)

    def _metrics(self, state, pairs, from_g, from_d, events, drawn, accepted) -> dict:
        out = T.cell_metrics(state, self.best_cell(state), pairs, from_g, from_d, events,
                             accepted)
        if self.mustangs:
            out.update({f"mustangs_{n}": jnp.asarray(jnp.sum(drawn[:, i]), jnp.float32)
                        for i, n in enumerate(self.losses)})
        return out
