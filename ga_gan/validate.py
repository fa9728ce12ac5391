"""Checks at the edge: every config value and output path is refused before any work starts.

`validate_config` runs once on a resolved `RunConfig` (after the file, the flags and `--set`),
so a zero batch or a negative generation count is one `error:` line instead of a
ZeroDivisionError minutes later, or a run folder holding "nothing to do". `writable_dir` and
`writable_file` try the real thing (create a probe file) rather than `os.access`, which says yes
to root even on /proc.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from ga_gan.config import HALL_PLAYS, KERNEL_FORMS, SHAPINGS
from ga_gan.errors import UserError

SEED_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1  # jax.random.key takes a uint32-sized seed; larger ones overflow

# (dotted key, flag that sets it or None, smallest allowed value)
_COUNTS = {
    "evolve": [("evolve.generations", "--generations", 1), ("evolve.batch", None, 1),
               ("evolve.g.pop", "--pop/--pop-g", 2), ("evolve.d.pop", "--pop/--pop-d", 2),
               ("evolve.g.rank", "--rank", 1), ("evolve.d.rank", "--rank", 1),
               ("evolve.g.chunk", None, 0), ("evolve.d.chunk", None, 0),
               ("evolve.hybrid.k", None, 0), ("evolve.hybrid.k_d", None, 0),
               ("evolve.hybrid.mu", None, 1)],
    "train": [("train.steps", "--steps", 1), ("train.batch", None, 1), ("train.d_steps", None, 1)],
    "any": [("log.every", None, 1), ("log.image_every", None, 0), ("log.eval_every", None, 0),
            ("log.fd_samples", None, 2), ("log.checkpoint_every", None, 0),
            ("log.max_to_keep", None, 1), ("log.steps_per_call", None, 1),
            ("model.latent_dim", None, 1)],
}
FD_NAMES = ("pixels", "pixels_proj", "classifier", "inception")


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_seed(seed, flag: str = "--seed") -> int:
    """Seeds are unsigned 32-bit integers (0 .. 4294967295)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UserError(f"{flag} must be an integer from 0 to {SEED_MAX}, got {seed}")
    return seed


def validate_config(cfg, method: str) -> None:
    """Refuse values no run can use, naming the key (and the flag that sets it), and output
    folders that cannot be written. Needs no JAX, so the CLI calls it before importing it."""
    check_seed(cfg.seed, "seed (--seed)")
    for key, flag, low in _COUNTS.get(method, []) + _COUNTS["any"]:
        value = _get(cfg, key)
        if value > INT32_MAX:  # JAX counts in int32
            raise UserError(f"{key} is {value}, more than {INT32_MAX}")
        if value < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            name = f"{key} ({flag})" if flag else key
            raise UserError(f"{name} must be {what}, got {value}")
    if method == "evolve" and cfg.evolve.mode not in ("evolve", "hybrid"):
        raise UserError(f"unknown --mode '{cfg.evolve.mode}' (evolve or hybrid)")
    if method == "evolve":
        check_evolve(cfg.evolve)
    tb = cfg.time_budget
    if tb is not None and not tb > 0:  # also refuses NaN
        raise UserError(f"time_budget (--time-budget) must be a positive number of seconds, "
                        f"got {tb:g}")
    for key, value, unset in (("width", cfg.model.width, ""),
                              ("d_width", cfg.model.d_width, " (or unset: model.width)")):
        if value is None and unset:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not (value > 0 and math.isfinite(value)):
            raise UserError(f"model.{key} must be a positive number{unset}, got {value!r}")
    unknown = [n for n in cfg.log.fd if n not in FD_NAMES]
    if unknown:
        raise UserError(f"unknown log.fd {', '.join(unknown)}; choose from {', '.join(FD_NAMES)}")
    if not str(cfg.out).strip():
        raise UserError("--out must name a folder, got ''")
    writable_dir(cfg.out, "--out")
    if "://" not in (cfg.checkpoint_dir or "") and cfg.checkpoint_dir is not None:
        writable_dir(cfg.checkpoint_dir, "checkpoint_dir")


