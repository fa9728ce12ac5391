"""The generator average (ga_gan.ema): what it computes, that it leaves training alone, that it
is what a run samples and evaluates, and that checkpoints with or without it resume."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_gan import ema
from ga_gan.config import RunConfig, apply_overrides
from ga_gan.errors import UserError
from ga_gan.gan import make_gan, strong_types
from ga_gan.run import Runner, build_method
from ga_gan.runlog import read_metrics

QUIET = {"log.progress": False, "log.image_every": 0, "log.checkpoint_every": 10,
         "log.steps_per_call": 5, "log.fd_samples": 256}
# a DCGAN with BatchNorm at 8x8, tiny: the average must keep its own running statistics
BN_MODEL = {"model.name": "upsample", "model.width": 0.0625, "model.latent_dim": 8}


def _cfg(tmp_path, name="run", **over):
    return apply_overrides(RunConfig(), {**QUIET, "out": str(tmp_path / name), **over})


def _leaves(tree):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype,
                                                                        jax.dtypes.prng_key)
                       else x) for x in jax.tree.leaves(tree)]


def test_defaults_per_method_and_bad_decay():
    cfg = RunConfig()
    gan = make_gan(cfg.model)
    assert isinstance(build_method("train", gan, cfg), ema.EMA)
    assert build_method("train", gan, cfg).decay == 0.999
    assert not isinstance(build_method("evolve", gan, cfg), ema.EMA)  # the mean averages
    on = apply_overrides(cfg, {"log.ema": 0.99})
    assert build_method("evolve", gan, on).decay == 0.99
    lam = apply_overrides(cfg, {"evolve.mode": "hybrid", "evolve.hybrid.variant": "lamarck"})
    assert isinstance(build_method("evolve", gan, lam), ema.EMA)
    assert not isinstance(build_method("train", gan, apply_overrides(cfg, {"log.ema": 0})),
                          ema.EMA)
    with pytest.raises(UserError, match="log.ema"):
        build_method("train", gan, apply_overrides(cfg, {"log.ema": 1.0}))


def test_average_is_the_recursion_and_training_is_untouched():
    """k steps with the average: the wrapped state equals the plain method's bit for bit, and
    the average follows a_t = b_t a_{t-1} + (1 - b_t) w_t with the warmed-up decay b_t."""
    cfg = apply_overrides(RunConfig(), {"train.batch": 16})
    gan = make_gan(cfg.model)
    plain = build_method("train", gan, apply_overrides(cfg, {"log.ema": 0}))
    avg = build_method("train", gan, apply_overrides(cfg, {"log.ema": 0.9}))
    from ga_gan.data import load_dataset
    data = jnp.asarray(load_dataset("digits", resolution=8, channels=1).images)
    s_plain = strong_types(plain.init(jax.random.key(3)))
    s_avg = strong_types(avg.init(jax.random.key(3)))
    step_plain, step_avg = jax.jit(plain.step), jax.jit(avg.step)
    expect = _leaves(plain.generator(s_plain)[0])
    for t in range(1, 8):
        s_plain, _ = step_plain(s_plain, data)
        s_avg, _ = step_avg(s_avg, data)
        b = min(0.9, (1 + t) / (10 + t))
        expect = [b * a + (1 - b) * w for a, w in zip(expect, _leaves(s_plain.g_params))]
    for x, y in zip(_leaves(s_plain), _leaves(s_avg.inner)):
        assert np.array_equal(x, y)
    for x, y in zip(expect, _leaves(avg.generator(s_avg)[0])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert not all(np.array_equal(x, y) for x, y in
                   zip(_leaves(s_avg.g_params), _leaves(s_plain.g_params)))


def test_batchnorm_statistics_belong_to_the_averaged_weights(tmp_path):
    """Eval-mode images of the average with its own running statistics match its train-mode
    (batch-statistics) images far better than with the raw generator's statistics."""
    cfg = apply_overrides(RunConfig(), {**BN_MODEL, "log.ema": 0.99, "train.batch": 32})
    gan = make_gan(cfg.model)
    method = build_method("train", gan, cfg)
    from ga_gan.data import load_dataset
    data = jnp.asarray(load_dataset("digits", resolution=8, channels=1).images)
    state = strong_types(method.init(jax.random.key(0)))
    step = jax.jit(method.step)
    for _ in range(150):
        state, _ = step(state, data)
    params, stats = method.generator(state)
    _, raw_stats = method.raw_generator(state)
    assert jax.tree.leaves(stats)
    z = gan.latents(jax.random.key(9), 1024)
    batch_mode, _ = gan.generate(params, stats, z, train=True)
    own = gan.generate(params, stats, z, train=False)[0]
    borrowed = gan.generate(params, raw_stats, z, train=False)[0]
    err_own = float(jnp.mean(jnp.abs(own - batch_mode)))
    err_borrowed = float(jnp.mean(jnp.abs(borrowed - batch_mode)))
    assert err_own < 0.7 * err_borrowed, (err_own, err_borrowed)


def test_run_logs_both_generators_and_samples_the_average(tmp_path):
    from ga_gan.sample import load_generator, sample_images
    cfg = _cfg(tmp_path, **{"train.steps": 20, "log.eval_every": 10})
    Runner(cfg, "train", log=lambda *_: None).run()
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "fd_pixels" in r]
    assert [r["generation"] for r in evals] == [0, 10, 20]
    for r in evals:
        assert r["eval_s"] > 0 and r["fd_pixels_raw"] > 0
    assert evals[-1]["fd_pixels"] != evals[-1]["fd_pixels_raw"]
    gan, params, stats, _, state, method = load_generator(tmp_path / "run")
    assert isinstance(state, ema.EmaState)
    for x, y in zip(_leaves(params), _leaves(state.g_params)):
        assert np.array_equal(x, y)
    a = sample_images(gan, params, stats, jax.random.key(0), 8)
    b = sample_images(gan, *method.raw_generator(state), jax.random.key(0), 8)
    assert not np.array_equal(a, b)


def test_checkpoint_with_or_without_average_resumes(tmp_path):
    """A checkpoint written without an average (older versions, or log.ema=0) resumes with the
    default average, started at the restored generator; log.ema=0 on a later resume drops it.
    The networks trained are those of a plain run throughout."""
    from ga_gan.sample import load_generator
    quiet = {"log.eval_every": 0}
    for steps, decay, resumed_from in ((10, 0.0, None), (20, None, 10), (30, 0.0, 20)):
        runner = Runner(_cfg(tmp_path, **quiet, **{"train.steps": steps, "log.ema": decay}),
                        "train", log=lambda *_: None)
        assert runner.resume_step == resumed_from
        assert runner.run().generation == steps
        *_, state, _ = load_generator(tmp_path / "run")
        assert isinstance(state, ema.EmaState) == (decay is None)
    Runner(_cfg(tmp_path, "ref", **quiet, **{"train.steps": 30, "log.ema": 0.0}), "train",
           log=lambda *_: None).run()
    *_, ref_state, _ = load_generator(tmp_path / "ref")
    for x, y in zip(_leaves(state), _leaves(ref_state)):
        assert np.array_equal(x, y)
