"""`throughput.py --configs`: whole generations of shipped configs, reference layout vs as shipped.

For each packaged config (e.g. mnist-evolve) it compiles `Evolve.step` three times in one process:
  reference  evolve.{g,d}.layout/chunk/kernels at their defaults (auto, 0, factored): how the
             config ran before it named a layout of its own;
  shipped    the config as it is (and once more with factored kernels: what its chunking alone
             gives).
Then it times them interleaved (A, B, C, A, B, C, ...: a shared machine's load hits all alike), each
round `steps` generations, and keeps the best round of each. The data are uniform noise images of
the config's shape: a generation's cost does not depend on their values.
"""

from __future__ import annotations

import os
import time

import jax

from ga_gan.cli import PACKAGED_CONFIGS
from ga_gan.config import apply_overrides, load_config

BEGIN, END = "<!-- configs: begin -->", "<!-- configs: end -->"
REFERENCE = {f"evolve.{r}.{k}": v for r in ("g", "d")
             for k, v in (("layout", "auto"), ("chunk", 0), ("kernels", "factored"))}


def layouts(cfg) -> str:
    """Each population's layout as resolved here ('auto: map'), chunk and kernel form."""
    from ga_gan.strategies import is_lowrank, resolve_layout

    def one(s):
        resolved = resolve_layout(s.layout, cfg.model.name, is_lowrank(s))
        shown = resolved if s.layout == resolved else f"{s.layout}: {resolved}"
        return f"{shown} {s.chunk or '-'} {s.kernels}"
    return f"G {one(cfg.evolve.g)}; D {one(cfg.evolve.d)}"


def compiled_step(cfg):
    """(compiled step, state, data) of the config's Evolve method, one step already run."""
    from ga_gan.gan import make_gan, strong_types
    from ga_gan.methods import build
    method = build("evolve", make_gan(cfg.model), cfg)
    m = cfg.model
    data = jax.random.uniform(jax.random.key(1), (512, m.resolution, m.resolution, m.channels),
                              minval=-1, maxval=1)
    state = strong_types(method.init(jax.random.key(0)))
    step = jax.jit(method.step).lower(state, data).compile()
    state, _ = step(state, data)
    jax.block_until_ready(state)
    return step, state, data


def measure(names: list[str], rounds: int, steps: int) -> list[dict]:
    """One row per (config, variant): best and all rounds' seconds per generation."""
    rows = []
    for name in names:
        shipped = load_config(PACKAGED_CONFIGS / f"{name}.toml")
        factored = {f"evolve.{r}.kernels": "factored" for r in ("g", "d")}
        variants = {"reference": apply_overrides(shipped, REFERENCE),
                    "shipped, factored kernels": apply_overrides(shipped, factored),
                    "shipped": shipped}
        runs = {v: [*compiled_step(cfg), []] for v, cfg in variants.items()}
        load = os.getloadavg()[0]
        for _ in range(rounds):
            for run in runs.values():
                step, state, data, times = run
                t = time.perf_counter()
                for _ in range(steps):
                    state, metrics = step(state, data)
                jax.block_until_ready(metrics)
                times.append((time.perf_counter() - t) / steps)
                run[1] = state
        load = (load, os.getloadavg()[0])
        for v, (_, _, _, times) in runs.items():
            rows.append({"config": name, "variant": v, "layouts": layouts(variants[v]),
                         "s_per_gen": min(times), "times": times, "load": load})
        print(", ".join(f"{name} {r['variant']}: {r['s_per_gen']:.3f} s" for r in rows[-3:]),
              flush=True)
    return rows


def section(rows: list[dict], command: str, machine: str, rounds: int, steps: int) -> str:
    lines = [BEGIN, "## Shipped evolution configs: reference layout vs as shipped", "",
             "Where the time goes, and what did not help: `throughput-small-nets.md`.", "",
             f"Command: `{command}`  ", f"Machine: {machine}  ",
             f"One process per command; per config every variant compiled, then {rounds} "
             f"interleaved rounds of {steps} generations each (A, B, C, A, B, C, ...), best round "
             "kept. Layout per population: layout, chunk, kernels. Load = the 1-minute load "
             "average before and after a config's rounds (2 cores; other jobs ran).", "",
             "| config | variant | layout | s / generation (best) | generations / s | "
             "speed-up | all rounds (s) | load |", "|---|---|---|---:|---:|---:|---|---|"]
    ref = {r["config"]: r["s_per_gen"] for r in rows if r["variant"] == "reference"}
    for r in rows:
        rounds_s = " ".join(f"{t:.3f}" for t in r["times"])
        lines.append(f"| {r['config']} | {r['variant']} | {r['layouts']} | {r['s_per_gen']:.3f} | "
                     f"{1 / r['s_per_gen']:.2f} | {ref[r['config']] / r['s_per_gen']:.2f}x | "
                     f"{rounds_s} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    return "\n".join(lines + ["", END, ""])


def kept_section(text: str) -> str:
    """The configs section of an existing report ('' if none): a full run keeps it."""
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN):text.index(END) + len(END)] + "\n"


def write_section(path, text: str) -> None:
    """Replace the configs section of `path` (or append it)."""
    old = path.read_text() if path.exists() else ""
    keep = kept_section(old)
    new = old.replace(keep, text) if keep else (old.rstrip("\n") + "\n\n" if old else "") + text
    path.write_text(new)
