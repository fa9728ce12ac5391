"""Adam trains the discriminator, evolution the generator.

One generation, a pure function of (state, data):
  1. D takes `k_d` Adam steps (BCE) on real batches and fakes of the generator population's
     centre (its mean, or its fittest member for a genetic algorithm);
  2. the G population (any evosax strategy, or lowrank_es, from `cfg.g`: name, pop, std, lr,
     fitness, layout) is scored on shared latents against the updated D and told its fitness,
     exactly as in `Evolve` (`population_generation`);
  3. the new centre's running BatchNorm statistics are refreshed by one train-mode forward,
     and the scores of the new pair on this generation's batch are logged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from ga_gan.config import EvolveConfig
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.gan import GAN, strong_types, task
from ga_gan.gan.steps import adam, d_adam_steps, generated
from ga_gan.strategies import (build_strategy, is_lowrank, population_generation, resolve_layout,
                               step_taken)


@struct.dataclass
class AdamDState:
    generation: jax.Array
    key: jax.Array
    g: Any  # evosax state of the generator population
    g_stats: Any  # running BatchNorm statistics of the generator centre
    d_params: Any
    d_stats: Any
    d_opt: Any


class AdamD:
    ema_decay = 0.0  # the generator is a strategy's mean, already an average

    def __init__(self, gan: GAN, cfg: EvolveConfig):
        h = cfg.hybrid
        if h.k_d < 0:
            raise UserError(f"evolve.hybrid.k_d must be >= 0, got {h.k_d}")
        self.gan, self.cfg, self.h = gan, cfg, h
        g_shapes = lambda: jax.eval_shape(gan.init, jax.random.key(0))[0]["params"]
        self.sg = build_strategy(cfg.g, gan.g_size, g_shapes)
        self.layout_g = resolve_layout(cfg.g.layout, gan.cfg.name, is_lowrank(cfg.g))
        self.g_objective, self.g_higher, _ = F.g_objective(cfg.g.fitness)
        self.opt_d = adam(h.lr_d, h.beta1, h.beta2)

    def init(self, key: jax.Array) -> AdamDState:
        # Same split as Evolve, so both start from the same networks and G population.
        k_net, k_g, _, k_run = jax.random.split(key, 4)
        g_vars, d_vars = self.gan.init(k_net)
        g0, _ = ravel_pytree(g_vars["params"])
        return AdamDState(generation=jnp.zeros((), jnp.int32), key=k_run,
                          g=self.sg.init(k_g, g0), g_stats=g_vars["batch_stats"],
                          d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
                          d_opt=self.opt_d.init(d_vars["params"]))

    def generator(self, state: AdamDState):
        return self.gan.unravel_g(self.sg.center(state.g)), state.g_stats

    def discriminator(self, state: AdamDState):
        return state.d_params, state.d_stats

    def step(self, state: AdamDState, data: jax.Array) -> tuple[AdamDState, dict]:
        gan, batch = self.gan, self.cfg.batch
        key, k_d, k_x, k_z, k_ask, k_tell = jax.random.split(state.key, 6)

        # 1. the discriminator, by Adam, against the current generator centre
        g_params, g_stats = self.generator(state)
        d_params, d_stats, d_opt = state.d_params, state.d_stats, state.d_opt
        g_stats, d_params, d_stats, d_opt, _ = d_adam_steps(
            gan, self.opt_d, k_d, self.h.k_d, data, batch, generated(gan, g_params, batch),
            g_stats, d_params, d_stats, d_opt)

        # 2. the generator population against the updated D, on shared latents
        real = sample_batch(k_x, data, batch)
        z = gan.latents(k_z, batch)
        real_f = gan.discriminate_features(d_params, d_stats, real)[1]  # feature matching
        g_member = task.g_member(gan, self.g_higher, g_stats, z,
                                 task.against_d(gan, self.g_objective, d_params, d_stats, real_f))
        g_fit, g_state = population_generation(self.sg, state.g, gan.unravel_g, g_member,
                                               self.layout_g, self.cfg.g.chunk, k_ask, k_tell,
                                               self.cfg.g.elite)

        # 3. the new pair's scores on this batch (refreshes G's running statistics)
        fake, g_stats = gan.generate(gan.unravel_g(self.sg.center(g_state)), g_stats, z,
                                     train=True)
        real_logits, _ = gan.discriminate(d_params, d_stats, real)
        fake_logits, _ = gan.discriminate(d_params, d_stats, fake)
        metrics = {**F.scores(real_logits, fake_logits), **F.summary("fitness_g", g_fit)}
        if self.cfg.g.elite:  # 1 = the update was kept, 0 = elitism refused it
            metrics["elite_g"] = step_taken(self.sg, state.g, g_state)
        new = AdamDState(generation=state.generation + 1, key=key, g=g_state, g_stats=g_stats,
                         d_params=d_params, d_stats=d_stats, d_opt=d_opt)
        return strong_types(new), metrics
