"""orbax checkpoints of the whole run state, plus a JSON record to check resumes against.

The state pytree (strategy states, BatchNorm statistics, optimiser states, PRNG key, the
generation counter that also fixes the data-sampling position) is saved with StandardSave and
restored into the exact structure of a freshly initialised state, so classes come back as they
were. orbax commits a step atomically: locally it writes to a temporary folder and renames it;
on `gs://` (no rename there) it writes `commit_success.txt` into the step last. Either way a save
killed half way is never listed as the latest step. The directory may be any path orbax
accepts; `gs://bucket/run/checkpoints` is checked first (ga_gan.cloud).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import jax
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

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
        with self._storage_errors():  # this save, or the one in flight before it
            if step in self.manager.all_steps():
                return False  # already saved at this step (interval and final save coincide)
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
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise UserError(f"cannot restore checkpoint {step} in {self.directory} into this "
                            f"run's state: {_first_line(e)}") from e
        return out["state"], dict(out["meta"])

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


def checkpointed_config(ckpt_dir: str):
    """(RunConfig, method) stored with the latest checkpoint in ckpt_dir: what a resume on a
    machine without the run folder (only the bucket) starts from."""
    from ga_gan.config import from_dict
    ckpt = Checkpointer(ckpt_dir, async_save=False, create=False)
    try:
        if ckpt.latest_step() is None:
            raise UserError(f"no complete checkpoint in {ckpt_dir}")
        meta = ckpt.read_meta()
    finally:
        ckpt.close()
    try:
        return from_dict(meta["config"]), meta["method"]
    except (KeyError, TypeError) as e:
        raise UserError(f"{ckpt_dir} holds no ga-gan checkpoint "
                        f"({type(e).__name__}: {e})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


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
