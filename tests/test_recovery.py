"""Nothing lost: one writer per run folder, and damaged checkpoints fall back to intact ones.

- two `ga-gan evolve` processes on one folder: the second refuses, naming the first's pid and
  host, and the first's metrics.jsonl stays whole;
- a lock left by a killed process is taken over (the kernel drops a flock with its process);
- a truncated, bit-flipped or NaN newest checkpoint: the resume reports it in one line, sets
  it aside and continues from the newest intact step, bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaves
from procs import cli_env, generations, metrics

from ga_gan.cli import main
from ga_gan.errors import UserError

QUICK = ["--no-progress", "--pop", "4", "--set", "log.eval_every=0", "--set", "log.image_every=0",
         "--set", "model.g_hidden=8,16", "--set", "model.d_hidden=16,8",
         "--set", "evolve.batch=16", "--set", "log.checkpoint_every=10"]
ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    return cli_env(PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


# --- the run-folder lock -------------------------------------------------------------------------

def test_second_run_on_a_folder_refuses_and_the_first_stays_whole(tmp_path, capsys):
    """The first run is a `python -m ga_gan.cli` process (the module's own entry point); the
    second is `main` in this process, another process to the first's lock all the same."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "ga_gan.cli", "evolve", "--generations",
                              "1000000", "--out", str(run), *QUICK], env=env(), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not generations(run) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.poll() is None and generations(run), first.communicate()
        capsys.readouterr()
        rc = main(["evolve", "--generations", "50", "--out", str(run), *QUICK])
        second = capsys.readouterr()
        assert first.poll() is None, "the first run ended before the second tried the folder"
    finally:
        first.send_signal(signal.SIGTERM)  # finish the generation, save, exit 0
        out, err = first.communicate(timeout=120)
    lines = [line for line in second.err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, second.err
    assert lines[0].startswith(f"error: run folder {run} is in use by another ga-gan process "
                               f"(pid {first.pid} on host {socket.gethostname()}"), lines[0]
    assert first.returncode == 0, err
    reached = generations(run)
    assert reached == list(range(1, reached[-1] + 1))  # each generation once, in order
    assert f"stopped by signal at generation {reached[-1]}" in out


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    from ga_gan.runlock import RunLock
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ga_gan.runlock import RunLock; "
         "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
         str(tmp_path)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by another ga-gan process \\(pid {holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path).acquire()  # the kernel released the dead process's flock
    assert json.loads((tmp_path / ".ga-gan.lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_lock_of_a_failed_start_leaves_no_folder(tmp_path, capsys):
    """A run refused after the lock was taken (here: missing data) removes the folder it made."""
    run = tmp_path / "never"
    assert main(["evolve", "--data", f"folder:{tmp_path / 'nope'}", "--out", str(run)]) == 2
    assert not run.exists()


# --- damaged checkpoints -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """R: 20 generations (checkpoints at 10 and 20); U: 30 generations in one go."""
    root = tmp_path_factory.mktemp("recovery")
    assert main(["evolve", "--generations", "20", "--out", str(root / "R"), *QUICK]) == 0
    assert main(["evolve", "--generations", "30", "--out", str(root / "U"), *QUICK]) == 0
    return root


def _damage_newest(run: Path, how: str) -> None:
    files = sorted(p for p in (run / "checkpoints" / "20" / "state").rglob("*")
                   if p.is_file() and p.parent.name == "d")
    assert files
    if how == "truncate":
        with open(files[0], "r+b") as f:
            f.truncate(10)
    elif how == "flip":  # flipped bytes in every data file: read fine, or not at all
        for path in files:
            data = bytearray(path.read_bytes())
            for i in range(len(data) // 2, len(data), 7):
                data[i] ^= 0x5A
            path.write_bytes(bytes(data))
    elif how == "checksum":  # as if the data changed after the checksum was written
        meta = run / "checkpoints" / "20" / "meta" / "metadata"
        record = json.loads(meta.read_text())
        record["checksum"] = "0" * 64
        meta.write_text(json.dumps(record))


@pytest.mark.parametrize("how", ["truncate", "flip", "checksum"])
def test_damaged_newest_step_falls_back_bit_identically(runs, tmp_path, capsys, how):
    from ga_gan.sample import load_generator
    run = tmp_path / "R"
    shutil.copytree(runs / "R", run)
    _damage_newest(run, how)
    capsys.readouterr()
    assert main(["evolve", "--generations", "30", "--out", str(run), *QUICK]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.strip()]
    assert len(notes) == 1, captured.err
    assert notes[0].startswith("warning: checkpoint at generation 20 is damaged (")
    assert notes[0].endswith("resuming from generation 10 (the damaged one is set aside)")
    assert "tensorstore_spec" not in notes[0] and len(notes[0]) < 300
    assert "from its checkpoint at generation 10" in captured.out
    assert (run / "checkpoints" / "20.damaged").is_dir()
    assert generations(run) == list(range(1, 31)) and metrics(run) == metrics(runs / "U")
    state, ref = load_generator(run)[4], load_generator(runs / "U")[4]
    assert int(state.generation) == 30
    for a, b in zip(leaves(state), leaves(ref), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_no_intact_step_is_one_line_and_touches_nothing(runs, tmp_path, capsys):
    run = tmp_path / "R"
    shutil.copytree(runs / "R", run)
    for step in ("10", "20"):
        meta = run / "checkpoints" / step / "meta" / "metadata"
        meta.write_text(meta.read_text().replace('"checksum": "', '"checksum": "0'))
    before = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["evolve", "--generations", "30", "--out", str(run), *QUICK]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: no intact checkpoint in ") and "--restart" in lines[-1]
    assert "Traceback" not in err
    assert (run / "metrics.jsonl").read_bytes() == before


def test_checkpointer_skips_a_nan_state_and_checks_checksums(tmp_path):
    from ga_gan.checkpoint import Checkpointer, state_digest
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(3), "n": jnp.int32(7)}
    ckpt = Checkpointer(str(tmp_path / "c"), async_save=False)
    ckpt.save(1, tree, {"generation": 1})
    ckpt.save(2, {**tree, "w": tree["w"].at[0, 0].set(jnp.nan)}, {"generation": 2})
    ckpt.wait()
    assert ckpt.read_meta(1)["checksum"] == state_digest(tree)
    notes: list = []
    abstract = jax.eval_shape(lambda: tree)
    step, state, meta = ckpt.restore_newest_intact(abstract, log=notes.append)
    assert step == 1 and meta["generation"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(leaves(state), leaves(tree)))
    assert notes == ["warning: checkpoint at generation 2 is damaged (its state holds NaN); "
                     "resuming from generation 1 (the damaged one is set aside)"]
    assert ckpt.all_steps() == [1]
    ckpt.close()
