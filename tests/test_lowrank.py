"""Low-rank ES (`lowrank_es`): exact member forwards, antithetic noise, gradient direction,
learning on digits, checkpoint round trip and the CLI."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ga_gan.cli import main
from ga_gan.config import StrategyConfig
from ga_gan.errors import UserError
from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn
from ga_gan.strategies.lowrank import LowRankES, LowRankState, evaluate_lowrank, make_lowrank
from ga_gan.methods.evolve import Evolve
from ga_gan.strategies import build_strategy
from ga_gan.strategies.base import decay_schedule
from ga_gan.strategies.evosax_strategy import make_strategy
from ga_gan.gan import make_gan
from ga_gan.run import Runner, strong_types

from helpers import (LOWRANK, against_trained_discriminator, assert_generator_fools_more, leaves,
                     records, run_generations)
from helpers import small_cfg as _small_cfg


def small_cfg(**over):
    return _small_cfg(LOWRANK, **over)


class Net(nn.Module):
    """Every perturbed layer kind: Conv, ConvTranspose (both strided), BatchNorm, Dense, and a
    conv with too few output channels for a rank-2 factor (its noise is full, like the RGB
    layer of a DCGAN generator)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(6, (3, 3), strides=(2, 2))(x)
        x = nn.relu(x)
        x = nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME")(x)
        x = nn.BatchNorm(use_running_average=False)(x)
        x = nn.Conv(2, (3, 3))(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(7)(x)


@pytest.mark.parametrize("layout,kernels", [("vmap", "factored"), ("map", "factored"),
                                            ("vmap", "merged"), ("map", "merged")])
def test_lowrank_forward_equals_explicit_full_weights(layout, kernels):
    net = Net()
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 4))
    v = net.init(jax.random.key(0), x)
    es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=0.01, kernels=kernels)
    assert {k.module for k in es.kernels} == {"Conv_0", "ConvTranspose_0", "Dense_0"}
    assert ("BatchNorm_0", "scale") in es.small and ("Dense_0", "bias") in es.small
    assert [k.module for k in es.layer_noise] == ["Conv_1"] and ("Conv_1", "kernel") in es.small
    noise = es.sample(jax.random.key(2))
    mean, unravel = ravel_pytree(v["params"])

    def fn(p):
        out, _ = net.apply({"params": p, "batch_stats": v["batch_stats"]}, x,
                           mutable=["batch_stats"])
        return out

    outs = jax.jit(lambda: evaluate_lowrank(es, v["params"], noise, fn, layout, chunk=2))()
    for i in range(es.pop):
        # W + sigma * A B^T / sqrt(r) built explicitly, through the plain flax forward
        ref = fn(unravel(mean + es.std * es.full_perturbation(noise, i)))
        np.testing.assert_allclose(outs[i], ref, atol=2e-5, rtol=1e-5)
        assert not np.allclose(ref, fn(v["params"]), atol=1e-3)  # it really is perturbed


