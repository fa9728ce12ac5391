"""Images from a generator's weights: eval mode (running BatchNorm statistics), fixed-size jitted
batches, uint8 out.

Below the methods and the Runner, so a method that samples a mixture (lipizzaner), the Runner's
evaluation and `ga-gan sample` (sample.py) all draw images the same way without importing each
other.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from ga_gan.data.pixels import to_uint8
from ga_gan.gan import GAN


def sample_images(gan: GAN, params, stats, key: jax.Array, n: int, batch: int = 512) -> np.ndarray:
    """uint8 (n, H, W, C) images from a generator, eval mode, in fixed-size jitted batches."""
    gen = _sampler(gan, min(batch, n))
    out = [np.asarray(gen(params, stats, k)) for k in jax.random.split(key, math.ceil(n / batch))]
    return to_uint8(np.concatenate(out)[:n])


_SAMPLERS: dict = {}


def _sampler(gan: GAN, batch: int):
    if (id(gan), batch) not in _SAMPLERS:
        @jax.jit
        def gen(params, stats, key):
            images, _ = gan.generate(params, stats, gan.latents(key, batch), train=False)
            return images
        _SAMPLERS[(id(gan), batch)] = gen
    return _SAMPLERS[(id(gan), batch)]
