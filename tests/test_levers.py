"""Arms-race levers of pure evolution: hall of fame, feature matching, D:G generation ratio."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ga_gan.cli import main
from ga_gan.data import sample_batch
from ga_gan.errors import UserError
from ga_gan.gan import losses as F
from ga_gan.methods.evolve import Evolve
from ga_gan.gan.opponents import init_hall, update_hall
from ga_gan.gan import make_gan, strong_types

from helpers import run_generations, small_cfg


def method(**over):
    cfg = small_cfg(**over)
    return Evolve(make_gan(cfg.model), cfg.evolve)


def judging_differently(m, hall, biases=(2.0, -3.0, 4.0)):
    """`hall` with its stored Ds' logit biases shifted: past Ds that judge differently from the
    current one."""
    def shifted(flat, b):
        tree = jax.tree.map(lambda x: x + b if x.shape == (1,) else x, m.gan.unravel_d(flat))
        return ravel_pytree(tree)[0]
    return hall.replace(members=jnp.stack([shifted(d, b) for d, b in zip(hall.members, biases)]))


def test_hall_of_fame_ring_stores_every_kth_mean():
    hall = init_hall(jnp.zeros(3), size=2)
    for g in range(1, 8):  # generations 2, 4, 6 store; the third overwrites the oldest slot
        hall = update_hall(hall, jnp.full(3, float(g)), jnp.asarray(g), every=2)
    assert int(hall.count) == 2
    np.testing.assert_array_equal(hall.members[:, 0], [6.0, 4.0])


def test_hall_of_fame_fitness_differs_from_d_mean_fitness(digits):
    m = method(**{"evolve.hall_of_fame": 3, "evolve.hall_every": 2})
    state, _ = run_generations(m, digits, 6)
    assert int(state.hall.count) == 3
    real = sample_batch(jax.random.key(1), digits, 32)
    z = m.gan.latents(jax.random.key(2), 32)
    d_flat = m.sd.center(state.d)
    g_params = m.generator(state)[0]
    hall = judging_differently(m, state.hall)
    with_hall = m._g_member_fitness(state.replace(hall=hall), d_flat, real, z)(g_params)
    mean_only = m._g_member_fitness(state.replace(hall=None), d_flat, real, z)(g_params)
    each = [m._g_member_fitness(state.replace(hall=None), d, real, z)(g_params)
            for d in hall.members]
    assert abs(float(with_hall) - float(mean_only)) > 0.05
    np.testing.assert_allclose(with_hall, (mean_only + sum(each)) / 4, rtol=1e-5)
    # an empty hall weighs nothing: the D mean's fitness exactly
    empty = hall.replace(count=jnp.zeros((), jnp.int32))
    np.testing.assert_allclose(m._g_member_fitness(state.replace(hall=empty), d_flat, real,
                                                   z)(g_params), mean_only, rtol=1e-6)


def test_hall_play_one_draws_one_opponent_per_generation(digits):
    """`hall_play = "one"`: each generation's fitness is the fitness against exactly one of the
    D mean and the stored Ds, drawn from the generation's key; over generations every one of
    them is drawn, so the average is the hall's in expectation."""
    m = method(**{"evolve.hall_of_fame": 3, "evolve.hall_every": 2, "evolve.hall_play": "one"})
    state, history = run_generations(m, digits, 6)  # the whole step traces and runs with it
    assert int(state.hall.count) == 3 and np.isfinite(history[-1]["fitness_g_mean"])
    real = sample_batch(jax.random.key(1), digits, 32)
    z = m.gan.latents(jax.random.key(2), 32)
    d_flat = m.sd.center(state.d)
    g_params = m.generator(state)[0]
    hall = judging_differently(m, state.hall)
    alone = lambda d: float(m._g_member_fitness(state.replace(hall=None), d, real, z)(g_params))
    candidates = np.array([alone(d_flat)] + [alone(d) for d in hall.members])
    assert len(set(np.round(candidates, 4))) == 4  # four opponents that judge differently
    drawn = []
    for key in jax.random.split(jax.random.key(7), 40):
        v = float(m._g_member_fitness(state.replace(hall=hall, key=key), d_flat, real, z)(g_params))
        hit = np.flatnonzero(np.isclose(candidates, v, rtol=1e-5))
        assert hit.size == 1, (v, candidates)  # one opponent, not a blend
        drawn.append(int(hit[0]))
    assert sorted(set(drawn)) == [0, 1, 2, 3]
    # an empty hall leaves only the D mean to draw
    empty = hall.replace(count=jnp.zeros((), jnp.int32))
    for key in jax.random.split(jax.random.key(8), 5):
        v = m._g_member_fitness(state.replace(hall=empty, key=key), d_flat, real, z)(g_params)
        np.testing.assert_allclose(v, candidates[0], rtol=1e-5)


