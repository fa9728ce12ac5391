"""Spatial coevolution (lipizzaner, mustangs): the torus, selection, the mixture of generators
and its ES, learning, exact resume, the CLI, and the grid sharded over 4 CPU devices.

Compilation dominates, so one 2x2 lipizzaner configuration is compiled once (module fixture)
and shared by the learning, sampling and Runner tests; the CLI tests run the other shapes
(3x3 mustangs, real data) for a few generations each.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_gan.cli import main
from ga_gan.config import RunConfig, apply_overrides
from ga_gan.data import load_dataset
from ga_gan.gan import make_gan, strong_types
from ga_gan.methods import build
from ga_gan.methods import mixture as M
from ga_gan.methods import torus as T
from ga_gan.run import TIMING_KEYS, Runner
from ga_gan.runlog import read_metrics
from procs import devices_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TINY = {"model.g_hidden": "16,32", "model.d_hidden": "32,16", "model.latent_dim": 8,
        "evolve.batch": 32, "evolve.mode": "hybrid", "evolve.hybrid.variant": "lipizzaner",
        "evolve.hybrid.lr_g": 1e-3, "evolve.hybrid.lr_d": 1e-3, "evolve.hybrid.k": 5,
        "evolve.hybrid.mix_every": 2, "evolve.hybrid.mix_steps": 4,
        "evolve.hybrid.mix_samples": 64, "evolve.hybrid.mix_dims": 16}
QUIET = {"log.progress": False, "log.eval_every": 0, "log.image_every": 0,
         "log.steps_per_call": 5}
CLI_TINY = ["--no-progress", "--set", "log.image_every=0", "--set", "model.g_hidden=8,16",
            "--set", "model.d_hidden=16,8", "--set", "evolve.batch=16",
            "--set", "evolve.hybrid.mix_every=2", "--set", "evolve.hybrid.mix_samples=32",
            "--set", "evolve.hybrid.mix_dims=8", "--set", "evolve.hybrid.mix_steps=2"]


# --- the torus and selection --------------------------------------------------------------------

def test_neighbourhoods_wrap_around_the_torus():
    # 3x3, cells numbered row by row: [self, up, down, left, right]
    t = M.neighbours(3, 3)
    assert t.shape == (9, 5)
    assert t[4].tolist() == [4, 1, 7, 3, 5]  # the centre: no wrapping
    assert t[0].tolist() == [0, 6, 3, 2, 1]  # a corner wraps both ways
    assert t[5].tolist() == [5, 2, 8, 4, 3]  # right edge wraps to the left column
    assert t[7].tolist() == [7, 4, 1, 6, 8]  # bottom edge wraps to the top row
    # 2x3: up and down are the same cell (two rows), left and right differ (three columns)
    t = M.neighbours(2, 3)
    assert t.tolist() == [[0, 3, 3, 2, 1], [1, 4, 4, 0, 2], [2, 5, 5, 1, 0],
                          [3, 0, 0, 5, 4], [4, 1, 1, 3, 5], [5, 2, 2, 4, 3]]
    # every cell is the up-neighbour of exactly one cell and the down of its up: a torus
    for rows, cols in ((3, 3), (2, 3), (4, 5)):
        t = M.neighbours(rows, cols)
        for a, b in ((1, 2), (3, 4)):
            assert sorted(t[:, a]) == list(range(rows * cols))
            assert (t[t[:, a], b] == np.arange(rows * cols)).all()


def test_tournament_picks_the_fitter_and_keeps_the_best():
    fitness = jnp.array([0.3, 0.1, 0.9, 0.5, 0.7])  # lower is better: ranks 1, 0, 4, 2, 3
    keys = jax.random.split(jax.random.key(0), 2000)
    # a member of rank r (0 best) is drawn into a tournament with probability 2/5 and beats
    # the other drawn member with probability (4 - r) / 4: it wins (2/5)(4 - r)/4 of them
    won = np.asarray(jax.jit(jax.vmap(M.tournaments, (0, None)))(keys, fitness))
    freq = np.bincount(won.ravel(), minlength=5) / won.size
    assert np.allclose(freq, np.array([3, 4, 0, 2, 1]) / 10, atol=0.015), freq
    # then the worst selected gives its place to the neighbourhood's best
    sel, worst = jax.jit(jax.vmap(M.tournament, (0, None)))(keys, fitness)
    sel, worst = np.asarray(sel), np.asarray(worst)
    assert (sel == 1).any(axis=1).all() and not (sel == 2).any()
    rows = np.arange(len(keys))
    assert (sel[rows, worst] == 1).all()
    f = np.asarray(fitness)
    assert (f[won[rows, worst]] == f[won].max(1)).all()  # it was the worst winner
    unchanged = np.arange(5)[None, :] != worst[:, None]
    assert (sel[unchanged] == won[unchanged]).all()
    # NaN is the worst: it never wins against a number
    sel, _ = M.tournament(jax.random.key(1), jnp.array([jnp.nan, 1.0, 2.0, 3.0, 4.0]))
    assert 0 not in np.asarray(sel).tolist()


# --- the mixture -----------------------------------------------------------------------------

@pytest.mark.parametrize("w,n", [([0.2] * 5, 7), ([0.5, 0.25, 0.25, 0, 0], 10),
                                 ([0.11, 0.37, 0.02, 0.3, 0.2], 1000), ([3, 1, 0, 0, 0], 5)])
def test_exact_counts_follow_the_weights_and_sum_to_n(w, n):
    counts = np.asarray(M.exact_counts(jnp.array(w, jnp.float32), n))
    share = np.array(w) / np.sum(w) * n
    assert counts.sum() == n and (np.abs(counts - share) < 1).all()
    src = np.asarray(M.mixture_source(jnp.array(w, jnp.float32), n))
    assert (np.bincount(src, minlength=5) == counts).all() and (np.diff(src) >= 0).all()


def test_mixture_es_lowers_the_frechet_distance_of_a_hand_made_mixture():
    """Five Gaussian 'generators'; the real data is an even mix of the first two. From uniform
    weights the (1+1)-ES (sigma 0.01) lowers the mixture's Fréchet distance and moves weight
    onto those two."""
    dims, n = 6, 2000
    means = 3.0 * jax.random.normal(jax.random.key(0), (5, dims))
    feats = means[:, None, :] + jax.random.normal(jax.random.key(1), (5, n, dims))
    real = jnp.concatenate([means[0] + jax.random.normal(jax.random.key(2), (n // 2, dims)),
                            means[1] + jax.random.normal(jax.random.key(3), (n // 2, dims))])
    ref = M.reference(real)
    w0 = jnp.full((5,), 0.2)
    score = lambda w: M.mixture_fd(ref, feats, w)
    w, fd, accepted = jax.jit(lambda k: M.mixture_es(k, w0, score, 0.01, 300))(
        jax.random.key(4))
    assert float(fd) < 0.6 * float(score(w0)), (float(fd), float(score(w0)))
    assert float(fd) == pytest.approx(float(score(w)), abs=1e-3)  # jit vs eager round-off
    assert int(accepted) > 0 and float(w[0] + w[1]) > 0.4 + 0.1
    assert float(jnp.sum(w)) == pytest.approx(1.0, abs=1e-5) and bool(jnp.all(w >= 0))
    # the jit-friendly distance agrees with the reference implementation
    from ga_gan.metrics.frechet import frechet_distance, gaussian_stats
    x = np.asarray(feats[2])
    assert float(M.frechet(ref, feats[2])) == pytest.approx(
        frechet_distance(*gaussian_stats(np.asarray(real)), *gaussian_stats(x)), rel=1e-3)


# --- the method, compiled once ---------------------------------------------------------------

class Shared:
    """The method with fixed function objects (one compiled init/step for every Runner)."""

    def __init__(self, method):
        self.method, self.h = method, method.h
        self.init, self.step, self.sample = method.init, method.step, method.sample
        self.generator, self.discriminator = method.generator, method.discriminator


@pytest.fixture(scope="module")
def dataset():
    return load_dataset("digits", split="all", log=lambda *_: None)


@pytest.fixture(scope="module")
def lip():
    cfg = apply_overrides(RunConfig(), TINY)
    method = build("evolve", make_gan(cfg.model), cfg)
    shared = Shared(method)
    return cfg, method, shared, jax.jit(shared.step)


def test_one_generation_of_a_tiny_grid_learns(lip):
    """Every cell's D separates real from fake better and every G fools the grid's initial
    discriminators more after one generation (5 Adam rounds against the neighbourhood)."""
    cfg, m, shared, step = lip
    data = jnp.asarray(load_dataset("digits", split="all", log=lambda *_: None).images)
    s0 = strong_types(jax.jit(shared.init)(jax.random.key(0)))
    s1, metrics = step(s0, data)
    pairs = jax.jit(lambda k, g, d, x: T.pair_scores(m.gan, k, g, d, x, cfg.evolve.batch))
    key = jax.random.key(9)
    before = pairs(key, (s0.g_params, s0.g_stats), (s0.d_params, s0.d_stats), data)
    d_after = pairs(key, (s0.g_params, s0.g_stats), (s1.d_params, s1.d_stats), data)
    g_after = pairs(key, (s1.g_params, s1.g_stats), (s0.d_params, s0.d_stats), data)
    assert (np.asarray(d_after["loss_d"]).mean(1) < np.asarray(before["loss_d"]).mean(1)).all()
    assert (np.asarray(g_after["loss_g"]).mean(0) < np.asarray(before["loss_g"]).mean(0)).all()
    assert int(s1.generation) == 1 and float(metrics["mix_fd"]) == -1.0  # no ES event yet
    s2, metrics = step(s1, data)  # generation 2: the first ES event (mix_every = 2)
    assert float(metrics["mix_fd"]) > 0 and np.isfinite(np.asarray(s2.mix_fd)).all()
    assert np.allclose(np.asarray(s2.weights).sum(1), 1.0, atol=1e-5)


def test_mixture_sampling_follows_the_weights(lip):
    """Each cell's generator is made to draw one constant image (last kernel 0, bias c/10):
    the sample's images come from the best cell's neighbourhood in exact proportions, in a
    shuffled order (a prefix follows the weights within binomial tolerance)."""
    cfg, m, shared, _ = lip
    s = strong_types(jax.jit(shared.init)(jax.random.key(0)))
    last = sorted(s.g_params)[-1]  # the output Dense
    cells = jnp.arange(m.cells, dtype=jnp.float32)
    g = dict(s.g_params)
    g[last] = {"kernel": jnp.zeros_like(g[last]["kernel"]),
               "bias": jnp.broadcast_to((cells / 10)[:, None], g[last]["bias"].shape)}
    w = jnp.array([0.1, 0.4, 0.0, 0.2, 0.3])
    s = s.replace(g_params=g, weights=s.weights.at[1].set(w),
                  mix_fd=jnp.array([5.0, 1.0, 7.0, 9.0]))  # cell 1's mixture is the best
    n = 2000
    images = m.sample(s, jax.random.key(3), n)
    assert images.shape == (n, 8, 8, 1) and images.dtype == np.uint8
    values = np.round((np.arctanh(images[:, 0, 0, 0] / 127.5 - 1.0)) * 10).astype(int)
    counts = np.asarray(M.exact_counts(w, n))
    expected = np.zeros(m.cells, int)
    for j, c in enumerate(m.nbr[1]):  # neighbourhood of cell 1 on the 2x2 torus: 1, 3, 3, 0, 0
        expected[c] += counts[j]
    assert (np.bincount(values, minlength=m.cells) == expected).all()
    prefix = np.bincount(values[:200], minlength=m.cells) / 200
    p = expected / n
    assert (np.abs(prefix - p) <= 4 * np.sqrt(p * (1 - p) / 200) + 1e-9).all(), prefix
    # the single best generator is cell 1's own
    params, _ = m.generator(s)
    assert float(params[last]["bias"][0]) == pytest.approx(0.1)


def _runner(lip, dataset, out, generations, **over) -> Runner:
    cfg = apply_overrides(lip[0], {**QUIET, "out": str(out),
                                   "evolve.generations": generations, **over})
    runner = Runner(cfg, "evolve", log=lambda *_: None, dataset=dataset)
    runner.method = lip[2]
    return runner


def test_split_run_equals_whole_run_bit_for_bit(lip, dataset, tmp_path):
    over = {"log.checkpoint_every": 3, "log.eval_every": 3, "log.fd_samples": 64}
    _runner(lip, dataset, tmp_path / "whole", 6, **over).run()
    _runner(lip, dataset, tmp_path / "split", 3, **over).run()
    resumed = _runner(lip, dataset, tmp_path / "split", 6, **over)
    assert resumed.resume_step == 3
    resumed.run()
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]
    a = strip(read_metrics(tmp_path / "whole" / "metrics.jsonl"))
    b = strip(read_metrics(tmp_path / "split" / "metrics.jsonl"))
    assert a == b and [r["generation"] for r in a] == list(range(7))
    last = a[-1]
    for key in ("real_score", "fake_score", "loss_d", "loss_g", "grid_loss_d", "grid_loss_g",
                "sel_moved_g", "sel_elite_d", "lr_g_min", "lr_d_max", "mix_w0", "mix_fd",
                "best_cell", "fd_pixels", "fd_pixels_single"):
        assert isinstance(last.get(key), float), key
    assert sum(last[f"mix_w{j}"] for j in range(5)) == pytest.approx(1.0, abs=1e-5)
    from ga_gan.checkpoint import Checkpointer
    shape = jax.eval_shape(lip[1].init, jax.random.key(0))
    states = []
    for name in ("whole", "split"):
        ckpt = Checkpointer(str(tmp_path / name / "checkpoints"), async_save=False)
        states.append(ckpt.restore(shape, 6)[0])
        ckpt.close()
    a, b = (jax.tree.leaves(jax.tree.map(
        lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        else x, s)) for s in states)
    assert all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b))


# --- the CLI ----------------------------------------------------------------------------------

def test_cli_mustangs_3x3_then_sample(tmp_path):
    out = tmp_path / "m"
    assert main(["evolve", "--hybrid", "mustangs", "--generations", "4", "--out", str(out),
                 "--set", "evolve.hybrid.grid=3,3", "--set", "log.eval_every=2",
                 "--set", "log.fd_samples=64", *CLI_TINY]) == 0
    records = read_metrics(out / "metrics.jsonl")
    last = records[-1]
    assert last["generation"] == 4 and "fd_pixels_single" in last
    assert sum(last[f"mustangs_{n}"] for n in ("minimax", "heuristic", "least_squares")) == 9
    assert 0 <= last["best_cell"] < 9 and last["lr_g_min"] > 0
    assert main(["sample", "--run", str(out), "--n", "12", "--out", str(tmp_path / "s.npz")]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (12, 8, 8, 1) and images.dtype == np.uint8


def test_bad_grid_is_a_user_error(tmp_path, capsys):
    assert main(["evolve", "--hybrid", "lipizzaner", "--out", str(tmp_path / "x"),
                 "--set", "evolve.hybrid.grid=3", "--no-progress"]) == 2
    assert "grid must be [rows, cols]" in capsys.readouterr().err


@pytest.mark.parametrize("name,args", [
    ("mnist", ["--config", "mnist", "--data", f"mnist:{SHARED / 'mnist'}",
               "--set", "data.limit=500", "--set", "model.width=0.0625"]),
    ("anime-faces-64", ["--config", "anime-cpu", "--data",
                        f"folder:{SHARED / 'anime-faces-64'}", "--set", "data.limit=100",
                        "--set", "model.width=0.0625", "--set", "evolve.batch=8"])])
def test_cli_on_real_data(name, args, tmp_path):
    if not (SHARED / name).is_dir():
        pytest.skip(f"../shared/data/{name} not present")
    out = tmp_path / name
    assert main(["evolve", "--hybrid", "lipizzaner", "--generations", "2", "--out", str(out),
                 *args, "--set", "evolve.hybrid.grid=1,2", "--set", "log.eval_every=0",
                 "--set", "log.image_every=0", "--set", "evolve.hybrid.mix_every=1",
                 "--set", "evolve.hybrid.mix_samples=16", "--no-progress"]) == 0
    last = read_metrics(out / "metrics.jsonl")[-1]
    assert last["generation"] == 2 and 0 <= last["real_score"] <= 1 and last["mix_fd"] > 0


# --- the grid sharded over 4 CPU devices ------------------------------------------------------

DRIVER = textwrap.dedent('''
    import sys, jax
    from ga_gan import cli, distributed
    rc = cli.main(sys.argv[1:])
    mesh = distributed.population_mesh()
    print("DEVICES", jax.device_count(), "MESH", 0 if mesh is None else mesh.size)
    sys.exit(rc)
''')


def test_grid_sharded_over_4_devices_equals_one_device(tmp_path):
    """A 2x2 lipizzaner grid with its cells split over 4 forced CPU devices (training and
    evaluation under shard_map) gives the 1-device run's numbers and the same selections."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    procs = {}
    for devices in (1, 4):
        env = devices_env(devices)
        procs[devices] = subprocess.Popen(
            [sys.executable, str(driver), "evolve", "--hybrid", "lipizzaner",
             "--generations", "4", "--out", str(tmp_path / str(devices)),
             "--set", "log.eval_every=0", *CLI_TINY],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = {d: p.communicate(timeout=600)[0] for d, p in procs.items()}
    for d, p in procs.items():
        assert p.returncode == 0, logs[d][-3000:]
    assert "DEVICES 4 MESH 4" in logs[4] and "DEVICES 1 MESH 0" in logs[1]
    one, four = (read_metrics(tmp_path / str(d) / "metrics.jsonl") for d in (1, 4))
    assert len(one) == len(four) == 4
    exact = [k for k in one[0] if k.startswith("sel_") or k in ("best_cell", "mix_accepted")]
    for a, b in zip(one, four):
        assert {k: a[k] for k in exact} == {k: b[k] for k in exact}
        for k, v in a.items():
            if k != "time_s":
                assert np.isclose(v, b[k], rtol=1e-4, atol=1e-5), (a["generation"], k, v, b[k])
