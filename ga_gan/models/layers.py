"""Shared pieces: DCGAN initialisers, optional BatchNorm, width scaling.

All models follow the DCGAN initialisation (Radford et al. 2015): conv and dense kernels
~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02), every bias zero. Evolution strategies perturb
these weights directly, so a small, well-known starting scale keeps early populations sane.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

KERNEL_INIT = nn.initializers.normal(stddev=0.02)
BIAS_INIT = nn.initializers.zeros


def bn_scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def scaled(channels: int, width: float) -> int:
    """Apply the width multiplier; never drop a layer to zero units."""
    return max(1, round(channels * width))


def maybe_batch_norm(x, enabled: bool, train: bool):
    """BatchNorm without ``axis_name``: under the trainer's vmap over a population each
    member must normalise with its own batch statistics, never pooled ones."""
    if not enabled:
        return x
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=bn_scale_init,
        bias_init=BIAS_INIT,
    )(x)


def dense(features: int, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(features, use_bias=use_bias, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT)


def conv(features: int, kernel: int, stride: int = 1, padding: str = "SAME", use_bias: bool = True) -> nn.Conv:
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=padding,
        use_bias=use_bias, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
    )


def conv_transpose(features: int, kernel: int, stride: int = 1, padding: str = "SAME",
                   use_bias: bool = True) -> nn.ConvTranspose:
    """With padding 'SAME' flax's transposed conv gives exactly ``stride * input`` size."""
    return nn.ConvTranspose(
        features, (kernel, kernel), strides=(stride, stride), padding=padding,
        use_bias=use_bias, kernel_init=KERNEL_INIT, bias_init=BIAS_INIT,
    )