def test_feature_matching_falls_as_fakes_approach_real(digits):
    m = method(**{"evolve.g.fitness": "feature_matching"})
    state, _ = run_generations(m, digits, 3)
    d_params, d_stats = m.discriminator(state)
    real = sample_batch(jax.random.key(1), digits, 64)
    other = sample_batch(jax.random.key(5), digits, 64)
    noise = jax.random.uniform(jax.random.key(3), other.shape, minval=-1, maxval=1)
    feats = lambda x: m.gan.discriminate_features(d_params, d_stats, x)[1]
    real_f = feats(real)
    fm = [float(F.feature_matching(feats((1 - t) * noise + t * real), real_f))
          for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a > b for a, b in zip(fm, fm[1:])) and fm[-1] == 0.0, fm
    assert float(F.feature_matching(feats(other), real_f)) < 0.1 * fm[0]  # another real batch
    # and it is what the G population is scored on (lower is better: no sign flip)
    assert F.g_objective("feature_matching")[1:] == (False, True)


def test_feature_matching_bce_ranks_by_both_terms_whatever_their_scale(digits):
    fn, higher, needs_features = F.g_objective("feature_matching_bce")
    assert (higher, needs_features) == (False, True)
    real_f = jax.random.normal(jax.random.key(0), (16, 8))
    near, far = real_f + 0.1, real_f + 1.0  # fm 0.08 and 8
    fooled, caught = jnp.full(16, 2.0), jnp.full(16, -6.0)  # D's logits on the fakes
    # equal features: the image D takes for real wins; equal verdicts: the closer features win
    assert float(fn(fooled, near, real_f)) < float(fn(caught, near, real_f))
    assert float(fn(caught, near, real_f)) < float(fn(caught, far, real_f))
    np.testing.assert_allclose(fn(caught, far, real_f), jnp.log(F.feature_matching(far, real_f))
                               + jnp.log(F.loss_g(caught)), rtol=1e-6)
    # scale-free: D's features x 10 (a D whose weights grew) shift every member by the same
    # log(100), so the ranking of members is unchanged; the plain sum's would flip
    members = [(fooled, far), (caught, near)]
    ranks = lambda c: np.argsort([float(fn(l, c * f, c * real_f)) for l, f in members])
    np.testing.assert_array_equal(ranks(1.0), ranks(10.0))
    plain = lambda c: np.argsort([float(F.feature_matching(c * f, c * real_f) + F.loss_g(l))
                                  for l, f in members])
    assert not np.array_equal(plain(0.1), plain(10.0))
    # and the G population evolves on it
    m = method(**{"evolve.g.fitness": "feature_matching_bce"})
    _, history = run_generations(m, digits, 2)
    assert np.isfinite(float(history[-1]["fitness_g_mean"]))
    assert float(history[-1]["fitness_g_std"]) > 0.0


