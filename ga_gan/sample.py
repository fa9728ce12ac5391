"""Load a run's latest checkpoint and draw images from its generator.

For evolution the generator is the strategy's mean (distribution strategies such as open_es) or
the fittest member (genetic algorithms); for Adam it is the trained network; with `log.ema` it
is the average of the generator's weights (ga_gan.ema). Sampling uses eval
mode, i.e. the running BatchNorm statistics kept in the checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from ga_gan import ema
from ga_gan.checkpoint import Checkpointer, checkpoint_dir
from ga_gan.config import load_run_config
from ga_gan.errors import UserError
from ga_gan.gan import make_gan
from ga_gan.images import grid, save_png, write_atomically
from ga_gan.methods import build_method
from ga_gan.sampling import sample_images  # noqa: F401 (re-exported)
from ga_gan.validate import check_seed, writable_file


def load_generator(run_dir: str | Path):
    """(gan, g_params, g_stats, config, state, method) of a run's latest checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    cfg, method_name = load_run_config(run_dir)
    cfg = dataclasses.replace(cfg, out=str(run_dir))  # where it is now, as `--resume` does
    gan = make_gan(cfg.model)
    method = build_method(method_name, gan, cfg)
    ckpt_dir = checkpoint_dir(cfg)
    if "://" not in ckpt_dir and not Path(ckpt_dir).is_dir():  # orbax would create it empty
        raise UserError(f"no checkpoint in {run_dir} (no {ckpt_dir} folder)")
    ckpt = Checkpointer(ckpt_dir, async_save=False)
    if ckpt.latest_step() is None:
        raise UserError(f"no complete checkpoint in {ckpt_dir}")
    key = jax.random.key(cfg.seed)
    saved = ema.restore_layout(method, gan, bool(ckpt.read_meta().get("ema")))
    state, _ = ckpt.restore(jax.eval_shape(saved.init, key))
    state = ema.adapt(method, state)
    ckpt.close()
    params, stats = method.generator(state)
    return gan, params, stats, cfg, state, method


def sample_run(run_dir: str | Path, *, n: int, seed: int, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix not in (".png", ".npz"):
        raise UserError(f"--out must end in .png or .npz, got {out}")
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    check_seed(seed)
    writable_file(out)  # before the checkpoint is restored, not after
    gan, params, stats, _, state, method = load_generator(run_dir)
    if hasattr(method, "sample"):  # a mixture of generators samples itself
        images = method.sample(state, jax.random.key(seed), n)
    else:
        images = sample_images(gan, params, stats, jax.random.key(seed), n)
    if out.suffix == ".png":
        save_png(grid(images), out)
    else:
        write_atomically(out, lambda f: np.savez_compressed(f, images=images))
    return out
