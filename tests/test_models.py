"""Model zoo contract: shapes, ranges, param budgets, BatchNorm under a vmapped population."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_gan.errors import UserError
from ga_gan.models import MODELS, ModelConfig, build_gan, count_params, init_gan

# Resolutions each model must support (mlp takes any; two representative ones suffice).
SUPPORTED = {"mlp": (8, 28), "dcgan": (28, 32, 64), "upsample": (8, 16, 32, 64, 128)}
UNSUPPORTED = {"dcgan": (8, 16, 48, 128), "upsample": (4, 28, 48, 256)}
SMALL = dict(width=0.125, latent_dim=8, g_hidden=(32, 64), d_hidden=(64, 32))
# One cheap config per model, shared by the tests that need real initialised weights:
# compiling the random initialisers dominates this file's runtime on CPU.
TINY = {"mlp": 8, "dcgan": 28, "upsample": 8}


def tiny(name, **kw):
    return ModelConfig(name=name, resolution=TINY[name], **{**SMALL, **kw})


def key(seed):
    """The "rbg" PRNG: on CPU, compiling threefry for every parameter shape costs seconds
    per model, while what these tests check does not depend on the PRNG implementation."""
    return jax.random.key(seed, impl="rbg")


@functools.lru_cache(maxsize=None)
def jitted_init(cfg):
    return jax.jit(functools.partial(init_gan, cfg))


@functools.lru_cache(maxsize=None)
def cached_init(cfg, seed):
    return jitted_init(cfg)(key(seed))


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def numpy_variables(cfg):
    """Weights with init_gan's structure, filled by numpy: the shape tests then cost one jit
    compile per config instead of compiling every random initialiser."""
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        one = any(k in jax.tree_util.keystr(path) for k in ("scale", "var"))
        return np.ones(leaf.shape, np.float32) if one else rng.normal(0, 0.02, leaf.shape).astype(np.float32)

    shapes = jax.eval_shape(lambda k: init_gan(cfg, k), jax.random.key(0))
    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_registry_is_covered():
    assert set(SUPPORTED) == set(MODELS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name,res", [(n, r) for n in MODELS for r in SUPPORTED[n]])
def test_shapes_and_ranges(name, res, channels):
    cfg = ModelConfig(name=name, resolution=res, channels=channels, **SMALL)
    g, d = build_gan(cfg)

    @jax.jit
    def forward(g_vars, d_vars, z):
        imgs, _ = g.apply(g_vars, z, train=True, mutable=["batch_stats"])
        logits, _ = d.apply(d_vars, imgs, train=True, mutable=["batch_stats"])
        return imgs, logits  # eval mode is covered on the tiny configs below

    z = np.random.default_rng(1).normal(size=(4, cfg.latent_dim)).astype(np.float32) * 30
    imgs, logits = forward(*numpy_variables(cfg), z)
    assert imgs.shape == (4, res, res, channels) and imgs.dtype == jnp.float32
    assert float(jnp.abs(imgs).max()) <= 1.0 and float(jnp.std(imgs)) > 0
    assert logits.shape == (4,) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name,res", [(n, r) for n, rs in UNSUPPORTED.items() for r in rs])
def test_unsupported_resolution(name, res):
    with pytest.raises(UserError, match="supported resolutions"):
        build_gan(ModelConfig(name=name, resolution=res))


@pytest.mark.parametrize("cfg", [ModelConfig(name="vae"), ModelConfig(channels=2), ModelConfig(norm="layer"),
                                 ModelConfig(width=0.0)])
def test_bad_config(cfg):
    with pytest.raises(UserError):
        build_gan(cfg)


def _param_counts(cfg):
    g, d = jax.eval_shape(lambda k: init_gan(cfg, k), jax.random.key(0))
    return count_params(g["params"]), count_params(d["params"])


def test_dcgan64_param_budget():
    cfg = ModelConfig(name="dcgan", resolution=64, channels=3, latent_dim=128)
    g_n, d_n = _param_counts(cfg)
    print(f"dcgan64 width 1: G={g_n:,} D={d_n:,}")
    assert abs(g_n - 3.8e6) < 0.38e6 and abs(d_n - 2.8e6) < 0.28e6
    g_q, d_q = _param_counts(ModelConfig(name="dcgan", resolution=64, channels=3, latent_dim=128, width=0.25))
    print(f"dcgan64 width 0.25: G={g_q:,} D={d_q:,}")
    # Conv weights shrink ~16x; G's projection from the (unscaled) latent only shrinks 4x.
    assert 14 < d_n / d_q < 17.5
    assert 8 < g_n / g_q < 17.5


@pytest.mark.parametrize("name", ["dcgan", "mlp"])
def test_d_width_sizes_d_alone(name):
    """`d_width` widens D and leaves G exactly as `width` made it; unset, D follows `width`."""
    g_n, d_n = _param_counts(tiny(name))
    g_w, d_w = _param_counts(tiny(name, d_width=0.5))
    assert g_w == g_n and d_w > 3 * d_n
    assert _param_counts(tiny(name, d_width=0.125)) == (g_n, d_n)


def test_small_mlp_budget():
    cfg = ModelConfig(name="mlp", resolution=8, latent_dim=32, g_hidden=(64, 128), d_hidden=(128, 64))
    g_n, d_n = _param_counts(cfg)
    assert 10_000 <= g_n <= 30_000 and 10_000 <= d_n <= 30_000


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _all(tree):
    return all(jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name", list(MODELS))
def test_batchnorm_per_member_in_population(name):
    cfg = tiny(name)
    g, _ = build_gan(cfg)
    members = [cached_init(cfg, seed)[0] for seed in range(3)]
    z = normal(9, (5, cfg.latent_dim))

    def run(v):
        return g.apply(v, z, train=True, mutable=["batch_stats"])

    pop_out, pop_stats = jax.jit(jax.vmap(run))(_stack(members))
    run = jax.jit(run)
    for i, v in enumerate(members):
        out, stats = run(v)
        np.testing.assert_allclose(pop_out[i], out, atol=1e-5)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[i], b, atol=1e-5), pop_stats, stats)
        # Train mode really moved this member's running averages.
        assert _all(jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), stats["batch_stats"], v["batch_stats"]))
    assert not np.allclose(pop_out[0], pop_out[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_mode_uses_running_averages(name):
    cfg = tiny(name)
    g, d = build_gan(cfg)
    g_vars, d_vars = cached_init(cfg, 0)
    z = normal(1, (6, cfg.latent_dim)) * 3.0 + 1.0
    np.testing.assert_allclose(g.apply(g_vars, z, train=False)[0], g.apply(g_vars, z[:1], train=False)[0], atol=1e-5)
    # Control: train mode depends on the batch, so the check above is not vacuous.
    two, _ = g.apply(g_vars, z[:2], train=True, mutable=["batch_stats"])
    six, _ = g.apply(g_vars, z, train=True, mutable=["batch_stats"])
    assert not np.allclose(two[0], six[0], atol=1e-5)
    x = g.apply(g_vars, z, train=False)
    assert x.shape == (6, cfg.resolution, cfg.resolution, cfg.channels)
    logits = d.apply(d_vars, x, train=False)
    assert logits.shape == (6,)
    np.testing.assert_allclose(logits[:1], d.apply(d_vars, x[:1], train=False), atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_init_deterministic(name):
    cfg = tiny(name)
    a, b, c = (init_gan(cfg, key(seed)) for seed in (0, 0, 1))
    assert _all(jax.tree_util.tree_map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    kernels = lambda v: [x for p, x in jax.tree_util.tree_leaves_with_path(v) if "kernel" in jax.tree_util.keystr(p)]
    assert len(kernels(a)) >= 3
    for x, y in zip(kernels(a), kernels(c)):
        assert not jnp.array_equal(x, y)


def test_init_deterministic_default_prng():
    cfg = tiny("mlp")
    a, b, c = (init_gan(cfg, jax.random.key(k)) for k in (0, 0, 1))
    leaves = lambda v: jax.tree_util.tree_leaves(v["params"])
    assert all(np.array_equal(x, y) for x, y in zip(leaves(a[0]) + leaves(a[1]), leaves(b[0]) + leaves(b[1])))
    assert not any(np.array_equal(x, y) for x, y in zip(leaves(a[0]), leaves(c[0])) if x.std() > 0)


def test_dcgan_init_scale():
    g_vars, _ = cached_init(tiny("dcgan"), 0)
    leaves = [(jax.tree_util.keystr(p), np.ravel(x)) for p, x in jax.tree_util.tree_leaves_with_path(g_vars["params"])]
    kernels = np.concatenate([x for p, x in leaves if "kernel" in p])
    scales = np.concatenate([x for p, x in leaves if "scale" in p])
    assert abs(kernels.std() - 0.02) < 0.002 and abs(kernels.mean()) < 0.002
    assert abs(scales.mean() - 1.0) < 0.01 and 0.005 < scales.std() < 0.05
    biases = [x for p, x in leaves if "bias" in p]
    assert biases and all(np.all(x == 0) for x in biases)


@pytest.mark.parametrize("name", list(MODELS))
def test_norm_none_has_no_batch_stats(name):
    collections = lambda cfg: [set(v) for v in jax.eval_shape(lambda k: init_gan(cfg, k), jax.random.key(0))]
    assert collections(tiny(name, norm="none")) == [{"params"}, {"params"}]
    assert "batch_stats" in collections(tiny(name))[0]
