"""GAN model zoo: config, registry, and init helpers shared by the trainers.

Conventions every model follows (the trainers rely on them):
  G.apply(variables, z, train=..., mutable=[...]): z (B, latent_dim) -> images (B, H, W, C) in [-1, 1]
  D.apply(variables, x, train=..., mutable=[...]): x (B, H, W, C) -> logits (B,)
BatchNorm never uses ``axis_name``, so a vmapped population keeps per-member statistics.
Initialisation is DCGAN-style; see ``layers``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

from ..config import ModelConfig  # lives with the other configs: reading one needs no JAX
from ..errors import UserError
from .conv import ConvDiscriminator, DCGANGenerator, UpsampleGenerator
from .layers import scaled
from .mlp import MLPDiscriminator, MLPGenerator

__all__ = ["ModelConfig", "MODELS", "build_gan", "init_gan", "count_params"]


def _doublings(resolution: int) -> int | None:
    """k such that resolution == 4 * 2**k with k >= 1, else None."""
    k = (resolution // 4).bit_length() - 1
    return k if k >= 1 and 4 << k == resolution else None


def d_width(cfg: ModelConfig) -> float:
    """D's width multiplier: `d_width` when set, else the shared `width`."""
    return cfg.width if cfg.d_width is None else cfg.d_width


def _strided_d(k: int, cfg: ModelConfig) -> ConvDiscriminator:
    return ConvDiscriminator(tuple(scaled(64 * 2**i, d_width(cfg)) for i in range(k)),
                             cfg.norm == "batch")


DCGAN_RESOLUTIONS = (28, 32, 64)
UPSAMPLE_RESOLUTIONS = (8, 16, 32, 64, 128)


def _build_dcgan(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    if cfg.resolution not in DCGAN_RESOLUTIONS:
        raise UserError(f"model 'dcgan' cannot produce {cfg.resolution}x{cfg.resolution}; "
                        f"supported resolutions: {', '.join(map(str, DCGAN_RESOLUTIONS))}")
    w, norm = cfg.width, cfg.norm == "batch"
    if cfg.resolution == 28:  # 7 -> 14 -> 28
        start_size, widths = 7, (256, 128)
    else:  # 4 -> 8 -> ... ; 512-256-128-64 at 64px, 256-128-64 at 32px
        k = _doublings(cfg.resolution)
        start_size, widths = 4, tuple(64 * 2**i for i in reversed(range(k)))
    g = DCGANGenerator(start_size, scaled(widths[0], w), tuple(scaled(c, w) for c in widths[1:]),
                       cfg.channels, norm)
    d_blocks = 2 if cfg.resolution == 28 else _doublings(cfg.resolution)  # 28 -> 14 -> 7
    return g, _strided_d(d_blocks, cfg)


def _build_upsample(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    if cfg.resolution not in UPSAMPLE_RESOLUTIONS:
        raise UserError(f"model 'upsample' cannot produce {cfg.resolution}x{cfg.resolution}; "
                        f"supported resolutions: {', '.join(map(str, UPSAMPLE_RESOLUTIONS))}")
    k = _doublings(cfg.resolution)
    # 256, 128, 64, ... halving per block, floored at 8 before the width multiplier.
    blocks = tuple(scaled(max(8, 256 >> i), cfg.width) for i in range(k))
    g = UpsampleGenerator(scaled(256, cfg.width), blocks, cfg.channels, cfg.norm == "batch")
    return g, _strided_d(k, cfg)


def _build_mlp(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    if not cfg.g_hidden or not cfg.d_hidden:
        raise UserError("model 'mlp' needs at least one hidden layer in g_hidden and d_hidden")
    g = MLPGenerator(tuple(scaled(h, cfg.width) for h in cfg.g_hidden),
                     (cfg.resolution, cfg.resolution, cfg.channels), cfg.norm == "batch")
    return g, MLPDiscriminator(tuple(scaled(h, d_width(cfg)) for h in cfg.d_hidden))


MODELS: dict[str, Callable[[ModelConfig], tuple[nn.Module, nn.Module]]] = {
    "mlp": _build_mlp,
    "dcgan": _build_dcgan,
    "upsample": _build_upsample,
}


def build_gan(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """Return (generator, discriminator); raises UserError for configs no model can honour."""
    if cfg.name not in MODELS:
        raise UserError(f"unknown model {cfg.name!r}; choose one of: {', '.join(MODELS)}")
    if cfg.channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {cfg.channels}")
    if cfg.norm not in ("batch", "none"):
        raise UserError(f"norm must be 'batch' or 'none', got {cfg.norm!r}")
    if cfg.resolution < 1 or cfg.latent_dim < 1:
        raise UserError(f"resolution and latent_dim must be positive, got {cfg.resolution} and {cfg.latent_dim}")
    if not cfg.width > 0:
        raise UserError(f"width must be positive, got {cfg.width}")
    return MODELS[cfg.name](cfg)


def init_gan(cfg: ModelConfig, key: jax.Array) -> tuple[dict, dict]:
    """Initialise both networks from one key. Each result holds "params" and, when the
    network has BatchNorm, "batch_stats" (running mean 0, var 1)."""
    g, d = build_gan(cfg)
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((1, cfg.latent_dim), jnp.float32)
    x = jnp.zeros((1, cfg.resolution, cfg.resolution, cfg.channels), jnp.float32)
    return dict(g.init(g_key, z, train=False)), dict(d.init(d_key, x, train=False))


def count_params(tree) -> int:
    """Total number of scalars over all leaves (arrays or ``jax.ShapeDtypeStruct``s, so it
    works on ``jax.eval_shape`` output). Pass ``variables["params"]`` to leave out batch_stats."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))
