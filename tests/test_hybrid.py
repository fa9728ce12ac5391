"""Hybrid modes (evolution + gradient descent) on tiny MLPs and the embedded digits.

Almost all of the time here is XLA compilation, so each variant has one configuration whose
init and step are compiled once (module fixtures) and shared by its tests: the Runner tests
hand the Runner that same method (`Shared`, `_shared_runner`) instead of letting every Runner
compile its own identical copy. A discriminator is "held" by resetting it before every
generation, so a frozen-D test needs no configuration (and compilation) of its own.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ga_gan.config import RunConfig, apply_overrides
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.methods.evolve import Evolve
from ga_gan.gan import make_gan
from ga_gan.methods import build, hybrids
from ga_gan.methods.egan import select
from ga_gan.run import Runner, strong_types
from ga_gan.runlog import read_metrics

from helpers import leaves, records
from helpers import small_cfg as _small_cfg

HYBRID = {"evolve.g.layout": "vmap", "evolve.d.layout": "vmap", "evolve.mode": "hybrid"}
# log.ema=0: these tests swap in the variants' compiled methods; the average is tested in
# test_ema.py
QUIET = {"log.progress": False, "log.eval_every": 0, "log.image_every": 0,
         "log.steps_per_call": 5, "log.ema": 0.0}
SCORES = ("real_score", "fake_score", "loss_d", "loss_g")
KEYS = {
    "egan": SCORES + ("egan_winner", "egan_wins_minimax", "egan_wins_heuristic",
                      "egan_wins_least_squares", "egan_fq", "egan_fd", "egan_fitness"),
    "adam-d": SCORES + ("fitness_g_best", "fitness_g_mean", "fitness_g_std"),
    "lamarck": SCORES + ("fitness_g_best", "fitness_g_mean", "fitness_g_std", "fitness_d_best",
                         "lamarck_gain_g", "lamarck_gain_d"),
}
# One configuration per variant, shared by its learning test and its Runner test.
OVERRIDES = {
    "egan": {"evolve.hybrid.lr_g": 1e-3, "evolve.hybrid.lr_d": 1e-3, "evolve.hybrid.mu": 2},
    "adam-d": {"evolve.hybrid.lr_d": 1e-3, "evolve.hybrid.k_d": 2, "evolve.g.pop": 16},
    "lamarck": {"evolve.hybrid.k": 2, "evolve.hybrid.lr_g": 1e-3,
                "evolve.hybrid.lr_d": 1e-3},
    # adam-d with the generator population evolved by low-rank ES instead of OpenES
    "adam-d-lowrank": {"evolve.hybrid.lr_d": 1e-3, "evolve.hybrid.k_d": 2, "evolve.g.pop": 16,
                       "evolve.g.name": "lowrank_es", "evolve.g.rank": 2},
}
VARIANT_OF = {"adam-d-lowrank": "adam-d"}


def small_cfg(variant: str, **over) -> RunConfig:
    return _small_cfg(HYBRID, {"evolve.hybrid.variant": variant}, **over)


class Shared:
    """A method whose functions are fixed objects: `jax.jit` of the same function object hits
    JAX's compilation cache, so every Runner given this method reuses one compiled init and
    one compiled step (a bound method is a new object at every attribute access)."""

    def __init__(self, method):
        self.method = method
        self.h = method.h
        self.init, self.step = method.init, method.step
        self.generator, self.discriminator = method.generator, method.discriminator


class Compiled:
    """A method and its jitted init and step, built once per configuration."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.gan = make_gan(cfg.model)
        self.method = build("evolve", self.gan, cfg)
        self.shared = Shared(self.method)
        self.step = jax.jit(self.shared.step)

    def init(self, seed: int = 0):
        return strong_types(jax.jit(self.shared.init)(jax.random.key(seed)))

    def run(self, state, data, n):
        history = []
        for _ in range(n):
            state, metrics = self.step(state, data)
            history.append(jax.device_get(metrics))
        return state, {k: np.array([m[k] for m in history]) for k in history[0]}


@pytest.fixture(scope="module")
def compiled():
    cache: dict = {}

    def get(variant: str) -> Compiled:
        if variant not in cache:
            cache[variant] = Compiled(small_cfg(VARIANT_OF.get(variant, variant),
                                                **OVERRIDES[variant]))
        return cache[variant]

    return get


def _assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves(a), leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


# --- the registry ----------------------------------------------------------------------------

def test_unknown_variant_is_a_user_error_naming_the_valid_ones():
    cfg = small_cfg("nope")
    with pytest.raises(UserError, match="egan, adam-d, lamarck"):
        build("evolve", make_gan(cfg.model), cfg)
    assert set(hybrids()) == {"egan", "adam-d", "lamarck", "lipizzaner", "mustangs"}


