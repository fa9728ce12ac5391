"""Invert's search strategies: the seed study's BLX GA and every evosax strategy, each a
`ga_gan.strategies.base.SearchStrategy` with latent-space defaults.

evosax strategies are built by `ga_gan.strategies.evosax_strategy.make_strategy`, the same
builder and name rule as evolution's; only the latent defaults live here. Every strategy is
initialised from the same evaluated prior sample (`SearchStrategy.init(..., evaluated)`):
population-based strategies start from it, distribution-based ones start at the prior mean and
merely seed their best so far with it, so all report best so far from the same baseline.
"""

from __future__ import annotations

import optax

from ga_gan.invert import ga
from ga_gan.strategies.base import SearchStrategy
from ga_gan.strategies.evosax_strategy import (find_strategy, make_strategy, normalise,
                                               strategy_registry)

GA_NAMES = ("blx_ga", "ga")
OPEN_ES_LR = 0.05  # adam step on the mean; latents live on a unit scale, so ~1/20 of it
PRIOR_STD = 1.0  # the prior's scale: the natural initial search width for latents
OPEN_ES_FINAL_STD = 0.05  # Open_ES cannot adapt its width; at a fixed 1.0 its samples never get close


def strategy_names() -> list[str]:
    """Accepted names (lower-case); any spelling differing in case, '-' or '_' also works."""
    return list(GA_NAMES) + sorted(strategy_registry())


def resolve_strategy(name: str) -> str:
    """The public (lower-case, '_') name for a user spelling, or a UserError."""
    if normalise(name) in {normalise(n) for n in GA_NAMES}:
        return "blx_ga"
    find_strategy(name, also=("blx_ga", "cma_es"))
    return name.lower().replace("-", "_")


def make_latent_strategy(name: str, pop: int, latent_dim: int,
                         ga_config: ga.GAConfig | None = None,
                         generations: int | None = None) -> SearchStrategy:
    """The strategy ``name`` with latent-space defaults (std = prior scale, mean = 0).

    Open_ES alone moves its mean with adam at ``OPEN_ES_LR`` and, given ``generations``, decays
    its fixed-width noise from the prior scale to ``OPEN_ES_FINAL_STD`` over the run; the other
    evosax strategies keep their own optimiser and schedule.
    """
    public = resolve_strategy(name)
    if public == "blx_ga":
        return ga.BlxGA(pop, ga_config or ga.GAConfig())
    if normalise(public) != normalise("open_es"):
        return make_strategy(public, pop=pop, num_dims=latent_dim, std=PRIOR_STD, lr=0.0,
                             optimizer=None)
    schedule = None
    if generations:
        schedule = optax.exponential_decay(PRIOR_STD, generations, OPEN_ES_FINAL_STD / PRIOR_STD,
                                           end_value=OPEN_ES_FINAL_STD)
    return make_strategy(public, pop=pop, num_dims=latent_dim, std=PRIOR_STD, lr=OPEN_ES_LR,
                         optimizer="adam", std_schedule=schedule)
