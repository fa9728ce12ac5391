"""Typed run configuration: dataclasses, loaded from TOML, overridden from the command line.

One `RunConfig` describes a whole run (data, models, the method's knobs, logging); it is written
to `config.json` in the run folder and checked against the checkpoint on resume.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ga_gan.errors import UserError


@dataclass(frozen=True)
class ModelConfig:
    """The G/D networks (`ga_gan.models` builds them; kept here so configs load without JAX)."""

    name: str = "mlp"  # "mlp" | "dcgan" | "upsample"
    resolution: int = 8  # output H = W
    channels: int = 1  # 1 or 3
    latent_dim: int = 32
    width: float = 1.0  # multiplier on every hidden width / channel count (round, min 1)
    d_width: float | None = None  # D's own multiplier (None: `width`); a D sized apart from G
    g_hidden: tuple[int, ...] = (256, 512, 1024)  # mlp only (before the width multiplier)
    d_hidden: tuple[int, ...] = (1024, 512, 256)  # mlp only
    norm: str = "batch"  # "batch" | "none"


@dataclass
class DataConfig:
    spec: str = "digits"  # KIND or KIND:PATH (digits, mnist:DIR, cifar:DIR, folder:DIR)
    resolution: int | None = None  # None: the source's native size (folder: 64)
    channels: int | None = None  # None: the source's native channels
    split: str = "all"
    limit: int | None = None  # keep the first N images (quick runs)
    cache_dir: str | None = None


SHAPINGS = ("centered_rank", "z_score", "raw")  # StrategyConfig.shaping (checked without JAX)
HALL_PLAYS = ("all", "one")  # EvolveConfig.hall_play (ga_gan/gan/opponents.py)
KERNEL_FORMS = ("factored", "merged")  # StrategyConfig.kernels (lowrank_es; strategies/lowrank.py)


@dataclass
class StrategyConfig:
    """One population: which evosax strategy evolves it and how candidates are scored."""

    name: str = "open_es"
    pop: int = 64
    std: float = 0.05  # initial / constant perturbation scale (weights live near 0.02)
    lr: float = 0.01  # mean optimiser learning rate, for strategies that take one
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0  # decoupled decay on the mean (adamw): keeps weights from drifting
    fitness: str = "bce"  # D: bce | accuracy; G: bce | fooling | feature_matching[_bce]
    layout: str = "auto"  # how members are evaluated: vmap | map | auto (vmap on MLPs, map on convs)
    chunk: int = 0  # with layout=map: members per vectorised chunk (0 = one at a time)
    rank: int = 4  # lowrank_es: rank r of each kernel's perturbation A B^T
    # lowrank_es: factored (mean op + thin correction) | merged (W_i formed); others ignore it
    kernels: str = "factored"
    # Sample-efficiency levers (README "Sample-efficiency levers"); the defaults change nothing.
    std_decay: float = 1.0  # std x std_decay per generation (optax exponential decay), in (0, 1]
    std_min: float = 0.0  # ... down to this floor
    std_decay_begin: int = 0  # ... from this generation on (optax transition_begin)
    lr_decay: float = 1.0  # the mean optimiser's lr x lr_decay per update, in (0, 1]
    lr_min: float = 0.0  # ... down to this floor
    lr_decay_begin: int = 0  # ... from this update on (the early descent keeps the full lr)
    elite: bool = False  # keep the previous mean when the update scores worse on the same batch
    mirrored: bool = True  # antithetic pairs (lowrank_es, open_es)
    shaping: str = "centered_rank"  # fitness shaping: centered_rank | z_score | raw


@dataclass
class HybridConfig:
    """Evolution and gradient descent together (`--mode hybrid --hybrid VARIANT`)."""

    variant: str = "egan"  # egan | adam-d | lamarck | lipizzaner | mustangs
    k: int = 1  # G gradient steps: per child (egan) or on each strategy mean (lamarck)
    k_d: int = 1  # D Adam steps per generation (egan, adam-d; lamarck: on the D mean)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    mu: int = 1  # egan: surviving parents
    losses: tuple[str, ...] = ("minimax", "heuristic", "least_squares")  # egan mutations
    gamma: float = 0.001  # egan: weight of the diversity term Fd
    # lipizzaner / mustangs (spatial coevolution, ga_gan.methods.lipizzaner)
    grid: tuple[int, ...] = (2, 2)  # rows, cols of the torus of (G, D) cells
    lr_prob: float = 0.5  # probability of a learning-rate mutation per network and generation
    lr_sigma: float = 1e-4  # its normal step (the result is clipped to stay positive)
    mix_every: int = 10  # (1+1)-ES on each neighbourhood's mixture weights every N (0 = off)
    mix_sigma: float = 0.01  # the ES's mutation step on the weights
    mix_steps: int = 10  # ES iterations per event
    mix_samples: int = 256  # images per generator (and real images) for the ES's Fréchet distance
    mix_dims: int = 64  # that distance's features: pixels on a fixed random basis of N dims


@dataclass
class EvolveConfig:
    # G scored by feature matching on D's features: on the digits it took the final fd_pixels
    # from 15.3 (bce) to 5.3 in the same generations (ga_gan/configs/digits.toml).
    g: StrategyConfig = field(default_factory=lambda: StrategyConfig(fitness="feature_matching"))
    # A slower D: otherwise it wins the arms race and the generator's fitness goes flat.
    d: StrategyConfig = field(default_factory=lambda: StrategyConfig(lr=0.003))
    batch: int = 128  # real images and latents per generation (shared by every member)
    generations: int = 3000
    d_every: int = 1  # the D population evolves every k-th generation (k > 1: a D handicap)
    # ... and only while the D mean's accuracy on this generation's batch is at most this
    # (Wu et al. 2016 train D only at <= 0.8): an adaptive handicap; 1.0 = always
    d_max_accuracy: float = 1.0
    hall_of_fame: int = 0  # G also plays this many past D means (0: the current D mean only)
    hall_every: int = 10  # generations between two D means stored in the hall of fame
    # all: a G member plays the D mean and every stored D (cost grows with the hall); one: one of
    # them drawn per generation (the same average in expectation, at one D's cost)
    hall_play: str = "all"
    mode: str = "evolve"  # evolve (pure evolution) | hybrid (see `hybrid`)
    hybrid: HybridConfig = field(default_factory=HybridConfig)


@dataclass
class TrainConfig:
    """The Adam baseline (DCGAN defaults)."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch: int = 64
    steps: int = 3000
    d_steps: int = 1  # D updates per G update


