"""Several devices and several processes give the single-device run's numbers.

Each scenario runs in its own subprocess so that XLA_FLAGS (the CPU device count) takes effect:
  * 1 process x 1 device (the reference),
  * 1 process x 4 devices (population fitness sharded over a mesh of 4),
  * 2 processes x 2 devices with jax.distributed (gloo, loopback coordinator), a global mesh of
    4, written as a checkpoint by both processes and resumed by a second 2-process invocation.
A small driver wraps `ga-gan evolve` and dumps, per process, the final generator mean and the
per-member D fitness of one extra population (drawn from the final state) to proc<i>.npz.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import records
from procs import CORES, devices_env

ROOT = Path(__file__).resolve().parents[1]
GENS = 4
# a safety net, not a measure: a loaded 2-core machine runs these processes slowly
TIMEOUT_S = 900
TINY = ["--set", "model.g_hidden=16,32", "--set", "model.d_hidden=32,16", "--pop", "8",
        "--set", "evolve.batch=32", "--set", "log.eval_every=0", "--set", "log.image_every=0",
        "--no-progress"]

DRIVER = textwrap.dedent('''
    import sys
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.experimental import multihost_utils
    from jax.flatten_util import ravel_pytree
    from ga_gan import checkpoint, cli, distributed, run as R

    dump, argv = sys.argv[1], sys.argv[2:]
    seen = {}
    save, run = checkpoint.Checkpointer.save, R.Runner.run
    def save_hook(self, step, state, meta, **kw):
        seen["state"] = state  # the last save is the final state
        return save(self, step, state, meta, **kw)
    def run_hook(self):
        seen["runner"] = self
        return run(self)
    checkpoint.Checkpointer.save, R.Runner.run = save_hook, run_hook
    rc = cli.main(argv)
    if rc:
        sys.exit(rc)
    runner, state = seen["runner"], seen["state"]
    m, gan = runner.method, runner.gan
    g = np.asarray(ravel_pytree(m.generator(distributed.local(state))[0])[0])

    def d_fitness(d_state, d_stats, real):
        # imported after cli.main: evosax starts the JAX backend on import, which must come
        # after jax.distributed.initialize
        from ga_gan.strategies import evaluate_population
        pop, _ = m.sd.ask(jax.random.key(7), d_state)
        def member(flat):
            logits, _ = gan.discriminate(gan.unravel_d(flat), d_stats, real)
            return jnp.mean(jax.nn.softplus(-logits))
        return evaluate_population(member, pop, m.layout_d, 0)

    real = distributed.replicate(jnp.asarray(runner.dataset.images[:32]))
    fit = jax.jit(d_fitness)(state.d, state.d_stats, real)
    sharded = not fit.sharding.is_fully_replicated
    fit = np.asarray(multihost_utils.process_allgather(fit, tiled=True))
    np.savez(f"{dump}/proc{jax.process_index()}.npz", g=g, fit=fit, sharded=sharded,
             devices=jax.device_count())
''')


def _env(devices: int) -> dict:
    """CPU only, `devices` forced host devices; the suite's compilation cache is inherited, so a
    resumed 2-process run reuses what its first invocation compiled (the same numbers)."""
    return devices_env(devices)


def _driver(tmp: Path) -> Path:
    path = tmp / "driver.py"
    if not path.exists():
        path.write_text(DRIVER)
    return path


def _start(tmp: Path, name: str, devices: int, *extra: str) -> tuple[Path, subprocess.Popen]:
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    return out, subprocess.Popen([sys.executable, str(_driver(tmp)), str(out), "evolve", *TINY,
                                  "--out", str(out), *extra], cwd=ROOT, env=_env(devices),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(*started: tuple[Path, subprocess.Popen]) -> list[Path]:
    try:
        logs = [p.communicate(timeout=TIMEOUT_S)[0] for _, p in started]
    finally:
        for _, p in started:
            if p.poll() is None:
                p.kill()
    for (_, p), log in zip(started, logs):
        assert p.returncode == 0, log[-4000:]
    return [out for out, _ in started]


def _run_two(tmp: Path, name: str, *extra: str) -> Path:
    """2 processes x 2 CPU devices, one global mesh of 4."""
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with CORES.alone():  # gloo's collectives give up when one process lags 30 s
        procs = [subprocess.Popen([sys.executable, str(_driver(tmp)), str(out), "evolve", *TINY,
                                   "--out", str(out), *extra, "--distributed",
                                   "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                   "--process-id", str(i)],
                                  cwd=ROOT, env=_env(2), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
        try:
            logs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    return out


def _same_numbers(a: list[dict], b: list[dict]) -> None:
    assert [r["generation"] for r in a] == [r["generation"] for r in b]
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if k in ("generation", "time_s"):
                continue
            assert np.allclose(v, rb[k], rtol=1e-5, atol=1e-6), (ra["generation"], k, v, rb[k])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The 1-device reference and the 4-device run, side by side (separate processes)."""
    tmp = tmp_path_factory.mktemp("dist")
    one, four = _finish(_start(tmp, "one", 1, "--generations", str(GENS)),
                        _start(tmp, "four", 4, "--generations", str(GENS)))
    return {"one": one, "four": four}


