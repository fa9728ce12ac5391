"""The registry from a method's public name to its implementation, and the shape every method
has (`Method`).

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

A new method is one module with a class of the `Method` shape plus one `register` call (a test
may register its own); the Runner, sampling and the benchmarks then give it the same run
folder, logging, checkpoints and benchmark plumbing as every other. Each comes wrapped with a
generator average when `log.ema` (or the method's `ema_decay`) asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import jax

from ga_gan import ema
from ga_gan.config import RunConfig
from ga_gan.errors import UserError
from ga_gan.gan import GAN


class State(Protocol):
    generation: jax.Array  # completed steps; the Runner's clock, checkpoints and logs read it


class Method(Protocol):
    """What the Runner, `ga-gan sample`, invert and the benchmarks use of a method. `step` is
    a pure function (jitted by the Runner); the state is a pytree (checkpointed as is).
    Optional: `ema_decay` (float, the default `log.ema`; 0 when absent) and
    `sample(state, key, n) -> uint8 images` for a method that samples its own way (a mixture
    of generators)."""

    def init(self, key: jax.Array) -> State: ...

    def step(self, state: Any, data: jax.Array) -> tuple[Any, dict]: ...

    def generator(self, state: Any) -> tuple[Any, Any]: ...  # (params, batch_stats)

    def discriminator(self, state: Any) -> tuple[Any, Any]: ...


def _generations(cfg: RunConfig) -> int:
    return cfg.evolve.generations


@dataclass(frozen=True)
class Entry:
    build: Callable[[GAN, RunConfig], Method]
    steps: Callable[[RunConfig], int] = _generations  # the run's total length


REGISTRY: dict[str, Entry] = {}


def register(name: str, build: Callable[[GAN, RunConfig], Method],
             steps: Callable[[RunConfig], int] = _generations) -> None:
    """Make `build(gan, cfg)` available as method `name` (its length: `steps(cfg)`)."""
    REGISTRY[name] = Entry(build, steps)


def _adam(gan, cfg):
    from ga_gan.methods.adam import Adam
    return Adam(gan, cfg.train)


def _evolve(gan, cfg):
    from ga_gan.methods.evolve import Evolve
    return Evolve(gan, cfg.evolve)


def _egan(gan, cfg):
    from ga_gan.methods.egan import Egan
    return Egan(gan, cfg.evolve)


def _adam_d(gan, cfg):
    from ga_gan.methods.adam_d import AdamD
    return AdamD(gan, cfg.evolve)


def _lamarck(gan, cfg):
    from ga_gan.methods.lamarck import Lamarck
    return Lamarck(gan, cfg.evolve)


def _lipizzaner(gan, cfg, mustangs: bool = False):
    from ga_gan.methods.lipizzaner import Lipizzaner
    return Lipizzaner(gan, cfg.evolve, mustangs=mustangs)


register("adam", _adam, lambda cfg: cfg.train.steps)
register("evolve", _evolve)
register("egan", _egan)
register("adam-d", _adam_d)
register("lamarck", _lamarck)
register("lipizzaner", _lipizzaner)
register("mustangs", lambda gan, cfg: _lipizzaner(gan, cfg, mustangs=True))

COMMANDS = ("train", "evolve")  # the run commands; a run folder's meta records which one


def hybrids() -> list[str]:
    """The names `--mode hybrid --hybrid NAME` accepts."""
    return [name for name in REGISTRY if name not in ("adam", "evolve")]


def method_name(command: str, cfg: RunConfig) -> str:
    """The registry name a run resolves to: `train` -> adam; `evolve` -> evolve, or with
    evolve.mode = hybrid the hybrid named by evolve.hybrid.variant; a registry name as is."""
    if command == "train":
        return "adam"
    if command != "evolve":
        if command not in REGISTRY:
            raise UserError(f"unknown method '{command}' (choose from {', '.join(REGISTRY)})")
        return command
    if cfg.evolve.mode == "evolve":
        return "evolve"
    if cfg.evolve.mode != "hybrid":
        raise UserError(f"unknown --mode '{cfg.evolve.mode}' (evolve or hybrid)")
    name = cfg.evolve.hybrid.variant.strip().lower().replace("_", "-")
    if name not in hybrids():
        raise UserError(f"unknown hybrid variant '{cfg.evolve.hybrid.variant}' "
                        f"(choose from {', '.join(hybrids())})")
    return name


def run_command(name: str) -> tuple[str, dict]:
    """(command, config overrides) that run registry method `name`: the inverse of
    `method_name`, so a run folder records `train` or `evolve` as the CLI would."""
    if name not in REGISTRY:
        raise UserError(f"unknown method '{name}' (choose from {', '.join(REGISTRY)})")
    if name == "adam":
        return "train", {}
    if name == "evolve":
        return "evolve", {"evolve.mode": "evolve"}
    return "evolve", {"evolve.mode": "hybrid", "evolve.hybrid.variant": name}


def build(command: str, gan: GAN, cfg: RunConfig) -> Method:
    """The method a run of `command` (train, evolve or a registry name) trains, as it is."""
    return REGISTRY[method_name(command, cfg)].build(gan, cfg)


def build_method(command: str, gan: GAN, cfg: RunConfig):
    """`build`, with a generator average when `log.ema` (or the method's default) asks for
    one."""
    return ema.with_ema(build(command, gan, cfg), gan, cfg.log.ema)


def total_steps(command: str, cfg: RunConfig) -> int:
    """The run's total length: train.steps for Adam, evolve.generations for the others."""
    return REGISTRY[method_name(command, cfg)].steps(cfg)
