"""Latent-space inversion: search a trained generator's inputs for images matching targets.

Names are resolved lazily (PEP 562) so that ``ga_gan.invert.command`` -- which the CLI imports
to build its parser -- does not pull in JAX and evosax before a command actually runs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BlxGA": "ga_gan.invert.ga",
    "GAConfig": "ga_gan.invert.ga",
    "GAState": "ga_gan.invert.ga",
    "InversionResult": "ga_gan.invert.search",
    "invert": "ga_gan.invert.search",
    "load_target_images": "ga_gan.invert.output",
    "make_latent_strategy": "ga_gan.invert.strategies",
    "make_fitness_fn": "ga_gan.invert.search",
    "resolve_strategy": "ga_gan.invert.strategies",
    "strategy_names": "ga_gan.invert.strategies",
    "write_outputs": "ga_gan.invert.output",
    "invert_run": "ga_gan.invert.command",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # cache: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'ga_gan.invert' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
