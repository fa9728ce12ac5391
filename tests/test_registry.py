"""A method added in a test file: one class and one `register` call, and it runs through the
Runner, checkpoints, resumes, samples and shows in benchmarks/side_by_side.py --methods."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import pytest
from flax import struct

from ga_gan import methods
from ga_gan.config import RunConfig, apply_overrides
from ga_gan.gan import losses as F
from ga_gan.run import Runner
from ga_gan.runlog import read_metrics


@struct.dataclass
class ToyState:
    generation: jax.Array
    g: Any  # (params, batch_stats)
    d: Any


class Toy:
    """G's weights shrink by 1% a step; D stays as initialised. Enough to exercise plumbing."""

    def __init__(self, gan, cfg: RunConfig):
        self.gan, self.batch = gan, cfg.evolve.batch

    def init(self, key):
        g, d = self.gan.init(key)
        return ToyState(jnp.zeros((), jnp.int32), (g["params"], g["batch_stats"]),
                        (d["params"], d["batch_stats"]))

    def step(self, state, data):
        g = (jax.tree.map(lambda w: 0.99 * w, state.g[0]), state.g[1])
        z = self.gan.latents(jax.random.fold_in(jax.random.key(0), state.generation), self.batch)
        fake, _ = self.gan.generate(*g, z)
        scores = F.scores(self.gan.discriminate(*state.d, data[:self.batch])[0],
                          self.gan.discriminate(*state.d, fake)[0])
        return state.replace(generation=state.generation + 1, g=g), scores

    def generator(self, state):
        return state.g

    def discriminator(self, state):
        return state.d


TINY = {"model.g_hidden": "8,16", "model.d_hidden": "16,8", "model.latent_dim": 4,
        "evolve.batch": 16, "log.progress": False, "log.image_every": 0, "log.eval_every": 2,
        "log.fd_samples": 64, "log.steps_per_call": 2, "log.checkpoint_every": 2}


@pytest.fixture
def toy():
    methods.register("toy", Toy)
    yield "toy"
    methods.REGISTRY.pop("toy")


def test_a_registered_method_runs_checkpoints_and_resumes(toy, tmp_path):
    command, over = methods.run_command(toy)
    assert command == "evolve"  # run as `ga-gan evolve --mode hybrid --hybrid toy`
    cfg = apply_overrides(RunConfig(), {**TINY, **over, "evolve.generations": 4,
                                        "out": str(tmp_path / "run")})
    assert Runner(cfg, command, log=lambda *_: None).run().generation == 4
    longer = apply_overrides(cfg, {"evolve.generations": 6})
    runner = Runner(longer, command, log=lambda *_: None)
    assert runner.resume_step == 4
    assert runner.run().generation == 6
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["generation"] for r in records if "loss_d" in r] == list(range(1, 7))
    assert all("fd_pixels" in r for r in records if r["generation"] in (2, 4, 6))

    from ga_gan.sample import load_generator
    *_, state, method = load_generator(tmp_path / "run")
    assert isinstance(method, Toy) and int(state.generation) == 6
    expected = jax.tree.map(lambda w: w * 0.99 ** 6, method.init(jax.random.key(cfg.seed)).g[0])
    assert all(jnp.allclose(a, b) for a, b in zip(jax.tree.leaves(state.g[0]),
                                                   jax.tree.leaves(expected)))


def test_a_registered_method_shows_in_side_by_side(toy, tmp_path):
    from test_benchmark import load_script
    bench = load_script()
    assert "toy" in bench.methods()
    # the script's own checkpointing (one, at the end) and an evaluation every 50 generations:
    # its budget counts training seconds only, so on a fast machine the toy runs hundreds of
    # generations, and a save and a Fréchet distance every 2 of them took most of the test
    over = [x for k, v in TINY.items() if k not in ("log.eval_every", "log.checkpoint_every")
            for x in ("--set", f"{k}={v}")]
    rc = bench.main(["--dataset", "digits", "--methods", "toy", "--budget", "2",
                     "--eval-every", "50", "--out", str(tmp_path / "out"), "--runs-dir",
                     str(tmp_path / "runs"), *over])
    assert rc == 0
    assert "| toy |" in (tmp_path / "out" / "digits.md").read_text()
