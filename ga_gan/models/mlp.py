"""Fully connected GAN of the classic MNIST examples; works at any resolution."""

from __future__ import annotations

import math

import jax.numpy as jnp
import flax.linen as nn

from .layers import dense, maybe_batch_norm


class MLPGenerator(nn.Module):
    hidden: tuple[int, ...]
    out_shape: tuple[int, int, int]  # (H, W, C)
    norm: bool

    @nn.compact
    def __call__(self, z, train: bool = False):
        x = z
        for h in self.hidden:
            x = dense(h, use_bias=not self.norm)(x)
            x = nn.leaky_relu(maybe_batch_norm(x, self.norm, train), 0.2)
        x = dense(math.prod(self.out_shape))(x)
        return jnp.tanh(x).reshape(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """No BatchNorm: the MNIST MLP discriminator never had it. ``train`` is accepted only
    so every D shares one call signature."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        for h in self.hidden:
            x = nn.leaky_relu(dense(h)(x), 0.2)
        return dense(1)(x)[:, 0]
