"""Latent-space inversion: search a trained generator's inputs for images matching targets."""

from ga_gan.invert.ga import GAConfig, GAState
from ga_gan.invert.output import load_target_images, write_outputs
from ga_gan.invert.search import InversionResult, invert, make_fitness_fn
from ga_gan.invert.strategies import make_driver, resolve_strategy, strategy_names

__all__ = [
    "GAConfig",
    "GAState",
    "InversionResult",
    "invert",
    "load_target_images",
    "make_driver",
    "make_fitness_fn",
    "resolve_strategy",
    "strategy_names",
    "write_outputs",
]
