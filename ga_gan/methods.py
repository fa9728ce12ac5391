"""The registry from a command's method name to its implementation.

`evolve` (pure evolution, or `--mode hybrid --hybrid VARIANT`) and `train` (the Adam DCGAN
baseline); each comes wrapped with a generator average when `log.ema` (or the method's default)
asks for one. The Runner, `ga-gan sample` and `invert` build methods here and nowhere else.
"""

from __future__ import annotations

from ga_gan import ema
from ga_gan.config import RunConfig
from ga_gan.errors import UserError
from ga_gan.gan import GAN


def build_method(name: str, gan: GAN, cfg: RunConfig):
    """The method named `name` (evolve, train), with a generator average when `log.ema` (or
    the method's default) asks for one."""
    return ema.with_ema(_base_method(name, gan, cfg), gan, cfg.log.ema)


def _base_method(name: str, gan: GAN, cfg: RunConfig):
    if name == "evolve":
        if cfg.evolve.mode == "hybrid":
            from ga_gan.hybrid import build_hybrid
            return build_hybrid(gan, cfg.evolve)
        if cfg.evolve.mode != "evolve":
            raise UserError(f"unknown --mode '{cfg.evolve.mode}' (evolve or hybrid)")
        from ga_gan.evolve.method import Evolve
        return Evolve(gan, cfg.evolve)
    if name == "train":
        from ga_gan.adam import Adam
        return Adam(gan, cfg.train)
    raise UserError(f"unknown method '{name}'")


def total_steps(name: str, cfg: RunConfig) -> int:
    return cfg.evolve.generations if name == "evolve" else cfg.train.steps