def test_d_every_rests_the_discriminator(digits):
    m = method(**{"evolve.d_every": 3})
    s0 = strong_types(m.init(jax.random.key(0)))
    step = jax.jit(lambda s, x: m.step(s, x))
    s1, met1 = step(s0, digits)  # generation 0: D evolves
    s2, met2 = step(s1, digits)  # generation 1: D rests, G still evolves
    s3, _ = step(s2, digits)
    s4, _ = step(s3, digits)  # generation 3: D evolves again
    d = [m.sd.center(s.d) for s in (s0, s1, s2, s3, s4)]
    g = [m.sg.center(s.g) for s in (s1, s2)]
    assert not np.array_equal(d[0], d[1]) and not np.array_equal(d[3], d[4])
    np.testing.assert_array_equal(d[1], d[2])
    np.testing.assert_array_equal(d[2], d[3])
    assert not np.array_equal(g[0], g[1])
    assert float(met2["fitness_d_std"]) == 0.0 and float(met1["fitness_d_std"]) > 0.0


def test_bad_lever_settings_are_user_errors():
    with pytest.raises(UserError, match="d_every"):
        method(**{"evolve.d_every": 0})
    with pytest.raises(UserError, match="feature_matching"):
        method(**{"evolve.g.fitness": "nope"})


@pytest.mark.parametrize("setting,needle", [
    ("evolve.g.std_decay=-0.5", "evolve.g.std_decay must be in (0, 1]"),
    ("evolve.d.lr_decay=1.5", "evolve.d.lr_decay must be in (0, 1]"),
    ("evolve.g.std_min=1.0", "evolve.g.std_min must be from 0 to evolve.g.std"),
    ("evolve.d.lr_min=-1", "evolve.d.lr_min"),
    ("evolve.g.lr_decay_begin=100", "delays a decay that is off: set evolve.g.lr_decay below 1"),
    ("evolve.d.std_decay_begin=-1", "evolve.d.std_decay_begin must be a whole number"),
    ("evolve.g.lr_decay_begin=1.5", "evolve.g.lr_decay_begin: cannot read '1.5' as int"),
    ("evolve.g.shaping=ranks", "unknown evolve.g.shaping 'ranks'"),
    ("evolve.g.elite=maybe", "evolve.g.elite"),
    ("evolve.d.kernels=full", "unknown evolve.d.kernels 'full'"),
    ("evolve.g.weight_decay=0.1", 'evolve.g.weight_decay needs evolve.g.optimizer = "adamw"'),
    ("evolve.d.weight_decay=-1", "evolve.d.weight_decay must be >= 0"),
    ("evolve.hall_play=some", "unknown evolve.hall_play 'some' (all, one)"),
    ("evolve.hall_play=one", "set evolve.hall_of_fame to 1 or more"),
])
def test_bad_sample_efficiency_levers_are_one_error_line(tmp_path, capsys, setting, needle):
    capsys.readouterr()
    rc = main(["evolve", "--generations", "1", "--no-progress", "--out", str(tmp_path / "r"),
               "--set", setting])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0], err[0]
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


@pytest.mark.parametrize("over,needle", [
    ({"evolve.hall_play": "some"}, "unknown evolve.hall_play 'some'"),
    ({"evolve.hall_play": "one"}, "set evolve.hall_of_fame to 1 or more"),
    ({"evolve.g.weight_decay": 0.1}, 'evolve.g.weight_decay needs evolve.g.optimizer = "adamw"'),
    ({"evolve.d.lr_decay": 1.5}, "evolve.d.lr_decay must be in (0, 1]"),
])
def test_evolve_built_from_python_refuses_what_the_cli_refuses(over, needle):
    """Evolve checks its own config: a caller that skips the CLI (and validate_config) gets the
    same error, not a misspelt hall_play read as "all" or a weight decay Adam ignores."""
    with pytest.raises(UserError, match=re.escape(needle)):
        method(**over)