def check_evolve(ev) -> None:
    """The arms-race levers of `EvolveConfig` and both populations' `check_levers`; run by
    `validate_config` before any data loads and again by `methods.evolve.Evolve`, so a caller
    that builds the method from Python without the CLI gets the same error instead of a
    silently ignored setting."""
    check_levers(ev.g, "evolve.g")
    check_levers(ev.d, "evolve.d")
    if ev.d_every < 1 or ev.hall_of_fame < 0 or ev.hall_every < 1:
        raise UserError(f"evolve.d_every and evolve.hall_every must be >= 1 and "
                        f"evolve.hall_of_fame >= 0, got {ev.d_every}, {ev.hall_every}, "
                        f"{ev.hall_of_fame}")
    if not 0.5 <= ev.d_max_accuracy <= 1.0:
        raise UserError(f"evolve.d_max_accuracy must be in [0.5, 1] (0.5 is chance: below it "
                        f"D would never evolve), got {ev.d_max_accuracy}")
    if ev.hall_play not in HALL_PLAYS:
        raise UserError(f"unknown evolve.hall_play '{ev.hall_play}' ({', '.join(HALL_PLAYS)})")
    if ev.hall_play == "one" and ev.hall_of_fame < 1:
        raise UserError("evolve.hall_play = 'one' draws G's opponent from the hall of fame: "
                        "set evolve.hall_of_fame to 1 or more")


def check_levers(sc, where: str) -> None:
    """A population's schedules and shaping (`StrategyConfig`): decays are factors in (0, 1]
    (1 = constant), floors lie in [0, the starting value], a decay starts at a whole generation
    >= 0, and only a decay that exists can be delayed."""
    for name, start in (("std", sc.std), ("lr", sc.lr)):
        decay, floor = getattr(sc, f"{name}_decay"), getattr(sc, f"{name}_min")
        begin = getattr(sc, f"{name}_decay_begin")
        if not 0 < decay <= 1:  # also refuses NaN
            raise UserError(f"{where}.{name}_decay must be in (0, 1] (a factor per generation; "
                            f"1 = constant), got {decay:g}")
        if not 0 <= floor <= start:
            raise UserError(f"{where}.{name}_min must be from 0 to {where}.{name} ({start:g}), "
                            f"got {floor:g}")
        if isinstance(begin, bool) or not isinstance(begin, int) or begin < 0:
            raise UserError(f"{where}.{name}_decay_begin must be a whole number of generations "
                            f">= 0, got {begin!r}")
        if begin and decay == 1:
            raise UserError(f"{where}.{name}_decay_begin = {begin} delays a decay that is off: "
                            f"set {where}.{name}_decay below 1")
    if not sc.weight_decay >= 0:  # also refuses NaN
        raise UserError(f"{where}.weight_decay must be >= 0, got {sc.weight_decay:g}")
    if sc.weight_decay and sc.optimizer != "adamw":
        raise UserError(f"{where}.weight_decay needs {where}.optimizer = \"adamw\" (decoupled "
                        f"decay); {sc.optimizer} would ignore it")
    if sc.shaping not in SHAPINGS:
        raise UserError(f"unknown {where}.shaping '{sc.shaping}' ({', '.join(SHAPINGS)})")
    if sc.kernels not in KERNEL_FORMS:
        raise UserError(f"unknown {where}.kernels '{sc.kernels}' ({', '.join(KERNEL_FORMS)})")


def writable_dir(path, flag: str = "--out") -> Path:
    """`path` is, or can be made, a folder we can write in. Leaves nothing behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    for attempt in range(5):
        try:
            _probe(path)
            return path
        except OSError as e:
            # the processes of a --distributed run probe the same new folder at once: one may
            # remove the folder it made while another writes its probe there; probe again
            if isinstance(e, FileNotFoundError) and attempt < 4:
                continue
            raise UserError(f"cannot write to {flag} {path}: {e.strerror or e}") from None


def _probe(path: Path) -> None:
    """Make the missing folders of `path`, write and delete a file in it, and remove the
    folders this call made (innermost first)."""
    created = []
    try:
        missing = path
        while not missing.exists():
            created.append(missing)
            missing = missing.parent
        for p in reversed(created):
            try:
                p.mkdir()
            except FileExistsError:  # another process of a --distributed run made it first
                created.remove(p)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".ga-gan-probe")
        os.close(fd)
        os.unlink(probe)
    finally:
        for p in created:
            try:
                p.rmdir()
            except OSError:
                pass


def writable_file(path, flag: str = "--out") -> Path:
    """`path` can be written as a file: not an existing folder, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    writable_dir(path.parent, f"{flag}'s folder")
    return path
