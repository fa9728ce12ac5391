"""Coevolution of a generator population and a discriminator population (no gradients).

One generation, a pure function of (state, data):
  1. a real batch x and latents z are drawn once and shared by every member (common random
     numbers: rankings then measure the weights, not the luck of the batch);
  2. D population: each member j is scored on x (label 1) and on G_mean(z) (label 0);
  3. G population: each member i is scored on how well G_i(z) fools the updated D mean;
  4. the running BatchNorm statistics of both means are refreshed by one train-mode forward.
Members always run in train mode, so each uses its own batch statistics.

Arms-race levers (`EvolveConfig`): `d_every` (D evolves only every k-th generation, a handicap
for a D that wins), `d_max_accuracy` (D evolves only while the D mean's accuracy on this
generation's batch, before its update, is at most this: an adaptive handicap that rests D exactly
when it is winning, as Wu et al. 2016 update D only at <= 80% accuracy), `hall_of_fame` (G also
plays past D means, all of them or one drawn per generation: `ga_gan.gan.opponents`),
`g.fitness = "feature_matching"` (G matches D's mean penultimate features of real images) or
`"feature_matching_bce"` (that, plus D's verdict on each image, in logs: `ga_gan.gan.losses`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from ga_gan.config import EvolveConfig
from ga_gan.data import sample_batch
from ga_gan.gan import losses as F
from ga_gan.gan import task
from ga_gan.gan.opponents import (HallOfFame, init_hall, opponents, sample_opponent,
                                  update_hall)
from ga_gan.strategies import (build_strategy, is_lowrank, population_generation, resolve_layout,
                               step_taken)
from ga_gan.validate import check_evolve
from ga_gan.gan import GAN, strong_types


@struct.dataclass
class EvolveState:
    generation: jax.Array
    key: jax.Array
    g: Any  # evosax state of the generator population
    d: Any  # evosax state of the discriminator population
    g_stats: Any  # running BatchNorm statistics of the generator mean
    d_stats: Any
    hall: HallOfFame | None = None  # past D means (evolve.hall_of_fame > 0)


class Evolve:
    """Pure evolution: evosax strategies for both networks, fitness vectorised over members."""

    ema_decay = 0.0  # a distribution strategy's mean already averages its population

    def __init__(self, gan: GAN, cfg: EvolveConfig):
        check_evolve(cfg)
        self.gan, self.cfg = gan, cfg
        shapes = lambda i: jax.eval_shape(gan.init, jax.random.key(0))[i]["params"]
        self.sg = build_strategy(cfg.g, gan.g_size, lambda: shapes(0))
        self.sd = build_strategy(cfg.d, gan.d_size, lambda: shapes(1))
        self.layout_g = resolve_layout(cfg.g.layout, gan.cfg.name, is_lowrank(cfg.g))
        self.layout_d = resolve_layout(cfg.d.layout, gan.cfg.name, is_lowrank(cfg.d))
        self.d_objective, self.d_higher = F.objective("d", cfg.d.fitness)
        self.g_objective, self.g_higher, self.g_features = F.g_objective(cfg.g.fitness)
        self.gated = cfg.d_max_accuracy < 1.0

    def init(self, key: jax.Array) -> EvolveState:
        k_net, k_g, k_d, k_run = jax.random.split(key, 4)
        g_vars, d_vars = self.gan.init(k_net)
        g0, _ = ravel_pytree(g_vars["params"])
        d0, _ = ravel_pytree(d_vars["params"])
        hall = init_hall(d0, self.cfg.hall_of_fame) if self.cfg.hall_of_fame else None
        return EvolveState(generation=jnp.zeros((), jnp.int32), key=k_run,
                           g=self.sg.init(k_g, g0), d=self.sd.init(k_d, d0),
                           g_stats=g_vars["batch_stats"], d_stats=d_vars["batch_stats"],
                           hall=hall)

    # --- what the rest of ga-gan needs to know about a state -------------------------------
    def generator(self, state: EvolveState):
        """(params, batch_stats) of the generator a user samples from: the strategy's mean
        (distribution strategies) or its fittest member (genetic algorithms)."""
        return self.gan.unravel_g(self.sg.center(state.g)), state.g_stats

    def discriminator(self, state: EvolveState):
        return self.gan.unravel_d(self.sd.center(state.d)), state.d_stats

    # --- one generation ---------------------------------------------------------------------
    def _d_generation(self, state: EvolveState, real, fake, k_ask, k_tell, evolves):
        """The D population's generation against `fake` (images of the G mean); on generations
        where D rests (`d_every`, `d_max_accuracy`) the D state is kept and its fitness reads 0."""
        d_member = task.d_member(self.gan, self.d_objective, self.d_higher, state.d_stats,
                                 real, fake)

        def evolve_d(_):
            fit, d_state = population_generation(self.sd, state.d, self.gan.unravel_d, d_member,
                                                 self.layout_d, self.cfg.d.chunk, k_ask, k_tell,
                                                 self.cfg.d.elite)
            return strong_types((fit, d_state))

        if evolves is None:
            return evolve_d(None)
        rest = lambda _: strong_types((jnp.zeros(self.sd.population_size), state.d))
        return jax.lax.cond(evolves, evolve_d, rest, None)

    def d_accuracy(self, state: EvolveState, real, fake) -> jax.Array:
        """The D mean's accuracy on this generation's real batch and G-mean images, before D
        evolves (no state: the gate needs nothing a checkpoint would have to carry)."""
        d_params = self.gan.unravel_d(self.sd.center(state.d))
        real_logits, _ = self.gan.discriminate(d_params, state.d_stats, real)
        fake_logits, _ = self.gan.discriminate(d_params, state.d_stats, fake)
        return F.accuracy_d(real_logits, fake_logits).astype(jnp.float32)

    def d_evolves(self, state: EvolveState, accuracy) -> jax.Array | None:
        """Whether the D population evolves this generation (both handicaps); None when it
        evolves every generation (no branch to trace)."""
        if self.cfg.d_every == 1 and not self.gated:
            return None
        on = state.generation % self.cfg.d_every == 0
        if self.gated:
            on = on & (accuracy <= self.cfg.d_max_accuracy)
        return on

    def _g_member_fitness(self, state: EvolveState, d_flat, real, z):
        """member_fitness(G params) against the D mean (and the hall of fame, if any: all of it,
        or one member drawn per generation with a key folded from the generation's own)."""
        if state.hall is not None and self.cfg.hall_play == "one":
            ds, weights = sample_opponent(jax.random.fold_in(state.key, 1), d_flat, state.hall)
        else:
            ds, weights = opponents(d_flat, state.hall)
        play = task.against_opponents(self.gan, self.g_objective, self.g_features, ds, weights,
                                      state.d_stats, real)
        return task.g_member(self.gan, self.g_higher, state.g_stats, z, play)

    def step(self, state: EvolveState, data: jax.Array) -> tuple[EvolveState, dict]:
        gan = self.gan
        key, k_x, k_z, k_ask_d, k_tell_d, k_ask_g, k_tell_g = jax.random.split(state.key, 7)
        real = sample_batch(k_x, data, self.cfg.batch)
        z = gan.latents(k_z, self.cfg.batch)

        g_params, g_stats = self.generator(state)
        fake, _ = gan.generate(g_params, g_stats, z, train=True)

        # Discriminator generation against the current generator mean.
        accuracy = self.d_accuracy(state, real, fake) if self.gated else None
        evolves = self.d_evolves(state, accuracy)
        d_fit, d_state = self._d_generation(state, real, fake, k_ask_d, k_tell_d, evolves)
        d_flat = self.sd.center(d_state)
        d_params = gan.unravel_d(d_flat)

        # Generator generation against the updated discriminator mean (and the hall of fame).
        g_member = self._g_member_fitness(state, d_flat, real, z)
        g_fit, g_state = population_generation(self.sg, state.g, gan.unravel_g, g_member,
                                               self.layout_g, self.cfg.g.chunk, k_ask_g, k_tell_g,
                                               self.cfg.g.elite)
        g_params = gan.unravel_g(self.sg.center(g_state))

        # Scores of the new means on this generation's batch (also refreshes BN statistics).
        fake, g_stats = gan.generate(g_params, state.g_stats, z, train=True)
        real_logits, d_stats = gan.discriminate(d_params, state.d_stats, real)
        fake_logits, d_stats = gan.discriminate(d_params, d_stats, fake)
        metrics = {**F.scores(real_logits, fake_logits), **F.summary("fitness_d", d_fit),
                   **F.summary("fitness_g", g_fit)}
        if self.gated:  # the gate's reading and whether D evolved this generation
            metrics["d_accuracy"] = accuracy
            metrics["d_evolved"] = evolves.astype(jnp.float32)
        if self.cfg.g.elite:  # 1 = the update was kept, 0 = elitism refused it
            metrics["elite_g"] = step_taken(self.sg, state.g, g_state)
        if self.cfg.d.elite:  # also 0 on generations where D rests
            metrics["elite_d"] = step_taken(self.sd, state.d, d_state)
        generation = state.generation + 1
        hall = (None if state.hall is None else
                update_hall(state.hall, d_flat, generation, self.cfg.hall_every))
        new = EvolveState(generation=generation, key=key, g=g_state, d=d_state,
                          g_stats=g_stats, d_stats=d_stats, hall=hall)
        return new, metrics