def test_bad_hybrid_settings_are_user_errors():
    gan = make_gan(small_cfg("egan").model)
    with pytest.raises(UserError, match="wasserstein"):
        build("evolve", gan,
              small_cfg("egan", **{"evolve.hybrid.losses": "minimax,wasserstein"}))
    with pytest.raises(UserError, match="population-based"):
        build("evolve", gan, small_cfg("lamarck", **{"evolve.g.name": "simple_ga"}))
    # with no gradient steps on G, a GA generator population is plain evolution: allowed
    build("evolve", gan, small_cfg("lamarck", **{"evolve.g.name": "simple_ga",
                                                 "evolve.hybrid.k": 0}))


# --- egan --------------------------------------------------------------------------------------

def test_select_keeps_the_fittest_children_fittest_first():
    fit = jnp.array([0.1, 0.7, -2.0, 0.7, jnp.nan, 0.3])
    assert np.asarray(select(fit, 1)).tolist() == [1]  # a tie goes to the lower index
    assert np.asarray(select(fit, 3)).tolist() == [1, 3, 5]
    assert np.asarray(select(jnp.array([jnp.nan, -5.0]), 1)).tolist() == [1]


def _trained_d(gan, d_params, d_stats, g_params, g_stats, digits, steps=40):
    """A D trained by Adam to separate real digits from a generator's fakes."""
    real = sample_batch(jax.random.key(11), digits, 128)
    fake, _ = gan.generate(g_params, g_stats, gan.latents(jax.random.key(12), 128))
    opt = optax.adam(1e-2)

    def loss(p):
        r, _ = gan.discriminate(p, d_stats, real)
        f, _ = gan.discriminate(p, d_stats, fake)
        return F.loss_d(r, f)

    def body(_, carry):
        p, s = carry
        updates, s = opt.update(jax.grad(loss)(p), s)
        return optax.apply_updates(p, updates), s

    return jax.jit(lambda p: jax.lax.fori_loop(0, steps, body, (p, opt.init(p)))[0])(d_params)


def _hold(state, held):
    return state.replace(d_params=held[0], d_stats=held[1], d_opt=held[2])


@pytest.fixture(scope="module")
def held_egan(digits, compiled):
    """The egan configuration (mu = 2) and a D trained to spot its initial generators' fakes,
    so that D(G(z)) is far from 1/2 and the three mutation losses pull apart."""
    c = compiled("egan")
    state = c.init()
    g_params, g_stats = c.method.generator(state)
    held = (_trained_d(c.gan, state.d_params, state.d_stats, g_params, g_stats, digits),
            state.d_stats, state.d_opt)
    return c, _hold(state, held), held


def test_egan_generators_learn_against_a_held_discriminator(digits, held_egan):
    """With D reset to the trained one before every generation (so each generation's
    children face it plus one Adam step), over 30 generations the fittest generator's quality
    Fq = mean D(G(z)) rises and its -log D(G(z)) falls."""
    c, state, held = held_egan
    history = []
    for _ in range(30):
        state, metrics = c.step(_hold(state, held), digits)
        history.append(jax.device_get(metrics))
    m = {k: np.array([h[k] for h in history]) for k in history[0]}
    assert m["egan_fq"][-5:].mean() > m["egan_fq"][:5].mean() + 0.05, m["egan_fq"]
    assert m["loss_g"][-5:].mean() < m["loss_g"][:5].mean() - 0.1, m["loss_g"]
    assert np.all(m["fake_score"] == m["egan_fq"])  # the fittest survivor's score is logged
    wins = np.stack([m[f"egan_wins_{n}"] for n in ("minimax", "heuristic", "least_squares")])
    assert np.all(wins.sum(0) == 2)  # mu = 2 survivors a generation


def test_egan_selection_keeps_the_fittest_children(digits, held_egan):
    """One generation split in its two halves (`step` is exactly survive(offspring(...))):
    the survivors are the two children of highest fitness, fittest first, with their Adam
    states and statistics."""
    c, state, _ = held_egan
    o = jax.jit(c.method.offspring)(state, digits)
    new, metrics = c.method.survive(state, o)
    fitness = np.asarray(o["fitness"])
    assert fitness.shape == (6,)  # mu = 2 parents x 3 losses
    order = np.argsort(-fitness, kind="stable")[:2]
    assert int(metrics["egan_winner"]) == order[0] % 3
    assert float(metrics["egan_fitness"]) == fitness[order[0]]
    _assert_trees_equal(new.g_params, jax.tree.map(lambda x: x[order], o["children"][0]))
    _assert_trees_equal(new.g_stats, jax.tree.map(lambda x: x[order], o["children"][1]))
    _assert_trees_equal(new.g_opt, jax.tree.map(lambda x: x[order], o["children"][2]))
    flat = [np.concatenate([np.ravel(x[j]) for x in jax.tree.leaves(o["children"][0])])
            for j in range(6)]
    for j in range(6):  # the children differ (if little on a first Adam step: see egan.py)
        if j != order[0]:
            assert np.max(np.abs(flat[j] - flat[order[0]])) > 1e-6