def test_a_second_network_in_the_fitness_is_not_perturbed():
    """G's members are scored through D's mean: only the layers running the member's own
    kernels get a correction, even when the other network has the same module paths."""
    net = Net()
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 4))
    v = net.init(jax.random.key(0), x)
    other = net.init(jax.random.key(7), x)["params"]
    es = make_lowrank(v["params"], pop=4, rank=2, std=0.1, lr=0.01)
    noise = es.sample(jax.random.key(2))
    mean, unravel = ravel_pytree(v["params"])
    apply = lambda p: net.apply({"params": p, "batch_stats": v["batch_stats"]}, x,
                                mutable=["batch_stats"])[0]
    both = lambda p: jnp.stack([apply(p), apply(other)])
    outs = jax.jit(lambda: evaluate_lowrank(es, v["params"], noise, both, "vmap"))()
    for i in range(es.pop):
        np.testing.assert_allclose(outs[i, 0], apply(unravel(mean + es.std * es.full_perturbation(noise, i))),
                                   atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(outs[i, 1], apply(other), atol=2e-5, rtol=1e-5)


def test_a_kernel_outside_flax_layers_is_refused_not_left_unperturbed():
    class Raw(nn.Module):  # a 'kernel' the interceptor cannot see
        @nn.compact
        def __call__(self, x):
            return x @ self.param("kernel", nn.initializers.normal(), (x.shape[-1], 8))

    class Wrapped(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Raw()(nn.Dense(6)(x))

    x = jnp.ones((2, 5))
    v = Wrapped().init(jax.random.key(0), x)
    es = make_lowrank(v["params"], pop=4, rank=2, std=0.1, lr=0.01)
    noise = es.sample(jax.random.key(1))
    with pytest.raises(RuntimeError, match="Raw_0"):
        evaluate_lowrank(es, v["params"], noise, lambda p: Wrapped().apply({"params": p}, x),
                         "vmap")


def test_merged_kernels_score_members_like_factored_on_a_tiny_dcgan():
    """The opt-in `kernels="merged"` layout gives every member of both populations of the
    MNIST-evolve DCGAN (28x28, width 0.0625) the fitness the reference (factored, one member at
    a time) gives, up to float reassociation, in every layout and chunking."""
    from ga_gan.config import ModelConfig
    from ga_gan.gan import losses as F, task
    gan = make_gan(ModelConfig(name="dcgan", resolution=28, latent_dim=16, width=0.0625))
    g_vars, d_vars = gan.init(jax.random.key(0))
    real = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1), minval=-1, maxval=1)
    z = gan.latents(jax.random.key(2), 4)
    fake, _ = gan.generate(g_vars["params"], g_vars["batch_stats"], z)
    d_member = task.d_member(gan, F.loss_d, False, d_vars["batch_stats"], real, fake)
    objective, higher, _ = F.g_objective("bce")
    g_member = task.g_member(gan, higher, g_vars["batch_stats"], z, task.against_d(
        gan, objective, d_vars["params"], d_vars["batch_stats"], None))
    for params, member in ((d_vars["params"], d_member), (g_vars["params"], g_member)):
        def fitness(kernels, layout, chunk):
            es = make_lowrank(params, pop=8, rank=4, std=0.5, lr=0.01, kernels=kernels)
            assert es.kernel_form == kernels
            noise = es.sample(jax.random.key(3))
            return jax.jit(lambda: evaluate_lowrank(es, params, noise, member, layout, chunk))()
        ref = fitness("factored", "map", 1)
        assert np.ptp(ref) > 1e-3  # the members really differ
        for layout, chunk in (("map", 1), ("map", 4), ("vmap", 0)):
            np.testing.assert_allclose(fitness("merged", layout, chunk), ref, rtol=1e-5,
                                       atol=1e-6)


def test_antithetic_pairs_and_rank():
    net = Net()
    v = net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 4)))
    es = make_lowrank(v["params"], pop=8, rank=3, std=0.1, lr=0.01)
    noise = es.sample(jax.random.key(5))
    for i in range(4):
        np.testing.assert_array_equal(es.full_perturbation(noise, i),
                                      -es.full_perturbation(noise, i + 4))
    kernel = es.unravel(es.full_perturbation(noise, 1))["Dense_0"]["kernel"]
    assert np.linalg.matrix_rank(np.asarray(kernel), tol=1e-4) == 3
    conv = es.unravel(es.full_perturbation(noise, 1))["Conv_0"]["kernel"]
    assert np.linalg.matrix_rank(np.asarray(conv).reshape(-1, conv.shape[-1]), tol=1e-4) == 3
    members = LowRankES.members(noise)
    np.testing.assert_array_equal(members["A"]["Dense_0"][:4], -members["A"]["Dense_0"][4:])
    np.testing.assert_array_equal(members["B"]["Dense_0"][:4], members["B"]["Dense_0"][4:])
    # centred ranks (evosax's shaping, which tell uses): lowest fitness -> -0.5, highest -> +0.5
    np.testing.assert_allclose(centered_ranks(jnp.array([3.0, -1.0, 7.0])), [0.0, -0.5, 0.5])
    # ties share their rank: a pair scored alike moves the mean by nothing
    np.testing.assert_allclose(centered_ranks(jnp.array([1.0, 1.0, 2.0, 0.0])), [0, 0, 0.5, -0.5],
                               atol=1e-7)