@dataclass
class LogConfig:
    every: int = 1  # metrics line every N generations/steps
    image_every: int = 500  # sample grid + curves plot every N
    eval_every: int = 100  # Fréchet distance every N (0 = off)
    fd: tuple[str, ...] = ("pixels",)  # feature extractors: pixels | classifier | inception
    scores: tuple[str, ...] = ()  # "classifier": classifier_score, classes_covered, confident
    fd_samples: int = 2048
    inception_weights: str | None = None
    checkpoint_every: int = 500  # 0 = only at the end / on signals
    max_to_keep: int = 3
    steps_per_call: int = 10  # steps dispatched back to back per host sync (same numbers)
    progress: bool = True
    # generator weight average: decay in [0, 1), 0 = off; None = the method's default (0.999
    # for train, egan and lamarck; off for pure evolution, whose strategy mean already averages)
    ema: float | None = None
    tensorboard: bool = False  # also write scalars, Fréchet distances and grids to <out>/tb/


@dataclass
class RunConfig:
    seed: int = 0
    out: str = "runs/default"
    time_budget: float | None = None  # wall-clock seconds; the run stops cleanly after it
    checkpoint_dir: str | None = None  # default <out>/checkpoints; may be gs://bucket/run/ckpt
    data: DataConfig = field(default_factory=DataConfig)
    # The default is the digits setup: an MLP GAN sized for 8x8 (about 19k + 17k parameters).
    model: ModelConfig = field(default_factory=lambda: ModelConfig(
        name="mlp", resolution=8, channels=1, latent_dim=32, g_hidden=(64, 128),
        d_hidden=(128, 64)))
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


def to_dict(cfg: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a TOML/CLI value into the field's declared type, or say clearly why not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        (inner, *_) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(inner, v, where) for v in value)
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: cannot read {value!r} as {tp.__name__}") from None
    return value


def _merge(obj: Any, updates: dict, where: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in updates.items():
        key = key.replace("-", "_")
        if key not in names:
            raise UserError(f"unknown config key '{where}{key}' (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config '{where}{key}' is a table, got {value!r}")
            changes[key] = _merge(current, value, f"{where}{key}.")
        else:
            changes[key] = _coerce(hints[key], value, f"{where}{key}")
    return dataclasses.replace(obj, **changes)


def from_dict(d: dict, base: RunConfig | None = None) -> RunConfig:
    return _merge(base or RunConfig(), d, "")


def load_config(path: str | Path | None) -> RunConfig:
    """Read a TOML config; a missing or malformed file is a user error, not a traceback."""
    if path is None:
        return RunConfig()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path} is not UTF-8 text (byte {e.start}: "
                        f"{e.object[e.start:e.start + 1]!r})") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    return from_dict(raw)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply dotted overrides such as {'evolve.g.pop': 32, 'seed': 1}."""
    nested: dict = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(nested, cfg)


def parse_set(items: list[str]) -> dict[str, str]:
    """`--set a.b=c` pairs into a dict; a pair without '=' is a user error."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_run_config(run_dir: str | Path) -> tuple[RunConfig, str]:
    """The resolved config and method name stored in a run folder, or in the latest checkpoint
    of a bucket's checkpoint directory (`--resume gs://...` on a machine without the folder)."""
    from ga_gan import cloud
    if cloud.is_remote(run_dir):
        from ga_gan.checkpoint import checkpointed_run  # imports orbax: only for buckets
        saved, method = checkpointed_run(str(run_dir))
        try:
            return from_dict(saved), method
        except (KeyError, TypeError) as e:
            raise UserError(f"{run_dir} holds no ga-gan checkpoint "
                            f"({type(e).__name__}: {e})") from None
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"not a ga-gan run folder (no config.json): {run_dir}")
    try:
        raw = json.loads(path.read_text())
        return from_dict(raw["config"]), raw["method"]
    except (ValueError, KeyError, TypeError) as e:  # someone else's config.json, or damaged
        raise UserError(f"not a ga-gan run folder ({path} is not a ga-gan config: "
                        f"{type(e).__name__}: {e})") from None


def with_defaults(saved: dict) -> dict:
    """A saved config with keys added to RunConfig since it was written at their defaults (a
    new option's default keeps the old behaviour), so old runs still resume."""
    try:
        return to_dict(from_dict(saved))
    except UserError:  # a key this version no longer knows: compare as saved, and refuse
        return saved