def test_sharded_population_matches_one_device(runs):
    reference, four = runs["one"], runs["four"]
    _same_numbers(records(reference), records(four))
    ref, got = np.load(reference / "proc0.npz"), np.load(four / "proc0.npz")
    assert int(got["devices"]) == 4 and bool(got["sharded"])
    assert int(ref["devices"]) == 1 and not bool(ref["sharded"])
    assert np.allclose(ref["g"], got["g"], rtol=1e-5, atol=1e-6)
    assert np.allclose(ref["fit"], got["fit"], rtol=1e-5, atol=1e-6)
    assert (np.argsort(ref["fit"]) == np.argsort(got["fit"])).all()


def test_population_must_split_over_devices(monkeypatch):
    import jax
    from ga_gan import distributed
    from ga_gan.errors import UserError
    monkeypatch.setattr(jax, "device_count", lambda *a: 4)
    assert distributed.check_split(8) == 4
    with pytest.raises(UserError, match="--pop 6 does not split over 4 devices"):
        distributed.check_split(6)


def test_two_processes_agree_and_resume(runs, tmp_path):
    reference = runs["one"]
    two = _run_two(tmp_path, "two", "--generations", "2")
    p0, p1 = np.load(two / "proc0.npz"), np.load(two / "proc1.npz")
    assert int(p0["devices"]) == 4 and bool(p0["sharded"])
    assert np.array_equal(p0["g"], p1["g"]) and np.array_equal(p0["fit"], p1["fit"])
    assert (two / "checkpoints" / "2").is_dir()
    _same_numbers(records(reference)[:2], records(two))

    # both processes restore the checkpoint they wrote together, and continue
    _run_two(tmp_path, "two", "--resume", str(two), "--generations", str(GENS))
    assert (two / "checkpoints" / str(GENS)).is_dir()
    _same_numbers(records(reference), records(two))
    p0, p1 = np.load(two / "proc0.npz"), np.load(two / "proc1.npz")
    ref = np.load(reference / "proc0.npz")
    assert np.array_equal(p0["g"], p1["g"]) and np.array_equal(p0["fit"], p1["fit"])
    assert np.allclose(ref["g"], p0["g"], rtol=1e-5, atol=1e-6)
    assert np.allclose(ref["fit"], p0["fit"], rtol=1e-5, atol=1e-6)
    assert (np.argsort(ref["fit"]) == np.argsort(p0["fit"])).all()