def centered_ranks(fitness):
    return centered_rank_fitness_shaping_fn(None, fitness, None, None)


def test_tell_is_the_openes_step_on_centred_ranks():
    """tell = one optimiser step along `gradient` of the centred ranks (sgd, lr 1: mean - g);
    the key is unused, as the noise was drawn by ask."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd")
    mean = ravel_pytree(v["params"])[0]
    state = es.init(jax.random.key(1), mean)
    noise, same = es.ask(jax.random.key(2), state)
    assert same is state
    fit = jnp.array([0.3, -1.0, 2.0, 0.5, 0.1, 7.0])
    new = es.tell(None, noise, fit, state)
    np.testing.assert_allclose(new.mean, mean - es.gradient(noise, centered_ranks(fit)), atol=1e-6)
    assert float(new.best_fitness) == -1.0 and int(new.generation_counter) == 1


def test_gradient_estimate_points_like_openes_and_the_true_gradient():
    """A tiny linear regression: averaged over draws, both estimates correlate clearly and
    similarly with the true gradient of the loss (centred ranks change scale, not direction)."""
    model = nn.Dense(8)
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = x @ jax.random.normal(jax.random.key(1), (16, 8))
    v = model.init(jax.random.key(2), x)
    loss = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)
    mean, unravel = ravel_pytree(v["params"])
    true = jax.grad(lambda m: loss(unravel(m)))(mean)
    pop, std, draws = 64, 0.05, 16

    lr = make_lowrank(v["params"], pop=pop, rank=2, std=std, lr=1.0)

    @jax.jit
    def lowrank_estimate(key):
        noise = lr.sample(key)
        fit = evaluate_lowrank(lr, v["params"], noise, loss, "vmap")
        return lr.gradient(noise, centered_ranks(fit))

    oe = make_strategy("open_es", pop=pop, num_dims=mean.size, std=std, lr=1.0,
                       optimizer="sgd")

    @jax.jit
    def openes_estimate(key):
        # plain SGD with lr 1: the mean moves by exactly minus the estimate
        state = oe.init(key, mean)
        population, state = oe.ask(key, state)
        fit = jax.vmap(lambda flat: loss(unravel(flat)))(population)
        return mean - oe.tell(key, population, fit, state).mean

    keys = jax.random.split(jax.random.key(3), draws)
    g_lr = jnp.mean(jnp.stack([lowrank_estimate(k) for k in keys]), axis=0)
    g_oe = jnp.mean(jnp.stack([openes_estimate(k) for k in keys]), axis=0)
    cos = lambda a, b: float(jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
    c_lr, c_oe = cos(g_lr, true), cos(g_oe, true)
    assert c_lr > 0.3 and c_oe > 0.3, (c_lr, c_oe)
    assert 0.5 < c_lr / c_oe < 2.0, (c_lr, c_oe)
    assert cos(g_lr, g_oe) > 0.2


def test_config_errors_are_user_errors():
    with pytest.raises(UserError, match="even"):
        make_lowrank({"k": jnp.zeros((4, 4))}, pop=7, rank=1, std=0.1, lr=0.1)
    with pytest.raises(UserError, match="rank"):
        make_lowrank({"k": jnp.zeros((4, 4))}, pop=8, rank=0, std=0.1, lr=0.1)
    with pytest.raises(UserError, match="kernels"):
        make_lowrank({"k": jnp.zeros((4, 4))}, pop=8, rank=1, std=0.1, lr=0.1, kernels="full")


def test_discriminator_learns_against_a_frozen_generator(digits):
    cfg = small_cfg(**{"evolve.g.lr": 0.0, "evolve.d.pop": 32, "evolve.d.lr": 0.03})
    method = Evolve(make_gan(cfg.model), cfg.evolve)
    assert isinstance(method.sd, LowRankES) and method.layout_d in ("map", "vmap")
    state = strong_types(method.init(jax.random.key(0)))
    assert isinstance(state.d, LowRankState)
    _, hist = run_generations(method, digits, 40, state)
    first = np.mean([h["loss_d"] for h in hist[:5]])
    last = np.mean([h["loss_d"] for h in hist[-5:]])
    assert last < 0.6 * first, (first, last)


def test_generator_learns_against_a_frozen_trained_discriminator(digits):
    cfg = small_cfg(**{"evolve.d.lr": 0.0, "evolve.g.pop": 32, "evolve.g.lr": 0.03})
    method = Evolve(make_gan(cfg.model), cfg.evolve)
    assert_generator_fools_more(against_trained_discriminator(method, digits, 40))


# Every sample-efficiency lever on: schedules (their counts in the state), elitism, unmirrored
# D noise, z-score shaping; and the same with merged member kernels.
LEVERS = {"evolve.g.std_decay": 0.9, "evolve.g.std_min": 0.01, "evolve.g.lr_decay": 0.95,
          "evolve.d.std_decay": 0.95, "evolve.g.elite": True, "evolve.d.elite": True,
          "evolve.d.mirrored": False, "evolve.d.shaping": "z_score"}
MERGED = {"evolve.g.kernels": "merged", "evolve.d.kernels": "merged"}


@pytest.mark.parametrize("levers", [{}, LEVERS, {**LEVERS, **MERGED}],
                         ids=["defaults", "levers", "levers-merged"])
def test_checkpoint_resume_is_bit_for_bit(tmp_path, dataset, levers):
    """k generations, then a resumed run to 2k == 2k generations in one go (metrics and state)."""
    common = {"log.eval_every": 0, "log.image_every": 0, "log.progress": False,
              "log.checkpoint_every": 0, "log.steps_per_call": 3, **levers}

    def runner(out, gens):
        cfg = small_cfg(**{**common, "out": str(out), "evolve.generations": gens})
        return Runner(cfg, "evolve", log=lambda *_: None, dataset=dataset)

    runner(tmp_path / "a", 4).run()
    resumed = runner(tmp_path / "a", 8)
    assert resumed.resume_step == 4
    resumed.run()
    runner(tmp_path / "b", 8).run()
    assert records(tmp_path / "a", timing=False) == records(tmp_path / "b", timing=False)

    states = []
    for name in ("a", "b"):
        r = runner(tmp_path / name, 8)
        target = jax.eval_shape(r.method.init, jax.random.key(0))
        state, _ = r.ckpt.restore(target, 8)
        r.ckpt.close()
        assert isinstance(state.g, LowRankState)
        states.append(state)
    for x, y in zip(leaves(states[0]), leaves(states[1])):
        np.testing.assert_array_equal(x, y)


def test_cli_strategy_lowrank_es(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["evolve", "--strategy", "lowrank_es", "--rank", "1", "--pop", "8",
                 "--generations", "4", "--out", str(out), "--no-progress",
                 "--set", "log.eval_every=0", "--set", "log.image_every=0",
                 "--set", "model.g_hidden=8,16", "--set", "model.d_hidden=16,8",
                 "--set", "evolve.batch=16"])
    assert code == 0, capsys.readouterr()
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["evolve"]["g"]["name"] == cfg["evolve"]["d"]["name"] == "lowrank_es"
    assert cfg["evolve"]["g"]["rank"] == cfg["evolve"]["d"]["rank"] == 1
    assert [r["generation"] for r in records(out) if "loss_d" in r] == [1, 2, 3, 4]
    assert main(["evolve", "--strategy", "lowrank_es", "--pop", "7", "--generations", "1",
                 "--out", str(tmp_path / "odd"), "--no-progress"]) == 2


# --- sample-efficiency levers: mirrored sampling, fitness shaping, std and lr schedules -------
SHAPED = {"centered_rank": centered_ranks,
          "z_score": lambda f: jax.nn.standardize(f, epsilon=1e-8),
          "raw": lambda f: f}


@pytest.mark.parametrize("mirrored", [True, False])
@pytest.mark.parametrize("shaping", sorted(SHAPED))
def test_tell_is_the_openes_step_over_explicit_members(mirrored, shaping):
    """sgd at lr 1 moves the mean by -sum_i shaped_i eps_i / (P sigma), eps_i each member's
    explicit perturbation: mirrored pairs or P independent draws, every shaping."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    pop = 6 if mirrored else 5  # unmirrored, an odd population is fine
    es = make_lowrank(v["params"], pop=pop, rank=2, std=0.1, lr=1.0, optimizer="sgd",
                      mirrored=mirrored, shaping=shaping)
    mean = ravel_pytree(v["params"])[0]
    state = es.init(jax.random.key(1), mean)
    noise, _ = es.ask(jax.random.key(2), state)
    eps = jnp.stack([es.full_perturbation(noise, i) for i in range(pop)])
    antithetic = np.allclose(eps[0], -eps[pop // 2]) if not mirrored else True
    assert antithetic == mirrored and es.draws == (3 if mirrored else 5)
    fit = jnp.array([0.3, -1.0, 2.0, 0.5, 0.1, 7.0])[:pop]
    new = es.tell(None, noise, fit, state)
    expected = SHAPED[shaping](fit) @ eps / (pop * es.std)
    np.testing.assert_allclose(mean - new.mean, expected, rtol=1e-6, atol=1e-6)


def test_unmirrored_members_run_as_their_explicit_weights():
    net = Net()
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 4))
    v = net.init(jax.random.key(0), x)
    es = make_lowrank(v["params"], pop=3, rank=2, std=0.1, lr=0.01, mirrored=False)
    noise = es.sample(jax.random.key(2))
    mean, unravel = ravel_pytree(v["params"])
    fn = lambda p: net.apply({"params": p, "batch_stats": v["batch_stats"]}, x,
                             mutable=["batch_stats"])[0]
    outs = jax.jit(lambda: evaluate_lowrank(es, v["params"], noise, fn, "vmap"))()
    for i in range(3):
        np.testing.assert_allclose(outs[i], fn(unravel(mean + es.std * es.full_perturbation(
            noise, i))), atol=2e-5, rtol=1e-5)


