"""Convolutional generators (DCGAN transposed-conv, upsample+conv) and the strided-conv D.

Layers followed by BatchNorm carry no bias (BN's shift makes it redundant, and a redundant
parameter is just extra search dimensions for evolution); with norm="none" they keep one.
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from .layers import conv, conv_transpose, dense, maybe_batch_norm


class DCGANGenerator(nn.Module):
    """Project z to ``start_size``² x ``start_channels`` with a valid transposed conv,
    then each stride-2 transposed conv (4x4) doubles the map; the last one emits the image."""

    start_size: int
    start_channels: int
    block_channels: tuple[int, ...]
    out_channels: int
    norm: bool

    @nn.compact
    def __call__(self, z, train: bool = False):
        x = z.reshape(z.shape[0], 1, 1, z.shape[-1])
        x = conv_transpose(self.start_channels, self.start_size, padding="VALID", use_bias=not self.norm)(x)
        x = nn.relu(maybe_batch_norm(x, self.norm, train))
        for c in self.block_channels:
            x = conv_transpose(c, 4, stride=2, use_bias=not self.norm)(x)
            x = nn.relu(maybe_batch_norm(x, self.norm, train))
        x = conv_transpose(self.out_channels, 4, stride=2)(x)
        return jnp.tanh(x)


class UpsampleGenerator(nn.Module):
    """Dense to 4x4, then [nearest x2 upsample, 3x3 conv, BN, ReLU] blocks; nearest
    upsampling avoids the checkerboard artefacts of strided transposed convs."""

    start_channels: int
    block_channels: tuple[int, ...]
    out_channels: int
    norm: bool

    @nn.compact
    def __call__(self, z, train: bool = False):
        x = dense(4 * 4 * self.start_channels, use_bias=not self.norm)(z)
        x = x.reshape(z.shape[0], 4, 4, self.start_channels)
        x = nn.relu(maybe_batch_norm(x, self.norm, train))
        for c in self.block_channels:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            x = conv(c, 3, use_bias=not self.norm)(x)
            x = nn.relu(maybe_batch_norm(x, self.norm, train))
        x = conv(self.out_channels, 3)(x)
        return jnp.tanh(x)


class ConvDiscriminator(nn.Module):
    """One 4x4 stride-2 conv + LeakyReLU(0.2) per entry of ``channels`` (BN on all but the
    first, as in DCGAN), then flatten and a dense logit. On a 4x4 map the dense equals
    DCGAN's final 4x4 valid conv, and it also handles the 7x7 map of the 28px variant."""

    channels: tuple[int, ...]
    norm: bool

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, c in enumerate(self.channels):
            use_bn = self.norm and i > 0
            x = conv(c, 4, stride=2, use_bias=not use_bn)(x)
            x = nn.leaky_relu(maybe_batch_norm(x, use_bn, train), 0.2)
        x = x.reshape(x.shape[0], -1)
        return dense(1)(x)[:, 0]
