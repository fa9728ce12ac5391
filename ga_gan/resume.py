"""Where a run starts: its folder cleared on --restart, or the newest intact checkpoint of a run
of the same method and config (a different one is refused before anything is restored)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable

import jax

from ga_gan import cloud, distributed, ema
from ga_gan.checkpoint import Checkpointer, checkpoint_dir, config_mismatch
from ga_gan.config import RunConfig, to_dict, with_defaults
from ga_gan.errors import UserError

# What --restart removes from a run folder (a checkpoint_dir elsewhere is cleared whole).
RUN_FILES = ("checkpoints", "metrics.jsonl", "metrics.tmp", "samples", "samples.png",
             "curves.png", "config.json", "tb")


def clear_for_restart(cfg: RunConfig, out: Path, primary: bool, log: Callable) -> None:
    """--restart: process 0 clears the folder (and a bucket's checkpoints); the others wait."""
    ckpt_dir = checkpoint_dir(cfg)
    if out.exists() and primary:
        for name in RUN_FILES:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        log(f"--restart: cleared {out}")
    if primary and cloud.is_remote(ckpt_dir):
        cloud.remove_tree(ckpt_dir)  # the bucket's steps and metrics.jsonl copy
        log(f"--restart: cleared {ckpt_dir}")
    if distributed.is_multiprocess():
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("ga_gan_restart")


def newest_checkpoint(ckpt: Checkpointer, cfg: RunConfig, out: Path, method_name: str, method,
                      gan, primary: bool, log: Callable):
    """(step, [state, meta]) of the newest intact checkpoint, or (None, None) for a new run.
    Only committed steps count: a save killed half way is never listed."""
    step = ckpt.latest_step()
    if step is None:
        if (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").stat().st_size:
            raise UserError(f"{out} holds a run without a complete checkpoint; "
                            f"pass --restart to overwrite it or choose another --out")
        return None, None

    def check(meta: dict) -> None:  # before a state is restored: refused, not "damaged"
        if meta.get("method") != method_name:
            raise UserError(f"{out} holds a '{meta.get('method')}' run, not "
                            f"'{method_name}'; choose another --out or pass --restart")
        why = config_mismatch(with_defaults(meta.get("config", {})), to_dict(cfg))
        if why:
            raise UserError(f"cannot resume {out}: {why} (pass --restart to start over)")

    def abstract_state(meta: dict):
        """A fresh state's structure, with or without the EMA generator as the checkpoint was
        saved (checkpoints before log.ema hold no average)."""
        saved = ema.restore_layout(method, gan, bool(meta.get("ema")))
        abstract = jax.eval_shape(saved.init, jax.random.key(cfg.seed))
        sharding = distributed.replicated()  # several devices: global, replicated arrays
        return abstract if sharding is None else jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)

    warn = (lambda m: print(m, file=sys.stderr)) if primary else (lambda m: None)
    step, *restored = ckpt.restore_newest_intact(abstract_state, check, warn)
    log(f"resuming {out} from its checkpoint at generation {step}")
    return step, restored