def test_a_nan_fitness_counts_as_worst_under_every_shaping():
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    mean = ravel_pytree(v["params"])[0]
    fit = jnp.array([0.3, jnp.nan, 2.0, 0.5, 0.1, 7.0])
    for shaping in SHAPED:
        es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd",
                          shaping=shaping)
        state = es.init(jax.random.key(1), mean)
        noise, _ = es.ask(jax.random.key(2), state)
        new = es.tell(None, noise, fit, state)
        assert np.all(np.isfinite(new.mean)), shaping
        # NaN ranks last; for z-scores and raw values it takes the worst finite value
        worst = 100.0 if shaping == "centered_rank" else 7.0
        same = es.tell(None, noise, fit.at[1].set(worst), state)
        np.testing.assert_allclose(new.mean, same.mean, atol=1e-7)


def test_std_schedule_scales_members_and_the_estimate():
    """At generation t members are perturbed by sigma_t = schedule(t) (here 0.1 * 0.5^t, floor
    0.02), and the step is the OpenES estimate at sigma_t: sigma / sigma_t times the one at
    sigma from the same standard-normal draw."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    mean = ravel_pytree(v["params"])[0]
    plain = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd")
    es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd",
                      std_schedule=decay_schedule(0.1, 0.5, 0.02))
    state = es.init(jax.random.key(1), mean).replace(generation_counter=jnp.asarray(2))
    noise, _ = es.ask(jax.random.key(2), state)
    ref, _ = plain.ask(jax.random.key(2), state)
    for i in range(6):
        np.testing.assert_allclose(es.std * es.full_perturbation(noise, i),
                                   0.025 * plain.full_perturbation(ref, i), rtol=1e-5, atol=1e-9)
    fit = jnp.array([0.3, -1.0, 2.0, 0.5, 0.1, 7.0])
    step = mean - es.tell(None, noise, fit, state).mean
    np.testing.assert_allclose(step, plain.gradient(ref, centered_ranks(fit)) * 0.1 / 0.025,
                               rtol=1e-4, atol=1e-7)
    late = state.replace(generation_counter=jnp.asarray(50))
    np.testing.assert_allclose(es.std_ratio(late), 0.2, rtol=1e-6)  # the floor, 0.02


def test_lr_schedule_counts_in_the_optimiser_state():
    """lr 1 x 0.5 per update: the second identical step is half the first; the count is in
    opt_state, so a checkpoint holds it."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, optimizer="sgd",
                      lr=decay_schedule(1.0, 0.5, 0.0))
    s0 = es.init(jax.random.key(1), ravel_pytree(v["params"])[0])
    noise, _ = es.ask(jax.random.key(2), s0)
    fit = jnp.array([0.3, -1.0, 2.0, 0.5, 0.1, 7.0])
    s1 = es.tell(None, noise, fit, s0)
    s2 = es.tell(None, noise, fit, s1)
    g = es.gradient(noise, centered_ranks(fit))
    np.testing.assert_allclose(s0.mean - s1.mean, g, atol=1e-7)
    np.testing.assert_allclose(s1.mean - s2.mean, 0.5 * g, atol=1e-7)
    assert len(jax.tree.leaves(s0.opt_state)) > len(jax.tree.leaves(plain_sgd_state(v)))