def test_egan_gamma_0_selects_on_quality_alone(digits, held_egan):
    """gamma = 0 skips the diversity term's D passes: the same children as with gamma > 0 (the
    variation step does not read gamma), fitness = Fq exactly, and no egan_fd metric."""
    c, state, _ = held_egan
    method0 = build("evolve", c.gan, apply_overrides(c.cfg, {"evolve.hybrid.gamma": 0.0}))
    o0 = jax.jit(method0.offspring)(state, digits)
    o = jax.jit(c.method.offspring)(state, digits)
    _assert_trees_equal(o0["children"], o["children"])
    np.testing.assert_array_equal(np.asarray(o0["fitness"]), np.asarray(o0["fq"]))
    np.testing.assert_array_equal(np.asarray(o0["fq"]), np.asarray(o["fq"]))
    assert not np.array_equal(np.asarray(o["fitness"]), np.asarray(o["fq"]))
    _, metrics = method0.survive(state, o0)
    assert "egan_fd" not in metrics and "egan_fq" in metrics


# --- adam-d ------------------------------------------------------------------------------------

def _vs(gan, g, d, real, z):
    """(D's BCE on real vs G's fakes, G's -log D(G(z))) for a (params, stats) pair each."""
    fake, _ = gan.generate(*g, z)
    r, _ = gan.discriminate(*d, real)
    f, _ = gan.discriminate(*d, fake)
    return float(F.loss_d(r, f)), float(F.loss_g(f))


def test_adam_d_discriminator_learns(digits, compiled):
    c = compiled("adam-d")
    start = c.init()
    end, m = c.run(start, digits, 30)
    real = sample_batch(jax.random.key(5), digits, 256)
    z = c.gan.latents(jax.random.key(6), 256)
    g1 = c.method.generator(end)
    d0, d1 = c.method.discriminator(start), c.method.discriminator(end)
    assert m["loss_d"][-5:].mean() < 0.7 * m["loss_d"][:5].mean(), m["loss_d"]
    # on the final generator's fakes, the trained D's loss is well below the untrained D's
    assert _vs(c.gan, g1, d1, real, z)[0] < _vs(c.gan, g1, d0, real, z)[0] - 0.3


@pytest.mark.parametrize("config", ["adam-d", "adam-d-lowrank"])
def test_adam_d_generator_population_learns_against_a_held_discriminator(digits, compiled,
                                                                         config):
    """D is reset to one trained discriminator before every generation (so G is evolved
    against it plus the generation's own k_d Adam steps): G's fitness improves, with OpenES
    and with low-rank ES as the generator's strategy."""
    c = compiled(config)
    state = c.init()
    assert (c.method.sg.name == "lowrank_es") == (config == "adam-d-lowrank")
    g0 = c.method.generator(state)
    held = (_trained_d(c.gan, state.d_params, state.d_stats, *g0, digits), state.d_stats,
            state.d_opt)
    history = []
    for _ in range(40):
        state, m = c.step(_hold(state, held), digits)
        history.append(float(m["fitness_g_mean"]))
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:5]), history
    real = sample_batch(jax.random.key(5), digits, 256)
    z = c.gan.latents(jax.random.key(6), 256)
    d = held[:2]
    assert _vs(c.gan, c.method.generator(state), d, real, z)[1] < \
        _vs(c.gan, g0, d, real, z)[1] - 0.2


# --- lamarck -----------------------------------------------------------------------------------