def test_sigterm_to_one_process_stops_every_process_at_the_same_generation(tmp_path):
    """A preemption's SIGTERM may reach one host first: all processes still stop after the
    same chunk and save that generation together (else one saves while another steps, and
    both hang in their collectives), and both exit 0."""
    from procs import Proc, drive, generations
    port, out, total = _free_port(), tmp_path / "run", 2000
    args = ["evolve", *TINY, "--out", out, "--generations", total, "--distributed",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2]
    signalled: list[int] = []

    def sigterm_process_1_once_running():
        if not signalled and procs[1].rc is None and generations(out):
            signalled.append(generations(out)[-1])
            procs[1].p.send_signal(signal.SIGTERM)

    with CORES.alone():  # gloo's collectives give up when one process lags 30 s
        procs = [Proc(tmp_path, f"p{i}", [*args, "--process-id", i], _env(2)) for i in range(2)]
        try:
            drive(procs, hooks=[sigterm_process_1_once_running], timeout=TIMEOUT_S)
        finally:
            for p in procs:
                if p.rc is None:
                    p.p.kill()
    assert signalled, procs[0].describe()
    for p in procs:
        assert p.rc == 0, p.describe()
    reached = generations(out)[-1]
    assert signalled[0] <= reached < total
    assert f"stopped by signal at generation {reached}" in procs[0].stdout
    assert (out / "checkpoints" / str(reached)).is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOWRANK_DRIVER = textwrap.dedent('''
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from ga_gan import distributed
    from ga_gan.config import RunConfig, apply_overrides
    from ga_gan.data import load_dataset
    from ga_gan.methods.evolve import Evolve
    from ga_gan.gan import make_gan, strong_types

    over = json.loads(sys.argv[1])
    cfg = apply_overrides(RunConfig(), over)
    data = jnp.asarray(load_dataset("digits", split="all", log=lambda *_: None).images)
    if cfg.model.resolution != data.shape[1]:  # the conv model runs on resized digits
        data = jax.image.resize(data, (data.shape[0], cfg.model.resolution,
                                       cfg.model.resolution, data.shape[-1]), "linear")
    out = {}
    for sharded in (True, False):
        distributed.set_enabled(sharded)
        method = Evolve(make_gan(cfg.model), cfg.evolve)
        state = strong_types(method.init(jax.random.key(0)))
        step = jax.jit(method.step)
        rows, fits = [], []
        for _ in range(3):
            state, metrics = step(state, data)
            rows.append({k: float(v) for k, v in metrics.items()})
        # one more D population, to compare member by member (factors drawn from the state)
        from ga_gan.strategies.lowrank import evaluate_lowrank
        d_mean = make_gan(cfg.model).unravel_d(state.d.mean)
        gan = method.gan
        real = data[:16]
        noise = method.sd.sample(jax.random.key(7))
        fit = jax.jit(lambda: evaluate_lowrank(
            method.sd, d_mean, noise,
            lambda p: jnp.mean(jax.nn.softplus(-gan.discriminate(p, state.d_stats, real)[0])),
            method.layout_d, cfg.evolve.d.chunk))()
        out["sharded" if sharded else "one"] = {
            "metrics": rows, "fit": np.asarray(fit).tolist(),
            "spread": not fit.sharding.is_fully_replicated,
            "g": np.asarray(state.g.mean).tolist()}
    out["devices"] = jax.device_count()
    print(json.dumps(out))
''')

LOWRANK_MODELS = {
    "mlp": {"model.g_hidden": "16,32", "model.d_hidden": "32,16"},
    "dcgan": {"model.name": "dcgan", "model.resolution": 28, "model.width": 0.125,
              "evolve.g.chunk": 2, "evolve.d.chunk": 2},
}


@pytest.fixture(scope="module")
def lowrank_runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Both models' drivers, each a 4-device process, started side by side (compiling is
    single-threaded: two processes keep both cores busy)."""
    tmp = tmp_path_factory.mktemp("lowrank")
    script = tmp / "lowrank_driver.py"
    script.write_text(LOWRANK_DRIVER)
    procs = {}
    for model, over in sorted(LOWRANK_MODELS.items()):
        over = {"evolve.g.name": "lowrank_es", "evolve.d.name": "lowrank_es", "evolve.g.pop": 8,
                "evolve.d.pop": 8, "evolve.g.rank": 2, "evolve.d.rank": 2, "evolve.batch": 16,
                **over}
        procs[model] = subprocess.Popen([sys.executable, str(script), json.dumps(over)],
                                        cwd=ROOT, env=_env(4), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
    try:
        outs = {m: p.communicate(timeout=TIMEOUT_S) for m, p in procs.items()}
        return {m: subprocess.CompletedProcess(p.args, p.returncode, *outs[m])
                for m, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()


@pytest.mark.parametrize("model", sorted(LOWRANK_MODELS))
def test_lowrank_sharded_over_devices_matches_one_device(model, lowrank_runs):
    """lowrank_es's members' factors are split over 4 devices (shard_map) and give the
    unsharded numbers: every metric of 3 generations, the means, each member's fitness and
    its ranking."""
    p = lowrank_runs[model]
    assert p.returncode == 0, p.stderr[-4000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    one, four = got["one"], got["sharded"]
    assert got["devices"] == 4 and four["spread"] and not one["spread"]
    for a, b in zip(one["metrics"], four["metrics"]):
        assert a.keys() == b.keys()
        for k in a:
            assert np.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (k, a[k], b[k])
    assert np.allclose(one["g"], four["g"], rtol=1e-5, atol=1e-6)
    assert np.allclose(one["fit"], four["fit"], rtol=1e-5, atol=1e-6)
    assert (np.argsort(one["fit"]) == np.argsort(four["fit"])).all()