def test_a_delayed_lr_decay_keeps_the_full_lr_until_it_begins():
    """`lr_decay_begin` (optax transition_begin), wired from StrategyConfig by build_strategy:
    lr 1 x 0.5 per update from update 2 on, so four identical updates step g, g, g, g/2."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    flat = ravel_pytree(v["params"])[0]
    sc = StrategyConfig(name="lowrank_es", pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd",
                        lr_decay=0.5, lr_decay_begin=2)
    es = build_strategy(sc, flat.size, template=lambda: v["params"])
    states = [es.init(jax.random.key(1), flat)]
    noise, _ = es.ask(jax.random.key(2), states[0])
    fit = jnp.array([0.3, -1.0, 2.0, 0.5, 0.1, 7.0])
    for _ in range(4):
        states.append(es.tell(None, noise, fit, states[-1]))
    g = es.gradient(noise, centered_ranks(fit))
    for i, factor in enumerate([1.0, 1.0, 1.0, 0.5]):
        np.testing.assert_allclose(states[i].mean - states[i + 1].mean, factor * g, atol=1e-6)


def test_weight_decay_shrinks_the_mean_where_the_fitness_has_no_signal():
    """`optimizer = "adamw"` with `weight_decay`: when every member scores the same (no signal)
    Adam leaves the mean where it is and AdamW shrinks it by lr x weight_decay a generation,
    the pull that keeps Adam-normalised ES steps from random-walking weights outwards
    (anime-evolve's G)."""
    v = nn.Dense(6).init(jax.random.key(0), jnp.zeros((1, 5)))
    mean = ravel_pytree(v["params"])[0] + 0.5  # the bias too: all weights away from 0
    for optimizer, decay in (("adam", 0.0), ("adamw", 0.1)):
        es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=0.01, optimizer=optimizer,
                          weight_decay=decay, shaping="raw")
        s = es.init(jax.random.key(1), mean)
        noise, _ = es.ask(jax.random.key(2), s)
        new = es.tell(None, noise, jnp.zeros(6), s)
        np.testing.assert_allclose(new.mean, mean * (1 - 0.01 * decay), rtol=1e-6)


def plain_sgd_state(v):
    es = make_lowrank(v["params"], pop=6, rank=2, std=0.1, lr=1.0, optimizer="sgd")
    return es.init(jax.random.key(1), ravel_pytree(v["params"])[0]).opt_state