def test_a_lever_the_strategy_lacks_is_one_error_line(tmp_path, capsys):
    """SNES adapts its own per-parameter std: a std schedule is refused, not ignored."""
    capsys.readouterr()
    rc = main(["evolve", "--strategy", "snes", "--pop", "8", "--generations", "1",
               "--no-progress", "--out", str(tmp_path / "r"), "--set", "evolve.g.std_decay=0.99"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "std_decay does not apply" in err[0], err


def test_every_ablation_lever_builds_on_mnist_evolve(tmp_path):
    """benchmarks/evolve_ablation.py's levers are valid settings for the config it ablates:
    validated, and both strategies built (the low-rank ones trace the DCGAN's shapes)."""
    import importlib.util
    import sys
    from pathlib import Path

    from ga_gan.config import apply_overrides, load_config
    from ga_gan.validate import validate_config

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("evolve_ablation",
                                                      bench / "evolve_ablation.py")
        ablation = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ablation)
    finally:
        sys.path.remove(str(bench))
    base = load_config(Path(__file__).resolve().parents[1] / "ga_gan/configs/mnist-evolve.toml")
    for name, (_, over) in ablation.LEVERS.items():
        cfg = apply_overrides(base, {**over, "out": str(tmp_path / name)})
        validate_config(cfg, "evolve")
        m = Evolve(make_gan(cfg.model), cfg.evolve)
        assert m.sg.population_size == cfg.evolve.g.pop, name


def test_d_max_accuracy_rests_the_discriminator_only_while_it_wins(digits):
    """The adaptive handicap: D evolves when the D mean's accuracy on the generation's batch is
    <= the bound and rests (state kept, fitness 0) above it; G evolves either way; no new state,
    so checkpoints keep their structure."""
    s1 = strong_types(method().init(jax.random.key(0)))  # its D mean is above chance here
    _, k_x, k_z, *_ = jax.random.split(s1.key, 7)  # the batch the next step draws
    m = method(**{"evolve.d_max_accuracy": 0.9})
    real = sample_batch(k_x, digits, m.cfg.batch)
    fake, _ = m.gan.generate(*m.generator(s1), m.gan.latents(k_z, m.cfg.batch), train=True)
    acc = float(m.d_accuracy(s1, real, fake))
    assert 0.5 < acc < 1.0, acc
    for bound, evolves in ((0.5, False), (acc, True), (1.0 - 1e-6, True)):
        mb = method(**{"evolve.d_max_accuracy": bound})
        s2, met = jax.jit(mb.step)(s1, digits)
        assert float(met["d_accuracy"]) == acc
        assert float(met["d_evolved"]) == float(evolves), bound
        d_same = np.array_equal(mb.sd.center(s1.d), mb.sd.center(s2.d))
        assert d_same == (not evolves) and (float(met["fitness_d_std"]) == 0.0) == (not evolves)
        assert not np.array_equal(mb.sg.center(s1.g), mb.sg.center(s2.g))  # G always evolves
        assert jax.tree.structure(s2) == jax.tree.structure(s1)
    with pytest.raises(UserError, match="d_max_accuracy"):
        method(**{"evolve.d_max_accuracy": 0.4})
    # off by default: neither the handicap's nor elitism's keys (one compile for both levers)
    off = jax.jit(method().step)(s1, digits)[1]
    assert not {"d_accuracy", "d_evolved", "elite_g", "elite_d"} & set(off), sorted(off)


@pytest.mark.parametrize("lr,refuses", [(None, False), (30.0, True)], ids=["config-lr", "lr-30"])
def test_elite_logs_whether_each_update_was_kept(digits, lr, refuses):
    """With elitism each generation logs elite_g / elite_d: 1 when the update moved the mean,
    0 when it was refused and the mean stayed exactly where it was. A G lr of 30 (every weight
    thrown ~30 a step) is refused at times; the test config's own lr always kept. (Without
    elitism there is no key: test_d_max_accuracy_rests_... checks the defaults log neither.)"""
    m = method(**{"evolve.g.elite": True, "evolve.d.elite": True,
                  **({} if lr is None else {"evolve.g.lr": lr})})
    state = strong_types(m.init(jax.random.key(0)))
    step = jax.jit(m.step)
    kept = []
    for _ in range(4):
        new, metrics = step(state, digits)
        assert float(metrics["elite_d"]) in (0.0, 1.0)
        moved = not np.array_equal(m.sg.center(new.g), m.sg.center(state.g))
        assert float(metrics["elite_g"]) == float(moved)
        kept.append(moved)
        state = new
    assert all(kept) != refuses  # lr 30: some refused (kept here: [no, yes, no, yes])
