"""Helpers for tests that run `ga-gan` as real processes (test_resume, test_cloud).

Each process runs the same `main` the console script calls, so a resume starts from nothing but
what an earlier process left (a run folder, a bucket). Every process inherits the suite's JAX
compilation cache from the environment conftest.py sets.

Killing during a save (STALL): a kill must land after orbax has written a checkpoint's data but
before it commits it. STALL runs the CLI with orbax's public commit step patched: the
`finalize` of `orbax.checkpoint.path.atomicity.<GA_GAN_TEST_STALL_CLASS>`
(`AtomicRenameTemporaryPath` locally: the rename of `<step>.orbax-checkpoint-tmp`;
`CommitFileTemporaryPath` on gs://: the write of `<step>/commit_success.txt`). For one chosen
step it writes a marker file and then blocks forever instead of committing. Nothing in ga_gan
knows about it; the test then sends SIGKILL, which is exactly a process dying with an
uncommitted save in flight.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from helpers import leaves, records

CLI = "import sys; from ga_gan.cli import main; sys.exit(main(sys.argv[1:]))"
STALL = """
import os, sys, time
from orbax.checkpoint.path import atomicity

_cls = getattr(atomicity, os.environ.get("GA_GAN_TEST_STALL_CLASS", "AtomicRenameTemporaryPath"))
_commit = _cls.finalize

async def finalize(self, *args, **kwargs):
    if self.get_final().name == os.environ["GA_GAN_TEST_STALL_STEP"]:
        with open(os.environ["GA_GAN_TEST_STALL_MARK"], "w") as f:
            f.write(str(self.get()))
        while True:  # data written, commit never comes: wait for SIGKILL
            time.sleep(3600)
    return await _commit(self, *args, **kwargs)

_cls.finalize = finalize
from ga_gan.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Cores:
    """The machine's cores between pytest-xdist workers: every test holds them shared (conftest's
    autouse fixture), and `alone()` takes them exclusively for the processes that must keep pace
    with each other: two `jax.distributed` processes meet in gloo collectives that give up after
    30 s, so one process starved by the other worker's compiling fails the test. A queued
    `alone()` holds the gate, so new shared holders wait behind it (no starvation). flock locks
    on files in GA_GAN_TEST_LOCK_DIR (conftest.py makes it before the workers start); without
    workers the locks are uncontended and cost nothing."""

    def __init__(self):
        self.shared: int | None = None

    @staticmethod
    def _lock(name: str, how: int) -> int:
        fd = os.open(os.path.join(os.environ["GA_GAN_TEST_LOCK_DIR"], name), os.O_CREAT | os.O_RDWR)
        fcntl.flock(fd, how)
        return fd

    def take_shared(self) -> None:
        gate = self._lock("gate", fcntl.LOCK_SH)  # waits while an alone() is queued or running
        self.shared = self._lock("cores", fcntl.LOCK_SH)
        os.close(gate)

    def release_shared(self) -> None:
        if self.shared is not None:
            os.close(self.shared)  # closing the descriptor drops its lock
            self.shared = None

    @contextmanager
    def alone(self):
        held = self.shared is not None
        self.release_shared()
        gate = self._lock("gate", fcntl.LOCK_EX)
        cores = self._lock("cores", fcntl.LOCK_EX)  # once the other worker's test has ended
        try:
            yield
        finally:
            os.close(cores)
            os.close(gate)
            if held:
                self.take_shared()


CORES = Cores()


def cli_env(**extra) -> dict:
    """The environment for the test's processes: quiet, with the suite's compilation cache
    (conftest.py put it in os.environ)."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def devices_env(devices: int, **extra) -> dict:
    """cli_env on CPU with `devices` forced host devices, after the suite's own XLA_FLAGS (the
    optimisation level conftest.py sets), so every process compiles with the same flags."""
    flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                   f"--xla_force_host_platform_device_count={devices}"]))
    return cli_env(JAX_PLATFORMS="cpu", XLA_FLAGS=flags, **extra)


class Proc:
    def __init__(self, root: Path, name: str, args: list, env: dict, code: str = CLI):
        self.name, self.root = name, root
        self.args = [str(a) for a in args]
        self.started = time.monotonic()
        self.ended: float | None = None
        with open(root / f"{name}.stdout", "w") as out, open(root / f"{name}.stderr", "w") as err:
            self.p = subprocess.Popen([sys.executable, "-c", code, *self.args], cwd=root,
                                      env=env, stdout=out, stderr=err)

    @property
    def rc(self):
        rc = self.p.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    @property
    def seconds(self) -> float:
        """Wall seconds from start to exit (as seen by `drive`'s 20 ms polling)."""
        return (self.ended or time.monotonic()) - self.started

    @property
    def stdout(self) -> str:
        return (self.root / f"{self.name}.stdout").read_text()

    @property
    def stderr(self) -> str:
        return (self.root / f"{self.name}.stderr").read_text()

    def describe(self) -> str:
        return (f"{self.name} ({' '.join(self.args)}) exited {self.rc}\n--- stdout\n"
                f"{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-3000:]}")


def drive(procs: list[Proc], hooks=(), timeout: float = 400) -> None:
    """Wait for every process, calling each hook (which may signal one) every 20 ms."""
    deadline = time.monotonic() + timeout
    while [p for p in procs if p.rc is None]:  # polls every one, so each exit time is seen
        for hook in hooks:
            hook()
        if time.monotonic() > deadline:
            for p in procs:
                if p.rc is None:
                    p.p.kill()
            raise AssertionError("timed out:\n" + "\n".join(p.describe() for p in procs))
        time.sleep(0.02)


def generations(run: Path) -> list[int]:
    return [r["generation"] for r in records(run)]


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock keys: what must match bit for bit."""
    return records(run, timing=False)


def latest_step(ckpt_dir) -> int | None:
    from ga_gan.checkpoint import Checkpointer
    ckpt = Checkpointer(str(ckpt_dir), async_save=False)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def read_meta(ckpt_dir, step: int) -> dict:
    from ga_gan.checkpoint import Checkpointer
    ckpt = Checkpointer(str(ckpt_dir), async_save=False)
    try:
        return ckpt.read_meta(step)
    finally:
        ckpt.close()


def assert_same_final_state(run: Path, reference: Path, total: int, rtol: float = 0.0) -> None:
    """The latest checkpoints hold bit-identical states (strategy means, optimiser and BN
    state, PRNG key, counters), hence bit-identical generators; with `rtol` > 0, states equal
    up to that relative tolerance (for runs begun on another CPU, see test_old_checkpoints).
    Each run's checkpoints are found through its config.json (its folder, or checkpoint_dir
    such as a bucket)."""
    from ga_gan.sample import load_generator
    _, params, stats, _, state, _ = load_generator(run)
    _, ref_params, ref_stats, _, ref_state, _ = load_generator(reference)
    assert int(state.generation) == int(ref_state.generation) == total
    for name, a, b in (("state", state, ref_state), ("generator", (params, stats),
                                                     (ref_params, ref_stats))):
        xs, ys = leaves(a), leaves(b)
        assert len(xs) == len(ys)
        for i, (x, y) in enumerate(zip(xs, ys)):
            assert x.dtype == y.dtype and x.shape == y.shape, (name, i)
            if rtol and np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * 1e-2,
                                           err_msg=f"{name} leaf {i} of {run} vs {reference}")
            else:
                assert np.array_equal(x, y), f"{name} leaf {i} of {run} differs from {reference}"
