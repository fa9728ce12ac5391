"""The registry from a method's public name to its implementation.

Public names: `adam` (`ga-gan train`), `evolve` (`ga-gan evolve`), and the hybrids of
`ga-gan evolve --mode hybrid --hybrid NAME`:

  egan     a population of generators mutated by Adam steps on several losses, selected by
           E-GAN's quality + diversity fitness; D trained by Adam       (ga_gan.methods.egan)
  adam-d   D trained by Adam, G evolved by any evosax strategy        (ga_gan.methods.adam_d)
  lamarck  both evosax populations, plus Adam steps on each strategy mean that are written
           back into the strategy (evolution explores, gradients refine) (ga_gan.methods.lamarck)
  lipizzaner  a torus of (G, D) cells trained by Adam against their neighbourhoods, with
           selection, lr mutation and an evolved mixture of generators (ga_gan.methods.lipizzaner)
  mustangs lipizzaner plus E-GAN's loss mutation (a random G loss per step and cell)

Every method has the same interface (a `name`, `init(key)`, a pure `step(state, data) ->
(state, metrics)`, `generator(state)` and `discriminator(state)`), so the Runner gives all of
them the same run folder, logging, checkpoints and benchmark plumbing. Each comes wrapped with a
generator average when `log.ema` (or the method's default) asks for one.
"""

from __future__ import annotations

from typing import Callable

from ga_gan import ema
from ga_gan.config import EvolveConfig, RunConfig
from ga_gan.errors import UserError
from ga_gan.gan import GAN


def build_method(name: str, gan: GAN, cfg: RunConfig):
    """The method named `name` (evolve, train), with a generator average when `log.ema` (or
    the method's default) asks for one."""
    return ema.with_ema(_base_method(name, gan, cfg), gan, cfg.log.ema)


def _base_method(name: str, gan: GAN, cfg: RunConfig):
    if name == "evolve":
        if cfg.evolve.mode == "hybrid":
            return build_hybrid(gan, cfg.evolve)
        if cfg.evolve.mode != "evolve":
            raise UserError(f"unknown --mode '{cfg.evolve.mode}' (evolve or hybrid)")
        from ga_gan.methods.evolve import Evolve
        return Evolve(gan, cfg.evolve)
    if name == "train":
        from ga_gan.methods.adam import Adam
        return Adam(gan, cfg.train)
    raise UserError(f"unknown method '{name}'")


def total_steps(name: str, cfg: RunConfig) -> int:
    return cfg.evolve.generations if name == "evolve" else cfg.train.steps


def _egan(gan: GAN, cfg: EvolveConfig):
    from ga_gan.methods.egan import Egan
    from ga_gan.strategies import resolve_layout
    # children: vmapped (the layout; also the faster one measured on CPU, see egan.py)
    # unless evolve.g.layout asks for lax.map explicitly; "auto" means vmap here
    layout = cfg.g.layout if cfg.g.layout in ("vmap", "map") else "vmap"
    resolve_layout(layout, gan.cfg.name)
    return Egan(gan, cfg, layout=layout)


def _adam_d(gan: GAN, cfg: EvolveConfig):
    from ga_gan.methods.adam_d import AdamD
    return AdamD(gan, cfg)


def _lamarck(gan: GAN, cfg: EvolveConfig):
    from ga_gan.methods.lamarck import Lamarck
    return Lamarck(gan, cfg)


def _lipizzaner(gan: GAN, cfg: EvolveConfig, mustangs: bool = False):
    from ga_gan.methods.lipizzaner import Lipizzaner
    return Lipizzaner(gan, cfg, mustangs=mustangs)


VARIANTS: dict[str, Callable] = {"egan": _egan, "adam-d": _adam_d, "lamarck": _lamarck,
                                 "lipizzaner": _lipizzaner,
                                 "mustangs": lambda gan, cfg: _lipizzaner(gan, cfg, True)}


def build_hybrid(gan: GAN, evolve_cfg: EvolveConfig):
    """The hybrid method named by `evolve_cfg.hybrid.variant` (one of VARIANTS)."""
    name = evolve_cfg.hybrid.variant.strip().lower().replace("_", "-")
    if name not in VARIANTS:
        raise UserError(f"unknown hybrid variant '{evolve_cfg.hybrid.variant}' "
                        f"(choose from {', '.join(VARIANTS)})")
    return VARIANTS[name](gan, evolve_cfg)
