"""Moving between stored uint8 pixels and the float [-1, 1] range the generator's tanh produces."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def to_model_range(images):
    """uint8 pixels -> float32 in [-1, 1] (x / 127.5 - 1, clipped): the one map from stored
    pixels to the generator's tanh range, for training batches and Fréchet statistics alike.

    Clipped because XLA turns the division into a multiply by a rounded reciprocal, which maps
    255 to 1.0000001, just outside the range the generator can produce. A NumPy array stays a
    NumPy array on the host (real-data statistics need not visit the device; there the division
    is exact and the clip changes nothing); anything else (a jax.Array, a tracer under jit)
    goes through jax.numpy.
    """
    xp = np if isinstance(images, np.ndarray) else jnp
    return xp.clip(xp.asarray(images).astype(xp.float32) / 127.5 - 1.0, -1.0, 1.0)


def to_uint8(x) -> np.ndarray:
    """Map floats in [-1, 1] back to uint8 pixels for saving; NaN becomes black rather than garbage."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=-1.0)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def sample_batch(key: jax.Array, images: jax.Array, batch_size: int) -> jax.Array:
    """Draw a batch uniformly with replacement from device-resident uint8 images, as float32 [-1, 1].

    With replacement keeps it a single randint, so it jits cheaply and is reproducible from `key`.
    Under jax.jit, `batch_size` must be static (static_argnums=2 or functools.partial).
    """
    indices = jax.random.randint(key, (batch_size,), 0, images.shape[0])
    return to_model_range(jnp.take(images, indices, axis=0))
