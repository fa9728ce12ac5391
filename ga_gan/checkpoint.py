"""orbax checkpoints of the whole run state, plus a JSON record to check resumes against.

The state pytree (strategy states, BatchNorm statistics, optimiser states, PRNG key, the
generation counter that also fixes the data-sampling position) is saved with StandardSave and
restored into the exact structure of a freshly initialised state, so classes come back as they
were. orbax commits a step atomically: locally it writes to a temporary folder and renames it;
on `gs://` (no rename there) it writes `commit_success.txt` into the step last. Either way a save
killed half way is never listed as the latest step. The directory may be any path orbax
accepts; `gs://bucket/run/checkpoints` is checked first (ga_gan.cloud).

Each step's meta record carries `checksum`, a SHA-256 of the state's leaves (dtype, shape and
bytes), checked on restore: flipped or truncated data is caught instead of trained on.
`restore_newest_intact` walks back from the newest step to the first one that restores, matches
its checksum and holds no NaN. Async saves and a kill: the save of step N runs while training
goes on, and the save of N + every waits for it to commit, so the newest committed step is at
most two intervals behind the generation a kill -9 interrupts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from ga_gan import cloud
from ga_gan.errors import UserError

# Config keys that may change when a run is resumed: they bound or observe the run but do not
# change what one generation computes.
RESUMABLE_CHANGES = ("out", "checkpoint_dir", "time_budget", "evolve.generations", "train.steps", "log.",
                     "data.cache_dir")


class Checkpointer:
    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True,
                 create: bool = True):
        # orbax (tensorstore's OCDBT driver) rejects relative local paths; URLs stay as given.
        self.directory = directory if cloud.is_remote(directory) else os.path.abspath(directory)
        self.failed = False
        if cloud.is_gcs(self.directory):  # endpoint, credentials, bucket: one bounded check
            cloud.check_gcs(self.directory)
        # A save killed half way leaves `<step>.orbax-checkpoint-tmp`: never listed as a step,
        # and removed by orbax when that step is saved again.
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"),
                                             options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
        with self._storage_errors():  # this save, or the one in flight before it
            if step in self.manager.all_steps():
                return False  # already saved at this step (interval and final save coincide)
            meta = {**meta, "checksum": state_digest(state)}
            return self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    @contextlib.contextmanager
    def _storage_errors(self):
        """A save that fails (a bucket lost mid-run, a full disk) is one line, not a traceback
        from orbax's background thread; the steps committed before it stay."""
        try:
            yield
        except Exception as e:
            self.failed = True
            raise UserError(f"checkpoint save to {self.directory} failed: {_first_line(e)} "
                            f"(committed steps are kept)") from e

    def read_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            return dict(out["meta"])
        except Exception as e:  # a damaged or foreign checkpoint: one line, not a traceback
            raise UserError(f"cannot read checkpoint {step} in {self.directory}: "
                            f"{_first_line(e)}") from e

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no complete checkpoint in {self.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            with _quiet_failed_reads():
                out = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise UserError(f"cannot restore checkpoint {step} in {self.directory} into this "
                            f"run's state: {_first_line(e)}") from e
        state, meta = out["state"], dict(out["meta"])
        stored = meta.get("checksum")  # absent in checkpoints written before checksums
        if stored is not None and stored != state_digest(state):
            raise UserError(f"checkpoint {step} in {self.directory} fails its checksum "
                            f"(its data changed after it was written)")
        return state, meta

    def restore_newest_intact(self, abstract_state: Any, check=lambda meta: None, log=print):
        """(step, state, meta) of the newest step that reads, restores, matches its checksum
        and holds no NaN; `abstract_state` (or `abstract_state(meta)`) is the structure to restore
        that step into. `check(meta)` may refuse a readable step (a UserError that is raised,
        not taken for damage). Each newer damaged step is reported in one line and set aside,
        so a later save at that step is not skipped. None when there is no step at all."""
        steps = self.all_steps()
        while steps:
            step = steps.pop()
            try:
                meta = self.read_meta(step)
            except UserError as e:
                self._damaged(step, e, steps, log)
                continue
            check(meta)
            try:
                target = abstract_state(meta) if callable(abstract_state) else abstract_state
                state, meta = self.restore(target, step)
                if _has_nan(state):
                    raise UserError("its state holds NaN")
            except UserError as e:
                self._damaged(step, e, steps, log)
                continue
            return step, state, meta
        return None

    def _damaged(self, step: int, error: UserError, older: list[int], log) -> None:
        reason = re.sub(rf"^(cannot \w+ )?checkpoint {step} in \S+( into this run's state)?:? ?",
                        "", str(error)) or str(error)
        if not older:
            raise UserError(f"no intact checkpoint in {self.directory}: generation {step} is "
                            f"damaged ({reason}); pass --restart to start over") from None
        log(f"warning: checkpoint at generation {step} is damaged ({reason}); resuming from "
            f"generation {older[-1]} (the damaged one is set aside)")
        self.set_aside(step)

    def set_aside(self, step: int) -> None:
        """Move a damaged step out of the way (local folders: kept as `<step>.damaged` for
        inspection; elsewhere deleted)."""
        if "://" in self.directory:
            self.manager.delete(step)
        else:
            src = os.path.join(self.directory, str(step))
            dst = src + ".damaged"
            shutil.rmtree(dst, ignore_errors=True)
            try:
                os.replace(src, dst)
            except FileNotFoundError:  # another process of a --distributed run moved it
                pass
        self.manager.reload()

    def wait(self) -> None:
        with self._storage_errors():
            self.manager.wait_until_finished()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for a save in flight, then release the manager. quiet: on an error path, log
        a failed save instead of raising over the error being handled."""
        reported = self.failed  # a failed save already raised: the error being handled
        try:
            with self._storage_errors():
                self.manager.wait_until_finished()
                self.manager.close()
        except UserError as e:
            if not quiet:
                raise
            if not reported:
                print(f"warning: the save in flight did not commit: {e}", file=sys.stderr)


def checkpointed_run(ckpt_dir: str) -> tuple[dict, str]:
    """(config as saved, method) with the latest checkpoint in ckpt_dir: what a resume on a
    machine without the run folder (only the bucket) starts from (config.load_run_config)."""
    ckpt = Checkpointer(ckpt_dir, async_save=False, create=False)
    try:
        if ckpt.latest_step() is None:
            raise UserError(f"no complete checkpoint in {ckpt_dir}")
        meta = ckpt.read_meta()
    finally:
        ckpt.close()
    try:
        return meta["config"], meta["method"]
    except (KeyError, TypeError) as e:
        raise UserError(f"{ckpt_dir} holds no ga-gan checkpoint "
                        f"({type(e).__name__}: {e})") from None


def state_digest(tree: Any) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes (PRNG keys through their key data)."""
    h = hashlib.sha256()
    for x in jax.tree.leaves(tree):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)  # a replicated global array: this process's copy
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _has_nan(tree: Any) -> bool:
    for x in jax.tree.leaves(tree):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            continue
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        a = np.asarray(x)
        if np.issubdtype(a.dtype, np.inexact) and np.isnan(a).any():
            return True
    return False