def test_lamarck_with_k_0_is_evolve_bit_for_bit(digits):
    cfg = small_cfg("lamarck", **{"evolve.hybrid.k": 0, "evolve.hybrid.k_d": 0})
    gan = make_gan(cfg.model)
    lam, ev = build("evolve", gan, cfg), Evolve(gan, cfg.evolve)
    s_lam = strong_types(lam.init(jax.random.key(3)))  # (eager: one compile less each)
    s_ev = strong_types(ev.init(jax.random.key(3)))
    _assert_trees_equal(s_lam.evolve, s_ev)
    step_lam, step_ev = jax.jit(lam.step), jax.jit(ev.step)
    for _ in range(3):
        s_lam, m_lam = step_lam(s_lam, digits)
        s_ev, m_ev = step_ev(s_ev, digits)
        assert set(m_ev) <= set(m_lam)
        for k in m_ev:
            assert np.array_equal(m_lam[k], m_ev[k]), k
        assert float(m_lam["lamarck_gain_g"]) == 0.0
    _assert_trees_equal(s_lam.evolve, s_ev)
    for get in ("generator", "discriminator"):
        _assert_trees_equal(getattr(lam, get)(s_lam), getattr(ev, get)(s_ev))


def test_lamarck_gradient_steps_improve_on_evolutions_means(digits, compiled):
    """Every generation, Adam's steps lower G's loss against the refined D below the evolved
    G mean's, and D's loss on the refined G's fakes below the evolved D mean's; the refined
    means are what the strategies carry on from."""
    c = compiled("lamarck")
    start = c.init()
    end, m = c.run(start, digits, 20)
    assert np.all(m["lamarck_gain_g"] > 0), m["lamarck_gain_g"]
    assert np.all(m["lamarck_gain_d"] > 0), m["lamarck_gain_d"]
    assert int(end.generation) == 20 and int(end.evolve.g.generation_counter) == 20
    assert float(jax.tree.leaves(end.g_opt)[0]) == 40  # k = 2 Adam steps a generation


# --- through the Runner ------------------------------------------------------------------------

def _shared_runner(c: Compiled, dataset, out, generations: int, **over) -> Runner:
    cfg = apply_overrides(c.cfg, {**QUIET, "out": str(out), "evolve.generations": generations,
                                  **over})
    runner = Runner(cfg, "evolve", log=lambda *_: None, dataset=dataset)
    assert type(runner.method) is type(c.method) and runner.method.h == c.method.h
    runner.method = c.shared  # the same programs, compiled once
    return runner


@pytest.mark.parametrize("variant", ["egan", "adam-d", "lamarck"])
def test_runner_writes_every_metric(variant, compiled, dataset, tmp_path):
    c = compiled(variant)
    result = _shared_runner(c, dataset, tmp_path / variant, 10).run()
    assert result.generation == 10
    records = read_metrics(tmp_path / variant / "metrics.jsonl")
    assert [r["generation"] for r in records] == list(range(1, 11))
    for r in records:
        missing = [k for k in KEYS[variant] if not isinstance(r.get(k), float)]
        assert not missing, missing
    if variant == "egan":  # mu = 2: two survivors a generation
        assert all(sum(r[f"egan_wins_{n}"] for n in ("minimax", "heuristic", "least_squares"))
                   == 2 for r in records)
    saved = json.loads((tmp_path / variant / "config.json").read_text())
    assert saved["config"]["evolve"]["hybrid"]["variant"] == variant


def test_egan_resumed_k_then_k_equals_2k(compiled, dataset, tmp_path):
    c = compiled("egan")
    whole = _shared_runner(c, dataset, tmp_path / "whole", 20, **{"log.checkpoint_every": 10})
    whole.run()
    _shared_runner(c, dataset, tmp_path / "split", 10, **{"log.checkpoint_every": 10}).run()
    resumed = _shared_runner(c, dataset, tmp_path / "split", 20,
                             **{"log.checkpoint_every": 10})
    assert resumed.resume_step == 10
    resumed.run()
    a, b = (records(tmp_path / name, timing=False) for name in ("whole", "split"))
    assert len(a) == 20 and a == b
    from ga_gan.checkpoint import Checkpointer
    shape = jax.eval_shape(c.method.init, jax.random.key(0))
    states = []
    for name in ("whole", "split"):
        ckpt = Checkpointer(str(tmp_path / name / "checkpoints"), async_save=False)
        states.append(ckpt.restore(shape, 20)[0])
        ckpt.close()
    _assert_trees_equal(*states)


def test_cli_selects_a_hybrid(tmp_path, capsys):
    """--hybrid VARIANT sets the mode and the variant; an unknown one exits 2 with one line."""
    from ga_gan.cli import build_parser, main, resolve_config
    cfg = resolve_config(build_parser().parse_args(
        ["evolve", "--hybrid", "egan", "--set", "evolve.hybrid.k=3"]))
    assert (cfg.evolve.mode, cfg.evolve.hybrid.variant, cfg.evolve.hybrid.k) == \
        ("hybrid", "egan", 3)
    assert main(["evolve", "--hybrid", "nope", "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "egan, adam-d, lamarck" in capsys.readouterr().err
