"""Coevolution of a generator population and a discriminator population (no gradients).

One generation, a pure function of (state, data):
  1. a real batch x and latents z are drawn once and shared by every member (common random
     numbers: rankings then measure the weights, not the luck of the batch);
  2. D population: each member j is scored on x (label 1) and on G_mean(z) (label 0);
  3. G population: each member i is scored on how well G_i(z) fools the updated D mean;
  4. the running BatchNorm statistics of both means are refreshed by one train-mode forward.
Members always run in train mode, so each uses its own batch statistics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from ga_gan.config import EvolveConfig, StrategyConfig
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.evolve import fitness as F
from ga_gan.evolve.lowrank import NAME as LOWRANK, LowRankES, evaluate_lowrank, make_lowrank
from ga_gan.evolve.strategies import Strategy, make_strategy
from ga_gan.gan import GAN


@struct.dataclass
class EvolveState:
    generation: jax.Array
    key: jax.Array
    g: Any  # evosax state of the generator population
    d: Any  # evosax state of the discriminator population
    g_stats: Any  # running BatchNorm statistics of the generator mean
    d_stats: Any


def resolve_layout(layout: str, model_name: str, lowrank: bool = False) -> str:
    if layout == "auto" and lowrank:
        # Low-rank members share the mean's kernels, so either layout turns every layer's base op
        # into one large op over a chunk's images. Measured on XLA:CPU (benchmarks/results/
        # throughput.md): for convolutions small lax.map chunks win (thin per-member convs are
        # cheap, big batched ones are not); for the MLP one vmap over the population wins.
        return "map" if jax.default_backend() == "cpu" and model_name != "mlp" else "vmap"
    if layout == "auto":
        # Measured on 2 CPU cores: lax.map beats vmap 2-3x even for the digits MLP (batched
        # matmuls are slow on XLA:CPU) and 3-5x for convolutions; accelerators prefer vmap.
        return "map" if jax.default_backend() == "cpu" else "vmap"
    if layout not in ("vmap", "map"):
        raise UserError(f"unknown population layout '{layout}' (vmap, map or auto)")
    return layout


def _is_lowrank(sc: StrategyConfig) -> bool:
    return sc.name.lower().replace("-", "_") == LOWRANK


def _build(sc: StrategyConfig, num_dims: int, template=None) -> Strategy | LowRankES:
    if _is_lowrank(sc):
        return make_lowrank(template(), pop=sc.pop, rank=sc.rank, std=sc.std, lr=sc.lr,
                            optimizer=sc.optimizer, weight_decay=sc.weight_decay)
    return make_strategy(sc.name, pop=sc.pop, num_dims=num_dims, std=sc.std, lr=sc.lr,
                         optimizer=sc.optimizer, weight_decay=sc.weight_decay)


def population_generation(strategy, sstate, unravel, member_fitness, layout: str, chunk: int,
                          k_ask: jax.Array, k_tell: jax.Array):
    """(fitness, new strategy state) of one population: ask, fitness of every member
    (member_fitness(params) -> scalar, sharded over devices when there are several), tell."""
    if isinstance(strategy, LowRankES):
        # Low-rank path: factors instead of a pop x n population, the mean never copied.
        noise = strategy.sample(k_ask)
        mean_tree = unravel(strategy.center(sstate))
        fit = evaluate_lowrank(strategy, mean_tree, noise, member_fitness, layout, chunk)
        return fit, strategy.tell(noise, fit, sstate)
    pop, sstate = strategy.ask(k_ask, sstate)
    fit = F.evaluate_population(lambda flat: member_fitness(unravel(flat)), pop, layout, chunk)
    return fit, strategy.tell(k_tell, pop, fit, sstate)


def _summary(prefix: str, fit: jax.Array) -> dict:
    return {f"{prefix}_best": jnp.min(fit), f"{prefix}_mean": jnp.mean(fit),
            f"{prefix}_std": jnp.std(fit)}


class Evolve:
    """Pure evolution: evosax strategies for both networks, fitness vectorised over members."""

    name = "evolve"

    def __init__(self, gan: GAN, cfg: EvolveConfig):
        self.gan, self.cfg = gan, cfg
        shapes = lambda i: jax.eval_shape(gan.init, jax.random.key(0))[i]["params"]
        self.sg = _build(cfg.g, gan.g_size, lambda: shapes(0))
        self.sd = _build(cfg.d, gan.d_size, lambda: shapes(1))
        self.layout_g = resolve_layout(cfg.g.layout, gan.cfg.name, _is_lowrank(cfg.g))
        self.layout_d = resolve_layout(cfg.d.layout, gan.cfg.name, _is_lowrank(cfg.d))
        self.d_objective, self.d_higher = F.objective("d", cfg.d.fitness)
        self.g_objective, self.g_higher = F.objective("g", cfg.g.fitness)

    def init(self, key: jax.Array) -> EvolveState:
        k_net, k_g, k_d, k_run = jax.random.split(key, 4)
        g_vars, d_vars = self.gan.init(k_net)
        g0, _ = ravel_pytree(g_vars["params"])
        d0, _ = ravel_pytree(d_vars["params"])
        return EvolveState(generation=jnp.zeros((), jnp.int32), key=k_run,
                           g=self.sg.init(k_g, g0), d=self.sd.init(k_d, d0),
                           g_stats=g_vars["batch_stats"], d_stats=d_vars["batch_stats"])

    # --- what the rest of ga-gan needs to know about a state -------------------------------
    def generator(self, state: EvolveState):
        """(params, batch_stats) of the generator a user samples from: the strategy's mean
        (distribution strategies) or its fittest member (genetic algorithms)."""
        return self.gan.unravel_g(self.sg.center(state.g)), state.g_stats

    def discriminator(self, state: EvolveState):
        return self.gan.unravel_d(self.sd.center(state.d)), state.d_stats

    # --- one generation ---------------------------------------------------------------------
    def step(self, state: EvolveState, data: jax.Array) -> tuple[EvolveState, dict]:
        gan = self.gan
        key, k_x, k_z, k_ask_d, k_tell_d, k_ask_g, k_tell_g = jax.random.split(state.key, 7)
        real = sample_batch(k_x, data, self.cfg.batch)
        z = gan.latents(k_z, self.cfg.batch)

        g_params, g_stats = self.generator(state)
        fake, _ = gan.generate(g_params, g_stats, z, train=True)

        # Discriminator generation against the current generator mean.
        def d_member(p):
            real_logits, _ = gan.discriminate(p, state.d_stats, real)
            fake_logits, _ = gan.discriminate(p, state.d_stats, fake)
            return F.to_minimise(self.d_objective(real_logits, fake_logits), self.d_higher)

        d_fit, d_state = population_generation(self.sd, state.d, gan.unravel_d, d_member,
                                          self.layout_d, self.cfg.d.chunk, k_ask_d, k_tell_d)
        d_params = gan.unravel_d(self.sd.center(d_state))

        # Generator generation against the updated discriminator mean.
        def g_member(p):
            images, _ = gan.generate(p, state.g_stats, z)
            fake_logits, _ = gan.discriminate(d_params, state.d_stats, images)
            return F.to_minimise(self.g_objective(fake_logits), self.g_higher)

        g_fit, g_state = population_generation(self.sg, state.g, gan.unravel_g, g_member,
                                          self.layout_g, self.cfg.g.chunk, k_ask_g, k_tell_g)
        g_params = gan.unravel_g(self.sg.center(g_state))

        # Scores of the new means on this generation's batch (also refreshes BN statistics).
        fake, g_stats = gan.generate(g_params, state.g_stats, z, train=True)
        real_logits, d_stats = gan.discriminate(d_params, state.d_stats, real)
        fake_logits, d_stats = gan.discriminate(d_params, d_stats, fake)
        metrics = {
            "real_score": F.real_score(real_logits),
            "fake_score": F.fake_score(fake_logits),
            "loss_d": F.loss_d(real_logits, fake_logits),
            "loss_g": F.loss_g(fake_logits),
            **_summary("fitness_d", d_fit),
            **_summary("fitness_g", g_fit),
        }
        new = EvolveState(generation=state.generation + 1, key=key, g=g_state, d=d_state,
                          g_stats=g_stats, d_stats=d_stats)
        return new, metrics
