"""Checkpoints that resume exactly, across separate processes, signals and kills.

Every run below is a real `ga-gan` process (the same `main` the console script calls), so a
resume starts from nothing but the run folder. The processes are started in three waves, two to
four at a time, and the tests then only read what they left behind:

  wave 1  U   evolve 100 generations in one go (with --restart over a stale folder)
          TU  train 100 steps in one go
  wave 2  A1  evolve 50 (relative --out)             T1  train 50
          S1  evolve 100, SIGTERM once it is running K1  evolve 100, SIGKILL during a save
  wave 3  A2  --resume A --generations 100           T2  --resume T --steps 100
          S2  --resume S                             K2  --resume K

Speed: the processes share a JAX compilation cache (tests/procs.py), so wave 1 compiles and
waves 2 and 3 load the same executables.

Killing during a save: K1 runs the CLI through procs.STALL, which blocks orbax's commit (the
rename of `<step>.orbax-checkpoint-tmp` to `<step>`) of one chosen step forever; the training
loop keeps going until the next save waits for the stuck one; the test then sends SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import records
from procs import CLI, STALL, Proc, assert_same_final_state, cli_env, latest_step, read_meta
from procs import drive as _drive, generations as _generations, metrics as _metrics

pytestmark = pytest.mark.slow

TOTAL, HALF = 100, 50
LOG = ["--no-progress", "--set", "log.eval_every=0", "--set", "log.image_every=0",
       "--set", "log.checkpoint_every=25"]
EV = ["--pop", "8", *LOG]
K_EVERY, K_STALL = 15, 30  # K1 checkpoints every 15 (not a multiple of steps_per_call=10)


def _latest_step(run: Path):
    return latest_step(run / "checkpoints")


def _meta(run: Path, step: int) -> dict:
    return read_meta(run / "checkpoints", step)


def _assert_same_final_state(run: Path, reference: Path) -> None:
    assert_same_final_state(run, reference, TOTAL)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    env = cli_env()
    U, TU, A, T, S, K = (root / n for n in ("U", "TU", "A", "T", "S", "K"))
    facts: dict = {"root": root}
    procs: dict[str, Proc] = {}

    def start(name, args, code=CLI, extra_env=None):
        procs[name] = Proc(root, name, args, dict(env, **(extra_env or {})), code)
        return procs[name]

    def ok(*names):
        for n in names:
            assert procs[n].rc == 0, procs[n].describe()

    try:
        # wave 1 -------------------------------------------------------------------------
        # U's folder holds the remains of a run killed before its first checkpoint completed.
        (U / "checkpoints" / "3.orbax-checkpoint-tmp").mkdir(parents=True)
        (U / "metrics.jsonl").write_text('{"generation": 1, "time_s": 0.1}\n{"generat')
        start("U", ["evolve", *EV, "--generations", TOTAL, "--out", U, "--restart"])
        start("TU", ["train", *LOG, "--steps", TOTAL, "--out", TU])
        _drive([procs["U"], procs["TU"]])
        ok("U", "TU")

        # wave 2 -------------------------------------------------------------------------
        start("A1", ["evolve", *EV, "--generations", HALF, "--out", "A"])  # relative path
        start("T1", ["train", *LOG, "--steps", HALF, "--out", T])
        s1 = start("S1", ["evolve", *EV, "--generations", TOTAL, "--out", S])
        mark = root / "K.stalled"
        k1 = start("K1", ["evolve", *EV, "--set", f"log.checkpoint_every={K_EVERY}",
                          "--generations", TOTAL, "--out", K], code=STALL,
                   extra_env={"GA_GAN_TEST_STALL_STEP": str(K_STALL),
                              "GA_GAN_TEST_STALL_MARK": str(mark)})

        def sigterm_once_running():
            if "S_signalled_at" not in facts and s1.rc is None and _generations(S):
                facts["S_signalled_at"] = _generations(S)[-1]
                s1.p.send_signal(signal.SIGTERM)

        def sigkill_during_save():
            if k1.rc is not None or not mark.exists():
                return
            facts.setdefault("K_stalled_since", time.monotonic())
            gens = _generations(K)
            # the loop runs on to the next checkpoint, where it waits for the stuck save
            if (gens and gens[-1] >= K_STALL + K_EVERY) or \
                    time.monotonic() - facts["K_stalled_since"] > 30:
                k1.p.send_signal(signal.SIGKILL)

        _drive([procs[n] for n in ("A1", "T1", "S1", "K1")],
               hooks=[sigterm_once_running, sigkill_during_save])
        ok("A1", "T1", "S1")
        facts["A_meta_half"] = _meta(A, HALF)
        facts["S_generations"] = _generations(S)
        facts["S_latest"] = _latest_step(S)
        facts["K_stalled"] = mark.exists()
        facts["K_generations"] = _generations(K)
        facts["K_dirs"] = sorted(p.name for p in (K / "checkpoints").iterdir())
        facts["K_latest"] = _latest_step(K)

        # wave 3 -------------------------------------------------------------------------
        start("A2", ["evolve", "--resume", "A", "--generations", TOTAL])
        start("T2", ["train", "--resume", T, "--steps", TOTAL])
        start("S2", ["evolve", "--resume", S])
        start("K2", ["evolve", "--resume", K])
        _drive([procs[n] for n in ("A2", "T2", "S2", "K2")])
    finally:
        for p in procs.values():
            if p.rc is None:
                p.p.kill()
                p.p.wait()
    return {"procs": procs, "facts": facts, "U": U, "TU": TU, "A": A, "T": T, "S": S, "K": K}


def _assert_resumed_equals_whole(runs, name: str, whole: str, said: str) -> None:
    """`name`'s second process resumed at HALF (saying so) and ended bit-identical to the
    uninterrupted run `whole`: metrics.jsonl, every generation once, the final state."""
    second = runs["procs"][f"{name}2"]
    assert second.rc == 0, second.describe()
    assert said in second.stdout
    assert _metrics(runs[name]) == _metrics(runs[whole])
    assert _generations(runs[name]) == list(range(1, TOTAL + 1))
    _assert_same_final_state(runs[name], runs[whole])


def test_evolve_k_then_extended_to_2k_equals_2k_in_one_go(runs):
    """A finished 50-generation run, extended by raising --generations to 100 in a second
    process, ends bit-identical to 100 generations in one go: state and metrics.jsonl."""
    _assert_resumed_equals_whole(runs, "A", "U",
                                 f"resuming A from its checkpoint at generation {HALF}")
    # training time (and so --time-budget) accumulates across the two processes
    times = [r["time_s"] for r in records(runs["A"])]
    assert times == sorted(times) and times[HALF] >= runs["facts"]["A_meta_half"]["time_s"] > 0
    assert _meta(runs["A"], TOTAL)["time_s"] == pytest.approx(times[-1], abs=1e-3)


def test_train_k_then_resumed_to_2k_equals_2k_in_one_go(runs):
    _assert_resumed_equals_whole(runs, "T", "TU", f"from its checkpoint at generation {HALF}")


def test_sigterm_saves_exits_0_and_resumes_exactly(runs):
    s1, s2, facts = runs["procs"]["S1"], runs["procs"]["S2"], runs["facts"]
    assert "S_signalled_at" in facts, "S1 finished before it could be signalled"
    assert s1.rc == 0, s1.describe()
    assert f"Resume with: ga-gan evolve --resume {runs['S']}" in s1.stdout
    reached = facts["S_generations"][-1]
    assert facts["S_signalled_at"] <= reached < TOTAL  # it stopped early, after its chunk
    assert facts["S_generations"] == list(range(1, reached + 1))
    assert facts["S_latest"] == reached  # a checkpoint at exactly the generation reached
    assert s2.rc == 0, s2.describe()
    assert f"from its checkpoint at generation {reached}" in s2.stdout
    assert _generations(runs["S"]) == list(range(1, TOTAL + 1))  # each exactly once
    assert _metrics(runs["S"]) == _metrics(runs["U"])
    _assert_same_final_state(runs["S"], runs["U"])


def test_sigkill_during_a_save_resumes_from_the_previous_checkpoint(runs):
    k1, k2, facts = runs["procs"]["K1"], runs["procs"]["K2"], runs["facts"]
    assert facts["K_stalled"], "the save of step %d never reached its commit:\n%s" % (
        K_STALL, k1.describe())
    assert k1.rc == -signal.SIGKILL, k1.describe()
    # data for K_STALL was written but never committed: its tmp folder is left, ignored
    assert f"{K_STALL}.orbax-checkpoint-tmp" in facts["K_dirs"]
    assert str(K_STALL) not in facts["K_dirs"]
    # The documented bound (README, checkpoint.py): the save at K_STALL was in flight, the loop
    # ran on to the next save (K_STALL + K_EVERY), which waits for it to commit; killed there,
    # the newest committed step is two intervals behind the metrics: at most 2 x every lost.
    # (The loop blocks at K_STALL + K_EVERY, so the kill normally lands there: exactly 2 x.)
    assert facts["K_latest"] == K_STALL - K_EVERY
    assert facts["K_generations"][-1] >= K_STALL  # metrics had run past the checkpoint
    assert facts["K_generations"][-1] - facts["K_latest"] <= 2 * K_EVERY
    assert k2.rc == 0, k2.describe()
    assert f"from its checkpoint at generation {K_STALL - K_EVERY}" in k2.stdout
    assert not [p for p in (runs["K"] / "checkpoints").iterdir() if "tmp" in p.name]
    assert _generations(runs["K"]) == list(range(1, TOTAL + 1))
    assert _metrics(runs["K"]) == _metrics(runs["U"])
    _assert_same_final_state(runs["K"], runs["U"])


def _cli(args, capsys) -> tuple[int, str, str]:
    from ga_gan.cli import main
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _snapshot(run: Path) -> tuple:
    return ((run / "metrics.jsonl").read_bytes(),
            sorted(p.name for p in (run / "checkpoints").iterdir()))


def _files(run: Path) -> dict:
    return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*")) if p.is_file()
            and p.name not in ("config.json", ".ga-gan.lock")}  # the lock records its holder


def test_resuming_a_finished_run_changes_nothing(runs, capsys):
    """No metrics line, checkpoint, sample grid or plot is added or rewritten."""
    def config():  # rewritten; only the folder's spelling ("A", then absolute) changes
        raw = json.loads((runs["A"] / "config.json").read_text())
        raw["config"].pop("out")
        return raw

    files, before = _files(runs["A"]), config()
    rc, out, err = _cli(["evolve", "--resume", runs["A"]], capsys)
    assert rc == 0, err
    assert f"already at generation {TOTAL} >= {TOTAL}: nothing to do" in out
    assert _files(runs["A"]) == files
    assert config() == before


@pytest.mark.parametrize("args, reason", [
    (["evolve", "--resume", "{U}", "--set", "model.width=0.5"], "model.width"),
    (["evolve", "--resume", "{U}", "--strategy", "snes"], "'snes'"),
    (["evolve", "--resume", "{U}", "--pop", "16"], "pop"),
    (["train", "--out", "{U}", *LOG], "holds a 'evolve' run"),
    (["train", "--resume", "{U}"], "'evolve' run"),
    (["evolve", "--resume", "{root}/not-there"], "not a ga-gan run folder"),
    (["evolve", "--resume", "{root}/jax-cache"], "not a ga-gan run folder"),
    (["evolve", "--resume", "{root}/foreign"], "not a ga-gan run folder"),
], ids=["width", "strategy", "pop", "other-method-out", "other-method-resume", "missing",
        "not-a-run", "foreign-config"])
def test_mismatched_resume_exits_2_with_one_line(runs, capsys, args, reason):
    root = runs["facts"]["root"]
    (root / "foreign").mkdir(exist_ok=True)
    (root / "foreign" / "config.json").write_text('{"name": "someone else\'s"}')
    (root / "jax-cache").mkdir(exist_ok=True)
    before = _snapshot(runs["U"])
    args = [a.format(U=runs["U"], root=root) for a in args]
    rc, out, err = _cli(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert reason in lines[0], lines[0]
    assert _snapshot(runs["U"]) == before


def test_run_without_a_complete_checkpoint_is_not_overwritten(runs, capsys, tmp_path):
    """Killed before its first checkpoint committed: refused (exit 2) unless --restart."""
    run = tmp_path / "X"
    (run / "checkpoints" / "10.orbax-checkpoint-tmp").mkdir(parents=True)
    shutil.copy(runs["U"] / "config.json", run / "config.json")
    (run / "metrics.jsonl").write_text('{"generation": 1, "time_s": 0.1}\n')
    before = (run / "metrics.jsonl").read_bytes()
    for args in (["evolve", *EV, "--generations", 20, "--out", run],
                 ["evolve", "--resume", run]):
        rc, out, err = _cli(args, capsys)
        assert rc == 2, (out, err)
        assert "without a complete checkpoint" in err and "--restart" in err
        assert len(err.strip().splitlines()) == 1, err
        assert (run / "metrics.jsonl").read_bytes() == before
    # ...and U was started with --restart over such a folder: cleared, then a clean run
    u = runs["procs"]["U"]
    assert f"--restart: cleared {runs['U']}" in u.stdout
    assert _generations(runs["U"]) == list(range(1, TOTAL + 1))
    assert not (runs["U"] / "checkpoints" / "3.orbax-checkpoint-tmp").exists()


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
    from ga_gan.runlog import RunLog, read_metrics
    lines = [json.dumps({"generation": g, "time_s": g / 10}) for g in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"generation": 6, "ti')
    assert [r["generation"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    RunLog(tmp_path, resume_generation=3)
    assert (tmp_path / "metrics.jsonl").read_text() == "\n".join(lines[:3]) + "\n"


def test_second_ctrl_c_interrupts_but_waits_for_a_critical_section():
    """First SIGINT/SIGTERM: a flag (the loop saves and exits 0). A second Ctrl-C raises
    KeyboardInterrupt, deferred to the end of a critical section (a save being started, metrics
    lines being written); on the way out the on_error hook (wait for the save) runs and the
    previous handlers come back."""
    from ga_gan.interrupt import StopOnSignal as _Stop
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")  # else SIGTERM would end pytest
    called = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with _Stop(on_error=lambda: called.append(True)) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # repeated SIGTERM: still just the flag
            assert stop.signal == signal.SIGTERM
            with pytest.raises(KeyboardInterrupt):
                with stop.critical():
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                    called.append("still inside")
            assert called == ["still inside"]
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            called.append("not reached")
    assert called == ["still inside", True]
    assert signal.getsignal(signal.SIGINT) is before


def test_old_checkpoint_without_a_newer_config_key_still_resumes():
    """A key added to the config after a run was checkpointed takes its default on resume;
    changing a key the run did have is still refused."""
    from ga_gan.checkpoint import config_mismatch
    from ga_gan.config import RunConfig, to_dict, with_defaults
    current = to_dict(RunConfig())
    saved = json.loads(json.dumps(current))
    newer = sorted(saved["evolve"]["g"])[0]
    del saved["evolve"]["g"][newer]  # as written by a version without that option
    assert config_mismatch(saved, current) is not None
    assert config_mismatch(with_defaults(saved), current) is None
    saved["evolve"]["batch"] += 1
    assert "evolve.batch" in config_mismatch(with_defaults(saved), current)
