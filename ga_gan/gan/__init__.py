"""A generator/discriminator pair as pure functions over (params, batch_stats).

Every method (evolution, Adam, hybrids) calls the networks through these two functions so that
BatchNorm statistics are handled one way everywhere: train mode normalises with the batch's own
statistics and returns updated running statistics; eval mode uses the running statistics.
Models without normalisation carry an empty stats dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ga_gan.models import ModelConfig, build_gan, init_gan


def _variables(params, stats):
    return {"params": params, "batch_stats": stats} if stats else {"params": params}


def _apply(module: nn.Module, params, stats, x, train: bool):
    if train and stats:
        out, updates = module.apply(_variables(params, stats), x, train=True,
                                    mutable=["batch_stats"])
        return out, updates["batch_stats"]
    return module.apply(_variables(params, stats), x, train=train), stats


@dataclass(frozen=True, eq=False)
class GAN:
    cfg: ModelConfig
    G: nn.Module
    D: nn.Module
    unravel_g: Any
    unravel_d: Any
    g_size: int
    d_size: int

    def generate(self, g_params, g_stats, z, train: bool = True):
        return _apply(self.G, g_params, g_stats, z, train)

    def discriminate(self, d_params, d_stats, x, train: bool = True):
        return _apply(self.D, d_params, d_stats, x, train)

    def discriminate_features(self, d_params, d_stats, x, train: bool = True):
        """(logits, features (B, F), stats): features are the input of D's final Dense layer
        (every D in `ga_gan.models` ends with `dense(1)` on its flattened last activations),
        captured by intercepting Dense calls; the last Dense called is the logit layer."""
        captured = []

        def hook(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
                captured.append(args[0] if args else kwargs["inputs"])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(hook):
            logits, stats = self.discriminate(d_params, d_stats, x, train)
        if not captured:
            raise ValueError("the discriminator has no Dense layer to take features from")
        f = captured[-1]
        return logits, f.reshape(f.shape[0], -1), stats

    def init(self, key: jax.Array):
        """Fresh (g_variables, d_variables), each {'params': ..., 'batch_stats': ... or {}}."""
        g_vars, d_vars = init_gan(self.cfg, key)
        g_vars = {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})}
        d_vars = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
        return g_vars, d_vars

    def latents(self, key: jax.Array, n: int):
        return jax.random.normal(key, (n, self.cfg.latent_dim), jnp.float32)


def make_gan(cfg: ModelConfig) -> GAN:
    G, D = build_gan(cfg)
    g_shapes, d_shapes = jax.eval_shape(lambda k: init_gan(cfg, k), jax.random.key(0))
    zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), t["params"])
    g_flat, unravel_g = ravel_pytree(zeros(g_shapes))
    d_flat, unravel_d = ravel_pytree(zeros(d_shapes))
    return GAN(cfg, G, D, unravel_g, unravel_d, int(g_flat.size), int(d_flat.size))


def stack(trees):
    """A population of same-shaped trees stacked on a new leading axis of every leaf."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def take(tree, idx):
    """Members `idx` of a population stacked on every leaf's leading axis."""
    return jax.tree.map(lambda x: x[idx], tree)


def strong_types(tree):
    """Drop weak typing (evosax initialises best_fitness=jnp.inf and its `tell` returns a weakly
    typed std) so every state has exactly the types a step returns: otherwise the second step
    recompiles."""
    def strong(x):
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jnp.asarray(x, x.dtype)
        return x
    return jax.tree.map(strong, tree)
