"""The run loop shared by every method: step -> log -> evaluate -> checkpoint, nothing else.

A method (evolution, Adam, hybrids) supplies `init(key)`, a pure `step(state, data)`, and
`generator(state)` / `discriminator(state)`. This module owns the run folder, the jitted
step (dispatched `steps_per_call` times per host sync), the clock, Fréchet evaluation, sample
grids, orbax checkpoints, resume and signals. Every step is the same compiled function of
(state, data), and the state holds everything (PRNG key included), so a resumed run repeats an
uninterrupted one bit for bit.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ga_gan import __version__, cloud, distributed, ema
from ga_gan.checkpoint import Checkpointer, checkpoint_dir, uncommitted
from ga_gan.config import RunConfig, load_run_config, to_dict  # noqa: F401 (re-exported)
from ga_gan.data import Dataset, load_dataset
from ga_gan.errors import UserError
from ga_gan.evaluation import Evaluation
from ga_gan.gan import make_gan, strong_types
from ga_gan.images import save_png
from ga_gan.interrupt import StopOnSignal
from ga_gan.methods import build_method, total_steps  # noqa: F401 (build_method re-exported)
from ga_gan.progress import Progress
from ga_gan.resume import clear_for_restart, newest_checkpoint
from ga_gan.runlock import RunLock
from ga_gan.runlog import RunLog
from ga_gan.validate import validate_config

TIMING_KEYS = ("time_s", "eval_s")  # the wall clock; the rest of metrics.jsonl is deterministic


def versions() -> dict:
    import evosax, flax, optax, orbax.checkpoint
    return {"ga_gan": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "evosax": getattr(evosax, "__version__", "?"),
            "orbax_checkpoint": getattr(orbax.checkpoint, "__version__", "?"),
            "python": sys.version.split()[0], "backend": jax.default_backend()}


def load_data(cfg: RunConfig, log: Callable = print) -> Dataset:
    ds = load_dataset(cfg.data.spec, resolution=cfg.model.resolution,
                      channels=cfg.model.channels, split=cfg.data.split,
                      cache_dir=cfg.data.cache_dir, limit=cfg.data.limit, log=log)
    n, h, w, c = ds.images.shape
    if (h, w, c) != (cfg.model.resolution, cfg.model.resolution, cfg.model.channels):
        raise UserError(f"data {cfg.data.spec} gives {h}x{w}x{c} images but the model makes "
                        f"{cfg.model.resolution}x{cfg.model.resolution}x{cfg.model.channels}")
    return ds


@dataclass
class RunResult:
    out: Path
    generation: int
    time_s: float
    stopped_by: str  # "generations" | "time_budget" | "signal"
    last: dict


@dataclass
class _Loop:
    """One run's loop: what every stage reads (the log, signals, progress, the data on device,
    the intervals chunks end on) and what each chunk hands to the next (the state, its
    generation, training seconds so far, the last logged line, why the loop stopped)."""
    state: Any
    generation: int
    train_time: float
    runlog: RunLog
    stop: StopOnSignal
    data: Any
    intervals: list[int]
    mirror: bool  # metrics.jsonl is copied beside checkpoints in a bucket
    start: int  # the generation this process started from
    progress: Progress | None = None
    last: dict = field(default_factory=dict)
    stopped_by: str = "generations"  # | "time_budget" | "signal"


class Runner:
    """Owns one run folder for one method."""

    def __init__(self, cfg: RunConfig, method_name: str, *, restart: bool = False,
                 log: Callable[[str], None] = print, dataset: Dataset | None = None):
        self.cfg, self.method_name, self.log = cfg, method_name, log
        self.out = Path(cfg.out)
        self.primary = jax.process_index() == 0
        validate_config(cfg, method_name)  # before any work: bad values, unwritable --out
        self.lock = RunLock(self.out)
        if self.primary:  # one writer per run folder (with --distributed: process 0 writes)
            self.lock.acquire()
        try:
            if cloud.is_gcs(checkpoint_dir(cfg)):  # a wrong bucket or endpoint fails first
                cloud.check_gcs(checkpoint_dir(cfg))
            self.dataset = dataset if dataset is not None else load_data(cfg, log)
            self.gan = make_gan(cfg.model)
            self.method = build_method(method_name, self.gan, cfg)
            self.total = total_steps(method_name, cfg)
            self.resume_step = self._prepare_folder(restart)
        except BaseException:
            self.lock.release(remove_created=True)
            raise
        log(f"data {self.dataset.name}: {len(self.dataset.images):,} images "
            f"{self.dataset.images.shape[1:]}; G {self.gan.g_size:,} params, "
            f"D {self.gan.d_size:,} params ({cfg.model.name}, width {cfg.model.width}"
            + (f", D width {cfg.model.d_width}" if cfg.model.d_width is not None else "") + ")")
        self.evaluation = Evaluation(cfg, self.gan, self.method, self.dataset, log)
        self._step: Callable | None = None
        self._tb, self._tb_image = None, None

    # --- the run folder ---------------------------------------------------------------------
    def _prepare_folder(self, restart: bool) -> int | None:
        """--restart's clearing, the checkpoints opened, the resume step (ga_gan/resume.py)."""
        if restart:
            clear_for_restart(self.cfg, self.out, self.primary, self.log)
        self.ckpt = Checkpointer(str(checkpoint_dir(self.cfg)), max_to_keep=self.cfg.log.max_to_keep)
        try:
            step, self._restored = newest_checkpoint(self.ckpt, self.cfg, self.out,
                                                     self.method_name, self.method, self.gan,
                                                     self.primary, self.log)
        except BaseException:
            self.ckpt.close()
            raise
        return step

    # --- compiled pieces --------------------------------------------------------------------
    def _chunk(self, n: int) -> Callable:
        """n steps dispatched back to back (JAX runs them asynchronously) with one host sync.

        Each step is the same compiled function whatever n is, so chunking never changes the
        numbers. (A lax.scan over steps was measured 8x slower per step on XLA:CPU.)
        """
        if self._step is None:
            # several devices: state and metrics stay replicated global arrays
            sharding = distributed.replicated()
            method_step = self.method.step

            def step_fn(state, data):  # strong types out, so step 2 reuses step 1's program
                new_state, metrics = method_step(state, data)
                return strong_types(new_state), metrics

            self._step = (jax.jit(step_fn) if sharding is None else
                          jax.jit(step_fn, out_shardings=sharding))
        step = self._step

        def run_n(state, data):
            history = []
            for _ in range(n):
                state, metrics = step(state, data)
                history.append(metrics)
            return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

        return run_n

    # --- evaluation (ga_gan/evaluation.py) --------------------------------------------------
    def sample(self, state, n: int, key: jax.Array, single: bool = False) -> np.ndarray:
        return self.evaluation.sample(state, n, key, single)

    def evaluators(self):
        return self.evaluation.evaluators()

    def evaluate(self, state) -> dict:
        return self.evaluation(state)

    def save_images(self, state, generation: int) -> None:
        if not self.primary:
            return
        png = self.evaluation.grid(state)
        save_png(png, self.out / "samples" / f"samples_{generation:07d}.png")
        save_png(png, self.out / "samples.png")
        if self._tb is not None and self._tb_image != generation:  # the end may repeat one
            self._tb.image("samples", png, generation)
            self._tb_image = generation

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        """The loop; a failed write (full disk, read-only folder) ends it in one line."""
        try:
            return self._loop()
        except OSError as e:
            self.ckpt.close(quiet=True)
            raise UserError(f"cannot write {e.filename or self.out}: {e.strerror or e}; the run "
                            f"stopped, its checkpoints and metrics so far are kept (resume with "
                            f"ga-gan {self.method_name} --resume {self.out})") from None
        finally:
            self.lock.release()

    def _loop(self) -> RunResult:
        """init-or-restore, the chunks, a last checkpoint, the last images, the stop message."""
        state, train_time = self._initial_state()
        generation = int(distributed.local(state.generation))
        # Checkpoints in a bucket keep a copy of metrics.jsonl beside them, for a resume on
        # another machine (a new --out); the local file, when there, is at least as recent.
        mirror = cloud.is_remote(self.ckpt.directory) and self.primary
        loop = _Loop(state, generation, train_time, self._open_runlog(mirror), mirror=mirror,
                     start=generation, intervals=self._intervals(),
                     data=distributed.replicate(jnp.asarray(self.dataset.images)),
                     # On an error (or a second Ctrl-C) a save already in flight still commits
                     # (or reports its failure) before the error leaves, so a finished
                     # interval is not lost.
                     stop=StopOnSignal(on_error=lambda: self.ckpt.close(quiet=True)))
        if generation >= self.total:
            self.log(f"already at generation {generation} >= {self.total}: nothing to do "
                     f"(raise --generations/--steps to extend the run)")
        self._open_tensorboard(loop.runlog)
        loop.progress = Progress(self.total, generation,
                                 enabled=self.cfg.log.progress and self.primary,
                                 time_budget=self.cfg.time_budget, train_time=train_time)
        if self.resume_step is None and self.cfg.log.eval_every:
            first = {"generation": 0, "time_s": 0.0, **self.evaluate(state)}
            loop.runlog.append(first)
            loop.progress.observe(first)
        with loop.stop:
            self._chunks(loop)
            self._checkpoint(loop, force_wait=True)
            loop.progress.close()
        self._finish(loop)
        return RunResult(self.out, loop.generation, loop.train_time, loop.stopped_by, loop.last)

    # --- init or restore --------------------------------------------------------------------
    def _initial_state(self):
        """(state, training seconds so far): a fresh state from `init`, or the one restored by
        _check_resume made exactly like it (same classes, uncommitted, strongly typed); with
        several devices a global state replicated over every device."""
        key = jax.random.key(self.cfg.seed)
        mesh = distributed.population_mesh()
        if self.resume_step is None and mesh is None:
            return strong_types(jax.jit(self.method.init)(key)), 0.0
        if self.resume_step is None:
            init = jax.jit(lambda k: strong_types(self.method.init(k)),
                           out_shardings=distributed.replicated())
            return init(distributed.replicate(key)), 0.0
        state, meta = self._restored
        state = ema.adapt(self.method, state)
        if mesh is None:
            state = strong_types(uncommitted(state))
        else:
            state = jax.jit(strong_types, out_shardings=distributed.replicated())(
                distributed.replicate(state))
        return state, float(meta["time_s"])

    def _open_runlog(self, mirror: bool) -> RunLog:
        """metrics.jsonl (fetched from the bucket on a resume elsewhere) and config.json."""
        if mirror and self.resume_step is not None and cloud.download_metrics(
                self.ckpt.directory, self.out / "metrics.jsonl"):
            self.log(f"metrics.jsonl fetched from {self.ckpt.directory}")
        runlog = RunLog(self.out, resume_generation=self.resume_step, primary=self.primary)
        runlog.write_json("config.json", {"method": self.method_name,
                                          "config": to_dict(self.cfg), "versions": versions()})
        return runlog

    def _open_tensorboard(self, runlog: RunLog) -> None:
        if self.cfg.log.tensorboard and self.primary:
            from ga_gan.tblog import TensorBoard
            self._tb = TensorBoard(self.out, resume_generation=self.resume_step)
            runlog.sinks.append(self._tb.scalars)

    def _intervals(self) -> list[int]:
        """A chunk ends at every multiple of steps_per_call and of each interval below (and at
        the total), so checkpoints, evaluations and images land exactly on their interval and
        chunk boundaries do not depend on where a run was resumed."""
        log = self.cfg.log
        return [k for k in (max(1, log.steps_per_call), log.checkpoint_every, log.eval_every,
                            log.image_every) if k and k > 0]

    # --- the chunks -------------------------------------------------------------------------
    def _chunks(self, loop: _Loop) -> None:
        """Chunks until the total, the time budget or a signal (`loop.stopped_by` says which)."""
        while loop.generation < self.total:
            if self._over_budget(loop.train_time):
                loop.stopped_by = "time_budget"
                return
            out_of_time = self._one_chunk(loop)
            if out_of_time and loop.generation < self.total:
                loop.stopped_by = "time_budget"
                return
            if distributed.any_process(loop.stop.signal is not None):  # all hosts stop together
                loop.stopped_by = "signal"
                return

    def _over_budget(self, train_time: float) -> bool:
        return self.cfg.time_budget is not None and train_time >= self.cfg.time_budget

    def _one_chunk(self, loop: _Loop) -> bool:
        """Run one chunk, then log, evaluate, draw and checkpoint what falls on its end.
        Returns whether the time budget is spent."""
        every = self.cfg.log.eval_every
        n = min([self.total - loop.generation] + [k - loop.generation % k
                                                  for k in loop.intervals])
        t_start = loop.train_time
        metrics = self._advance(loop, n)
        out_of_time = self._over_budget(loop.train_time)
        # a run stopped by its budget still ends with a logged, evaluated last line
        done = loop.generation + n >= self.total or out_of_time
        evaluate = bool(every) and ((loop.generation + n) % every == 0 or done)
        records = self._records(metrics, loop.generation, n, t_start, loop.train_time,
                                last_too=done or evaluate)
        loop.generation += n
        if evaluate:
            records[-1].update(self.evaluate(loop.state))
        with loop.stop.critical():  # whole lines only
            for r in records:
                loop.runlog.append(r)
        loop.last = records[-1] if records else loop.last
        self._images_and_checkpoints(loop, done)
        loop.progress(loop.generation, records, loop.train_time)
        return out_of_time

    def _advance(self, loop: _Loop, n: int) -> dict:
        """n steps from loop.state, their per-step metrics on the host. A non-finite metric
        saves the last good state and ends the run in one line."""
        t0 = time.perf_counter()
        new_state, metrics = self._chunk(n)(loop.state, loop.data)
        metrics = jax.device_get(distributed.local(metrics))
        loop.train_time = loop.train_time + time.perf_counter() - t0
        if not all(np.all(np.isfinite(v)) for v in metrics.values()):
            bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
            self._checkpoint(loop, force_wait=True)
            raise UserError(f"non-finite {', '.join(bad)} at generation "
                            f"{loop.generation + 1}-{loop.generation + n}; the last good state "
                            f"(generation {loop.generation}) is saved in {self.out}")
        loop.state = new_state
        return metrics

    def _records(self, metrics: dict, generation: int, n: int, t_start: float,
                 t_end: float, last_too: bool) -> list[dict]:
        """metrics.jsonl lines of the chunk's steps generation+1 .. generation+n: every
        `log.every`-th, and the last when it is evaluated or ends the run. Within a fused
        chunk, time is interpolated between its two ends."""
        records = []
        for i in range(n):
            g = generation + i + 1
            if g % self.cfg.log.every == 0 or (i == n - 1 and last_too):
                records.append({"generation": g,
                                "time_s": round(t_start + (t_end - t_start) * (i + 1) / n, 4),
                                **{k: float(v[i]) for k, v in metrics.items()}})
        return records

    # --- images, checkpoints, the end -------------------------------------------------------
    def _images_and_checkpoints(self, loop: _Loop, done: bool) -> None:
        log = self.cfg.log
        if log.image_every and (loop.generation % log.image_every == 0 or done):
            self.save_images(loop.state, loop.generation)
            loop.runlog.plot()
        if log.checkpoint_every and loop.generation % log.checkpoint_every == 0:
            self._checkpoint(loop)

    def _checkpoint(self, loop: _Loop, force_wait: bool = False) -> None:
        with loop.stop.critical():
            if loop.mirror:  # before the save starts: a committed step has its metrics there
                cloud.upload_metrics(loop.runlog.metrics_path, self.ckpt.directory)
            self.ckpt.save(loop.generation, loop.state, self._meta(loop))
        if force_wait:
            self.ckpt.wait()

    def _meta(self, loop: _Loop) -> dict:
        return {"method": self.method_name, "generation": loop.generation,
                "time_s": loop.train_time, "config": to_dict(self.cfg), "versions": versions(),
                "ema": isinstance(self.method, ema.EMA)}

    def _finish(self, loop: _Loop) -> None:
        """The last images (unless a resume had nothing to do), closed files, how it stopped."""
        if self.primary and (loop.generation > loop.start or self.resume_step is None):
            self.save_images(loop.state, loop.generation)
            loop.runlog.plot()
        self.ckpt.close()
        if self._tb is not None:
            self._tb.close()
        if loop.stopped_by == "signal":
            elsewhere = (f" (on another machine: --resume {self.ckpt.directory} --out DIR)"
                         if cloud.is_remote(self.ckpt.directory) else "")
            self.log(f"stopped by signal at generation {loop.generation}; checkpoint saved. "
                     f"Resume with: ga-gan {self.method_name} --resume {self.out}{elsewhere}")
        elif loop.stopped_by == "time_budget":
            self.log(f"time budget of {self.cfg.time_budget:g} s reached at generation "
                     f"{loop.generation}")
