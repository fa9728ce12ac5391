"""Hybrid modes: evolution and gradient descent together (`ga-gan evolve --mode hybrid`).

Every variant has the interface of `ga_gan.evolve.method.Evolve` (a `name`, `init(key)`, a pure
`step(state, data) -> (state, metrics)`, `generator(state)` and `discriminator(state)`), so the
Runner gives all of them the same run folder, logging, checkpoints and benchmark plumbing.

  egan     a population of generators mutated by Adam steps on several losses, selected by
           E-GAN's quality + diversity fitness; D trained by Adam       (ga_gan.hybrid.egan)
  adam-d   D trained by Adam, G evolved by any evosax strategy        (ga_gan.hybrid.adam_d)
  lamarck  both evosax populations, plus Adam steps on each strategy mean that are written
           back into the strategy (evolution explores, gradients refine) (ga_gan.hybrid.lamarck)
  lipizzaner  a torus of (G, D) cells trained by Adam against their neighbourhoods, with
           selection, lr mutation and an evolved mixture of generators (ga_gan.hybrid.lipizzaner)
  mustangs lipizzaner plus E-GAN's loss mutation (a random G loss per step and cell)
"""

from __future__ import annotations

from typing import Callable

from ga_gan.config import EvolveConfig
from ga_gan.errors import UserError
from ga_gan.gan import GAN


def _egan(gan: GAN, cfg: EvolveConfig):
    from ga_gan.evolve.method import resolve_layout
    from ga_gan.hybrid.egan import Egan
    # children: vmapped (the layout; also the faster one measured on CPU, see egan.py)
    # unless evolve.g.layout asks for lax.map explicitly; "auto" means vmap here
    layout = cfg.g.layout if cfg.g.layout in ("vmap", "map") else "vmap"
    resolve_layout(layout, gan.cfg.name)
    return Egan(gan, cfg, layout=layout)


def _adam_d(gan: GAN, cfg: EvolveConfig):
    from ga_gan.hybrid.adam_d import AdamD
    return AdamD(gan, cfg)


def _lamarck(gan: GAN, cfg: EvolveConfig):
    from ga_gan.hybrid.lamarck import Lamarck
    return Lamarck(gan, cfg)


def _lipizzaner(gan: GAN, cfg: EvolveConfig, mustangs: bool = False):
    from ga_gan.hybrid.lipizzaner import Lipizzaner
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