def _first_line(e: BaseException) -> str:
    """An exception's first line, shortened: a TensorStore error keeps its status code and its
    innermost cause (after the last quoted file name), without the spec it dumps."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    line = re.sub(r"\s*\[(source locations|tensorstore_spec)=.*", "", line)
    code = re.match(r"^([A-Z][A-Z_]+): ", line)
    if '": ' in line:
        line = (f"{code.group(1)}: " if code else "") + line.rsplit('": ', 1)[1]
    return line[:160]


# The lines of those tracebacks (several threads print them at once, interleaved).
_LOOP_CLOSED = re.compile(r"Traceback \(most recent call last\):|  File .*asyncio/base_events\.py.*"
                          r"|    self\._check_closed\(\)|    raise RuntimeError\('Event loop is "
                          r"closed'\)|RuntimeError: Event loop is closed|\s*\^+\s*")


@contextlib.contextmanager
def _quiet_failed_reads():
    """A failed restore leaves TensorStore reads in flight that call back into orbax's closed
    event loop and print "Event loop is closed" tracebacks: drop those, keep anything else."""
    buffer, real = io.StringIO(), sys.stderr
    try:
        with contextlib.redirect_stderr(buffer):
            try:
                yield
            except Exception:
                time.sleep(0.2)  # let the stray callbacks land while redirected
                raise
    finally:
        rest = [line for line in buffer.getvalue().splitlines(keepends=True)
                if not _LOOP_CLOSED.fullmatch(line.rstrip("\n"))]
        real.write("".join(rest))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_mismatch(saved: dict, current: dict) -> str | None:
    """First difference that would make the checkpoint mean something else, or None."""
    a, b = _flatten(saved), _flatten(current)
    for key in sorted(set(a) | set(b)):
        if any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES):
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, list):
            va = tuple(va)
        if isinstance(vb, list):
            vb = tuple(vb)
        if va != vb:
            return f"{key} is {vb!r} but the checkpoint was made with {va!r}"
    return None


def checkpoint_dir(cfg) -> str:
    """Where a run's checkpoints live: `checkpoint_dir` (any path orbax accepts, gs://bucket/run
    included) or the run folder's `checkpoints/`."""
    return cfg.checkpoint_dir or str(Path(cfg.out) / "checkpoints")


def uncommitted(tree):
    """The same values as fresh, uncommitted device arrays, like those `init` returns.

    orbax restores arrays committed to a device, and jit compiles a committed input into a
    different executable (explicit placement) than the uncommitted state of a fresh run. The
    numbers agree either way, but a restored run should run the very program a fresh one runs,
    and hit the same compilation-cache entry.
    """
    def fresh(x):
        if not isinstance(x, jax.Array):
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(jnp.asarray(np.asarray(jax.random.key_data(x))),
                                            impl=jax.random.key_impl(x))
        return jnp.asarray(np.asarray(x), dtype=x.dtype)
    return jax.tree.map(fresh, tree)
